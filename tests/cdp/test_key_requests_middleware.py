"""The session, Django's user and messages are not made for a request an API key decides (decision 0059);
everything else keeps them: staff on the API by session, admin pages, the privacy center."""

from __future__ import annotations

import base64

import pytest
from django.contrib.auth import get_user_model
from django.test import RequestFactory
from rest_framework.test import APIClient

from cdp.api.middleware import AuthenticationMiddleware, MessageMiddleware, SessionMiddleware, decided_by_key


def _request(path="/api/v1/recommendations/", authorization=None):
    extra = {"HTTP_AUTHORIZATION": authorization} if authorization is not None else {}
    return RequestFactory().get(path, **extra)


@pytest.mark.parametrize(
    "path, authorization, decided",
    [
        ("/api/v1/recommendations/", "Bearer sk_abc", True),
        ("/api/v1/products/P1/", "bearer wk_abc", True),
        ("/v1/track", "Basic " + base64.b64encode(b"wk_abc:").decode(), True),
        ("/api/v1/recommendations/", "Bearer not-a-cdp-key", True),  # refused by the key check: 401
        ("/api/v1/recommendations/", None, False),  # a staff session, maybe
        ("/api/v1/recommendations/", "Bearer ", False),  # no key: the session is asked
        ("/api/v1/recommendations/", "Token sk_abc", False),  # another scheme: the session is asked
        ("/api/v1/recommendations/", "Basic !!!", False),  # malformed: the usual path answers it
        ("/admin/", "Bearer sk_abc", False),  # not an API path
        ("/privacy/me/", "Bearer sk_abc", False),
    ],
)
def test_which_requests_a_key_decides(path, authorization, decided):
    assert decided_by_key(_request(path, authorization)) is decided


def test_the_three_middleware_pass_a_key_request_through_untouched():
    # given a key-authenticated API request through the session, auth and messages middleware
    request = _request(authorization="Bearer sk_abc")
    chain = SessionMiddleware(AuthenticationMiddleware(MessageMiddleware(lambda r: "answer")))
    # when it passes
    answer = chain(request)
    # then none of them attached anything
    assert answer == "answer"
    for attribute in ("session", "user", "auser", "_messages"):
        assert not hasattr(request, attribute)


def test_a_request_without_a_key_gets_them_all():
    request = _request()
    chain = SessionMiddleware(AuthenticationMiddleware(MessageMiddleware(lambda r: "answer")))
    chain(request)
    for attribute in ("session", "user", "auser", "_messages"):
        assert hasattr(request, attribute)


@pytest.mark.django_db
def test_a_key_request_answers_as_before(secret_client):
    # given a secret key, when the API answers
    response = secret_client.get("/api/v1/products/", HTTP_HOST="localhost")
    # then: 200, no cookie, no Vary on Cookie, the usual security headers
    assert response.status_code == 200
    assert not response.cookies
    assert "cookie" not in response.get("Vary", "").lower()
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"


@pytest.mark.django_db
def test_a_bad_key_is_refused_in_the_error_shape(api_client):
    api_client.credentials(HTTP_AUTHORIZATION="Bearer sk_unknown")
    response = api_client.get("/api/v1/products/", HTTP_HOST="localhost")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"


@pytest.mark.django_db
def test_staff_reach_the_api_by_session_and_with_another_scheme_header():
    # given a staff user signed in to admin (a session cookie)
    staff = get_user_model().objects.create_user("staff", password="pw-long-enough-1", is_staff=True)
    client = APIClient()
    client.force_login(staff)
    # when they read the API without a key, or with a header the key check does not take
    plain = client.get("/api/v1/products/", HTTP_HOST="localhost")
    other_scheme = client.get("/api/v1/products/", HTTP_HOST="localhost", HTTP_AUTHORIZATION="Token x")
    # then the session authenticates them both times
    assert plain.status_code == 200
    assert other_scheme.status_code == 200


@pytest.mark.django_db
def test_a_staff_session_does_not_rescue_a_bad_key():
    staff = get_user_model().objects.create_user("staff2", password="pw-long-enough-1", is_staff=True)
    client = APIClient()
    client.force_login(staff)
    response = client.get("/api/v1/products/", HTTP_HOST="localhost", HTTP_AUTHORIZATION="Bearer sk_unknown")
    assert response.status_code == 401  # as before: the key check refuses before the session is asked
