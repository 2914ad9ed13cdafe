"""Admin of clustering runs and proposed cluster segments (imported by segments/admin.py).

The run list has a "Run clustering now" button (``clustering_run_start``: the task is queued on
commit); a run's page shows its progress, the report as a table (algorithm, k, silhouette,
Davies-Bouldin, Calinski-Harabasz, stability, seconds, with every k considered) and its proposed
segments with Accept / Dismiss buttons (``cluster_segment_accept`` / ``cluster_segment_dismiss``).
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from segments.clustering.engine import ALGORITHM_LABELS, ClusteringError
from segments.clustering.services import (
    ClusterDecisionError,
    cluster_segment_accept,
    cluster_segment_dismiss,
    clustering_run_start,
)
from segments.models import ClusteringRun, Segment, SegmentKind, SegmentStatus
from segments.services import SegmentInvalid, segment_update

EMPTY = "-"


def _fmt(value, spec: str) -> str:
    return EMPTY if value is None else format(value, spec)


def _days(value) -> str:
    return "never ordered" if value is None else f"{value:.0f}"


def cluster_continuations(*, segments: list[Segment], min_share: float = 0.3) -> dict[int, tuple[str, float]]:
    """For each cluster segment of a run: the accepted cluster segment of an earlier run whose current
    members it shares most (Jaccard of current members), when that share is at least ``min_share``."""
    ids = [s.pk for s in segments]
    runs = {s.clustering_run_id for s in segments}
    accepted = {
        s.pk: s
        for s in Segment.objects.filter(kind=SegmentKind.CLUSTER, status=SegmentStatus.ACTIVE).exclude(
            clustering_run_id__in=runs
        )
    }
    if not accepted or not ids:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT n.segment_id, o.segment_id, count(*)
            FROM segments_segmentmembership n
            JOIN segments_segmentmembership o ON o.profile_id = n.profile_id AND o.exited_at IS NULL
            WHERE n.exited_at IS NULL AND n.segment_id = ANY(%s) AND o.segment_id = ANY(%s)
            GROUP BY 1, 2
            """,
            [ids, list(accepted)],
        )
        shared = cursor.fetchall()
    sizes = {s.pk: s.size for s in segments} | {pk: s.size for pk, s in accepted.items()}
    best: dict[int, tuple[str, float]] = {}
    for new, old, both in shared:
        union = sizes[new] + sizes[old] - both
        jaccard = both / union if union else 0.0
        if jaccard >= min_share and jaccard > best.get(new, ("", 0.0))[1]:
            best[new] = (accepted[old].name, jaccard)
    return best


class ClusterSegmentInline(admin.TabularInline):
    """The segments a run proposed, with the admin's decision buttons."""

    model = Segment
    fk_name = "clustering_run"
    extra = 0
    can_delete = False
    show_change_link = True
    fields = ["name", "status", "size", "share", "decide"]
    readonly_fields = fields
    verbose_name = "proposed cluster segment"
    verbose_name_plural = "proposed cluster segments"

    def get_queryset(self, request):
        return super().get_queryset(request).filter(kind=SegmentKind.CLUSTER).order_by("cluster_label")

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="share")
    def share(self, obj: Segment):
        share = (obj.cluster_profile or {}).get("share")
        return _fmt(share, ".1%")

    @admin.display(description="decision")
    def decide(self, obj: Segment):
        if obj.status != SegmentStatus.PROPOSED:
            decision = (obj.cluster_profile or {}).get("decision") or {}
            return f"{decision.get('status', obj.status)} by {decision.get('by', '?')}" if decision else obj.status
        # buttons of the change form (formaction): the form carries the CSRF token; the name field
        # renames the segment on accept
        return format_html(
            '<input type="text" name="rename_{}" value="{}" size="28" aria-label="name when accepted"> '
            '<button type="submit" class="button" formmethod="post" formaction="{}">Accept</button> '
            '<button type="submit" class="button" formmethod="post" formaction="{}">Dismiss</button>',
            obj.pk,
            obj.name,
            reverse("admin:segments_clusteringrun_decide", args=[obj.pk, "accept"]),
            reverse("admin:segments_clusteringrun_decide", args=[obj.pk, "dismiss"]),
        )


