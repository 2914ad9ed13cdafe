"""Fuzzy-matching runs: progress while running, the report after; buttons start a run now."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html

from ... import services
from ...models import MatchingRun
from ..display import pretty_json


class MatchingRunAdmin(admin.ModelAdmin):
    """Fuzzy-matching runs: progress while running, the report after; buttons start a run now."""

    list_display = ["id", "mode", "status", "progress_bar", "requested_by", "created_at", "finished_at", "summary"]
    list_filter = ["status", "mode"]
    readonly_fields = [f.name for f in MatchingRun._meta.fields] + ["progress_bar", "report_pretty"]
    exclude = ["report"]
    change_list_template = "admin/profiles/matchingrun/change_list.html"

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="progress")
    def progress_bar(self, obj: MatchingRun):
        if obj.status in ("done", "failed"):
            return format_html(
                '<span class="cdp-pill {}">{}</span>', obj.status, "finished" if obj.status == "done" else "failed"
            )
        return format_html(
            '<progress max="100" value="{}" style="width:10em" data-cdp-running></progress> {}% ({} / {})',
            obj.progress_percent,
            obj.progress_percent,
            obj.progress_done,
            obj.progress_total,
        )

    @admin.display(description="result")
    def summary(self, obj: MatchingRun):
        if obj.error:
            return obj.error[:120]
        report = obj.report or {}
        keys = [k for k in ("profiles", "compared", "merged", "queued", "refused", "seconds") if k in report]
        return ", ".join(f"{k} {report[k]}" for k in keys)

    @admin.display(description="report")
    def report_pretty(self, obj: MatchingRun):
        return pretty_json(obj.report)

    def get_urls(self):
        return [
            path("start/<str:mode>/", self.admin_site.admin_view(self.start_view), name="profiles_matchingrun_start"),
            *super().get_urls(),
        ]

    def start_view(self, request, mode: str):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not request.user.has_perm("profiles.change_matchcandidate"):
            raise PermissionDenied
        try:
            run = services.matching_run_start(mode=mode, requested_by=request.user.get_username())
        except ValueError as exc:
            self.message_user(request, str(exc), messages.ERROR)
        else:
            self.message_user(request, f"Matching run {run.pk} ({run.mode}) is {run.status}.", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:profiles_matchingrun_changelist"))
