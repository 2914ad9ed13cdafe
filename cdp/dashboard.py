"""What the admin home shows: reads across every app (cdp is the top layer), no writes.

Every figure comes from an indexed column or a small table: event rates use the BRIN index on
``occurred_at`` (events are stamped on arrival, corrected for clock skew) narrowed by
``received_at``; profile and merge figures use their indexed times; nothing counts the event table.
Parts owned by apps still being built (experiments) are read defensively and simply left out when
their models do not exist yet.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.apps import apps
from django.db import connection
from django.db.models import Count, Min, Q
from django.db.models.functions import TruncDay
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from cdp import charts
from cdp.health import scheduler_info
from consent.models import DataSubjectRequest, RequestStatus
from consent.selectors import privacy_requests_overdue
from profiles.models import MatchingRun, Merge, PendingWork, Profile
from profiles.tracking.debugger import rejections_per_minute
from recommendations import reports
from recommendations.models import ModelStatus, ModelVersion
from segments.models import ClusteringRun, Segment, SegmentKind, SegmentSize, SegmentStatus

OPEN_REQUESTS = [RequestStatus.RECEIVED, RequestStatus.VERIFIED, RequestStatus.QUEUED, RequestStatus.RUNNING]


def _buckets(start: datetime, step: timedelta, n: int) -> list[datetime]:
    return [start + step * i for i in range(n)]


def event_rates(*, now: datetime, span: timedelta, step: timedelta) -> dict:
    """Events per bucket by source and by type, and rejected calls per bucket (from the debugger)."""
    seconds = int(step.total_seconds())
    n = int(span / step)
    end = datetime.fromtimestamp((int(now.timestamp()) // seconds + 1) * seconds, tz=now.tzinfo)
    start = end - step * n
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT floor(extract(epoch FROM e.received_at) / %s)::bigint AS b, s.name, e.type, count(*)
            FROM profiles_event e JOIN profiles_source s ON s.id = e.source_id
            WHERE e.occurred_at >= %s AND e.received_at >= %s AND e.received_at < %s
            GROUP BY 1, 2, 3
            """,
            [seconds, start - timedelta(days=1), start, end],
        )
        rows = cursor.fetchall()
    first = int(start.timestamp()) // seconds
    by_source: dict[str, list[int]] = {}
    by_type: dict[str, list[int]] = {}
    total = 0
    for bucket, source, type_, count in rows:
        i = bucket - first
        if not 0 <= i < n:
            continue
        by_source.setdefault(source, [0] * n)[i] += count
        by_type.setdefault(type_, [0] * n)[i] += count
        total += count
    rejected = [0] * n
    for minute, count in rejections_per_minute(since=start.timestamp(), until=end.timestamp()).items():
        i = (minute * 60) // seconds - first
        if 0 <= i < n:
            rejected[i] += count
    buckets = [timezone.localtime(b) for b in _buckets(start, step, n)]
    per_minute = 60 / seconds
    fmt = "%H:%M"

    def chart(series: dict[str, list[int]], label: str) -> str:
        ordered = dict(sorted(series.items(), key=lambda kv: -sum(kv[1])))
        scaled = {k: [v * per_minute for v in values] for k, values in ordered.items()}
        return charts.stacked_bars(buckets, scaled, label=label, time_format=fmt)

    minutes = span.total_seconds() / 60
    return {
        "total": total,
        "per_minute": total / minutes if minutes else 0,
        "rejected": sum(rejected),
        "by_source_chart": chart(by_source, "events per minute by source"),
        "by_type_chart": chart(by_type, "events per minute by type"),
        "rejected_chart": charts.stacked_bars(
            buckets, {"rejected": [v * per_minute for v in rejected]}, label="rejected calls per minute"
        )
        if any(rejected)
        else "",
    }


def profiles_and_merges(*, now: datetime, days: int = 14) -> dict:
    start = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=days - 1)
    new = dict(
        Profile.objects.filter(first_seen_at__gte=start)
        .annotate(d=TruncDay("first_seen_at"))
        .values("d")
        .annotate(n=Count("*"))
        .values_list("d", "n")
    )
    merged = dict(
        Merge.objects.filter(created_at__gte=start)
        .annotate(d=TruncDay("created_at"))
        .values("d")
        .annotate(n=Count("*"))
        .values_list("d", "n")
    )
    days_list = _buckets(start, timedelta(days=1), days)
    new_series = [new.get(d, 0) for d in days_list]
    merged_series = [merged.get(d, 0) for d in days_list]
    return {
        "live": Profile.objects.filter(merged_into__isnull=True).count(),
        "new_today": new_series[-1],
        "merges_today": merged_series[-1],
        "chart": charts.stacked_bars(
            days_list,
            {"new profiles": new_series, "merges": merged_series},
            label="new profiles and merges per day",
            time_format="%d %b",
        ),
    }


def pending_lag(*, now: datetime) -> dict:
    summary = PendingWork.objects.aggregate(n=Count("*"), oldest=Min("queued_at"))
    lag = (now - summary["oldest"]).total_seconds() if summary["oldest"] else 0.0
    return {"count": summary["n"], "lag_seconds": lag, "late": lag > 120}


