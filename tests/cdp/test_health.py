import pytest
from django.test import override_settings

pytestmark = pytest.mark.django_db


def test_healthz_is_alive(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_checks_every_dependency(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "redis", "broker", "migrations"}
    assert {c["status"] for c in body["checks"].values()} == {"ok"}
    assert body["checks"]["migrations"]["detail"] == "none pending"
    assert body["info"]["scheduler"]["status"] in {"ok", "unknown", "stale"}


def test_readyz_reports_an_unreachable_redis_as_503(client):
    with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
        response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "error"
    assert body["checks"]["redis"]["status"] == "error"
    assert "ConnectionError" in body["checks"]["redis"]["detail"]
    assert body["checks"]["database"]["status"] == "ok"


def test_heartbeat_shows_up_in_readiness(client):
    from cdp.services import heartbeat_record

    heartbeat_record()
    assert client.get("/readyz").json()["info"]["scheduler"]["status"] == "ok"
