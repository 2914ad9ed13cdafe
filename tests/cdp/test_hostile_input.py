"""Every hostile input is a clean 4xx in the one error shape, on every endpoint of the schema, and the
server keeps serving: depth, NUL and lone surrogates, non-finite numbers, bad UTF-8, gzip bombs,
OPTIONS, NUL in URLs. The operations come from the OpenAPI schema, so a new endpoint is covered
without touching this file."""

from __future__ import annotations

import base64
import gzip
import json
import re
import tracemalloc

import pytest
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from cdp.api.jsonbody import BodyTooLarge, gunzip_limited, json_loads_strict
from profiles.models import Event
from reliability.corpus import HOSTILE_BODIES

pytestmark = pytest.mark.django_db


def operations() -> list[tuple[str, str]]:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return sorted((path, method) for path, item in schema["paths"].items() for method in item if method != "parameters")


OPERATIONS = operations()
BODY_OPERATIONS = [(p, m) for p, m in OPERATIONS if m in ("post", "put", "patch")]
READ_OPERATIONS = [(p, m) for p, m in OPERATIONS if m == "get"]
PATHS = sorted({p for p, _ in OPERATIONS})


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "nope", path)


@pytest.fixture
def clients(write_key, secret_key):
    writer, reader = APIClient(), APIClient()
    writer.credentials(HTTP_AUTHORIZATION="Basic " + base64.b64encode(f"{write_key}:".encode()).decode())
    reader.credentials(HTTP_AUTHORIZATION=f"Bearer {secret_key}")
    return lambda path: writer if path.startswith("/v1/") else reader


def assert_clean_4xx(response, what: str) -> None:
    assert 400 <= response.status_code < 500, f"{what}: {response.status_code} {response.content[:300]!r}"
    body = response.json()
    assert set(body) == {"error"} and {"code", "message", "fields"} <= set(body["error"]), (what, body)


@pytest.mark.parametrize(("path", "method"), BODY_OPERATIONS)
def test_hostile_bodies_are_a_clean_4xx_on_every_endpoint(clients, path, method):
    client = clients(path)
    for name, body in HOSTILE_BODIES.items():
        response = getattr(client, method)(concrete(path), data=body, content_type="application/json")
        assert_clean_4xx(response, f"{method.upper()} {path} with {name}")
    # and the server still serves the next request
    assert client.get("/api/v1/sources/" if path.startswith("/api/") else "/api/schema/").status_code < 500
    assert not Event.objects.exists()


@pytest.mark.parametrize("path", PATHS)
def test_options_never_fails(clients, path):
    response = clients(path).options(concrete(path))
    assert response.status_code < 500, f"OPTIONS {path}: {response.status_code} {response.content[:300]!r}"


@pytest.mark.parametrize(("path", "method"), READ_OPERATIONS)
def test_nul_in_the_url_is_a_clean_400(clients, path, method):
    client = clients(path)
    assert_clean_4xx(client.get(concrete(path) + "?user_id=a%00b&q=%00&limit=%00"), f"GET {path}?…%00")
    if "{" in path:
        assert_clean_4xx(client.get(re.sub(r"\{[^}]+\}", "a%00b", path)), f"GET {path} with NUL in the path")


def test_a_gzip_bomb_is_refused_while_decompressing(clients):
    # given a 50 KB gzip body that expands to 50 MB
    bomb = gzip.compress(b'{"batch": [' + b" " * 50_000_000 + b"]}", compresslevel=9)
    assert len(bomb) < 100_000
    # when it is posted, the worker never holds more than a little over the 500 KB limit
    tracemalloc.start()
    try:
        response = clients("/v1/batch").post(
            "/v1/batch", data=bomb, content_type="application/json", HTTP_CONTENT_ENCODING="gzip"
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # then it is a clean 400 that says why
    assert_clean_4xx(response, "gzip bomb")
    assert "decompressed" in json.dumps(response.json())
    assert peak < 5_000_000, f"peak {peak} bytes while refusing the bomb"


def test_gunzip_limited_stops_at_the_limit_and_accepts_what_fits():
    small = b'{"a": 1}'
    assert gunzip_limited(gzip.compress(small), 100) == small
    with pytest.raises(BodyTooLarge):
        gunzip_limited(gzip.compress(b"x" * 1000), 999)
    assert gunzip_limited(gzip.compress(b"x" * 1000), 1000) == b"x" * 1000


def test_strict_json_keeps_what_postgresql_can_store():
    value = json_loads_strict('{"a": [1, 2.5, "é", "\\u00e9", true, null, {"b": -3e10}], "ok": "\\ud83d\\ude00"}')
    assert value == {"a": [1, 2.5, "é", "é", True, None, {"b": -3e10}], "ok": "😀"}


def test_hostile_tracking_calls_store_nothing_and_good_ones_still_work(clients):
    client = clients("/v1/track")
    for field in ("event", "anonymousId", "userId"):
        payload = {"userId": "u1", "anonymousId": "a1", "event": "e", field: "bad\x00value"}
        assert_clean_4xx(client.post("/v1/track", payload, format="json"), f"NUL in {field}")
    identify = {"userId": "u1", "traits": {"email": "a\x00@example.com"}}
    assert_clean_4xx(client.post("/v1/identify", identify, format="json"), "NUL in a trait")
    assert not Event.objects.exists()
    assert client.post("/v1/track", {"userId": "u1", "event": "Fine"}, format="json").status_code == 200
    assert Event.objects.count() == 1


def test_a_clock_skew_beyond_the_calendar_is_not_a_server_error(clients):
    # found by schemathesis: sentAt in year 8433 with a timestamp in 1989 overflowed the skew correction
    payload = {"userId": "u1", "event": "e", "timestamp": "1989-01-20T19:20:58Z", "sentAt": "8433-11-09T23:02:05Z"}
    assert clients("/v1/track").post("/v1/track", payload, format="json").status_code == 200
    assert Event.objects.get().occurred_at.year >= 2026
