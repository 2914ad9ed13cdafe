"""One lifecycle for every long run: a lease with a heartbeat, and a sweep that requeues or fails
runs whose worker died (decision 0026; the pattern of Sentry's re-attempted deletions).

A run (a ``MatchingRun``, ``ClusteringRun``, a ``ModelVersion`` being trained, a
``DataSubjectRequest``) keeps its own status; this module keeps its lease in ``cdp.JobLease``:

    with transaction.atomic():               # the run's own claim: queued -> running
        ...
        lease = job_lease_claim(kind="matching-run", object_id=run.pk)
    with lease:                              # a thread renews the lease every HEARTBEAT seconds
        ...the long work...                  # leaving the block records done, or failed on an exception

A worker killed mid-run (``kill -9``, OOM, a lost machine) stops renewing. ``jobs_sweep`` (Celery
beat, every minute) finds leases past ``expires_at`` and calls the kind's ``requeue(object_id)``
(the run goes back to queued and its task is queued after commit) until ``CDP_JOB_MAX_ATTEMPTS``,
then ``fail(object_id, reason)``. A lost attempt that wakes up later cannot finish the lease (its
token no longer matches) and each app's execute function is idempotent.

Kinds are wired here (cdp is the project package, above every app): ``JOB_KINDS`` names each kind's
requeue and fail functions.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from dataclasses import dataclass
from datetime import timedelta
from importlib import import_module

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.utils import timezone

from .models import JobLease

logger = logging.getLogger("cdp.lifecycle")

# kind -> (requeue function, fail function), as dotted paths (imported when the sweep needs them)
JOB_KINDS: dict[str, tuple[str, str]] = {
    "matching-run": ("profiles.identity.runs.matching_run_requeue", "profiles.identity.runs.matching_run_fail"),
    "clustering-run": (
        "segments.clustering.services.clustering_run_requeue",
        "segments.clustering.services.clustering_run_fail",
    ),
    "model-refresh": ("recommendations.services.model_refresh_requeue", "recommendations.services.model_refresh_fail"),
    "privacy-request": ("consent.requests.privacy_request_requeue", "consent.requests.privacy_request_fail"),
}


def _function(path: str):
    module, _, name = path.rpartition(".")
    return getattr(import_module(module), name)


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:200]


@dataclass
class Lease:
    """A claimed lease; use as a context manager around the long work."""

    pk: int
    kind: str
    object_id: str
    token: str
    attempt: int
    lost: bool = False

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- heartbeat --------------------------------------------------------------------------------
    def renew(self) -> bool:
        """Push the lease forward; False when it was taken away (the sweep requeued the run)."""
        lease = timedelta(seconds=settings.CDP_JOB_LEASE_SECONDS)
        now = timezone.now()
        renewed = JobLease.objects.filter(pk=self.pk, token=self.token, state=JobLease.State.RUNNING).update(
            heartbeat_at=now, expires_at=now + lease
        )
        if not renewed:
            self.lost = True
        return bool(renewed)

    def _beat(self) -> None:
        try:
            while not self._stop.wait(settings.CDP_JOB_HEARTBEAT_SECONDS):
                try:
                    if not self.renew():
                        logger.warning("%s %s: lease lost (the run was requeued)", self.kind, self.object_id)
                        return
                except Exception:  # a database hiccup: try again at the next beat
                    logger.exception("%s %s: heartbeat failed", self.kind, self.object_id)
                    close_old_connections()
        finally:
            connection.close()  # this thread's own connection

    def __enter__(self) -> Lease:
        self._thread = threading.Thread(target=self._beat, name=f"lease-{self.kind}-{self.object_id}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        job_lease_finish(lease=self, ok=exc_type is None, error=f"{exc_type.__name__}: {exc}" if exc_type else "")


def job_lease_claim(*, kind: str, object_id) -> Lease:
    """Start an attempt of a run: call inside the transaction that marks the run running, so the
    run is never running without a lease."""
    if kind not in JOB_KINDS:
        raise ValueError(f"Unknown job kind {kind!r}; add it to cdp.lifecycle.JOB_KINDS.")
    now = timezone.now()
    token = secrets.token_hex(16)
    expires = now + timedelta(seconds=settings.CDP_JOB_LEASE_SECONDS)
    with transaction.atomic():
        row, created = JobLease.objects.select_for_update().get_or_create(
            kind=kind,
            object_id=str(object_id),
            defaults={
                "token": token,
                "attempts": 1,
                "worker": _worker_name(),
                "started_at": now,
                "heartbeat_at": now,
                "expires_at": expires,
            },
        )
        if not created:
            row.token, row.attempts, row.worker = token, row.attempts + 1, _worker_name()
            row.state, row.started_at, row.heartbeat_at, row.expires_at = JobLease.State.RUNNING, now, now, expires
            row.finished_at = None
            row.save()
    return Lease(pk=row.pk, kind=kind, object_id=str(object_id), token=token, attempt=row.attempts)


def _history(row: JobLease, outcome: str, error: str = "") -> list:
    entry = {
        "attempt": row.attempts,
        "worker": row.worker,
        "started_at": row.started_at.isoformat(),
        "outcome": outcome,
    }
    if error:
        entry["error"] = error[:500]
    return [*row.history, entry][-20:]


def job_lease_finish(*, lease: Lease, ok: bool, error: str = "") -> bool:
    """End an attempt (done, or failed by its own exception). A lost attempt changes nothing."""
    with transaction.atomic():
        row = JobLease.objects.select_for_update().filter(pk=lease.pk, token=lease.token).first()
        if row is None or row.state != JobLease.State.RUNNING:
            return False
        row.state = JobLease.State.DONE if ok else JobLease.State.FAILED
        row.finished_at = timezone.now()
        row.history = _history(row, "done" if ok else "failed", error)
        row.save(update_fields=["state", "finished_at", "history"])
    return True


def jobs_sweep(*, now=None) -> dict[str, int]:
    """Requeue (or, after CDP_JOB_MAX_ATTEMPTS, fail) every run whose lease expired: its worker died.
    Each stale lease is handled in its own transaction with the run's requeue/fail, skipping leases
    another sweep holds. Returns {"requeued": n, "failed": n}."""
    now = now or timezone.now()
    counts = {"requeued": 0, "failed": 0}
    stale_ids = list(
        JobLease.objects.filter(state=JobLease.State.RUNNING, expires_at__lt=now).values_list("pk", flat=True)
    )
    for pk in stale_ids:
        with transaction.atomic():
            row = (
                JobLease.objects.select_for_update(skip_locked=True)
                .filter(pk=pk, state=JobLease.State.RUNNING, expires_at__lt=now)
                .first()
            )
            if row is None:
                continue
            requeue, fail = (_function(path) for path in JOB_KINDS[row.kind])
            reason = f"worker {row.worker} lost: no heartbeat since {row.heartbeat_at.isoformat()}"
            if row.attempts >= settings.CDP_JOB_MAX_ATTEMPTS:
                fail(row.object_id, f"{reason}; gave up after {row.attempts} attempts")
                row.state = JobLease.State.ABANDONED
                counts["failed"] += 1
            else:
                requeue(row.object_id)
                row.state = JobLease.State.REQUEUED
                counts["requeued"] += 1
            row.finished_at = now
            row.history = _history(row, row.state, reason)
            row.save(update_fields=["state", "finished_at", "history"])
            logger.warning("%s %s: %s (%s)", row.kind, row.object_id, reason, row.state)
    return counts
