"""Deterministic identity resolution through the real tracking API, merge guards, exact unmerge."""

from datetime import UTC, datetime, timedelta

import pytest

from profiles import services
from profiles.models import CandidateStatus, Event, Identifier, MatchCandidate, Merge, MergeStatus, Profile
from tests.profiles.helpers import batch, call, writer

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def at(minutes: int) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


@pytest.fixture
def client(write_key):
    return writer(write_key)


def live() -> list[Profile]:
    return list(Profile.objects.filter(merged_into__isnull=True))


def owner(kind: str, value: str) -> Profile:
    return Identifier.objects.get(kind=kind, value=value).profile


def test_anonymous_history_joins_the_known_profile_on_identify(client):
    # given an anonymous visitor who browsed, and a known customer seen earlier on another device
    call(client, "identify", userId="u1", traits={"email": "ann@example.com"}, timestamp=at(0))
    call(client, "track", anonymousId="anon-1", event="Product Viewed", timestamp=at(10))
    call(client, "page", anonymousId="anon-1", name="Home", timestamp=at(11))
    # when the visitor logs in
    call(client, "identify", userId="u1", anonymousId="anon-1", timestamp=at(12))
    # then there is one live profile with all events; the older profile survived
    (profile,) = live()
    assert profile == owner("user_id", "u1") == owner("anonymous_id", "anon-1")
    assert profile.events.count() == 4
    assert profile.first_seen_at == T0
    merge = Merge.objects.get()
    assert (merge.status, merge.reason, merge.winner, len(merge.moved_event_ids)) == (
        "merged",
        "identifier:anonymous_id",
        profile,
        2,
    )
    assert Profile.objects.get(pk=merge.loser_id).merged_into == profile


def test_alias_links_previous_id_to_user_id(client):
    call(client, "track", anonymousId="anon-7", event="Product Added", timestamp=at(0))
    call(client, "identify", userId="u7", traits={"first_name": "Bo"}, timestamp=at(5))
    call(client, "alias", previousId="anon-7", userId="u7", timestamp=at(6))
    (profile,) = live()
    assert {i.kind for i in profile.identifiers.all()} == {"anonymous_id", "user_id"}
    assert Merge.objects.get().reason == "alias"


def test_shared_email_without_contradiction_merges(client):
    call(client, "identify", userId="u1", traits={"email": "ann@example.com", "first_name": "Ann"}, timestamp=at(0))
    call(
        client,
        "identify",
        anonymousId="a2",
        traits={"email": "ANN@example.com", "phone": "+44 7911 123456"},
        timestamp=at(5),
    )
    (profile,) = live()
    assert set(profile.identifiers.values_list("kind", flat=True)) == {"user_id", "email", "anonymous_id", "phone"}


def test_family_mailbox_with_different_first_names_becomes_a_candidate_not_a_merge(client):
    # given Ann's profile with the family mailbox
    call(client, "identify", userId="ann", traits={"email": "family@example.com", "first_name": "Ann"}, timestamp=at(0))
    # when Tom (another account) states the same mailbox
    call(client, "identify", userId="tom", traits={"email": "family@example.com", "first_name": "Tom"}, timestamp=at(5))
    # then both stay apart, the mailbox stays with Ann, and a review candidate is filed
    assert len(live()) == 2
    assert owner("email", "family@example.com") == owner("user_id", "ann")
    candidate = MatchCandidate.objects.get()
    assert candidate.reason == "shared_email_contradicted"
    assert candidate.evidence["contradicts"] == ["first_name"]
    assert {candidate.profile_a, candidate.profile_b} == {owner("user_id", "ann"), owner("user_id", "tom")}


def test_anonymous_device_stating_a_contradicting_name_is_not_joined_through_email(client):
    call(client, "identify", userId="ann", traits={"email": "family@example.com", "firstName": "Ann"}, timestamp=at(0))
    call(
        client,
        "identify",
        anonymousId="dev-9",
        traits={"email": "family@example.com", "firstName": "Tom"},
        timestamp=at(5),
    )
    assert len(live()) == 2
    assert owner("anonymous_id", "dev-9") != owner("user_id", "ann")
    assert MatchCandidate.objects.count() == 1


