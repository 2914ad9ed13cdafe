"""The fuzzy-matching job around ``identity_match``: runs with progress, and the review decisions.

A run is a ``MatchingRun`` row; the Celery task ``profiles.tasks.ml_identity_match`` executes it. An
incremental run matches the profiles created or changed since the last finished run against
everyone; a full run matches everyone. Running the same run twice does nothing the second time,
and re-running matching is idempotent: merged profiles are gone, queued pairs are not filed twice.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time

from django.db import transaction
from django.utils import timezone

from cdp.lifecycle import job_lease_claim
from profiles.models import (
    CandidateStatus,
    Identifier,
    MatchCandidate,
    MatchingRun,
    Merge,
    MergeStatus,
    Profile,
    RunStatus,
)

from .merge import older_first, profile_merge

logger = logging.getLogger("cdp.identity")
PROGRESS_EVERY_SECONDS = 1.0
FUZZY = "fuzzy"  # the merges the matching job writes (fuzzy.service.REASON)


def matching_run_start(*, mode: str = MatchingRun.Mode.INCREMENTAL, requested_by: str = "schedule") -> MatchingRun:
    """Create a run and queue it for a worker (after commit). A run already queued or running for
    the same mode is returned instead of starting a second one."""
    if mode not in MatchingRun.Mode.values:
        raise ValueError(f"Unknown matching mode {mode!r}; use one of {', '.join(MatchingRun.Mode.values)}.")
    active = MatchingRun.objects.filter(mode=mode, status__in=[RunStatus.QUEUED, RunStatus.RUNNING]).first()
    if active:
        return active
    last = MatchingRun.objects.filter(status=RunStatus.DONE).exclude(started_at=None).order_by("-started_at").first()
    run = MatchingRun.objects.create(
        mode=mode,
        requested_by=requested_by,
        since=last.started_at if (last and mode == MatchingRun.Mode.INCREMENTAL) else None,
    )
    transaction.on_commit(lambda: _queue(run.pk))
    return run


def _queue(run_id: int) -> None:
    from profiles.tasks import ml_identity_match

    try:
        ml_identity_match.delay(run_id)
    except Exception as exc:  # broker down: the run stays queued and the next schedule picks it up
        logger.warning("could not queue matching run %s: %s", run_id, exc)


def changed_profile_ids(*, since) -> list:
    """Live profiles created or changed (traits, seen times, new identifiers) after ``since``.

    A survivor whose latest change is a fuzzy merge into it (the previous run's own write: every
    record of it was compared with everyone in that run) is not a change; a later identify call,
    trait change or new identifier makes it one again. So a run after a run with nothing new in
    between compares nothing, instead of every survivor the first one made (decision 0042)."""
    live = Profile.objects.filter(merged_into__isnull=True)
    if since is None:
        return list(live.values_list("pk", flat=True))
    # two plain reads joined here, not an anti-join: its plan depends on statistics that a run of
    # 100,000 merges has just made stale (the merge table looked empty to the planner)
    merged_in: dict = {}
    own = Merge.objects.filter(reason=FUZZY, status=MergeStatus.MERGED, created_at__gte=since).order_by()
    for winner, at in own.values_list("winner_id", "created_at").iterator(chunk_size=20000):
        merged_in[winner] = max(at, merged_in.get(winner, at))
    updated = live.filter(updated_at__gt=since).values_list("pk", "updated_at").iterator(chunk_size=20000)
    changed = {pk for pk, at in updated if not (pk in merged_in and merged_in[pk] >= at)}
    new_identifiers = Identifier.objects.filter(created_at__gt=since).values("profile_id")
    changed.update(live.filter(pk__in=new_identifiers).values_list("pk", flat=True))
    return list(changed)


def matching_run_execute(*, run_id: int) -> MatchingRun:
    """Execute a queued run (the Celery task calls this). Safe to call twice."""
    from .fuzzy.service import identity_match

    with transaction.atomic():
        run = MatchingRun.objects.select_for_update().get(pk=run_id)
        if run.status != RunStatus.QUEUED:
            return run
        run.status = RunStatus.RUNNING
        run.started_at = timezone.now()
        run.save(update_fields=["status", "started_at"])
        lease = job_lease_claim(kind=LEASE_KIND, object_id=run.pk)  # cdp's lifecycle: heartbeat + sweep
    last_saved = 0.0

    def progress(done: int, total: int) -> None:
        nonlocal last_saved
        now = time.monotonic()
        if now - last_saved >= PROGRESS_EVERY_SECONDS or done >= total:
            MatchingRun.objects.filter(pk=run.pk).update(progress_done=done, progress_total=total)
            last_saved = now

    try:
        with lease:
            ids = None if run.mode == MatchingRun.Mode.FULL else changed_profile_ids(since=run.since)
            report = identity_match(profile_ids=ids, progress=progress)
    except Exception as exc:
        logger.exception("matching run %s failed", run.pk)
        MatchingRun.objects.filter(pk=run.pk).update(
            status=RunStatus.FAILED, error=f"{type(exc).__name__}: {exc}", finished_at=timezone.now()
        )
        raise
    run.refresh_from_db()
    run.status = RunStatus.DONE
    run.report = json.loads(json.dumps(dataclasses.asdict(report), default=str))
    run.finished_at = timezone.now()
    run.save(update_fields=["status", "report", "finished_at"])
    return run


LEASE_KIND = "matching-run"


def matching_run_requeue(run_id) -> None:
    """cdp.lifecycle's sweep: the run's worker died; queue the run again (after commit)."""
    if MatchingRun.objects.filter(pk=run_id, status=RunStatus.RUNNING).update(
        status=RunStatus.QUEUED, error="requeued: its worker was lost", progress_done=0
    ):
        transaction.on_commit(lambda: _queue(int(run_id)))


def matching_run_fail(run_id, reason: str) -> None:
    """cdp.lifecycle's sweep: the run's worker died too often; the run failed (the next one starts)."""
    MatchingRun.objects.filter(pk=run_id, status=RunStatus.RUNNING).update(
        status=RunStatus.FAILED, error=reason[:2000], finished_at=timezone.now()
    )


def run_queued_matching() -> int:
    """Execute runs left queued (their task was lost); used by the scheduled job."""
    done = 0
    for run_id in MatchingRun.objects.filter(status=RunStatus.QUEUED).values_list("pk", flat=True):
        matching_run_execute(run_id=run_id)
        done += 1
    return done


# --- review decisions -------------------------------------------------------------------------------


def _pending_for_decision(candidate: MatchCandidate) -> MatchCandidate:
    candidate = MatchCandidate.objects.select_for_update().get(pk=candidate.pk)
    if candidate.status not in (CandidateStatus.PENDING, CandidateStatus.DEFERRED):
        raise ValueError(f"This pair was already decided ({candidate.status}).")
    return candidate


def _record_decision(candidate: MatchCandidate, status: str, actor: str) -> MatchCandidate:
    candidate.status = status
    candidate.decided_at = timezone.now()
    candidate.decided_by = actor
    candidate.save(update_fields=["status", "decided_at", "decided_by"])
    return candidate


@transaction.atomic
def candidate_approve(*, candidate: MatchCandidate, actor: str) -> MatchCandidate:
    """A reviewer says: same person. Merge (through the usual guards and Merge record)."""
    from .merge import merge_guard

    candidate = _pending_for_decision(candidate)
    a, b = _live(candidate.profile_a_id), _live(candidate.profile_b_id)
    if a.pk != b.pk:
        guard = merge_guard(a, b)
        if guard:
            raise ValueError(f"Merge refused by a guard: {guard}.")
        winner, loser = older_first(a, b)
        profile_merge(
            winner=winner,
            loser=loser,
            reason="review",
            score=candidate.score,
            actor=actor,
            evidence={
                "candidate": candidate.pk,
                "candidate_reason": candidate.reason,
                "candidate_evidence": candidate.evidence,
            },
        )
    return _propagated(_record_decision(candidate, CandidateStatus.APPROVED, actor), actor)


@transaction.atomic
def candidate_reject(*, candidate: MatchCandidate, actor: str) -> MatchCandidate:
    """A reviewer says: different people. The pair becomes a never-merge pair."""
    return _propagated(_record_decision(_pending_for_decision(candidate), CandidateStatus.REJECTED, actor), actor)


def _propagated(candidate: MatchCandidate, actor: str) -> MatchCandidate:
    """The decision also settles similar pending pairs (fuzzy/review.py: active learning)."""
    from .fuzzy.review import decision_propagate

    candidate.propagated = decision_propagate(candidate=candidate, actor=actor)
    return candidate


def _live(profile_id) -> Profile:
    profile = Profile.objects.get(pk=profile_id)
    for _ in range(20):
        if not profile.merged_into_id:
            return profile
        profile = Profile.objects.get(pk=profile.merged_into_id)
    raise ValueError("merge chain too long")
