"""One job lifecycle (cdp.lifecycle): a lease with a heartbeat, and a sweep that requeues the runs
of dead workers. Proven with a real Celery worker killed (SIGKILL) in the middle of a matching run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from cdp.lifecycle import job_lease_claim, jobs_sweep
from cdp.models import JobLease
from profiles.models import MatchingRun, RunStatus
from tests.conftest import REPO, worker_env
from tests.profiles.test_matching_runs import ingest_people, wait_for


class _TableLock:
    """Another connection holding ACCESS EXCLUSIVE on a table: whoever reads it waits (mid-run)."""

    def __init__(self, table: str) -> None:
        self.table, self.locked, self.release = table, threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._hold)

    def _hold(self) -> None:
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(f"LOCK TABLE {self.table} IN ACCESS EXCLUSIVE MODE")
                self.locked.set()
                self.release.wait(60)
        finally:
            connection.close()

    def __enter__(self):
        self.thread.start()
        assert self.locked.wait(10)
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.thread.join(30)


def _worker(queue: str) -> subprocess.Popen:
    env = {**worker_env(), "CDP_JOB_LEASE_SECONDS": "3", "CDP_JOB_HEARTBEAT_SECONDS": "0.5"}
    log = open(REPO / ".cdp" / "test-lifecycle-worker.log", "w")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "cdp", "worker", "--queues", queue, "--pool", "solo",
         "--without-gossip", "--without-mingle", "--hostname", f"kill-{os.getpid()}@%h"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip


def _lease(run_id) -> JobLease | None:
    return JobLease.objects.filter(kind="matching-run", object_id=str(run_id)).first()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_run_whose_worker_is_killed_mid_run_is_requeued_and_finishes(celery_worker, write_key):
    from profiles.tasks import ml_identity_match

    ingest_people(write_key)
    run = MatchingRun.objects.create(mode=MatchingRun.Mode.FULL, requested_by="test")
    worker = _worker("lifecycle-kill")
    try:
        # given a worker in the middle of the run (claimed, heartbeating, waiting on the profiles table)
        with _TableLock("profiles_profile"):
            ml_identity_match.apply_async(args=[run.pk], queue="lifecycle-kill")
            assert wait_for(lambda: _lease(run.pk) is not None, timeout=60), "the worker never claimed the run"
            first_beat = _lease(run.pk).heartbeat_at
            assert wait_for(lambda: _lease(run.pk).heartbeat_at > first_beat, timeout=10), "no heartbeat"
            assert MatchingRun.objects.get(pk=run.pk).status == RunStatus.RUNNING
            # when the worker is killed (no clean-up code runs)
            os.kill(worker.pid, signal.SIGKILL)
            worker.wait(10)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)

    # then the run is left "running", its lease stops being renewed and expires
    assert MatchingRun.objects.get(pk=run.pk).status == RunStatus.RUNNING
    assert wait_for(lambda: _lease(run.pk).expires_at < timezone.now(), timeout=15)
    # and the sweep requeues it; a live worker (the ml queue) runs it to the end
    assert jobs_sweep() == {"requeued": 1, "failed": 0}
    assert wait_for(lambda: MatchingRun.objects.get(pk=run.pk).status == RunStatus.DONE, timeout=90)
    lease = _lease(run.pk)
    assert lease.state == JobLease.State.DONE and lease.attempts == 2
    assert [h["outcome"] for h in lease.history] == ["requeued", "done"]
    assert "lost" in lease.history[0]["error"]
    assert jobs_sweep() == {"requeued": 0, "failed": 0}  # nothing stale any more


@pytest.mark.django_db(transaction=True)
def test_a_run_that_keeps_losing_its_worker_fails_and_the_schedule_can_start_a_new_one(settings, monkeypatch):
    from profiles.identity import runs
    from profiles.identity.runs import matching_run_start

    settings.CDP_JOB_MAX_ATTEMPTS = 2
    # the requeued run's task is not sent: this test plays its worker dying, and a live Celery worker
    # left by an earlier test would otherwise run it to the end between the two sweeps (seen under load);
    # the test above covers a real worker running a requeued run
    queued: list[int] = []
    monkeypatch.setattr(runs, "_queue", queued.append)
    with transaction.atomic():
        run = MatchingRun.objects.create(mode=MatchingRun.Mode.INCREMENTAL, status=RunStatus.RUNNING)
        job_lease_claim(kind="matching-run", object_id=run.pk)
    # first death: requeued
    JobLease.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert jobs_sweep() == {"requeued": 1, "failed": 0}
    assert MatchingRun.objects.get(pk=run.pk).status == RunStatus.QUEUED and queued == [run.pk]
    # the requeued run starts again and its worker dies again: this time it fails for good
    MatchingRun.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING)
    with transaction.atomic():
        job_lease_claim(kind="matching-run", object_id=run.pk)
    JobLease.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert jobs_sweep() == {"requeued": 0, "failed": 1}
    failed = MatchingRun.objects.get(pk=run.pk)
    assert failed.status == RunStatus.FAILED and "gave up after 2 attempts" in failed.error
    assert JobLease.objects.get().state == JobLease.State.ABANDONED
    # so the nightly schedule is not stuck behind it: it starts a new run
    assert matching_run_start(mode=MatchingRun.Mode.INCREMENTAL).pk != run.pk