def test_different_birthdays_contradict_a_shared_landline(client):
    call(client, "identify", userId="p1", traits={"phone": "020 7946 0958", "birthday": "1970-01-02"}, timestamp=at(0))
    call(client, "identify", userId="p2", traits={"phone": "+442079460958", "birthday": "2004-05-06"}, timestamp=at(1))
    assert len(live()) == 2


def test_shared_device_of_two_users_is_refused_by_the_user_id_limit_and_recorded(client):
    # given a tablet used by Ann (logged in) and later by Tom
    call(client, "identify", userId="ann", anonymousId="tablet", timestamp=at(0))
    call(client, "identify", userId="tom", anonymousId="tablet", timestamp=at(5))
    # then two live profiles; the tablet stays with Ann; Tom's event is on Tom's profile
    assert len(live()) == 2
    assert owner("anonymous_id", "tablet") == owner("user_id", "ann")
    tom = owner("user_id", "tom")
    assert tom.events.count() == 1
    refused = Merge.objects.get(status=MergeStatus.REFUSED)
    assert refused.evidence["guard"] == "identifier_limit"
    assert refused.evidence["kind"] == "user_id"
    # and repeating the event does not flood the log
    call(client, "identify", userId="tom", anonymousId="tablet", timestamp=at(6))
    assert Merge.objects.filter(status=MergeStatus.REFUSED).count() == 1


@pytest.mark.parametrize("junk", ["null", "undefined", "0", "test@test.com", "0000000000"])
def test_blocklisted_values_never_link_profiles(client, junk):
    call(client, "identify", userId="u1", traits={"email": junk, "phone": junk}, timestamp=at(0))
    call(client, "identify", userId="u2", traits={"email": junk, "phone": junk}, timestamp=at(1))
    assert len(live()) == 2
    assert not Identifier.objects.filter(kind__in=["email", "phone"]).exists()


def test_junk_user_id_does_not_link_and_event_is_still_stored(client):
    call(client, "track", userId="undefined", event="E", timestamp=at(0))
    call(client, "track", userId="undefined", event="E", timestamp=at(1))
    assert Event.objects.count() == 2
    assert not Identifier.objects.filter(kind="user_id").exists()


def test_email_limit_guard_keeps_the_sixth_email_off_the_profile(client, settings):
    for i in range(6):
        call(client, "identify", userId="u1", traits={"email": f"e{i}@example.com"}, timestamp=at(i))
    assert owner("user_id", "u1").identifiers.filter(kind="email").count() == 5


def test_never_merge_pair_is_respected(client):
    call(client, "identify", userId="a", anonymousId="x1", timestamp=at(0))
    call(client, "identify", anonymousId="x2", traits={"first_name": "Z"}, timestamp=at(1))
    a, b = owner("user_id", "a"), owner("anonymous_id", "x2")
    low, high = sorted([a.pk, b.pk])
    MatchCandidate.objects.create(profile_a_id=low, profile_b_id=high, reason="manual", status=CandidateStatus.REJECTED)
    call(client, "identify", userId="a", anonymousId="x2", timestamp=at(2))
    assert len(live()) == 2
    assert Merge.objects.get(status=MergeStatus.REFUSED).evidence["guard"] == "never_merge"


def test_trait_merge_policy_newest_value_wins_first_seen_kept(client):
    call(client, "identify", anonymousId="a1", traits={"city": "Leeds", "plan": "free"}, timestamp=at(0))
    call(client, "identify", userId="u1", traits={"city": "York"}, timestamp=at(30))
    call(client, "identify", anonymousId="a1", traits={"plan": "pro"}, timestamp=at(60))
    call(client, "identify", userId="u1", anonymousId="a1", timestamp=at(90))
    (profile,) = live()
    assert profile.traits == {"city": "York", "plan": "pro"}
    assert profile.trait_meta["city"] == {"first": at(0), "at": at(30)}
    assert profile.trait_meta["plan"] == {"first": at(0), "at": at(60)}


