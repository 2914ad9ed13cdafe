"""Redis (cache and broker) stopped and started again: ingestion never waits on it, follow-up work
that could not be queued stays durable, and everything catches up once Redis is back.

A private redis-server on a free port plays the outage; the shared Redis is never touched."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import pytest

from cdp import queueing
from profiles.models import PendingWork, Profile
from profiles.services import pending_process
from reliability.procs import PrivateRedis, start_celery, stop_process
from segments.models import SegmentMembership
from segments.services import segment_create
from tests.conftest import REPO, worker_env
from tests.profiles.helpers import batch, writer

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def wait_for(predicate, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def redis_server(settings, monkeypatch):
    """A private Redis the web side (cache and broker) points at, stopped and started by the test."""
    from cdp.celery import app

    with PrivateRedis() as server:
        # the worker runs cdp.settings_test, which keeps the port and uses the tests' database number
        server.url = f"redis://127.0.0.1:{server.port}{urlsplit(settings.REDIS_URL).path}"
        settings.CACHES = {
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": server.url,
                "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 2},
            }
        }
        monkeypatch.setitem(queueing._state, "down_until", 0.0)
        monkeypatch.setattr(app.conf, "broker_url", server.url)
        monkeypatch.setattr(app.conf, "result_backend", server.url)
        monkeypatch.setattr(app, "_pool", None)
        monkeypatch.setattr(app.amqp, "_producer_pool", None)
        for name in ("backend",):  # the cached result backend still points at the shared Redis
            app.__dict__.pop(name, None)
        yield server
        if app._pool is not None:
            app._pool.force_close_all()
        app.__dict__.pop("backend", None)


@pytest.fixture
def private_worker(redis_server):
    env = {**worker_env(), "REDIS_URL": redis_server.url}
    proc = start_celery("worker", env, REPO / ".cdp" / "test-outage-worker.log", "--pool", "solo")
    yield proc
    stop_process(proc)


def merge_batches(client, tag: str):
    """The issue's reproduction: a track, then two identifies that make one person of two."""
    return [
        batch(client, {"type": "track", "anonymousId": f"{tag}-a1", "event": "Order Completed"}).status_code,
        batch(client, {"type": "identify", "userId": f"{tag}-u1", "anonymousId": f"{tag}-a2"}).status_code,
        batch(client, {"type": "identify", "userId": f"{tag}-u1", "anonymousId": f"{tag}-a1"}).status_code,
    ]


def test_a_merge_while_redis_is_down_never_waits_on_the_result_backend(redis_server, write_key, monkeypatch):
    from cdp.celery import app

    # given Redis gone, and a spy on the result backend (whose reconnect loop took 20 tries of 1 s per call)
    subscribed = []
    monkeypatch.setattr(type(app.backend), "on_task_call", lambda self, *a, **k: subscribed.append(a))
    redis_server.stop()
    # when batches that merge two profiles arrive
    statuses = merge_batches(writer(write_key), "down")
    # then every one is accepted, the merge happened, nobody subscribed to a result, and the follow-up
    # work is still marked for later
    assert statuses == [200, 200, 200]
    assert Profile.objects.filter(merged_into__isnull=True).count() == 1
    assert subscribed == []
    assert PendingWork.objects.exists()


def test_follow_up_that_cannot_be_queued_stays_pending_and_catches_up(private_worker, redis_server, write_key):
    from cdp.celery import app

    assert wait_for(lambda: app.control.ping(timeout=0.5), 60)
    buyers = segment_create(slug="buyers", name="Buyers", definition={"event": "Order Completed"}, refresh="now")
    client = writer(write_key)
    # given Redis goes away while orders and merges arrive
    redis_server.stop()
    assert merge_batches(client, "out") == [200, 200, 200]
    buyer = Profile.objects.get(merged_into__isnull=True)
    # when the sweep runs while the broker is still down
    assert pending_process() == 0
    # then the pending rows stay (their segment refresh could not be queued), though traits are fresh
    assert set(PendingWork.objects.values_list("profile_id", flat=True)) >= {buyer.pk}
    assert Profile.objects.get(pk=buyer.pk).computed.get("orders") == 1
    assert not SegmentMembership.objects.filter(segment=buyers).exists()
    # when Redis comes back and the next call arrives (after the short back-off)
    redis_server.start()
    queueing.broker_mark_up()
    assert batch(client, {"type": "track", "userId": "after", "event": "Page Viewed"}).status_code == 200
    # then the worker catches up everything by itself: the outage's buyer enters the segment
    assert wait_for(lambda: not PendingWork.objects.exists(), 60)
    assert wait_for(
        lambda: SegmentMembership.objects.filter(segment=buyers, profile_id=buyer.pk, exited_at__isnull=True).exists(),
        60,
    )
