"""A reviewer's decision settles similar pending pairs (active learning in the review queue)."""

from __future__ import annotations

import pytest
from django.utils import timezone

from profiles import services
from profiles.models import CandidateStatus, MatchCandidate, Profile

pytestmark = pytest.mark.django_db


def _profile(name: str, merged_into=None) -> Profile:
    now = timezone.now()
    return Profile.objects.create(
        traits={"first_name": name}, first_seen_at=now, last_seen_at=now, merged_into=merged_into
    )


def _candidate(x: Profile, y: Profile, pattern: str = "4.3.-.0.-.-") -> MatchCandidate:
    low, high = sorted([x.pk, y.pk])
    return MatchCandidate.objects.create(
        profile_a_id=low, profile_b_id=high, reason="fuzzy", score=0.7, evidence={"pattern": pattern}
    )


def test_an_approval_settles_the_pairs_it_made_one_profile():
    a, b = _profile("ann"), _profile("anne")
    b_old = _profile("an", merged_into=b)
    first, other = _candidate(a, b), _candidate(a, b_old, pattern="1.1.1.1.1.1")
    unrelated = _candidate(a, _profile("bob"))
    decided = services.candidate_approve(candidate=first, actor="rev")
    assert decided.propagated == 1
    other.refresh_from_db()
    assert (other.status, other.decided_by) == (CandidateStatus.APPROVED, f"rev (propagated from #{first.pk})")
    unrelated.refresh_from_db()
    assert unrelated.status == CandidateStatus.PENDING


def test_rejections_of_one_pattern_propagate_to_its_pending_pairs_and_approvals_do_not():
    pairs = [_candidate(_profile(f"x{k}"), _profile(f"y{k}")) for k in range(5)]
    kept = _candidate(_profile("p"), _profile("q"), pattern="4.3.3.5.-.-")
    assert services.candidate_reject(candidate=pairs[0], actor="rev").propagated == 0  # once is not a rule
    assert services.candidate_reject(candidate=pairs[1], actor="rev").propagated == 3
    assert set(MatchCandidate.objects.filter(status=CandidateStatus.REJECTED).values_list("pk", flat=True)) == {
        p.pk for p in pairs
    }
    kept.refresh_from_db()
    assert kept.status == CandidateStatus.PENDING
    more = [_candidate(_profile(f"m{k}"), _profile(f"n{k}"), pattern="4.3.3.5.-.-") for k in range(3)]
    assert services.candidate_approve(candidate=more[0], actor="rev").propagated == 0
    assert MatchCandidate.objects.filter(status=CandidateStatus.PENDING).count() == 3


def test_admin_lists_the_most_uncertain_first_and_reports_what_a_decision_settled(admin_client):
    sure = _candidate(_profile("s1"), _profile("s2"))
    sure.evidence = {"pattern": "x", "uncertainty": 0.2, "record_pairs": 1}
    sure.save()
    doubtful = _candidate(_profile("d1"), _profile("d2"))
    doubtful.evidence = {"pattern": "y", "uncertainty": 0.99, "record_pairs": 4}
    doubtful.save()
    page = admin_client.get("/admin/profiles/matchcandidate/")
    assert page.status_code == 200
    ids = [c.pk for c in page.context["cl"].result_list]
    assert ids.index(doubtful.pk) < ids.index(sure.pk)
    assert "uncertainty (bits)" in page.content.decode().lower()
    a, b = _profile("ann"), _profile("anne")
    first, _ = _candidate(a, b), _candidate(a, _profile("an", merged_into=b))
    response = admin_client.post(
        "/admin/profiles/matchcandidate/",
        {"action": "approve_selected", "_selected_action": [first.pk]},
        follow=True,
    )
    shown = [str(m) for m in response.context["messages"]]
    assert "Approved and merged 1 pair(s)." in shown
    assert "1 similar pending pair(s) settled with them." in shown


def test_the_queue_line_defers_what_is_beyond_the_share_and_brings_it_back_later():
    from profiles.identity.fuzzy.review import queue_line

    sure = _candidate(_profile("s1"), _profile("s2"))
    sure.evidence = {"pattern": "x", "uncertainty": 0.1, "record_pairs": 1}
    sure.save()
    doubtful = _candidate(_profile("d1"), _profile("d2"))
    doubtful.evidence = {"pattern": "y", "uncertainty": 0.9, "record_pairs": 1}
    doubtful.save()
    assert queue_line(records=100, share=0.02) == {"pending": 1, "deferred": 1}  # 2 profiles of 100
    doubtful.refresh_from_db()
    sure.refresh_from_db()
    assert (doubtful.status, sure.status) == (CandidateStatus.PENDING, CandidateStatus.DEFERRED)
    services.candidate_reject(candidate=doubtful, actor="rev")
    assert queue_line(records=100, share=0.02) == {"pending": 1, "deferred": 0}
    sure.refresh_from_db()
    assert sure.status == CandidateStatus.PENDING


def test_a_profile_counts_as_every_record_behind_it_also_those_ingestion_joined():
    from profiles.identity.fuzzy.review import queue_line, records_behind
    from profiles.models import Identifier

    joined = _profile("j1")  # two identify calls with one email: two records, one profile, no merge
    now = timezone.now()
    for n in range(3):
        Identifier.objects.create(profile=joined, kind="anonymous_id", value=f"visitor-{n}", last_seen_at=now)
    merged = _profile("m1")
    _profile("m0", merged_into=merged)
    alone = _profile("a1")
    assert records_behind([joined.pk, merged.pk, alone.pk]) == {joined.pk: 3, merged.pk: 2}
    candidate = _candidate(joined, alone)
    candidate.evidence = {"pattern": "x", "uncertainty": 0.9, "record_pairs": 1}
    candidate.save()
    # 4 records in review would be more than 2 % of 150: deferred; of 200 it fits
    assert queue_line(records=150, share=0.02) == {"pending": 0, "deferred": 1}
    assert queue_line(records=200, share=0.02) == {"pending": 1, "deferred": 0}


def test_the_matching_job_puts_at_most_the_share_of_its_records_in_review(settings):
    from profiles.identity.fuzzy import service
    from profiles.identity.fuzzy.synthetic import many_records
    from profiles.services import source_create
    from tests.profiles.test_fuzzy import ingest

    settings.CDP_REVIEW_QUEUE_MAX_SHARE = 0.02
    rows = many_records(600, seed=9)
    ingest(source_create(name="shop")[0], rows)
    report = service.identity_match()
    assert report.deferred > 0  # the matcher had more to ask than a person should see
    pending = MatchCandidate.objects.filter(status=CandidateStatus.PENDING).values_list("profile_a", "profile_b")
    ids = {p for pair in pending for p in pair}
    survivor = dict(Profile.objects.filter(pk__in=ids, merged_into__isnull=False).values_list("pk", "merged_into_id"))
    assert len({survivor.get(p, p) for p in ids}) <= 0.02 * report.profiles  # live profiles, as people see them
    assert report.queued == len(pending) > 0
