"""The review queue of possible duplicates, with a side-by-side comparison of both profiles."""

from __future__ import annotations

from django.contrib import admin, messages
from django.template.loader import render_to_string

from ... import services
from ...models import MatchCandidate, Profile
from ..display import TRAITS_FIRST, display_value, ordered_keys, pretty_json, profile_link
from ..filters import CandidateStatusFilter
from ..search import search_kinds


class MatchCandidateAdmin(admin.ModelAdmin):
    """The review queue of possible duplicates, with a side-by-side comparison of both profiles.

    Fields are read-only; decisions are the actions "approve" (merge through the usual guards and
    Merge record) and "reject" (a never-merge pair), which call the identity services.
    """

    actions = ["approve_selected", "reject_selected"]

    def has_review_permission(self, request) -> bool:
        return request.user.has_perm("profiles.change_matchcandidate")

    def _decide(self, request, queryset, service, verb: str) -> None:
        done, failed = 0, []
        for candidate in queryset.order_by("-score"):
            try:
                service(candidate=candidate, actor=request.user.get_username())
                done += 1
            except ValueError as exc:
                failed.append(f"#{candidate.pk}: {exc}")
        self.message_user(request, f"{verb} {done} pair(s).", messages.SUCCESS if done else messages.INFO)
        if failed:
            self.message_user(request, "Not decided: " + "; ".join(failed), messages.ERROR)

    @admin.action(description="Approve: same person (merge)", permissions=["review"])
    def approve_selected(self, request, queryset):
        self._decide(request, queryset, services.candidate_approve, "Approved and merged")

    @admin.action(description="Reject: different people (never merge)", permissions=["review"])
    def reject_selected(self, request, queryset):
        self._decide(request, queryset, services.candidate_reject, "Rejected")

    list_display = ["id", "profile_a_link", "profile_b_link", "reason", "score", "status", "created_at"]
    list_filter = [CandidateStatusFilter, "reason"]
    list_select_related = ["profile_a", "profile_b"]
    ordering = ["status", "-score"]  # the (status, -score) index
    show_full_result_count = False
    fields = [
        "profile_a",
        "profile_b",
        "reason",
        "score",
        "status",
        "created_at",
        "decided_at",
        "decided_by",
        "evidence_pretty",
        "comparison",
    ]
    readonly_fields = fields

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        match = getattr(request, "resolver_match", None)
        if match is not None and match.url_name == "profiles_matchcandidate_changelist":
            heavy = ["computed", "trait_meta"]
            queryset = queryset.select_related("profile_a", "profile_b").defer(
                "evidence", *(f"{side}__{name}" for side in ("profile_a", "profile_b") for name in heavy)
            )
        return queryset

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # a rejection is a never-merge record; it must not vanish by hand

    @admin.display(description="profile A")
    def profile_a_link(self, obj: MatchCandidate):
        return profile_link(obj.profile_a)

    @admin.display(description="profile B")
    def profile_b_link(self, obj: MatchCandidate):
        return profile_link(obj.profile_b)

    @admin.display(description="evidence")
    def evidence_pretty(self, obj: MatchCandidate):
        return pretty_json(obj.evidence)

    @admin.display(description="comparison")
    def comparison(self, obj: MatchCandidate):
        a, b = obj.profile_a, obj.profile_b
        traits = [
            comparison_row(key, a.traits.get(key), b.traits.get(key))
            for key in ordered_keys(set(a.traits) | set(b.traits), TRAITS_FIRST)
        ]
        ids_a, ids_b = identifiers_by_kind(a), identifiers_by_kind(b)
        identifiers = [
            comparison_row(kind, ids_a.get(kind), ids_b.get(kind))
            for kind in ordered_keys(set(ids_a) | set(ids_b), search_kinds())
        ]
        return render_to_string(
            "admin/profiles/matchcandidate/comparison.html",
            {"a": a, "b": b, "traits": traits, "identifiers": identifiers},
        )


def _comparable(value) -> str:
    if isinstance(value, list):
        return "|".join(sorted(_comparable(v) for v in value))
    return "" if value in (None, "") else str(value).strip().casefold()


def comparison_row(key: str, a, b) -> dict:
    va, vb = _comparable(a), _comparable(b)
    if not va and not vb:
        verdict = "same"
    elif not va:
        verdict = "only B"
    elif not vb:
        verdict = "only A"
    else:
        verdict = "same" if va == vb else "different"
    return {"key": key, "a": display_value(a), "b": display_value(b), "verdict": verdict}


def identifiers_by_kind(profile: Profile) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for kind, value in profile.identifiers.order_by("kind", "value").values_list("kind", "value"):
        found.setdefault(kind, []).append(value)
    return found
