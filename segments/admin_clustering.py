"""Admin of clustering runs and proposed cluster segments (imported by segments/admin.py).

The run list has a "Run clustering now" button (``clustering_run_start``: the task is queued on
commit); a run's page shows its progress, the report as a table (algorithm, k, silhouette,
Davies-Bouldin, Calinski-Harabasz, stability, seconds, with every k considered) and its proposed
segments with Accept / Dismiss buttons (``cluster_segment_accept`` / ``cluster_segment_dismiss``).
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
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

EMPTY = "-"


def _fmt(value, spec: str) -> str:
    return EMPTY if value is None else format(value, spec)


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
        # buttons of the change form (formaction): the form carries the CSRF token
        return format_html(
            '<button type="submit" class="button" formmethod="post" formaction="{}">Accept</button> '
            '<button type="submit" class="button" formmethod="post" formaction="{}">Dismiss</button>',
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
        percent = round(100 * (obj.progress or 0))
        return format_html(
            '<progress max="100" value="{}" style="width:10em"></progress> {}% {}',
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

    @admin.display(description="report")
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
            try:
                segment = actions[decision](segment=segment, actor=request.user.get_username())
            except ClusterDecisionError as exc:
                self.message_user(request, str(exc), messages.ERROR)
            else:
                self.message_user(request, f"{segment.name}: {segment.status}.", messages.SUCCESS)
        if segment.clustering_run_id:
            run_page = reverse("admin:segments_clusteringrun_change", args=[segment.clustering_run_id])
            return HttpResponseRedirect(run_page)
        return HttpResponseRedirect(reverse("admin:segments_clusteringrun_changelist"))
