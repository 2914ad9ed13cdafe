"""The API skeleton: key authentication, who may do what, one error shape, throttling."""

import base64

import pytest
from django.test import override_settings
from django.urls import path
from rest_framework.response import Response
from rest_framework.views import APIView

from cdp.api.permissions import IsWriteKey
from cdp.api.throttling import ApiKeyRateThrottle

pytestmark = pytest.mark.django_db


class _WriteView(APIView):
    permission_classes = [IsWriteKey]

    def post(self, request):
        return Response({"source": request.auth.name})


class _BoomView(APIView):
    authentication_classes: list = []
    permission_classes: list = []

    def get(self, request):
        raise RuntimeError("secret internals /etc/passwd")


urlpatterns = [
    path("v1/test-write", _WriteView.as_view()),
    path("api/v1/boom", _BoomView.as_view()),
]


def basic(username: str, password: str = "") -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def assert_error_shape(response, status: int, code: str) -> dict:
    assert response.status_code == status
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "fields"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


def test_secret_key_reads(secret_client):
    response = secret_client.get("/api/v1/sources/")
    assert response.status_code == 200
    assert response.json() == []


def test_secret_key_as_basic_username_also_works(api_client, secret_key):
    api_client.credentials(HTTP_AUTHORIZATION=basic(secret_key))
    assert api_client.get("/api/v1/sources/").status_code == 200


def test_no_key_is_401_with_challenge(api_client):
    response = api_client.get("/api/v1/sources/")
    assert_error_shape(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"] == 'Bearer realm="cdp"'


@pytest.mark.parametrize("header", ["Bearer sk_not-a-real-key", "Bearer wk_not-a-real-key", "Bearer hello"])
def test_unknown_keys_are_401(api_client, header):
    api_client.credentials(HTTP_AUTHORIZATION=header)
    assert_error_shape(api_client.get("/api/v1/sources/"), 401, "authentication_failed")


def test_malformed_basic_credentials_are_401(api_client):
    api_client.credentials(HTTP_AUTHORIZATION="Basic !!!not-base64")
    assert_error_shape(api_client.get("/api/v1/sources/"), 401, "authentication_failed")


def test_write_key_can_never_read(api_client, write_key):
    for header in (f"Bearer {write_key}", basic(write_key)):
        api_client.credentials(HTTP_AUTHORIZATION=header)
        error = assert_error_shape(api_client.get("/api/v1/sources/"), 403, "permission_denied")
        assert "secret key" in error["message"]


def test_revoked_secret_key_stops_working(secret_client, secret_key):
    from cdp.models import ApiKey
    from cdp.services import api_key_revoke

    api_key_revoke(key=ApiKey.objects.get())
    assert_error_shape(secret_client.get("/api/v1/sources/"), 401, "authentication_failed")


@override_settings(ROOT_URLCONF=__name__)
def test_write_key_as_basic_username_like_segment_libraries(api_client, write_key):
    api_client.credentials(HTTP_AUTHORIZATION=basic(write_key))
    response = api_client.post("/v1/test-write", {}, format="json")
    assert response.status_code == 200
    assert response.json() == {"source": "storefront"}


@override_settings(ROOT_URLCONF=__name__)
def test_write_key_as_bearer_token(api_client, write_key):
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {write_key}")
    assert api_client.post("/v1/test-write", {}, format="json").status_code == 200


@override_settings(ROOT_URLCONF=__name__)
def test_secret_key_cannot_send_events(secret_client):
    assert_error_shape(secret_client.post("/v1/test-write", {}, format="json"), 403, "permission_denied")


@override_settings(ROOT_URLCONF=__name__)
def test_unhandled_error_is_a_500_in_the_error_shape_without_traceback(api_client):
    client = api_client
    client.raise_request_exception = False
    response = client.get("/api/v1/boom")
    assert_error_shape(response, 500, "server_error")
    assert b"passwd" not in response.content and b"Traceback" not in response.content


def test_validation_error_lists_fields(secret_client):
    error = assert_error_shape(secret_client.post("/api/v1/sources/", {"name": ""}, format="json"), 400, "invalid")
    assert error["fields"] == {"name": ["This field may not be blank."]}


def test_duplicate_source_name_is_a_field_error(secret_client):
    assert secret_client.post("/api/v1/sources/", {"name": "shop"}, format="json").status_code == 201
    error = assert_error_shape(secret_client.post("/api/v1/sources/", {"name": "shop"}, format="json"), 400, "invalid")
    assert error["fields"] == {"name": ["A source named 'shop' already exists."]}


def test_invalid_json_is_400(secret_client):
    response = secret_client.post("/api/v1/sources/", data="{not json", content_type="application/json")
    assert_error_shape(response, 400, "parse_error")


def test_wrong_content_type_is_415(secret_client):
    response = secret_client.post("/api/v1/sources/", data="name=x", content_type="application/x-www-form-urlencoded")
    assert_error_shape(response, 415, "unsupported_media_type")


def test_wrong_method_is_405(secret_client):
    assert_error_shape(secret_client.delete("/api/v1/sources/"), 405, "method_not_allowed")


def test_unknown_api_url_is_404_json(secret_client):
    assert_error_shape(secret_client.get("/api/v1/nothing-here/"), 404, "not_found")
    assert_error_shape(secret_client.get("/v1/nothing-here"), 404, "not_found")


def test_unknown_object_is_404_json(secret_client):
    assert_error_shape(secret_client.get("/api/v1/sources/999999/"), 404, "not_found")


def test_throttling_per_key_returns_429_with_retry_after(api_client, secret_key, monkeypatch):
    from cdp.services import api_key_create

    monkeypatch.setitem(ApiKeyRateThrottle.THROTTLE_RATES, "secret_key", "2/min")
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret_key}")
    assert [api_client.get("/api/v1/sources/").status_code for _ in range(2)] == [200, 200]
    response = api_client.get("/api/v1/sources/")
    assert_error_shape(response, 429, "throttled")
    assert 0 < int(response["Retry-After"]) <= 60
    # another key has its own budget
    _, other = api_key_create(name="other")
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {other}")
    assert api_client.get("/api/v1/sources/").status_code == 200


def test_created_source_key_is_returned_once_and_works(secret_client, api_client):
    created = secret_client.post("/api/v1/sources/", {"name": "pos"}, format="json").json()
    assert created["write_key"].startswith("wk_")
    listed = secret_client.get(f"/api/v1/sources/{created['id']}/").json()
    assert "write_key" not in listed
    assert listed["write_key_prefix"] == created["write_key"][:10]


def test_api_keys_can_be_created_and_revoked_over_the_api(secret_client, api_client):
    created = secret_client.post("/api/v1/api-keys/", {"name": "crm"}, format="json")
    assert created.status_code == 201
    raw = created.json()["key"]
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert api_client.get("/api/v1/sources/").status_code == 200
    revoked = secret_client.post(f"/api/v1/api-keys/{created.json()['id']}/revoke/")
    assert revoked.status_code == 200 and revoked.json()["is_active"] is False
    assert api_client.get("/api/v1/sources/").status_code == 401
