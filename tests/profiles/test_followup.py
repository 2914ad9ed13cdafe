"""Follow-up work after ingestion runs in a real Celery worker; lost work is caught up by the sweep."""

import time

import pytest

from profiles.models import PendingWork, Profile
from profiles.services import pending_process
from tests.profiles.helpers import call, writer

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def wait_for(predicate, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_computed_traits_arrive_through_the_worker_after_commit(celery_worker, write_key):
    # given a running worker / when an order is ingested through the API
    client = writer(write_key)
    assert call(client, "track", userId="u1", event="Order Completed", properties={"revenue": 42.5}).status_code == 200
    # then the worker computes the profile's traits within seconds and the pending mark is gone
    profile = Profile.objects.get()
    assert wait_for(lambda: Profile.objects.get(pk=profile.pk).computed.get("revenue") == 42.5)
    assert wait_for(lambda: not PendingWork.objects.exists())


def test_events_arriving_while_a_task_runs_are_not_left_for_the_sweep(celery_worker, write_key):
    # given a worker and no beat (no minute sweep in tests)
    client = writer(write_key)
    # when orders arrive a fraction of a second apart (a task was queued for the first one already)
    for n in range(4):
        assert (
            call(client, "track", userId=f"burst{n}", event="Order Completed", properties={"revenue": 5}).status_code
            == 200
        )
        time.sleep(0.3)
    # then every profile gets its traits from the delayed follow-up task, not a minute later
    assert wait_for(lambda: Profile.objects.filter(computed__revenue=5.0).count() == 4, timeout=15)
    assert wait_for(lambda: not PendingWork.objects.exists(), timeout=5)


def test_work_whose_task_was_lost_is_caught_up_by_the_sweep(write_key, settings, monkeypatch):
    from cdp import queueing

    monkeypatch.setitem(queueing._state, "down_until", 0.0)  # restored after: later tests may queue again
    # given Redis unreachable while events arrive: ingestion still accepts them
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"}
    }
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    client = writer(write_key)
    assert call(client, "track", userId="u1", event="Order Completed", properties={"revenue": 10}).status_code == 200
    assert PendingWork.objects.count() == 1
    assert Profile.objects.get().computed == {}
    # when Redis is back and the scheduled sweep runs (the task beat starts every minute)
    queueing.broker_mark_up()
    assert pending_process() == 1
    # then the work is done
    assert Profile.objects.get().computed["revenue"] == 10.0
    assert not PendingWork.objects.exists()
