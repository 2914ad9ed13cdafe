"""The storefront side of tracking, over HTTP without a browser: CORS per source, the delivery modes
of Analytics.js 2.0 and RudderStack's SDK, and the settings documents they load."""

from __future__ import annotations

import base64
import gzip
import json
import uuid

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from profiles import services
from profiles.models import Event, Identifier, Source
from profiles.storefront import InvalidOrigin, origin_normalize

pytestmark = pytest.mark.django_db

SHOP = "http://shop.example.test:8080"
OTHER = "https://evil.example.test"


@pytest.fixture
def shop_source():
    source, raw = services.source_create(name="shop", allowed_origins=[SHOP])
    return source, raw


def basic(raw: str) -> str:
    return "Basic " + base64.b64encode(f"{raw}:".encode()).decode()


def post(client, path: str, body, *, origin: str | None = SHOP, auth: str | None = None, content_type="text/plain"):
    headers = {}
    if origin:
        headers["HTTP_ORIGIN"] = origin
    if auth:
        headers["HTTP_AUTHORIZATION"] = auth
    data = body if isinstance(body, bytes) else json.dumps(body)
    return client.post(path, data=data, content_type=content_type, **headers)


def track(**extra) -> dict:
    return {"type": "track", "event": "Product Viewed", "anonymousId": "a-1", "messageId": str(uuid.uuid4()), **extra}


# --- origins -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://Shop.Example.com/", "https://shop.example.com"),
        ("https://shop.example.com:443", "https://shop.example.com"),
        ("http://localhost:8131", "http://localhost:8131"),
        ("*", "*"),
    ],
)
def test_origins_are_normalised(given, expected):
    assert origin_normalize(given) == expected


@pytest.mark.parametrize("bad", ["shop.example.com", "https://shop.example.com/path", "ftp://x.y", "https://a:b@x.y"])
def test_what_is_not_an_origin_is_refused(bad):
    with pytest.raises(InvalidOrigin):
        origin_normalize(bad)


def test_create_source_takes_repeatable_origins(capsys):
    call_command("create_source", "web", "--origin", "https://a.example", "--origin", "http://localhost:8131/")
    out, err = capsys.readouterr()
    source = Source.objects.get(name="web")
    assert source.allowed_origins == ["https://a.example", "http://localhost:8131"]
    assert out.strip().startswith("wk_")
    assert "https://a.example" in err
    assert source.user_token_secret.startswith("uts_")


def test_create_source_allows_any_origin_only_when_asked_and_says_so(capsys):
    call_command("create_source", "anywhere", "--origin", "*")
    _, err = capsys.readouterr()
    assert Source.objects.get(name="anywhere").allowed_origins == ["*"]
    assert "ANY origin" in err
    call_command("create_source", "nowhere")
    assert Source.objects.get(name="nowhere").allowed_origins == []


def test_create_source_refuses_a_bad_origin_with_a_message():
    with pytest.raises(CommandError, match="not an origin"):
        call_command("create_source", "bad", "--origin", "shop.example.com")
    assert not Source.objects.filter(name="bad").exists()


# --- CORS --------------------------------------------------------------------------------------

SDK_HEADERS = (
    "authorization,content-type,x-retry-count,anonymousid,sentat,rsa-recovered,rsa-retry-attempt,"
    "rsa-since-last-attempt,rsa-since-first-attempt,rsa-retry-reason"
)


@pytest.mark.parametrize(
    "path", ["/v1/t", "/v1/track", "/v1/batch", "/v1/b", "/v1/i", "/v1/consent", "/beacon/v1/batch", "/sourceConfig/"]
)
def test_preflight_is_answered_without_credentials_with_every_sdk_header(client, shop_source, path):
    response = client.options(
        path,
        HTTP_ORIGIN=SHOP,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS=SDK_HEADERS,
    )
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == SHOP
    allowed = {h.strip() for h in response["Access-Control-Allow-Headers"].split(",")}
    assert set(SDK_HEADERS.split(",")) <= allowed
    assert "POST" in response["Access-Control-Allow-Methods"]
    assert "Access-Control-Allow-Credentials" not in response


