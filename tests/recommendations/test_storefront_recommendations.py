"""GET /v1/recommendations: what a shop page may ask for itself with the publishable write key."""

from __future__ import annotations

import base64
import time

import pytest
from django.utils import timezone

from profiles.models import Identifier
from profiles.services import source_create
from profiles.storefront import user_token_make

from .conftest import grant

SHOP = "https://shop.example.test"


@pytest.fixture
def page(shop, client):
    """The shop's storefront source (its page's origin listed) and a way to ask as that page."""
    source, raw = source_create(name="storefront-web", allowed_origins=[SHOP])

    def ask(origin: str | None = SHOP, **params):
        headers = {"HTTP_ORIGIN": origin} if origin else {}
        return client.get("/v1/recommendations", {"writeKey": raw, **params}, **headers)

    ask.source = source
    ask.raw = raw
    return ask


def identify(profile_id: str, **ids) -> None:
    now = timezone.now()
    for kind, value in ids.items():
        Identifier.objects.create(kind=kind, value=value, profile_id=profile_id, last_seen_at=now)


def token_for(source, user_id: str, seconds: int = 600) -> str:
    return user_token_make(secret=source.user_token_secret, user_id=user_id, expires_at=int(time.time()) + seconds)


def test_a_signed_in_shopper_gets_their_own_recommendations_with_a_user_token(shop, page):
    person = shop.person(0)  # bought ELE-1 and BEA-1
    identify(person, user_id="u-0")
    grant(person)
    response = page(user_id="u-0", user_token=token_for(page.source, "u-0"), placement="home", k=5)
    assert response.status_code == 200, response.content
    body = response.json()
    assert response["Access-Control-Allow-Origin"] == SHOP
    assert body["personalised"] is True
    assert body["placement"] == "home"
    assert set(body) == {"recommendation_id", "placement", "personalised", "items"}  # no profile id
    item = body["items"][0]
    assert set(item) == {"sku", "title", "category", "brand", "price", "in_stock", "url", "image", "explanation"}
    assert item["price"] == "10.00"


@pytest.mark.parametrize(
    ("token", "why"),
    [
        (None, "malformed"),
        ("123.abc", "expired"),
        ("forged", "malformed"),
    ],
)
def test_a_user_id_without_a_valid_token_is_a_clear_403(shop, page, token, why):
    identify(shop.person(0), user_id="u-0")
    params = {"user_id": "u-0"}
    if token:
        params["user_token"] = token
    response = page(**params)
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "user_token_invalid"
    assert why in error["message"]


def test_a_token_for_another_user_or_another_source_is_refused(shop, page):
    identify(shop.person(0), user_id="u-0")
    assert page(user_id="u-0", user_token=token_for(page.source, "u-1")).status_code == 403
    other, _ = source_create(name="elsewhere")
    assert page(user_id="u-0", user_token=token_for(other, "u-0")).status_code == 403
    too_long = token_for(page.source, "u-0", seconds=30 * 24 * 3600)
    assert "too far ahead" in page(user_id="u-0", user_token=too_long).json()["error"]["message"]


def test_an_anonymous_visitor_gets_recommendations_for_their_anonymous_id(shop, page):
    person = shop.person(1)
    identify(person, anonymous_id="anon-1")
    grant(person)
    body = page(anonymous_id="anon-1").json()
    assert body["personalised"] is True


def test_an_anonymous_id_of_a_signed_in_person_gets_no_personal_list_without_the_token(shop, page):
    person = shop.person(2)
    identify(person, anonymous_id="anon-2", user_id="u-2")
    grant(person)
    body = page(anonymous_id="anon-2").json()
    assert body["personalised"] is False
    assert page(user_id="u-2", user_token=token_for(page.source, "u-2")).json()["personalised"] is True


def test_unknown_visitors_get_a_non_personal_list(shop, page):
    body = page(anonymous_id="never-seen").json()
    assert body["personalised"] is False and body["items"]


def test_origin_and_key_are_checked(shop, page, client):
    assert page(origin="https://evil.example").status_code == 403
    assert page(origin="https://evil.example").json()["error"]["code"] == "origin_not_allowed"
    assert client.get("/v1/recommendations").status_code == 401
    basic = "Basic " + base64.b64encode(f"{page.raw}:".encode()).decode()
    response = client.get("/v1/recommendations", HTTP_AUTHORIZATION=basic, HTTP_ORIGIN=SHOP)
    assert response.status_code == 200


def test_bad_parameters_get_field_messages(shop, page):
    response = page(k=500, device="fridge")
    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == {"k", "device"}


def test_browser_recommendations_are_throttled_per_source_and_address(shop, page, settings):
    settings.RECS_BROWSER_THROTTLE = "2/min"
    assert page().status_code == 200
    assert page().status_code == 200
    response = page()
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "throttled"
    assert int(response["Retry-After"]) > 0


def test_placements_take_their_anchor_and_unknown_ones_are_a_400(shop, page):
    body = page(placement="product", product="ELE-1").json()
    assert body["placement"] == "product"
    assert body["items"] and "ELE-1" not in [item["sku"] for item in body["items"]]
    response = page(placement="nowhere")
    assert response.status_code == 400
    assert "placement" in response.json()["error"]["fields"]
