"""The review queue in admin: most uncertain first, decisions that settle similar pairs (issue 17).

Built on ``MatchCandidateAdmin`` (side-by-side comparison, approve / reject actions). Pending
candidates are listed by how uncertain the matcher is (``evidence.uncertainty``, the binary entropy
of the match probability; a pair a conflict rule refused counts as fully uncertain), then by how
many record pairs one answer settles; the message after a decision says how many similar pending
pairs it settled too (``profiles.identity.fuzzy.review.decision_propagate``).
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import F, FloatField, IntegerField
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast

from ... import services
from ...models import MatchCandidate
from .match_candidate_admin import MatchCandidateAdmin


class ReviewQueueAdmin(MatchCandidateAdmin):
    list_display = [
        "id",
        "profile_a_link",
        "profile_b_link",
        "reason",
        "score",
        "uncertainty",
        "record_pairs",
        "status",
        "created_at",
    ]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                _uncertainty=Cast(KeyTextTransform("uncertainty", "evidence"), FloatField()),
                _record_pairs=Cast(KeyTextTransform("record_pairs", "evidence"), IntegerField()),
            )
        )

    def get_ordering(self, request):
        return [
            "status",
            F("_uncertainty").desc(nulls_last=True),
            F("_record_pairs").desc(nulls_last=True),
            "-score",
        ]

    @admin.display(description="uncertainty (bits)", ordering="_uncertainty")
    def uncertainty(self, obj: MatchCandidate):
        return None if obj._uncertainty is None else round(obj._uncertainty, 3)

    @admin.display(description="record pairs", ordering="_record_pairs")
    def record_pairs(self, obj: MatchCandidate):
        return obj._record_pairs

    def _decide(self, request, queryset, service, verb: str) -> None:
        done, settled, failed = 0, 0, []
        for candidate in queryset.order_by("-score"):
            candidate.refresh_from_db(fields=["status"])
            if candidate.status != "pending" and done:
                continue  # settled by an earlier decision of this same action
            try:
                decided = service(candidate=candidate, actor=request.user.get_username())
                done += 1
                settled += getattr(decided, "propagated", 0)
            except ValueError as exc:
                failed.append(f"#{candidate.pk}: {exc}")
        self.message_user(request, f"{verb} {done} pair(s).", messages.SUCCESS if done else messages.INFO)
        if settled:
            self.message_user(request, f"{settled} similar pending pair(s) settled with them.", messages.SUCCESS)
        if failed:
            self.message_user(request, "Not decided: " + "; ".join(failed), messages.ERROR)

    @admin.action(description="Approve: same person (merge)", permissions=["review"])
    def approve_selected(self, request, queryset):
        self._decide(request, queryset, services.candidate_approve, "Approved and merged")

    @admin.action(description="Reject: different people (never merge)", permissions=["review"])
    def reject_selected(self, request, queryset):
        self._decide(request, queryset, services.candidate_reject, "Rejected")
