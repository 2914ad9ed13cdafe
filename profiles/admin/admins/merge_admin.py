"""The merge log: read-only; merges are undone with the action."""

from __future__ import annotations

from django.contrib import admin, messages

from cdp.admin_readonly import ReadOnlyAdminMixin

from ... import services
from ...models import Merge
from ..display import can_unmerge, pretty_json, profile_link
from ..filters import UndoneFilter
from ..paginators import CappedCountPaginator
from ..search import profile_search_q


class MergeAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The merge log: read-only; merges are undone with the action (profiles.services.profile_unmerge)."""

    list_display = ["id", "winner_link", "loser_link", "status", "reason", "score", "actor", "created_at", "undone_at"]
    list_filter = ["status", "reason", UndoneFilter]
    list_select_related = ["winner", "loser"]
    show_full_result_count = False
    paginator = CappedCountPaginator
    search_fields = ["=winner__identifiers__value"]  # shows the search box; get_search_results does the work
    search_help_text = "An identifier or profile id of the winner or the loser."
    ordering = ["-created_at"]
    actions = ["undo_selected"]
    fields = [
        "id",
        "winner",
        "loser",
        "status",
        "reason",
        "score",
        "actor",
        "created_at",
        "undone_at",
        "undone_by",
        "evidence_pretty",
        "moved",
        "winner_before_pretty",
        "loser_before_pretty",
    ]
    readonly_fields = fields

    def get_queryset(self, request):
        heavy = ["winner_before", "loser_before", "moved_event_ids", "moved_identifier_ids"]
        match = getattr(request, "resolver_match", None)
        queryset = super().get_queryset(request)
        if match is not None and match.url_name == "profiles_merge_changelist":
            queryset = queryset.select_related("winner", "loser").defer(
                *heavy, "evidence", "winner__computed", "winner__trait_meta", "loser__computed", "loser__trait_meta"
            )
        return queryset

    def get_search_results(self, request, queryset, search_term):
        if not search_term.strip():
            return queryset, False
        return queryset.filter(profile_search_q(search_term, "winner") | profile_search_q(search_term, "loser")), False

    def has_unmerge_permission(self, request) -> bool:
        return can_unmerge(request.user)

    @admin.display(description="winner")
    def winner_link(self, obj: Merge):
        return profile_link(obj.winner)

    @admin.display(description="loser")
    def loser_link(self, obj: Merge):
        return profile_link(obj.loser)

    @admin.display(description="evidence")
    def evidence_pretty(self, obj: Merge):
        return pretty_json(obj.evidence)

    @admin.display(description="moved")
    def moved(self, obj: Merge) -> str:
        return f"{len(obj.moved_identifier_ids)} identifier(s), {len(obj.moved_event_ids)} event(s)"

    @admin.display(description="winner before")
    def winner_before_pretty(self, obj: Merge):
        return pretty_json(obj.winner_before)

    @admin.display(description="loser before")
    def loser_before_pretty(self, obj: Merge):
        return pretty_json(obj.loser_before)

    @admin.action(description="Undo selected merges", permissions=["unmerge"])
    def undo_selected(self, request, queryset):
        undone, failed = 0, []
        # newest first, so a later merge of the same profiles is undone before an earlier one
        for merge in queryset.select_related(None).order_by("-created_at", "-id").only("id"):
            try:
                services.profile_unmerge(merge=merge, actor=request.user.get_username())
            except ValueError as exc:
                failed.append(f"#{merge.pk} ({exc})")
            else:
                undone += 1
        messages.success(request, f"Undid {undone} merge(s).")
        if failed:
            messages.error(request, f"{len(failed)} merge(s) could not be undone: {'; '.join(failed)}")