@admin.register(ClusteringRun)
class ClusteringRunAdmin(admin.ModelAdmin):
    """Clustering runs: progress while running, the report after, proposals to accept or dismiss."""

    list_display = [
        "id",
        "status",
        "progress_bar",
        "requested_by",
        "population",
        "summary",
        "created_at",
        "finished_at",
    ]
    list_filter = ["status"]
    readonly_fields = [
        "status",
        "progress_bar",
        "requested_by",
        "population",
        "summary",
        "clusters_table",
        "report_table",
        "params",
        "error",
        "created_at",
        "started_at",
        "finished_at",
    ]
    fields = readonly_fields
    inlines = [ClusterSegmentInline]
    change_list_template = "admin/segments/clusteringrun/change_list.html"

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="progress")
    def progress_bar(self, obj: ClusteringRun):
        if obj.status == "done":
            return format_html('<span class="cdp-pill finished">{}</span>', "finished")
        if obj.status == "failed":
            return format_html('<span class="cdp-pill failed">failed</span> {}', (obj.error or "")[:120])
        percent = round(100 * (obj.progress or 0))
        return format_html(
            '<progress max="100" value="{}" style="width:10em" data-cdp-running></progress> {}% {}',
            percent,
            percent,
            obj.progress_message,
        )

    @admin.display(description="chosen")
    def summary(self, obj: ClusteringRun):
        if obj.error:
            return obj.error[:160]
        chosen = obj.chosen or {}
        if not chosen:
            return EMPTY
        metrics = chosen.get("metrics", {})
        return (
            f"{ALGORITHM_LABELS.get(chosen.get('algorithm'), chosen.get('algorithm'))}, k={chosen.get('k')}, "
            f"silhouette {_fmt(metrics.get('silhouette'), '.3f')}, stability {_fmt(metrics.get('stability'), '.3f')}"
        )

    @admin.display(description="what each cluster's customers are like")
    def clusters_table(self, obj: ClusteringRun):
        segments = list(Segment.objects.filter(clustering_run=obj, kind=SegmentKind.CLUSTER).order_by("cluster_label"))
        if not segments:
            return EMPTY
        continues = cluster_continuations(segments=segments)
        rows = []
        for seg in segments:
            profile = seg.cluster_profile or {}
            median = profile.get("median") or {}
            categories = sorted((profile.get("categories") or {}).items(), key=lambda kv: -kv[1])[:3]
            devices = sorted((profile.get("devices") or {}).items(), key=lambda kv: -kv[1])[:1]
            previous = continues.get(seg.pk)
            rows.append(
                (
                    seg.name,
                    seg.status,
                    seg.size,
                    _fmt(profile.get("share"), ".0%"),
                    _days(median.get("recency_days")),
                    _fmt(median.get("frequency"), ".0f"),
                    _fmt(median.get("monetary"), ",.0f"),
                    ", ".join(f"{c} {v:.0%}" for c, v in categories if v) or EMPTY,
                    ", ".join(f"{d} {v:.0%}" for d, v in devices if v) or EMPTY,
                    f"{previous[0]} ({previous[1]:.0%} same people)" if previous else "new",
                )
            )
        return format_html(
            '<table class="cdp-table cluster-results"><thead><tr><th>cluster</th><th>status</th><th class="num">'
            'customers</th><th class="num">share</th><th class="num">median days since last order</th>'
            '<th class="num">median orders</th><th class="num">median spend</th><th>top categories (share of '
            "views)</th><th>device</th><th>continues</th></tr></thead><tbody>{}</tbody></table>"
            '<p class="help">Medians are of the cluster\'s own customers; "continues" names the accepted cluster '
            "segment from an earlier run whose members this cluster mostly shares.</p>",
            format_html_join(
                "",
                "<tr><td>{}</td><td>{}</td><td class='num'>{}</td><td class='num'>{}</td><td class='num'>{}</td>"
                "<td class='num'>{}</td><td class='num'>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                rows,
            ),
        )

    @admin.display(description="report (for experts)")
    def report_table(self, obj: ClusteringRun):
        report = obj.report or {}
        algorithms = report.get("algorithms") or []
        if not algorithms:
            return EMPTY
        chosen = (obj.chosen or {}).get("algorithm")
        head = (
            "<tr><th>algorithm</th><th>k</th><th>silhouette</th><th>Davies-Bouldin</th><th>Calinski-Harabasz</th>"
            "<th>stability</th><th>min share</th><th>seconds</th><th>k considered: silhouette / stability</th></tr>"
        )
        rows = format_html_join(
            "",
            "<tr><td>{}{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
            "<td>{}</td></tr>",
            (
                (
                    ALGORITHM_LABELS.get(a["algorithm"], a["algorithm"]),
                    " (chosen)" if a["algorithm"] == chosen else "",
                    _fmt(a.get("k"), "d"),
                    _fmt(a.get("silhouette"), ".3f"),
                    _fmt(a.get("davies_bouldin"), ".3f"),
                    _fmt(a.get("calinski_harabasz"), ".0f"),
                    _fmt(a.get("stability"), ".3f"),
                    _fmt(a.get("min_share"), ".1%"),
                    _fmt(a.get("seconds"), ".1f"),
                    ", ".join(
                        f"{c['k']}: {c['silhouette']:.2f}/{c['stability']:.2f}{'' if c['eligible'] else ' (too small)'}"
                        for c in a.get("candidates", [])
                    )
                    or a.get("note", ""),
                )
                for a in algorithms
            ),
        )
        clusters = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td colspan='6'>{}</td></tr>",
            (
                (c["label"] + 1, c["size"], _fmt(c["share"], ".1%"), c["description"])
                for c in report.get("clusters", [])
            ),
        )
        return format_html(
            "<table>{}{}</table><p>features: {}</p><table><tr><th>cluster</th><th>size</th><th>share</th>"
            "<th colspan='6'>description</th></tr>{}</table>",
            mark_safe(head),  # noqa: S308 - a constant
            rows,
            ", ".join(report.get("features", [])),
            clusters,
        )

    def get_urls(self):
        return [
            path("start/", self.admin_site.admin_view(self.start_view), name="segments_clusteringrun_start"),
            path(
                "segment/<int:segment_id>/<str:decision>/",
                self.admin_site.admin_view(self.decide_view),
                name="segments_clusteringrun_decide",
            ),
            *super().get_urls(),
        ]

    def start_view(self, request):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not request.user.has_perm("segments.change_clusteringrun"):
            raise PermissionDenied
        try:
            run = clustering_run_start(requested_by=request.user.get_username())
        except ClusteringError as exc:
            self.message_user(request, str(exc), messages.ERROR)
        else:
            self.message_user(request, f"Clustering run {run.pk} is {run.status}.", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:segments_clusteringrun_changelist"))

    def decide_view(self, request, segment_id: int, decision: str):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not request.user.has_perm("segments.change_segment"):
            raise PermissionDenied
        segment = get_object_or_404(Segment, pk=segment_id, kind=SegmentKind.CLUSTER)
        actions = {"accept": cluster_segment_accept, "dismiss": cluster_segment_dismiss}
        if decision not in actions:
            self.message_user(request, f"Unknown decision {decision!r}.", messages.ERROR)
        else:
            new_name = (request.POST.get(f"rename_{segment.pk}") or "").strip()
            try:
                segment = actions[decision](segment=segment, actor=request.user.get_username())
                if decision == "accept" and new_name and new_name != segment.name:
                    segment = segment_update(segment=segment, name=new_name[:200])
            except (ClusterDecisionError, SegmentInvalid) as exc:
                self.message_user(request, str(exc), messages.ERROR)
            else:
                self.message_user(request, f"{segment.name}: {segment.status}.", messages.SUCCESS)
        if segment.clustering_run_id:
            run_page = reverse("admin:segments_clusteringrun_change", args=[segment.clustering_run_id])
            return HttpResponseRedirect(run_page)
        return HttpResponseRedirect(reverse("admin:segments_clusteringrun_changelist"))
