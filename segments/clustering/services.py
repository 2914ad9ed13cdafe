"""Clustering runs and the cluster segments they propose.

Flow: ``clustering_run_start`` (admin button, weekly schedule, demo) creates a queued
``ClusteringRun`` and queues ``segments.tasks.ml_clustering_run`` after commit;
``clustering_run_execute`` (the task) extracts features of live profiles, runs every algorithm with
the k-selection rule (``engine``), keeps the best model (transform + centres) on the run, and
proposes one ``Segment(kind="cluster", status="proposed")`` per cluster, members included.

Proposals of a newer run supersede (dismiss) the still-unaccepted proposals of older runs. An
accepted cluster segment (``cluster_segment_accept``: status active) keeps working: on every later
run the live population is assigned to the nearest centre of the model stored on the accepted
segment's own run, and the segment's members become the profiles nearest its centre
(``cluster_segments_assign``). New profiles so join it, and profiles whose behaviour moved leave it;
the segment's meaning (its centre) stays what the admin accepted.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from django.db import transaction
from django.utils import timezone

from cdp.lifecycle import job_lease_claim
from segments.models import ClusteringRun, ClusteringRunStatus, Segment, SegmentKind, SegmentStatus
from segments.services import segment_membership_set

from .describe import cluster_profiles
from .engine import AlgorithmResult, ClusteringError, ClusteringParams, best, cluster
from .features import ClusterModel, FeatureFrame, FeatureTransform
from .selectors import clustering_features_extract

logger = logging.getLogger("cdp.segments.clustering")
PROGRESS_EVERY_SECONDS = 1.0

Progress = Callable[[float, str], None]


# --- the computation (no database: shared by runs, evaluate_clustering and the benchmark) ----------


@dataclass
class ClusteringOutcome:
    params: ClusteringParams
    transform: FeatureTransform
    results: list[AlgorithmResult]
    chosen: AlgorithmResult
    clusters: list[dict]  # cluster_profiles of the chosen model
    model: ClusterModel
    seconds: float

    def report(self) -> dict:
        return {
            "population": len(self.chosen.labels),
            "features": self.transform.names,
            "params": self.params.to_dict(),
            "algorithms": [r.summary() for r in self.results],
            "chosen": self.chosen_summary(),
            "clusters": self.clusters,
            "seconds": round(self.seconds, 2),
        }

    def chosen_summary(self) -> dict:
        r = self.chosen
        return {
            "algorithm": r.algorithm,
            "k": r.k,
            "metrics": {
                "silhouette": r.silhouette,
                "davies_bouldin": r.davies_bouldin,
                "calinski_harabasz": r.calinski_harabasz,
                "stability": r.stability,
                "min_share": r.min_share,
                "score": r.score,
            },
        }


def clustering_compute(
    *, frame: FeatureFrame, params: ClusteringParams, progress: Progress | None = None
) -> ClusteringOutcome:
    """Scale, cluster with every algorithm, choose, describe. Raises ``ClusteringError``."""
    started = time.monotonic()
    transform = FeatureTransform.fit(frame)
    # rows in an order given by their values, not their (random uuid) ids: the same population
    # gives the same clustering whatever order the database returned it in
    order = np.lexsort(np.nan_to_num(frame.values, nan=-1.0).T[::-1])
    results = cluster(transform.transform(frame)[order], params, progress=progress)
    for result in results:
        if result.labels is not None:
            labels = np.empty_like(result.labels)
            labels[order] = result.labels
            result.labels = labels
    chosen = best(results)
    if chosen is None:
        notes = "; ".join(f"{r.algorithm}: {r.note}" for r in results)
        raise ClusteringError(f"No algorithm found an acceptable k ({notes}). Lower min_share or k_min.")
    clusters = cluster_profiles(frame, transform, chosen.labels, chosen.k)
    model = ClusterModel(
        transform=transform, centres=chosen.centres, categories=frame.categories, algorithm=chosen.algorithm
    )
    return ClusteringOutcome(
        params=params,
        transform=transform,
        results=results,
        chosen=chosen,
        clusters=clusters,
        model=model,
        seconds=time.monotonic() - started,
    )


# --- runs ----------------------------------------------------------------------------------------


def clustering_run_start(
    *, requested_by: str = "schedule", params: dict | None = None, queue: bool = True
) -> ClusteringRun:
    """Create a run and queue it for the ``ml`` worker after commit (``queue=False``: the caller
    executes it). A run already queued or running is returned instead of a second one. Raises
    ``ClusteringError`` for bad parameters."""
    checked = ClusteringParams.from_dict(params)
    active = ClusteringRun.objects.filter(status__in=[ClusteringRunStatus.QUEUED, ClusteringRunStatus.RUNNING]).first()
    if active:
        return active
    run = ClusteringRun.objects.create(requested_by=requested_by, params=checked.to_dict(), progress_message="queued")
    if queue:
        transaction.on_commit(lambda: _queue(run.pk))
    return run


def clustering_run_now(*, requested_by: str, params: dict | None = None) -> ClusteringRun:
    """Start and execute a run in this process (the demo, a shell): no worker needed."""
    run = clustering_run_start(requested_by=requested_by, params=params, queue=False)
    return clustering_run_execute(run_id=run.pk)


def _queue(run_id: int) -> None:
    from segments.tasks import ml_clustering_run

    try:
        ml_clustering_run.delay(run_id)
    except Exception as exc:  # broker down: the run stays queued; the next schedule runs it
        logger.warning("could not queue clustering run %s: %s", run_id, exc)


def _progress_writer(run_id: int, start: float, end: float) -> Progress:
    last = 0.0

    def write(fraction: float, message: str) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= PROGRESS_EVERY_SECONDS or fraction >= 1:
            ClusteringRun.objects.filter(pk=run_id).update(
                progress=round(start + (end - start) * min(max(fraction, 0.0), 1.0), 4), progress_message=message[:300]
            )
            last = now

    return write


def clustering_run_execute(*, run_id: int, now: datetime | None = None) -> ClusteringRun:
    """Execute a queued run (the Celery task calls this). Safe to call twice: a run that is not
    queued any more is returned as it is."""
    with transaction.atomic():
        run = ClusteringRun.objects.select_for_update().get(pk=run_id)
        if run.status != ClusteringRunStatus.QUEUED:
            return run
        run.status = ClusteringRunStatus.RUNNING
        run.started_at = timezone.now()
        run.progress, run.progress_message = 0.0, "reading features"
        run.save(update_fields=["status", "started_at", "progress", "progress_message"])
        lease = job_lease_claim(kind=LEASE_KIND, object_id=run.pk)  # cdp's lifecycle: heartbeat + sweep
    now = now or timezone.now()
    try:
        with lease:
            params = ClusteringParams.from_dict(run.params)
            frame = clustering_features_extract(now=now, top_categories=params.top_categories)
            ClusteringRun.objects.filter(pk=run.pk).update(population=len(frame), progress=0.05)
            outcome = clustering_compute(frame=frame, params=params, progress=_progress_writer(run.pk, 0.05, 0.85))
            write = _progress_writer(run.pk, 0.85, 1.0)
            write(0.0, "proposing segments")
            with transaction.atomic():
                run.refresh_from_db()
                run.population = len(frame)
                run.chosen = outcome.chosen_summary()
                run.report = outcome.report()
                run.model = outcome.model.to_bytes()
                run.save(update_fields=["population", "chosen", "report", "model"])
                _propose(run=run, frame=frame, outcome=outcome, at=now)
            write(0.6, "updating accepted cluster segments")
            cluster_segments_assign(now=now, current=(run, frame))
    except Exception as exc:
        logger.exception("clustering run %s failed", run.pk)
        ClusteringRun.objects.filter(pk=run.pk).update(
            status=ClusteringRunStatus.FAILED,
            error=f"{type(exc).__name__}: {exc}",
            progress_message="failed",
            finished_at=timezone.now(),
        )
        if isinstance(exc, ClusteringError):  # a data problem, not a bug: recorded, no retry
            run.refresh_from_db()
            return run
        raise
    ClusteringRun.objects.filter(pk=run.pk).update(
        status=ClusteringRunStatus.DONE, progress=1.0, progress_message="done", finished_at=timezone.now()
    )
    run.refresh_from_db()
    return run


LEASE_KIND = "clustering-run"


def clustering_run_requeue(run_id) -> None:
    """cdp.lifecycle's sweep: the run's worker died; queue the run again (after commit)."""
    if ClusteringRun.objects.filter(pk=run_id, status=ClusteringRunStatus.RUNNING).update(
        status=ClusteringRunStatus.QUEUED, progress=0.0, progress_message="requeued: its worker was lost"
    ):
        transaction.on_commit(lambda: _queue(int(run_id)))


def clustering_run_fail(run_id, reason: str) -> None:
    """cdp.lifecycle's sweep: the run's worker died too often; the run failed (the next one starts)."""
    ClusteringRun.objects.filter(pk=run_id, status=ClusteringRunStatus.RUNNING).update(
        status=ClusteringRunStatus.FAILED, error=reason[:2000], progress_message="failed", finished_at=timezone.now()
    )


def run_queued_clustering() -> int:
    """Execute runs left queued (their task was lost); used by the weekly job."""
    done = 0
    for run_id in ClusteringRun.objects.filter(status=ClusteringRunStatus.QUEUED).values_list("pk", flat=True):
        clustering_run_execute(run_id=run_id)
        done += 1
    return done


def _segment_name(run: ClusteringRun, cluster: dict) -> str:
    return f"Cluster {run.pk}.{cluster['label'] + 1}: {cluster['description']}"[:200]


def _propose(*, run: ClusteringRun, frame: FeatureFrame, outcome: ClusteringOutcome, at: datetime) -> None:
    """One proposed segment per cluster with its members; older unaccepted proposals dismissed."""
    labels = outcome.chosen.labels
    for old in Segment.objects.filter(kind=SegmentKind.CLUSTER, status=SegmentStatus.PROPOSED).exclude(
        clustering_run=run
    ):
        old.status = SegmentStatus.DISMISSED
        old.cluster_profile = {**old.cluster_profile, "decision": _decision("superseded", f"run {run.pk}", at)}
        old.save(update_fields=["status", "cluster_profile", "updated_at"])
        segment_membership_set(segment=old, profile_ids=[], at=at)
    for item in outcome.clusters:
        segment, _ = Segment.objects.update_or_create(
            slug=f"cluster-{run.pk}-{item['label'] + 1}",
            defaults={
                "name": _segment_name(run, item),
                "description": (
                    f"{item['description']}. {item['size']} profiles ({item['share']:.1%}); "
                    f"{outcome.chosen.algorithm}, k={outcome.chosen.k}, run {run.pk}."
                ),
                "kind": SegmentKind.CLUSTER,
                "status": SegmentStatus.PROPOSED,
                "definition": None,
                "clustering_run": run,
                "cluster_label": item["label"],
                "cluster_profile": item,
                "created_by": f"clustering run {run.pk}",
            },
        )
        segment_membership_set(segment=segment, profile_ids=frame.ids[labels == item["label"]].tolist(), at=at)


def _decision(status: str, actor: str, at: datetime) -> dict:
    return {"status": status, "by": actor, "at": at.isoformat()}


def cluster_segments_assign(
    *, now: datetime | None = None, current: tuple[ClusteringRun, FeatureFrame] | None = None
) -> int:
    """Accepted cluster segments of earlier runs: members = live profiles nearest their centre in
    their own run's stored model. Returns how many segments were updated."""
    now = now or timezone.now()
    accepted = Segment.objects.filter(
        kind=SegmentKind.CLUSTER, status=SegmentStatus.ACTIVE, clustering_run__isnull=False, cluster_label__isnull=False
    ).select_related("clustering_run")
    by_run: dict[int, list[Segment]] = defaultdict(list)
    for segment in accepted:
        if current and segment.clustering_run_id == current[0].pk:
            continue  # accepted during this run's proposal: its members are already this run's
        if segment.clustering_run.model:
            by_run[segment.clustering_run_id].append(segment)
    frames: dict[tuple, FeatureFrame] = {}
    if current:
        frames[tuple(current[1].categories)] = current[1]
    updated = 0
    for segments in by_run.values():
        model = ClusterModel.from_bytes(segments[0].clustering_run.model)
        key = tuple(model.categories)
        if key not in frames:
            frames[key] = clustering_features_extract(now=now, categories=model.categories)
        frame = frames[key]
        labels = model.assign(frame) if len(frame) else np.empty(0, dtype=np.int32)
        for segment in segments:
            with transaction.atomic():
                segment_membership_set(
                    segment=segment, profile_ids=frame.ids[labels == segment.cluster_label].tolist(), at=now
                )
            updated += 1
    return updated


