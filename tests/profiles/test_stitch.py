"""The stitch workers' batches: several partitions per transaction, lingering drains, merges of a
batch told to the hook once, known people given new identifiers without the one-by-one path."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from profiles import hooks
from profiles.identity import resolve
from profiles.identity.merge import profile_unmerge
from profiles.models import Event, Identifier, IntakeEvent, IntakePartition, Merge, Profile
from profiles.tracking import intake, stitch, worker
from profiles.tracking.worker import intake_drain, intake_stitch_batch
from tests.profiles.helpers import batch, writer

pytestmark = pytest.mark.intake_async


def views(users: list[str]) -> list[dict]:
    return [{"type": "track", "userId": u, "anonymousId": f"dev-{u}", "event": "Product Viewed"} for u in users]


@pytest.mark.django_db
def test_one_batch_takes_the_calls_of_its_share_of_the_partitions_in_one_transaction(write_key, settings):
    # given calls spread over 4 partitions, and 2 stitch workers (a batch takes 4 / 2 partitions)
    settings.CDP_INTAKE_PARTITIONS, settings.CDP_INTAKE_WORKERS = 4, 2
    users = [f"u-{n}" for n in range(40)]
    batch(writer(write_key), *views(users))
    used = set(IntakeEvent.objects.values_list("partition", flat=True))
    assert len(used) == 4

    # when one batch is stitched, then the rest
    first = intake_stitch_batch()
    partitions_after_first = {p.number for p in IntakePartition.objects.exclude(stitched_at=None)}
    rest = intake_drain()

    # then the first batch took every call of two partitions, the drain the other two
    assert len(partitions_after_first) == 2
    assert first == sum(1 for u in users if intake.partition_of(_clean(u)) in partitions_after_first)
    assert first + rest == 40
    assert sorted(IntakePartition.objects.values_list("stitched_total", flat=True)) == sorted(
        sum(1 for u in users if intake.partition_of(_clean(u)) == n) for n in range(4)
    )
    assert (Event.objects.count(), IntakeEvent.objects.count()) == (40, 0)


def _clean(user: str):
    from django.utils import timezone

    from profiles.tracking.validate import clean_event

    return clean_event(
        {"type": "track", "userId": user, "anonymousId": f"dev-{user}", "event": "X", "messageId": "m"},
        received_at=timezone.now(),
    )


@pytest.mark.django_db(transaction=True)
def test_a_lingering_drain_takes_calls_that_arrive_while_it_watches(write_key, settings, monkeypatch):
    settings.CDP_INTAKE_PAUSE_SECONDS = 0.02
    monkeypatch.setattr(intake, "intake_wake", lambda: None)  # no Celery worker takes part here
    client = writer(write_key)

    # a drain that finds nothing at its start ends at once, lingering or not
    assert intake_drain(linger=30) == 0

    # given calls accepted, and a drain (as the Celery task runs it) that stitched them
    batch(client, *views(["early-1", "early-2"]))
    result: list[int] = []
    stitched_first = threading.Event()
    real = worker._stitch_partitions

    def noting(partitions, **options):
        done = real(partitions, **options)
        stitched_first.set()
        return done

    monkeypatch.setattr(worker, "_stitch_partitions", noting)

    def run():
        try:
            result.append(intake_drain(linger=3))
        finally:
            connection.close()

    drain = threading.Thread(target=run)
    drain.start()
    assert stitched_first.wait(30)

    # when more calls arrive while it watches the log
    batch(client, *views(["late-1", "late-2", "late-3"]))
    drain.join(60)

    # then the same drain took them too, and then ended
    assert not drain.is_alive()
    assert result == [5]
    assert (Event.objects.count(), IntakeEvent.objects.count()) == (5, 0)


@pytest.mark.django_db
def test_a_drain_past_its_time_stops_lingering(write_key, settings):
    # given calls waiting, and a drain whose time is up as soon as it starts
    batch(writer(write_key), *views(["a", "b"]))

    # when it drains with a long linger
    done = intake_drain(linger=3600, max_seconds=0)

    # then it stitched what was there and ended instead of watching the log
    assert done == 2
    assert IntakeEvent.objects.count() == 0


@pytest.mark.django_db
def test_merges_made_by_one_batch_reach_the_merge_hook_once_together(
    write_key, settings, django_capture_on_commit_callbacks
):
    settings.CDP_INTAKE_PARTITIONS = 1
    client = writer(write_key)
    # given two people each seen as a visitor and, separately, as a logged-in user
    batch(client, *[{"type": "track", "anonymousId": f"anon-{p}", "event": "Product Viewed"} for p in "ab"])
    batch(client, *[{"type": "track", "userId": f"user-{p}", "event": "Product Viewed"} for p in "ab"])
    intake_drain()
    single: list[dict] = []
    together: list[list[dict]] = []

    def one(**kwargs):
        single.append(kwargs)

    def many(*, calls):
        together.append(calls)

    hooks.on_profiles_merged.subscribe(one, many=many)
    try:
        # when one batch shows both visitors are those users
        batch(client, *[{"type": "identify", "userId": f"user-{p}", "anonymousId": f"anon-{p}"} for p in "ab"])
        with django_capture_on_commit_callbacks(execute=True):
            intake_drain()
    finally:
        hooks.on_profiles_merged.unsubscribe(one)

    # then both merges happened and the hook heard of them once, as one batch
    merges = list(Merge.objects.order_by("pk").values_list("winner_id", "loser_id", "pk"))
    assert len(merges) == 2
    assert single == []
    assert together == [[{"winner_id": str(w), "loser_id": str(lo), "merge_id": pk} for w, lo, pk in merges]]


@pytest.mark.django_db
def test_a_known_person_on_a_new_device_gets_it_without_the_one_by_one_path(write_key, settings, monkeypatch):
    settings.CDP_INTAKE_PARTITIONS = 1
    client = writer(write_key)
    batch(client, {"type": "identify", "userId": "u-new-dev", "anonymousId": "phone", "traits": {"first_name": "Ana"}})
    intake_drain()
    resolved: list = []
    real = stitch.profile_resolve
    monkeypatch.setattr(stitch, "profile_resolve", lambda **kw: resolved.append(kw) or real(**kw))

    # when the same user comes back on a laptop and gives an email, in one batch
    batch(
        client,
        {"type": "track", "userId": "u-new-dev", "anonymousId": "laptop", "event": "Product Viewed"},
        {"type": "identify", "userId": "u-new-dev", "anonymousId": "laptop", "traits": {"email": "ana@example.com"}},
    )
    intake_drain()

    # then the identifiers are hers, with no per-event resolution and no new profile
    assert resolved == []
    profile = Profile.objects.get()
    assert set(Identifier.objects.filter(profile=profile).values_list("kind", "value")) == {
        ("user_id", "u-new-dev"),
        ("anonymous_id", "phone"),
        ("anonymous_id", "laptop"),
        ("email", "ana@example.com"),
    }
    assert Event.objects.filter(profile=profile).count() == 3


@pytest.mark.django_db
def test_a_shared_device_seen_with_a_second_user_still_goes_to_a_profile_of_its_own(write_key, settings, monkeypatch):
    settings.CDP_INTAKE_PARTITIONS = 1
    client = writer(write_key)
    batch(client, {"type": "identify", "userId": "first-user", "anonymousId": "family-tablet"})
    intake_drain()
    calls: list = []
    real = resolve.profile_resolve
    monkeypatch.setattr(stitch, "profile_resolve", lambda **kw: calls.append(kw) or real(**kw))

    # when another user signs in on the same tablet (a profile holds one user id)
    batch(client, {"type": "identify", "userId": "second-user", "anonymousId": "family-tablet"})
    intake_drain()

    # then the rules decide it (one-by-one path): the second user is someone else
    assert len(calls) == 1
    owners = dict(Identifier.objects.filter(kind="user_id").values_list("value", "profile_id"))
    assert owners["first-user"] != owners["second-user"]
    assert Identifier.objects.get(kind="anonymous_id").profile_id == owners["first-user"]


@pytest.mark.django_db
def test_visitors_who_log_in_are_merged_in_bulk_with_the_merges_audit_and_undo(write_key, settings, monkeypatch):
    settings.CDP_INTAKE_PARTITIONS = 1
    client = writer(write_key)
    # given three people each seen once as a visitor and, separately, as a logged-in user
    batch(client, *[{"type": "track", "anonymousId": f"anon-{p}", "event": "Product Viewed"} for p in "abc"])
    batch(client, *[{"type": "identify", "userId": f"user-{p}", "traits": {"plan": p}} for p in "abc"])
    intake_drain()
    resolved: list = []
    real = stitch.profile_resolve
    monkeypatch.setattr(stitch, "profile_resolve", lambda **kw: resolved.append(kw) or real(**kw))

    # when one batch shows each visitor is that user, user-a twice (a second device: a chain) and
    # user-c giving an email on the way
    batch(
        client,
        {"type": "page", "userId": "user-a", "anonymousId": "anon-a", "name": "Home"},
        {"type": "page", "userId": "user-b", "anonymousId": "anon-b", "name": "Home"},
        {"type": "track", "userId": "user-a", "anonymousId": "anon-c", "event": "Product Viewed"},
        {"type": "page", "userId": "user-c", "anonymousId": "anon-c", "context": {"traits": {"email": "c@x.org"}}},
    )
    intake_drain()

    # then the rules' merges happened without the one-by-one path: user-a took anon-a, then anon-c
    # (a visitor's profile seen first survives and the user's joins it); user-c stays apart (a
    # profile holds one user id): that refusal is the rules' own, through profile_resolve
    assert [kw["identifiers"] for kw in resolved] == [
        [("user_id", "user-c"), ("anonymous_id", "anon-c"), ("email", "c@x.org")]
    ]
    owner = dict(Identifier.objects.values_list("value", "profile_id"))
    assert owner["user-a"] == owner["anon-a"] == owner["anon-c"]
    assert owner["user-b"] == owner["anon-b"]
    assert owner["user-c"] != owner["user-a"] and owner["c@x.org"] == owner["user-c"]
    merged = Merge.objects.filter(status="merged").order_by("pk")
    assert [(m.reason, m.evidence["kind"], m.evidence["value"]) for m in merged] == [
        ("identifier:anonymous_id", "anonymous_id", "anon-a"),
        ("identifier:anonymous_id", "anonymous_id", "anon-b"),
        ("identifier:anonymous_id", "anonymous_id", "anon-c"),
    ]
    refused = Merge.objects.get(status="refused")
    assert (refused.reason, refused.evidence["guard"]) == ("identifier:anonymous_id", "identifier_limit")
    # each merge records what undoes it: the loser's identifiers and events, both snapshots
    first = merged[0]
    assert first.loser_before["traits"] == {"plan": "a"}
    assert Identifier.objects.get(value="user-a").pk in first.moved_identifier_ids
    assert Event.objects.filter(pk__in=first.moved_event_ids).count() == 1
    assert Event.objects.filter(profile_id=owner["user-a"]).count() == 5

    # and undoing them (newest first) gives the people back as they were
    for merge in reversed(merged):
        profile_unmerge(merge=merge)
    owner = dict(Identifier.objects.values_list("value", "profile_id"))
    assert len({owner[v] for v in ("user-a", "anon-a", "user-b", "anon-b", "anon-c")}) == 5
    assert Profile.objects.get(pk=owner["user-a"]).traits == {"plan": "a"}
