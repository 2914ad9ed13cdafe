"""Real-time membership under races: evaluation and apply under one lock with the time taken inside
it, and a failed real-time refresh retried by the Celery worker until it succeeds."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, connections
from django.utils import timezone

from profiles.models import Event
from segments.models import SegmentMembership
from segments.services import segment_create, segments_profiles_refresh
from tests.segments import factories as f
from tests.segments.test_realtime import wait_for

BUYERS = {"event": "Order Completed"}


def _waiting_for_a_lock() -> bool:
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0] > 0


class _SegmentLockHolder:
    """Another connection holding the segment row lock, as a long full refresh would."""

    def __init__(self, segment_id: int) -> None:
        self.segment_id = segment_id
        self.locked = threading.Event()
        self.release = threading.Event()
        self.thread = threading.Thread(target=self._hold)

    def _hold(self) -> None:
        from django.db import transaction

        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SELECT id FROM segments_segment WHERE id = %s FOR UPDATE", [self.segment_id])
                self.locked.set()
                self.release.wait(30)
        finally:
            connection.close()

    def __enter__(self):
        self.thread.start()
        assert self.locked.wait(10)
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.thread.join(30)


def _refresh_in_thread(pid: str) -> threading.Thread:
    def run():
        try:
            segments_profiles_refresh(profile_ids=[pid], event_names=["Order Completed"])
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.django_db(transaction=True)
def test_a_refresh_that_waited_for_the_lock_evaluates_after_it_and_stamps_its_own_time():
    seg = segment_create(slug="buyers", name="Buyers", definition=BUYERS, refresh="no")
    person = f.profile()
    order = f.event(person, "Order Completed", timezone.now())

    # given a refresh queued for an order, which has to wait for the segment lock (a full refresh)
    with _SegmentLockHolder(seg.pk):
        refresh = _refresh_in_thread(str(person.pk))
        assert wait_for(_waiting_for_a_lock, timeout=10)
        # when the order is gone before the refresh gets the lock (e.g. the person denied analytics)
        Event.objects.filter(pk=order.pk).delete()
    refresh.join(30)
    # then it did not write the membership it would have computed before the lock
    assert not SegmentMembership.objects.filter(segment=seg, exited_at__isnull=True).exists()

    # and a refresh that enters someone after waiting stamps the time it applied, not its start
    f.event(person, "Order Completed", timezone.now())
    with _SegmentLockHolder(seg.pk):
        refresh = _refresh_in_thread(str(person.pk))
        assert wait_for(_waiting_for_a_lock, timeout=10)
        time.sleep(0.3)
        released_at = timezone.now()
    refresh.join(30)
    membership = SegmentMembership.objects.get(segment=seg, exited_at__isnull=True)
    assert membership.entered_at >= released_at


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_failed_real_time_refresh_is_retried_by_the_worker_until_it_succeeds(celery_worker):
    from segments import tasks

    seg = segment_create(slug="buyers", name="Buyers", definition=BUYERS, refresh="no")
    person = f.profile()
    f.event(person, "Order Completed", timezone.now())
    # given the membership write fails twice as a deadlock against ingestion would (SQLSTATE 40P01)
    with connection.cursor() as cursor:
        cursor.execute("CREATE SEQUENCE test_rt_failures")
        cursor.execute(
            "CREATE FUNCTION test_rt_fail() RETURNS trigger AS $$ BEGIN "
            "IF nextval('test_rt_failures') <= 2 THEN "
            "RAISE EXCEPTION 'injected deadlock' USING ERRCODE = '40P01'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql"
        )
        cursor.execute(
            "CREATE TRIGGER test_rt_fail BEFORE INSERT ON segments_segmentmembership "
            "FOR EACH ROW EXECUTE FUNCTION test_rt_fail()"
        )
    try:
        # when the real-time refresh for the person's order runs on the worker
        tasks.segments_profiles_refresh.delay([str(person.pk)], ["Order Completed"], False)
        # then it is retried (with backoff) and the person ends up in the segment
        assert wait_for(
            lambda: SegmentMembership.objects.filter(segment=seg, profile=person, exited_at__isnull=True).exists(),
            timeout=45,
        )
        with connection.cursor() as cursor:
            cursor.execute("SELECT last_value FROM test_rt_failures")
            assert cursor.fetchone()[0] == 3  # two failures, then the attempt that succeeded
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TRIGGER IF EXISTS test_rt_fail ON segments_segmentmembership")
            cursor.execute("DROP FUNCTION IF EXISTS test_rt_fail()")
            cursor.execute("DROP SEQUENCE IF EXISTS test_rt_failures")