# --- the admin's decisions -----------------------------------------------------------------------


class ClusterDecisionError(ValueError):
    """The proposal cannot take this decision (already decided, not a cluster segment)."""


def _proposal_for_decision(segment: Segment) -> Segment:
    segment = Segment.objects.select_for_update().get(pk=segment.pk)
    if segment.kind != SegmentKind.CLUSTER:
        raise ClusterDecisionError(f"{segment.name!r} is not a cluster segment.")
    if segment.status != SegmentStatus.PROPOSED:
        raise ClusterDecisionError(f"{segment.name!r} was already decided ({segment.status}).")
    return segment


@transaction.atomic
def cluster_segment_accept(*, segment: Segment, actor: str) -> Segment:
    """The admin keeps a proposed cluster: it becomes an active segment (members as proposed)."""
    segment = _proposal_for_decision(segment)
    segment.status = SegmentStatus.ACTIVE
    segment.cluster_profile = {**segment.cluster_profile, "decision": _decision("accepted", actor, timezone.now())}
    segment.save(update_fields=["status", "cluster_profile", "updated_at"])
    logger.info("cluster segment %s accepted by %s", segment.slug, actor)
    return segment


@transaction.atomic
def cluster_segment_dismiss(*, segment: Segment, actor: str) -> Segment:
    """The admin drops a proposed cluster: dismissed, its memberships closed."""
    segment = _proposal_for_decision(segment)
    now = timezone.now()
    segment.status = SegmentStatus.DISMISSED
    segment.cluster_profile = {**segment.cluster_profile, "decision": _decision("dismissed", actor, now)}
    segment.save(update_fields=["status", "cluster_profile", "updated_at"])
    segment_membership_set(segment=segment, profile_ids=[], at=now)
    logger.info("cluster segment %s dismissed by %s", segment.slug, actor)
    return segment
