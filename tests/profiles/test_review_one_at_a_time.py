"""The review queue one pair at a time in admin (issue 17): next pair, answers, skips, bad input."""

from __future__ import annotations

import pytest
from django.utils import timezone

from profiles import selectors
from profiles.models import CandidateStatus, MatchCandidate, Profile

pytestmark = pytest.mark.django_db


def _profile(name: str, merged_into=None) -> Profile:
    now = timezone.now()
    return Profile.objects.create(
        traits={"first_name": name}, first_seen_at=now, last_seen_at=now, merged_into=merged_into
    )


def _candidate(name: str, uncertainty: float | None, record_pairs: int = 1, score: float = 0.7) -> MatchCandidate:
    x, y = _profile(name), _profile(name + "e")
    low, high = sorted([x.pk, y.pk])
    evidence = {"pattern": name} | ({} if uncertainty is None else {"uncertainty": uncertainty})
    return MatchCandidate.objects.create(
        profile_a_id=low,
        profile_b_id=high,
        reason="fuzzy",
        score=score,
        evidence=evidence | {"record_pairs": record_pairs},
    )


def test_next_is_the_most_uncertain_pending_pair_and_skips_are_left_out():
    plain = _candidate("nouncertainty", None, score=0.99)
    sure = _candidate("sure", 0.2)
    tie_small, tie_big = _candidate("small", 0.9, record_pairs=1), _candidate("big", 0.9, record_pairs=5)
    decided = _candidate("decided", 1.0)
    decided.status = CandidateStatus.REJECTED
    decided.save()
    assert selectors.review_next() == (tie_big, 4)
    assert selectors.review_next(skip=[tie_big.pk]) == (tie_small, 4)
    assert selectors.review_next(skip=[tie_big.pk, tie_small.pk, sure.pk]) == (plain, 4)
    assert selectors.review_next(skip=[tie_big.pk, tie_small.pk, sure.pk, plain.pk]) == (None, 4)


def test_answers_go_to_the_next_pair_and_the_queue_ends_with_a_message(admin_client):
    first, second = _candidate("ann", 0.9), _candidate("bob", 0.5)
    response = admin_client.get("/admin/profiles/matchcandidate/review/next/")
    assert response.status_code == 302 and response.url == f"/admin/profiles/matchcandidate/{first.pk}/change/"
    page = admin_client.get(response.url)
    assert page.status_code == 200
    assert 'id="review-decision"' in page.content.decode() and "2 pair(s) pending" in page.content.decode()

    response = admin_client.post(f"/admin/profiles/matchcandidate/{first.pk}/decide/", {"decision": "reject"})
    assert response.url == "/admin/profiles/matchcandidate/review/next/"
    response = admin_client.get(response.url, follow=True)
    assert response.redirect_chain[-1][0] == f"/admin/profiles/matchcandidate/{second.pk}/change/"
    assert [str(m) for m in response.context["messages"]] == [f"Rejected pair #{first.pk}."]
    first.refresh_from_db()
    assert first.status == CandidateStatus.REJECTED
    response = admin_client.post(
        f"/admin/profiles/matchcandidate/{second.pk}/decide/", {"decision": "skip"}, follow=True
    )
    assert [str(m) for m in response.context["messages"]] == ["You skipped the 1 pending pair(s) left."]
    response = admin_client.post(
        f"/admin/profiles/matchcandidate/{second.pk}/decide/", {"decision": "approve"}, follow=True
    )
    shown = [str(m) for m in response.context["messages"]]
    assert shown == [f"Approved and merged pair #{second.pk}.", "The review queue is empty: every pair is answered."]
    second.refresh_from_db()
    assert second.status == CandidateStatus.APPROVED
    # a decided pair's page has no answer buttons, and answering it again is refused in words
    assert (
        'id="review-decision"'
        not in admin_client.get(f"/admin/profiles/matchcandidate/{second.pk}/change/").content.decode()
    )
    response = admin_client.post(
        f"/admin/profiles/matchcandidate/{second.pk}/decide/", {"decision": "reject"}, follow=True
    )
    assert any(f"Pair #{second.pk} not decided" in str(m) for m in response.context["messages"])
    second.refresh_from_db()
    assert second.status == CandidateStatus.APPROVED


def test_bad_requests_are_clear_errors(admin_client, django_user_model, client):
    pair = _candidate("cy", 0.9)
    assert admin_client.get(f"/admin/profiles/matchcandidate/{pair.pk}/decide/").status_code == 405
    assert (
        admin_client.post("/admin/profiles/matchcandidate/999999/decide/", {"decision": "approve"}).status_code == 404
    )
    response = admin_client.post(
        f"/admin/profiles/matchcandidate/{pair.pk}/decide/", {"decision": "maybe"}, follow=True
    )
    assert [str(m) for m in response.context["messages"]] == ["Choose approve, reject or skip."]
    pair.refresh_from_db()
    assert pair.status == CandidateStatus.PENDING
    # staff who may only look at the queue cannot answer it
    viewer = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    from django.contrib.auth.models import Permission

    viewer.user_permissions.add(Permission.objects.get(codename="view_matchcandidate"))
    client.force_login(viewer)
    assert (
        'id="review-decision"' not in client.get(f"/admin/profiles/matchcandidate/{pair.pk}/change/").content.decode()
    )
    assert client.post(f"/admin/profiles/matchcandidate/{pair.pk}/decide/", {"decision": "approve"}).status_code == 403
    pair.refresh_from_db()
    assert pair.status == CandidateStatus.PENDING