def largest_segments(*, now: datetime, limit: int = 8, days: int = 30) -> list[dict]:
    segments = list(
        Segment.objects.filter(status=SegmentStatus.ACTIVE)
        .order_by("-size", "name")
        .only("id", "name", "size", "kind")[:limit]
    )
    history: dict[int, list[int]] = {s.pk: [] for s in segments}
    for segment_id, size in (
        SegmentSize.objects.filter(segment__in=segments, at__gte=now - timedelta(days=days))
        .order_by("segment_id", "at")
        .values_list("segment_id", "size")
    ):
        history[segment_id].append(size)
    rows = []
    for s in segments:
        sizes = history[s.pk] or [s.size]
        change = sizes[-1] - sizes[0]
        rows.append(
            {
                "segment": s,
                "url": reverse("admin:segments_segment_change", args=[s.pk]),
                "kind": "cluster" if s.kind == SegmentKind.CLUSTER else "rule",
                "change": change,
                "trend": charts.sparkline(sizes, label=f"size of {s.name} over {days} days"),
            }
        )
    return rows


def model_versions(*, limit: int = 5) -> list[dict]:
    versions = list(ModelVersion.objects.defer("artifact").order_by("-created_at")[:limit])
    try:
        ctr = reports.ctr_by_model_version(since=timezone.now() - timedelta(days=30))
    except Exception:  # a report must not take the home page down
        ctr = {}
    rows = []
    for v in versions:
        metrics, base = v.metrics or {}, v.baseline_metrics or {}
        rows.append(
            {
                "version": v,
                "url": reverse("admin:recommendations_modelversion_change", args=[v.pk]),
                "ndcg": metrics.get("ndcg@10"),
                "baseline": base.get("ndcg@10"),
                "ctr": ctr.get(v.pk),
                "active": v.status == ModelStatus.ACTIVE,
            }
        )
    return rows


def running_experiments() -> dict:
    """Experiments of issue 14, read only if the model exists (``recommendations.Experiment``)."""
    try:
        model = apps.get_model("recommendations", "Experiment")
    except LookupError:
        return {"available": False, "rows": []}
    fields = {f.name for f in model._meta.get_fields()}
    queryset = model.objects.all()
    if "status" in fields:
        queryset = queryset.filter(status__in=["running", "active", "started"])
    rows = []
    for exp in queryset.order_by("-pk")[:10]:
        try:
            url = reverse(f"admin:recommendations_{model._meta.model_name}_change", args=[exp.pk])
        except NoReverseMatch:
            url = ""
        rows.append({"name": str(exp), "url": url, "status": getattr(exp, "status", "")})
    return {"available": True, "rows": rows}


def privacy_queue(*, now: datetime) -> dict:
    open_ = DataSubjectRequest.objects.filter(status__in=[*OPEN_REQUESTS, RequestStatus.FAILED])
    overdue = privacy_requests_overdue().count()
    soon = open_.filter(due_at__gte=now, due_at__lt=now + timedelta(days=7)).count()
    url = reverse("admin:consent_datasubjectrequest_changelist")
    return {
        "open": open_.count(),
        "overdue": overdue,
        "due_this_week": soon,
        "failed": open_.filter(status=RequestStatus.FAILED).count(),
        "url": url,
        "overdue_url": f"{url}?deadline=overdue",
    }


def _job(label: str, run, url: str, now: datetime, failures: int) -> dict:
    if run is None:
        return {"label": label, "status": "never run", "when": None, "url": url, "failures": failures, "ok": None}
    when = run.finished_at or getattr(run, "started_at", None) or run.created_at
    return {
        "label": label,
        "status": run.status,
        "when": when,
        "url": url,
        "failures": failures,
        "ok": run.status not in ("failed",),
        "error": (getattr(run, "error", "") or "")[:160],
    }


def job_health(*, now: datetime) -> list[dict]:
    week = now - timedelta(days=7)
    rows = [
        _job(
            "Identity matching",
            MatchingRun.objects.order_by("-created_at").first(),
            reverse("admin:profiles_matchingrun_changelist"),
            now,
            MatchingRun.objects.filter(status="failed", created_at__gte=week).count(),
        ),
        _job(
            "Clustering",
            ClusteringRun.objects.defer("model").order_by("-created_at").first(),
            reverse("admin:segments_clusteringrun_changelist"),
            now,
            ClusteringRun.objects.filter(status="failed", created_at__gte=week).count(),
        ),
        _job(
            "Recommendation model refresh",
            ModelVersion.objects.defer("artifact").order_by("-created_at").first(),
            reverse("admin:recommendations_modelversion_changelist"),
            now,
            ModelVersion.objects.filter(status=ModelStatus.FAILED, created_at__gte=week).count(),
        ),
    ]
    segment_refresh = Segment.objects.filter(~Q(last_refreshed_at=None)).order_by("-last_refreshed_at").first()
    rows.append(
        {
            "label": "Segment refresh",
            "status": "done" if segment_refresh else "never run",
            "when": segment_refresh.last_refreshed_at if segment_refresh else None,
            "url": reverse("admin:segments_segment_changelist"),
            "failures": 0,
            "ok": True if segment_refresh else None,
        }
    )
    return rows


def dashboard(*, now: datetime | None = None) -> dict:
    now = now or timezone.now()
    return {
        "now": now,
        "hour": event_rates(now=now, span=timedelta(hours=1), step=timedelta(minutes=1)),
        "day": event_rates(now=now, span=timedelta(days=1), step=timedelta(minutes=30)),
        "profiles": profiles_and_merges(now=now),
        "pending": pending_lag(now=now),
        "segments": largest_segments(now=now),
        "models": model_versions(),
        "experiments": running_experiments(),
        "privacy": privacy_queue(now=now),
        "jobs": job_health(now=now),
        "scheduler": scheduler_info(),
    }
