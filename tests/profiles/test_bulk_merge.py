"""The bulk merge path leaves what the same merges one by one leave, keeps the guards, and undoes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from profiles.identity.bulk import candidates_file_bulk, profiles_merge_bulk
from profiles.identity.merge import profile_merge, profile_unmerge
from profiles.models import CandidateStatus, Event, Identifier, MatchCandidate, Merge, MergeStatus, Profile
from profiles.services import source_create

pytestmark = pytest.mark.django_db


def _people(tag: str, n: int = 3) -> list[Profile]:
    source = source_create(name=f"bulk-{tag}")[0]
    now = timezone.now()
    out = []
    for k in range(n):
        at = now - timedelta(days=10 - k)
        stamp = at.isoformat()
        traits = {"first_name": f"Ann{k}" if k else "Ann", "city": f"city{k}", f"only{k}": k}
        p = Profile.objects.create(
            traits=traits, trait_meta={key: {"first": stamp, "at": stamp} for key in traits},
            first_seen_at=at, last_seen_at=at,
        )  # fmt: skip
        Identifier.objects.create(profile=p, kind="email", value=f"{tag}{k}@example.com", last_seen_at=at)
        Identifier.objects.create(profile=p, kind="anonymous_id", value=f"{tag}-anon-{k}", last_seen_at=at)
        Event.objects.create(
            profile=p, source=source, message_id=f"{tag}-{k}", type="track", name="Viewed", occurred_at=at,
            received_at=at, properties={}, context={},
        )  # fmt: skip
        out.append(p)
    return out


def _state(profiles: list[Profile]) -> list[tuple]:
    out = []
    for p in profiles:
        p.refresh_from_db()
        identifiers = sorted(Identifier.objects.filter(profile=p).values_list("kind", "value"))
        events = sorted(Event.objects.filter(profile=p).values_list("message_id", flat=True))
        span = (p.last_seen_at - p.first_seen_at).days
        out.append((p.merged_into_id is not None, p.traits, span, len(identifiers), len(events)))
    return out


def test_bulk_merge_equals_single_merges_and_each_merge_undoes():
    one = _people("single")
    profile_merge(winner=one[0], loser=one[1], reason="fuzzy", evidence={})
    profile_merge(winner=Profile.objects.get(pk=one[0].pk), loser=one[2], reason="fuzzy", evidence={})
    many = _people("bulk")
    outcome = profiles_merge_bulk(
        clusters=[[(0, many[0].pk), (1, many[1].pk), (2, many[2].pk)]],
        reason="fuzzy",
        evidence=lambda key, cluster: {"link": key, "cluster": cluster},
        score=lambda key: 0.995,
    )
    assert outcome.merged == 2 and outcome.ended_in == {0: many[0].pk, 1: many[0].pk, 2: many[0].pk}
    assert _state(one) == _state(many)
    merges = list(Merge.objects.filter(winner=many[0], status=MergeStatus.MERGED).order_by("pk"))
    assert [m.loser_id for m in merges] == [many[1].pk, many[2].pk]
    assert all(len(m.moved_event_ids) == 1 and len(m.moved_identifier_ids) == 2 for m in merges)
    assert merges[1].winner_before["traits"]["only1"] == 1  # the winner as it was after the first merge
    # the rows written with COPY hold what single merges hold: snapshots, who, why, when
    singles = list(Merge.objects.filter(winner=one[0], status=MergeStatus.MERGED).order_by("pk"))
    for single, bulk in zip(singles, merges, strict=True):
        for side in ("winner_before", "loser_before"):
            assert getattr(bulk, side).keys() == getattr(single, side).keys()
            assert getattr(bulk, side)["traits"] == getattr(single, side)["traits"]
        assert (bulk.reason, bulk.actor, bulk.score, bulk.undone_at) == ("fuzzy", single.actor, 0.995, None)
        assert bulk.created_at and bulk.evidence["link"] in (1, 2) and bulk.evidence["repointed_profile_ids"] == []
    for merge in reversed(merges):
        profile_unmerge(merge=merge)
    for k, p in enumerate(many):
        p.refresh_from_db()
        assert p.merged_into_id is None and p.traits["first_name"] == ("Ann" if k == 0 else f"Ann{k}")
        assert Identifier.objects.filter(profile=p).count() == 2 and Event.objects.filter(profile=p).count() == 1


def test_bulk_merge_keeps_the_guards_and_records_refusals_once(settings):
    settings.CDP_IDENTIFIER_LIMITS = {**settings.CDP_IDENTIFIER_LIMITS, "email": 2}
    many = _people("guard")
    low, high = sorted([many[0].pk, many[2].pk])
    MatchCandidate.objects.create(profile_a_id=low, profile_b_id=high, reason="fuzzy", status=CandidateStatus.REJECTED)
    clusters = [[(0, many[0].pk), (1, many[1].pk), (2, many[2].pk)]]
    for _ in range(2):
        outcome = profiles_merge_bulk(clusters=clusters, reason="fuzzy", evidence=lambda k, c: {}, score=lambda k: 1.0)
    refused = Merge.objects.filter(status=MergeStatus.REFUSED)
    assert sorted(refused.values_list("evidence__guard", flat=True)) == ["never_merge"]
    assert Merge.objects.filter(status=MergeStatus.MERGED).count() == 1  # 0 took 1 (2 emails); 2 was never
    assert outcome.merged == 0  # the second run finds them merged already


def test_bulk_merge_limit_refusal():
    many = _people("limit", n=2)
    Identifier.objects.create(profile=many[1], kind="user_id", value="u-1", last_seen_at=timezone.now())
    Identifier.objects.create(profile=many[0], kind="user_id", value="u-0", last_seen_at=timezone.now())
    outcome = profiles_merge_bulk(
        clusters=[[(0, many[0].pk), (1, many[1].pk)]], reason="fuzzy", evidence=lambda k, c: {}, score=lambda k: 1.0
    )
    assert outcome.merged == 0 and outcome.refused == {"identifier_limit": 1}
    assert Merge.objects.get(status=MergeStatus.REFUSED).evidence["kind"] == "user_id"


def test_candidates_in_bulk_leave_decided_pairs_alone():
    a, b, c = _people("cand")
    low, high = sorted([a.pk, b.pk])
    MatchCandidate.objects.create(profile_a_id=low, profile_b_id=high, reason="fuzzy", status=CandidateStatus.REJECTED)
    filed = candidates_file_bulk(pairs=[(a.pk, b.pk, 0.8, {"x": 1}), (c.pk, a.pk, 0.7, {"x": 2})], reason="fuzzy")
    assert filed == 1
    assert MatchCandidate.objects.get(profile_a_id=low, profile_b_id=high).status == CandidateStatus.REJECTED
    again = candidates_file_bulk(pairs=[(a.pk, c.pk, 0.9, {"x": 3})], reason="fuzzy")
    assert again == 1
    pending = MatchCandidate.objects.get(status=CandidateStatus.PENDING)
    assert (pending.score, pending.evidence) == (0.9, {"x": 3})


def test_bulk_merge_fires_one_batch_after_commit_batch_forms_once_others_per_merge(django_capture_on_commit_callbacks):
    from consent.models import ConsentState
    from consent.services import consent_record, purposes_ensure
    from profiles import hooks

    purposes_ensure()
    first, second = _people("hookA"), _people("hookB")
    consent_record(profile_id=first[2].pk, choices={"marketing": True}, source="api")
    per_call, batches = [], []

    def one(**kwargs):
        per_call.append(kwargs)

    def many(*, calls):
        batches.append(calls)

    hooks.on_profiles_merged.subscribe(one)
    spy = lambda **kwargs: None  # noqa: E731
    hooks.on_profiles_merged.subscribe(spy, many=many)
    try:
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            outcome = profiles_merge_bulk(
                clusters=[[(k, p.pk) for k, p in enumerate(people)] for people in (first, second)],
                reason="fuzzy",
                evidence=lambda key, cluster: {},
                score=lambda key: 0.995,
            )
    finally:
        hooks.on_profiles_merged.unsubscribe(one)
        hooks.on_profiles_merged.unsubscribe(spy)
    assert outcome.merged == 4 and len(callbacks) == 1  # one after-commit batch, not one per merge
    assert len(batches) == 1 and len(batches[0]) == 4 and len(per_call) == 4
    assert {c["loser_id"] for c in batches[0]} == {str(p.pk) for p in (*first[1:], *second[1:])}
    # the real subscribers' batch forms did their work: the loser's consent now counts for the winner
    assert ConsentState.objects.filter(profile=first[0], purpose__key="marketing", granted=True).exists()
    assert not ConsentState.objects.filter(profile=first[2]).exists()