def test_out_of_order_events_do_not_overwrite_newer_traits(client):
    call(client, "identify", userId="u1", traits={"city": "York"}, timestamp=at(60))
    call(client, "identify", userId="u1", traits={"city": "Leeds"}, timestamp=at(0))
    profile = owner("user_id", "u1")
    assert profile.traits["city"] == "York"
    assert profile.trait_meta["city"] == {"first": at(0), "at": at(60)}


def snapshot(profile_id) -> dict:
    profile = Profile.objects.get(pk=profile_id)
    return {
        "traits": profile.traits,
        "trait_meta": profile.trait_meta,
        "merged_into": profile.merged_into_id,
        "first_seen_at": profile.first_seen_at,
        "identifiers": sorted(profile.identifiers.values_list("kind", "value")),
        "events": sorted(profile.events.values_list("message_id", flat=True)),
    }


def test_unmerge_restores_both_profiles_exactly(client):
    # given two profiles with their own events and traits
    call(client, "identify", userId="u1", traits={"city": "York", "first_name": "Ann"}, timestamp=at(0))
    call(client, "track", userId="u1", event="Order Completed", properties={"revenue": 10}, timestamp=at(1))
    call(client, "identify", anonymousId="a1", traits={"city": "Leeds", "plan": "pro"}, timestamp=at(5))
    call(client, "track", anonymousId="a1", event="Product Viewed", timestamp=at(6))
    winner, loser = owner("user_id", "u1").pk, owner("anonymous_id", "a1").pk
    before = {winner: snapshot(winner), loser: snapshot(loser)}
    # when they merge and the merge is undone
    call(client, "identify", userId="u1", anonymousId="a1", timestamp=at(7))
    merged = snapshot(winner)
    assert merged["traits"] == {"city": "Leeds", "first_name": "Ann", "plan": "pro"}
    merge = Merge.objects.get(status=MergeStatus.MERGED)
    services.profile_unmerge(merge=merge, actor="reviewer")
    # then both are back as they were (the linking event itself stays with the winner)
    after_w, after_l = snapshot(winner), snapshot(loser)
    linking = Event.objects.get(type="identify", anonymous_id="a1", user_id="u1").message_id
    assert after_l == before[loser]
    assert {**after_w, "events": [e for e in after_w["events"] if e != linking]} == before[winner]
    merge.refresh_from_db()
    assert merge.undone_by == "reviewer" and merge.undone_at is not None
    with pytest.raises(ValueError, match="already undone"):
        services.profile_unmerge(merge=merge)


def test_unmerge_of_a_chain_restores_the_middle_profile_with_what_it_had_absorbed(client):
    call(client, "identify", userId="u1", timestamp=at(0))
    call(client, "track", anonymousId="a1", event="E1", timestamp=at(1))
    call(client, "track", anonymousId="a2", event="E2", timestamp=at(2))
    call(client, "identify", anonymousId="a1", traits={"email": "m@example.com"}, timestamp=at(3))
    call(client, "identify", anonymousId="a2", traits={"email": "m@example.com"}, timestamp=at(3))  # a1 absorbs a2
    call(client, "identify", userId="u1", anonymousId="a1", timestamp=at(4))  # u1 absorbs a1(+a2)
    assert len(live()) == 1
    last = Merge.objects.filter(status=MergeStatus.MERGED).order_by("-created_at").first()
    services.profile_unmerge(merge=last)
    assert len(live()) == 2
    restored = Profile.objects.get(pk=last.loser_id)
    assert {"E1", "E2"} <= set(restored.events.values_list("name", flat=True))


