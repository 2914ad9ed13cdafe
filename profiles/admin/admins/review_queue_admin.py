"""The review queue in admin: most uncertain first, decisions that settle similar pairs (issue 17).

Built on ``MatchCandidateAdmin`` (side-by-side comparison, approve / reject actions). Pending
candidates are listed by how uncertain the matcher is (``evidence.uncertainty``, the binary entropy
of the match probability; a pair a conflict rule refused counts as fully uncertain), then by how
many record pairs one answer settles; the message after a decision says how many similar pending
pairs it settled too (``profiles.identity.fuzzy.review.decision_propagate``).

A reviewer can also go through the queue one pair at a time: "Review the queue" opens the most
uncertain pending pair's comparison with three buttons (same person, different people, skip for
now); each answer goes to the next pair, until the queue is empty.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.http import urlencode

from ... import selectors, services
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
        return selectors.review_queue(super().get_queryset(request))

    def get_ordering(self, request):
        return list(selectors.review_queue().query.order_by)  # the queue's order; a column header still sorts

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

    # one pair at a time ------------------------------------------------------------------------

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("review/next/", view(self.review_next_view), name="profiles_matchcandidate_review_next"),
            path("<int:pk>/decide/", view(self.decide_view), name="profiles_matchcandidate_decide"),
            *super().get_urls(),
        ]

    @staticmethod
    def _skipped(request) -> list[int]:
        return [int(v) for v in request.GET.get("skip", "").split(",") if v.isdigit()]

    def review_next_view(self, request):
        """The pending pair to answer next (the skipped ones of this sitting left out), or the list
        with a message when none is left."""
        skip = self._skipped(request)
        candidate, pending = selectors.review_next(skip=skip)
        if candidate is None:
            if pending:
                self.message_user(request, f"You skipped the {pending} pending pair(s) left.", messages.INFO)
            else:
                self.message_user(request, "The review queue is empty: every pair is answered.", messages.SUCCESS)
            return HttpResponseRedirect(reverse("admin:profiles_matchcandidate_changelist"))
        url = reverse("admin:profiles_matchcandidate_change", args=[candidate.pk])
        return HttpResponseRedirect(url + (f"?{urlencode({'skip': ','.join(map(str, skip))})}" if skip else ""))

    def decide_view(self, request, pk: int):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_review_permission(request):
            raise PermissionDenied
        candidate = get_object_or_404(MatchCandidate, pk=pk)
        skip = self._skipped(request)
        decision = request.POST.get("decision", "")
        services_by_decision = {
            "approve": (services.candidate_approve, "Approved and merged"),
            "reject": (services.candidate_reject, "Rejected"),
        }
        if decision == "skip":
            skip.append(candidate.pk)
        elif decision in services_by_decision:
            service, verb = services_by_decision[decision]
            try:
                decided = service(candidate=candidate, actor=request.user.get_username())
            except ValueError as exc:
                self.message_user(request, f"Pair #{candidate.pk} not decided: {exc}", messages.ERROR)
                skip.append(candidate.pk)
            else:
                settled = getattr(decided, "propagated", 0)
                more = f"; {settled} similar pending pair(s) settled with it" if settled else ""
                self.message_user(request, f"{verb} pair #{candidate.pk}{more}.", messages.SUCCESS)
        else:
            self.message_user(request, "Choose approve, reject or skip.", messages.ERROR)
            return HttpResponseRedirect(reverse("admin:profiles_matchcandidate_change", args=[candidate.pk]))
        url = reverse("admin:profiles_matchcandidate_review_next")
        return HttpResponseRedirect(url + (f"?{urlencode({'skip': ','.join(map(str, skip))})}" if skip else ""))

    def change_view(self, request, object_id, form_url="", extra_context=None):
        candidate = MatchCandidate.objects.filter(pk=object_id).only("status").first()
        _, pending = selectors.review_next()
        extra = {
            "review": {
                "can_decide": candidate is not None
                and candidate.status == "pending"
                and self.has_review_permission(request),
                "pending": pending,
                "skip": request.GET.get("skip", ""),
            }
        }
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), **extra})