def test_preflight_from_an_origin_no_source_lists_gets_no_allow_origin(client, shop_source):
    response = client.options("/v1/t", HTTP_ORIGIN=OTHER, HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST")
    assert response.status_code == 200  # never a 401; the browser stops here for lack of the header
    assert "Access-Control-Allow-Origin" not in response


def test_the_secret_key_api_has_no_cors(client, shop_source):
    response = client.options("/api/v1/profiles/", HTTP_ORIGIN=SHOP, HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET")
    assert "Access-Control-Allow-Origin" not in response


def test_an_answer_carries_allow_origin(client, shop_source):
    _, raw = shop_source
    response = post(client, "/v1/t", track(), auth=basic(raw))
    assert response.status_code == 200, response.content
    assert response["Access-Control-Allow-Origin"] == SHOP
    assert Event.objects.count() == 1


def test_a_page_on_an_origin_its_source_does_not_list_gets_a_clear_403_and_nothing_is_stored(client, shop_source):
    services.source_create(name="other", allowed_origins=[OTHER])  # OTHER is known, but not to "shop"
    _, raw = shop_source
    response = post(client, "/v1/t", track(), auth=basic(raw), origin=OTHER)
    assert response.status_code == 403
    body = response.json()["error"]
    assert body["code"] == "origin_not_allowed"
    assert OTHER in body["message"] and "shop" in body["message"]
    assert response["Access-Control-Allow-Origin"] == OTHER  # the page can read why
    response = post(client, "/v1/consent", {"anonymousId": "a-1", "purposes": {"analytics": True}}, auth=basic(raw),
                    origin=OTHER, content_type="application/json")  # fmt: skip
    assert response.status_code == 403
    assert Event.objects.count() == 0


def test_a_source_without_origins_refuses_browsers_but_not_servers(client):
    _, raw = services.source_create(name="backend")
    assert post(client, "/v1/t", track(), auth=basic(raw)).status_code == 403
    assert post(client, "/v1/t", track(), auth=basic(raw), origin=None).status_code == 200


def test_any_origin_only_when_the_source_says_star(client):
    _, raw = services.source_create(name="open", allowed_origins=["*"])
    response = post(client, "/v1/t", track(), auth=basic(raw), origin="https://anyone.example")
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == "https://anyone.example"


# --- delivery modes ----------------------------------------------------------------------------


def test_analytics_js_batching_posts_to_v1_b_with_the_key_in_header_and_body(client, shop_source):
    _, raw = shop_source
    body = {"writeKey": raw, "batch": [track(), track(type="page", name="Home")], "sentAt": "2026-01-01T00:00:00Z"}
    response = post(client, "/v1/b", body, auth=basic(raw))
    assert response.status_code == 200, response.content
    assert response.json()["accepted"] == 2


def test_a_beacon_without_headers_authenticates_by_the_write_key_in_the_body(client, shop_source):
    _, raw = shop_source
    response = post(client, "/v1/t", {**track(), "writeKey": raw})
    assert response.status_code == 200, response.content
    response = post(client, "/v1/b", {"writeKey": raw, "batch": [track()]})
    assert response.status_code == 200
    assert Event.objects.count() == 2


def test_rudderstack_beacon_batch_takes_the_write_key_from_the_query(client, shop_source):
    _, raw = shop_source
    response = post(client, f"/beacon/v1/batch?writeKey={raw}", {"batch": [track(), track()], "sentAt": None})
    assert response.status_code == 200, response.content
    assert response.json()["accepted"] == 2


def test_a_wrong_write_key_in_the_body_is_refused_in_the_error_shape(client, shop_source):
    response = post(client, "/v1/t", {**track(), "writeKey": "wk_nope"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"
    response = post(client, "/v1/t", {**track(), "writeKey": "sk_secret"})
    assert response.status_code == 401
    assert Event.objects.count() == 0


def test_no_write_key_anywhere_is_a_401_in_the_error_shape(client, shop_source):
    response = post(client, "/v1/t", track())
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_gzip_bodies_with_the_key_in_the_body(client, shop_source):
    _, raw = shop_source
    data = gzip.compress(json.dumps({"writeKey": raw, "batch": [track()]}).encode())
    response = client.post("/v1/batch", data=data, content_type="application/json", HTTP_CONTENT_ENCODING="gzip",
                           HTTP_ORIGIN=SHOP)  # fmt: skip
    assert response.status_code == 200, response.content


def test_context_traits_of_identify_are_traits_exactly_as_top_level_ones(client, shop_source):
    _, raw = shop_source
    rudder_identify = {
        "type": "identify",
        "userId": "u-7",
        "anonymousId": "a-7",
        "messageId": str(uuid.uuid4()),
        "context": {"traits": {"email": "Kim@Example.com", "first_name": "Kim", "plan": "gold"}},
        "channel": "web",
    }
    response = post(client, "/v1/identify", rudder_identify, auth=basic(raw), content_type="application/json")
    assert response.status_code == 200, response.content
    profile = Identifier.objects.get(kind="user_id", value="u-7").profile
    assert profile.traits["first_name"] == "Kim"
    assert profile.traits["plan"] == "gold"
    assert Identifier.objects.get(kind="email").profile_id == profile.pk
    # top-level traits win over context.traits in the same call
    post(client, "/v1/identify", {**rudder_identify, "messageId": "m2", "traits": {"plan": "silver"}}, auth=basic(raw))
    profile.refresh_from_db()
    assert profile.traits["plan"] == "silver"


def test_context_traits_of_a_track_call_do_not_change_the_profile(client, shop_source):
    _, raw = shop_source
    post(client, "/v1/identify", {"type": "identify", "userId": "u-8", "traits": {"plan": "gold"}}, auth=basic(raw))
    post(client, "/v1/track", {**track(userId="u-8"), "context": {"traits": {"plan": "stale"}}}, auth=basic(raw))
    assert Identifier.objects.get(kind="user_id", value="u-8").profile.traits["plan"] == "gold"


# --- settings documents ------------------------------------------------------------------------


def test_analytics_js_settings_point_the_sdk_at_this_cdp(client, shop_source):
    _, raw = shop_source
    response = client.get(f"/v1/projects/{raw}/settings", HTTP_ORIGIN=SHOP)
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == SHOP
    segmentio = response.json()["integrations"]["Segment.io"]
    assert segmentio == {**segmentio, "apiKey": raw, "apiHost": "testserver/v1", "protocol": "http"}
    assert response.json()["remotePlugins"] == []


def test_rudderstack_source_config_for_the_write_key(client, shop_source):
    source, raw = shop_source
    response = client.get(f"/sourceConfig/?p=npm&v=3.34.1&writeKey={raw}", HTTP_ORIGIN=SHOP)
    assert response.status_code == 200
    body = response.json()["source"]
    assert body["writeKey"] == raw and body["enabled"] is True and body["destinations"] == []
    assert body["name"] == source.name
    by_header = client.get("/sourceConfig/", HTTP_AUTHORIZATION=basic(raw), HTTP_ORIGIN=SHOP)
    assert by_header.status_code == 200


def test_settings_for_an_unknown_key_or_a_foreign_origin_are_refused(client, shop_source):
    _, raw = shop_source
    response = client.get("/v1/projects/wk_unknown/settings")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    response = client.get(f"/sourceConfig/?writeKey={raw}", HTTP_ORIGIN=OTHER)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "origin_not_allowed"


def test_rudderstack_consent_context_is_recorded_like_segments(client, shop_source):
    from consent.selectors import consent_granted
    from consent.services import purposes_ensure

    purposes_ensure()
    _, raw = shop_source
    event = {
        **track(userId="u-9"),
        "context": {"consentManagement": {"allowedConsentIds": ["personalisation"], "deniedConsentIds": ["marketing"],
                                          "provider": "custom"}},
    }  # fmt: skip
    assert post(client, "/v1/track", event, auth=basic(raw)).status_code == 200
    profile_id = Identifier.objects.get(kind="user_id", value="u-9").profile_id
    assert consent_granted(profile_id=profile_id, purpose="personalisation") is True
    assert consent_granted(profile_id=profile_id, purpose="marketing") is False


# --- admin -------------------------------------------------------------------------------------


@pytest.fixture
def admin_client(db):
    from django.contrib.auth import get_user_model
    from django.test import Client

    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    c = Client()
    c.force_login(user)
    return c


def test_admin_creates_a_source_with_origins_and_shows_its_key_once(admin_client):
    response = admin_client.post(
        "/admin/profiles/source/add/",
        {"name": "web", "is_active": "on", "allowed_origins": "https://Shop.example.com/\nhttp://localhost:8131"},
        follow=True,
    )
    assert response.status_code == 200
    source = Source.objects.get(name="web")
    assert source.allowed_origins == ["https://shop.example.com", "http://localhost:8131"]
    assert "wk_" in response.content.decode()


def test_admin_edits_origins_and_refuses_a_non_origin(admin_client, shop_source):
    source, _ = shop_source
    url = f"/admin/profiles/source/{source.pk}/change/"
    response = admin_client.post(url, {"name": "shop", "is_active": "on", "allowed_origins": "shop.example.com"})
    assert response.status_code == 200  # the form again, with the message
    assert "is not an origin" in response.content.decode()
    response = admin_client.post(url, {"name": "shop", "is_active": "on", "allowed_origins": "*"})
    assert response.status_code == 302
    source.refresh_from_db()
    assert source.allowed_origins == ["*"]
    assert "any origin" in admin_client.get("/admin/profiles/source/").content.decode()


def test_admin_rotates_the_user_token_secret(admin_client, shop_source):
    source, _ = shop_source
    before = source.user_token_secret
    admin_client.post(
        "/admin/profiles/source/", {"action": "rotate_user_token_secret", "_selected_action": [source.pk]}
    )
    source.refresh_from_db()
    assert source.user_token_secret != before and source.user_token_secret.startswith("uts_")
