"""The intake log: accept, stitch workers, poison calls, leases, a worker killed mid-batch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest
from django.db import DatabaseError, connection
from django.db.utils import InterfaceError

from profiles.models import Event, IntakeEvent, IntakePartition, IntakePoison, Profile
from profiles.tracking import intake, worker
from profiles.tracking.worker import intake_drain
from tests.conftest import REPO, worker_env
from tests.profiles.helpers import batch, call, writer

pytestmark = pytest.mark.intake_async


def track(user: str, n: int = 1) -> list[dict]:
    return [{"type": "track", "userId": user, "event": "Product Viewed", "properties": {"n": i}} for i in range(n)]


# --- accept ----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_accepted_calls_wait_in_the_intake_log_until_a_worker_stitches_them(write_key):
    client = writer(write_key)

    # when a batch is accepted
    response = batch(client, {"type": "identify", "userId": "u-in", "traits": {"first_name": "Ina"}}, *track("u-in", 2))

    # then it is stored in the intake log, not yet on any profile
    assert response.json() == {"success": True, "accepted": 3, "duplicates": 0, "errors": []}
    assert (IntakeEvent.objects.count(), Event.objects.count(), Profile.objects.count()) == (3, 0, 0)

    # and once stitched, the events are on one profile and the log is empty
    assert intake_drain() == 3
    assert (IntakeEvent.objects.count(), Event.objects.count(), Profile.objects.count()) == (0, 3, 1)
    assert Profile.objects.get().traits == {"first_name": "Ina"}


@pytest.mark.django_db
def test_a_message_id_is_accepted_once_whether_waiting_in_intake_or_already_stitched(write_key):
    client = writer(write_key)
    first = {"type": "track", "userId": "u-dup", "event": "A", "messageId": "m-1"}

    # given a call accepted (waiting), repeated in the same request and in a later one
    assert batch(client, dict(first), dict(first)).json()["duplicates"] == 1
    assert call(client, "track", userId="u-dup", event="A", messageId="m-1").json()["duplicates"] == 1
    # and once it is stitched, sent again
    intake_drain()
    again = call(client, "track", userId="u-dup", event="A", messageId="m-1").json()

    # then it is stored once
    assert (again["accepted"], again["duplicates"]) == (0, 1)
    assert (IntakeEvent.objects.count(), Event.objects.filter(message_id="m-1").count()) == (0, 1)


@pytest.mark.django_db
def test_a_suppressed_persons_calls_are_dropped_before_the_intake_log(write_key):
    from consent.models import Suppression
    from consent.services import suppression_hash

    # given an erased person's identifiers on the suppression list
    Suppression.objects.create(hash=suppression_hash("user_id", "u-gone"), kind="user_id")
    client = writer(write_key)

    # when their call and someone else's arrive
    response = batch(client, *track("u-gone"), *track("u-here"))

    # then only the other person's call is kept
    assert response.json()["accepted"] == 1
    assert list(IntakeEvent.objects.values_list("user_id", flat=True)) == ["u-here"]


@pytest.mark.django_db
def test_the_wake_queues_stitch_tasks_on_the_intake_queue_at_most_twice_a_second(settings):
    from cdp.celery import app

    settings.CDP_INTAKE_WORKERS = 2
    # when three accepts wake the workers within the same second
    for _ in range(3):
        intake.intake_wake()

    # then the first queues two tasks now, the second one for a second later, the third none (all
    # on the intake queue)
    import redis

    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    queued = [json.loads(m)["headers"] for m in client.lrange("intake", 0, -1)]
    assert [h["task"] for h in queued] == ["profiles.tasks.intake_stitch"] * 3
    assert [h["eta"] is not None for h in queued].count(True) == 1  # the one a second later
    assert app.amqp.router.route({}, "profiles.tasks.intake_stitch")["queue"].name == "intake"


# --- poison calls -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_call_that_cannot_be_stitched_is_set_aside_with_its_error_and_the_rest_go_on(write_key, settings):
    settings.CDP_INTAKE_PARTITIONS = 1
    client = writer(write_key)
    batch(client, *track("u-before"))
    source = IntakeEvent.objects.get().source
    # given a call in the log that no worker can process (its stored time is not a time)
    bad = intake.event_payload(_clean({"type": "track", "userId": "u-poison", "event": "X", "messageId": "m-poison"}))
    bad = json.loads(bad) | {"occurred_at": "yesterday-ish"}
    IntakeEvent.objects.create(
        source=source,
        message_id="m-poison",
        partition=0,
        payload=bad,
        received_at=IntakeEvent.objects.get().received_at,
    )
    batch(client, *track("u-after", 2))

    # when the workers drain the log
    intake_drain()

    # then the good calls before and after it are stored, and the bad one is set aside with its error
    assert sorted(Event.objects.values_list("user_id", flat=True)) == ["u-after", "u-after", "u-before"]
    poison = IntakePoison.objects.get()
    assert (poison.message_id, poison.error.split(":")[0]) == ("m-poison", "ValueError")
    assert "yesterday-ish" in poison.error
    assert IntakeEvent.objects.count() == 0

    # and sent back after a fix, it is stitched
    IntakePoison.objects.filter(pk=poison.pk).update(payload=bad | {"occurred_at": "2026-03-01T09:00:00+00:00"})
    from profiles.services import intake_poison_send_back

    assert intake_poison_send_back(poison_ids=[poison.pk]) == 1
    intake_drain()
    assert (Event.objects.filter(message_id="m-poison").count(), IntakePoison.objects.count()) == (1, 0)


@pytest.mark.django_db
def test_calls_written_under_an_earlier_larger_partition_count_are_still_stitched(write_key, settings):
    # given calls accepted while the log had 16 partitions, some in partitions above today's count
    settings.CDP_INTAKE_PARTITIONS = 16
    IntakePartition.objects.all().delete()
    batch(writer(write_key), *[e for u in range(40) for e in track(f"u-old-{u}")])
    high = set(IntakeEvent.objects.filter(partition__gte=4).values_list("partition", flat=True))
    assert high  # 40 people spread over 16 partitions
    # when the count is lowered to 4 before any worker made the partition rows
    settings.CDP_INTAKE_PARTITIONS = 4

    # then a worker makes rows for today's partitions and for every number still in the log
    assert intake_drain() == 40
    numbers = set(IntakePartition.objects.values_list("number", flat=True))
    assert numbers == {0, 1, 2, 3} | high
    assert (IntakeEvent.objects.count(), Event.objects.count()) == (0, 40)


def _clean(payload: dict):
    from django.utils import timezone

    from profiles.tracking.validate import clean_event

    return clean_event({"messageId": str(uuid.uuid4()), **payload}, received_at=timezone.now())


# --- operations: readiness and admin --------------------------------------------------------------------


@pytest.mark.django_db
def test_readyz_and_admin_show_the_intake_depth_and_lag(write_key, admin_client):
    batch(writer(write_key), *track("u-ops", 3))

    body = admin_client.get("/readyz").json()
    assert (body["info"]["intake"]["depth"], body["info"]["intake"]["set_aside"]) == (3, 0)
    assert body["info"]["intake"]["lag_seconds"] >= 0

    intake_drain()
    page = admin_client.get("/admin/profiles/intakepartition/")
    assert page.status_code == 200
    assert "Intake log: 0 calls waiting" in page.content.decode()
    assert admin_client.get("/admin/profiles/intakepoison/").status_code == 200


# --- leases -----------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_stuck_workers_batch_is_taken_over_after_its_lease_expires(write_key, settings, monkeypatch):
    settings.CDP_INTAKE_PARTITIONS = 1
    IntakePartition.objects.all().delete()  # one partition only (rows of an earlier test's 16 may be there)
    # a lease of 2 s: the first drain below must come within it even on a loaded machine
    settings.CDP_INTAKE_LEASE_SECONDS = 2
    monkeypatch.setattr(intake, "intake_wake", lambda: None)  # no Celery worker takes part here
    batch(writer(write_key), *track("u-stuck", 5))

    # given a worker that takes the partition and then hangs (holding the lease, doing nothing)
    real_stitch = worker._stitch_partitions
    took, failure = threading.Event(), []

    def stuck(partitions, **options):
        if threading.current_thread().name == "stuck-worker":
            took.set()
            time.sleep(6)
        return real_stitch(partitions, **options)

    monkeypatch.setattr(worker, "_stitch_partitions", stuck)

    def run():
        try:
            worker.intake_stitch_batch()
        except (DatabaseError, InterfaceError) as exc:  # its session was ended under it
            failure.append(exc)
        finally:
            connection.close()

    hung = threading.Thread(target=run, name="stuck-worker")
    hung.start()
    assert took.wait(10)

    # when another worker drains while the lease runs and after it expired
    first = intake_drain()
    stitched = first
    deadline = time.monotonic() + 30
    while stitched < 5 and time.monotonic() < deadline:
        time.sleep(0.2)
        stitched += intake_drain()
    hung.join(30)

    # then it could not take the batch at first, took it over after the lease, and nothing is doubled
    assert first == 0
    assert stitched == 5
    assert failure, "the stuck worker's transaction should have been ended by PostgreSQL"
    assert (Event.objects.count(), IntakeEvent.objects.count()) == (5, 0)
    assert IntakePartition.objects.get().stitched_total == 5


# --- a real worker killed mid-batch --------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_celery_worker_killed_mid_batch_loses_and_doubles_nothing(write_key, settings, monkeypatch):
    from cdp.celery import app

    monkeypatch.setattr(intake, "intake_wake", lambda: None)  # the test sends the only task
    # given 6,000 accepted calls of 600 people in 8 partitions
    client = writer(write_key)
    sent = []
    for chunk in range(30):
        calls = [
            {
                "type": "identify" if i % 10 == 0 else "track",
                "userId": f"u-{(chunk * 200 + i) % 600}",
                "anonymousId": f"a-{(chunk * 200 + i) % 600}",
                "event": "Product Viewed",
                "messageId": f"kill-{chunk}-{i}",
            }
            for i in range(200)
        ]
        sent += [c["messageId"] for c in calls]
        assert batch(client, *calls).json()["accepted"] == 200

    # and a real Celery worker on a queue of its own, stitching batches of 250
    queue = f"intake-kill-{os.getpid()}"
    env = worker_env() | {"CDP_INTAKE_BATCH": "250", "CDP_INTAKE_PARTITIONS": str(settings.CDP_INTAKE_PARTITIONS)}
    log = REPO / ".cdp" / "test-intake-kill-worker.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "cdp", "worker", "--queues", queue, "--pool", "solo",
             "--without-gossip", "--without-mingle", "--hostname", f"kill-{os.getpid()}@%h"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        app.send_task("profiles.tasks.intake_stitch", queue=queue)

        # when it is killed with SIGKILL while it holds a partition (inside a batch's transaction),
        # after it committed some batches
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if Event.objects.exists() and _partition_locked():
                break
            assert proc.poll() is None, log.read_text()
            time.sleep(0.01)
        else:
            raise AssertionError(f"the worker never got going:\n{log.read_text()}")
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        stored_when_killed = Event.objects.count()
    finally:
        if proc.poll() is None:
            proc.kill()

    # and another worker drains what is left (the dead one's transaction was rolled back)
    deadline = time.monotonic() + 30
    while _partition_locked() and time.monotonic() < deadline:
        time.sleep(0.05)
    intake_drain()

    # then every call is stored exactly once, none is waiting or set aside
    assert 0 < stored_when_killed < 6000
    stored = list(Event.objects.values_list("message_id", flat=True))
    assert len(stored) == 6000
    assert set(stored) == set(sent)
    assert (IntakeEvent.objects.count(), IntakePoison.objects.count()) == (0, 0)
    assert Profile.objects.filter(merged_into__isnull=True).count() == 600


def _partition_locked() -> bool:
    """A stitch batch is in progress: some transaction holds an intake partition row lock."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
            "WHERE c.relname = 'profiles_intakepartition' AND l.mode = 'RowShareLock' AND l.pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0] > 0