def test_merge_and_unmerge_fire_hooks_after_commit(client, django_capture_on_commit_callbacks):
    from profiles import hooks

    seen = []
    merged = hooks.on_profiles_merged.subscribe(lambda **kw: seen.append(("merged", kw["merge_id"])))
    unmerged = hooks.on_profiles_unmerged.subscribe(lambda **kw: seen.append(("unmerged", kw["merge_id"])))
    try:
        call(client, "identify", userId="u1", timestamp=at(0))
        call(client, "track", anonymousId="a8", event="x", timestamp=at(2))
        with django_capture_on_commit_callbacks(execute=True):
            call(client, "identify", userId="u1", anonymousId="a8", timestamp=at(3))
        assert seen == [("merged", Merge.objects.get().pk)]  # fired once the merge committed
        with django_capture_on_commit_callbacks(execute=True):
            merge = Merge.objects.get()
            services.profile_unmerge(merge=merge)
    finally:
        hooks.on_profiles_merged.unsubscribe(merged)
        hooks.on_profiles_unmerged.unsubscribe(unmerged)
    assert seen == [("merged", merge.pk), ("unmerged", merge.pk)]


def test_events_in_one_batch_see_identity_changes_of_earlier_events(client):
    response = batch(
        client,
        {"type": "track", "anonymousId": "a1", "event": "Product Viewed", "timestamp": at(0)},
        {
            "type": "identify",
            "userId": "u1",
            "anonymousId": "a1",
            "traits": {"email": "x@example.com"},
            "timestamp": at(1),
        },
        {"type": "track", "userId": "u1", "event": "Order Completed", "timestamp": at(2)},
    )
    assert response.json()["accepted"] == 3
    (profile,) = live()
    assert profile.events.count() == 3


def test_contradiction_is_seen_between_calls_of_one_batch(client):
    # given two people stating the family mailbox in the same batch (server-side libraries batch users)
    response = batch(
        client,
        {
            "type": "identify",
            "userId": "u-sarah",
            "timestamp": at(0),
            "traits": {"email": "the.millers@gmail.com", "firstName": "Sarah"},
        },
        {
            "type": "identify",
            "anonymousId": "anon-david",
            "timestamp": at(5),
            "traits": {"email": "the.millers@gmail.com", "firstName": "David"},
        },
    )
    assert response.json()["accepted"] == 2
    # then they stay apart, Sarah keeps her name and mailbox, and a candidate is filed for review
    sarah, david = owner("user_id", "u-sarah"), owner("anonymous_id", "anon-david")
    assert sarah != david
    assert sarah.traits["firstName"] == "Sarah" and david.traits["firstName"] == "David"
    assert owner("email", "themillers@gmail.com") == sarah
    assert MatchCandidate.objects.get().reason == "shared_email_contradicted"


def test_identifier_left_with_a_contradicted_profile_is_not_taken_by_later_calls_of_the_batch(client):
    batch(
        client,
        {
            "type": "identify",
            "userId": "ann",
            "timestamp": at(0),
            "traits": {"email": "fam@example.com", "first_name": "Ann"},
        },
        {
            "type": "identify",
            "userId": "tom",
            "timestamp": at(1),
            "traits": {"email": "fam@example.com", "first_name": "Tom"},
        },
        {
            "type": "track",
            "anonymousId": "x",
            "event": "E",
            "context": {"traits": {"email": "fam@example.com"}},
            "timestamp": at(2),
        },
    )
    assert owner("email", "fam@example.com") == owner("user_id", "ann")
    assert Event.objects.get(name="E").profile == owner("user_id", "ann")


def _advisory_locks_held() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()")
        return cursor.fetchone()[0]


@pytest.mark.parametrize(("lock_identifiers", "expect_locks"), [(True, True), (False, False)])
def test_identifier_locks_can_be_left_out_only_on_request(write_key, lock_identifiers, expect_locks):
    from django.utils import timezone

    from profiles.models import Source
    from profiles.tracking.validate import clean_event

    source = Source.objects.get()
    events = [
        clean_event(
            {"type": "identify", "anonymousId": f"r{i}", "traits": {"email": f"p{i}@example.com"}},
            received_at=timezone.now(),
        )
        for i in range(5)
    ]
    # inside the test's transaction the advisory locks of ingestion stay held until rollback
    services.events_ingest(source=source, events=events, lock_identifiers=lock_identifiers)
    assert (_advisory_locks_held() > 0) is expect_locks
    assert Identifier.objects.filter(kind="email").count() == 5
