"""Consent filters decide before ingestion writes anything, and a profile erased while a batch is
being ingested is a retry (the retry sees the erasure), never a KeyError or a 500."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from consent.models import Suppression
from consent.requests import privacy_erase
from profiles.models import Event, Identifier, Profile
from tests.conftest import celery_quiesce
from tests.profiles.helpers import call, writer


@pytest.fixture
def stitched_here_only(monkeypatch):
    """The test's requests stitch their calls themselves, with the patched function the race needs: a
    drain of the session's Celery worker (woken by this test's calls, or lingering from an earlier
    test's) would take the call first with the real function, and the race would not happen."""
    from profiles.tracking import intake

    monkeypatch.setattr(intake, "intake_wake", lambda: None)
    celery_quiesce()


def _profile_of(kind: str, value: str) -> Profile:
    return Profile.objects.get(pk=Identifier.objects.get(kind=kind, value=value).profile_id)


@pytest.mark.django_db
def test_a_refused_identify_writes_no_traits_and_no_seen_time(write_key):
    # given a person who stated a name, then denied analytics on the banner
    client = writer(write_key)
    then = timezone.now() - timedelta(days=2)
    call(client, "identify", userId="u-deny", traits={"name": "Before Denial"}, timestamp=then.isoformat())
    client.post("/v1/consent", {"userId": "u-deny", "purposes": {"analytics": False}}, format="json")
    before = _profile_of("user_id", "u-deny")

    # when they send identify calls: one plain, one that itself states the denial
    plain = call(client, "identify", userId="u-deny", traits={"name": "After Denial", "city": "Lyon"})
    denial = {"consent": {"categoryPreferences": {"Analytics": False}}}
    stated = call(client, "identify", userId="u-deny", traits={"shoe_size": 44}, context=denial)

    # then the calls are refused when stitched (accepted into the intake log first, decision 0039)
    # and nothing of them was written to the profile
    assert plain.json()["accepted"] == 1 and stated.json()["accepted"] == 1
    assert not Event.objects.filter(traits__has_key="city").exists()
    after = _profile_of("user_id", "u-deny")
    assert after.traits == before.traits == {"name": "Before Denial"}
    assert after.trait_meta == before.trait_meta
    assert (after.first_seen_at, after.last_seen_at) == (before.first_seen_at, before.last_seen_at)
    assert not Event.objects.filter(profile=after).exists()


@pytest.mark.django_db(transaction=True)
def test_a_profile_erased_during_ingestion_is_a_retry_not_a_500(write_key, monkeypatch, stitched_here_only):
    # given a known person, and an erasure that commits right after ingestion read who owns the ids
    client = writer(write_key)
    call(client, "identify", userId="u-vanish", traits={"email": "vanish@example.org"})
    owner = _profile_of("user_id", "u-vanish")
    from profiles.tracking import stitch

    real_owners_of = stitch.owners_of
    erased = threading.Event()

    def owners_then_erase(identifiers):
        found = real_owners_of(identifiers)
        if not erased.is_set():
            erased.set()

            def erase():
                try:
                    privacy_erase(profile_id=str(owner.pk))
                finally:
                    connection.close()

            worker = threading.Thread(target=erase)
            worker.start()
            worker.join(30)
        return found

    monkeypatch.setattr(stitch, "owners_of", owners_then_erase)

    # when the person's next event arrives
    response = call(client, "track", userId="u-vanish", event="Product Viewed")

    # then the request succeeds (the call was accepted into the intake log before the erasure), the
    # stitch's retry saw the erasure: the event is dropped, nobody came back
    assert erased.is_set()
    assert response.status_code == 200, response.content
    assert response.json()["accepted"] == 1
    assert not Profile.objects.exists() and not Identifier.objects.exists() and not Event.objects.exists()
    assert Suppression.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_erasure_follows_a_merge_that_moves_the_person_while_it_starts(write_key, monkeypatch):
    # given an older profile (phone) and the person's live profile (user id + e-mail), not yet linked
    client = writer(write_key)
    old_at = (timezone.now() - timedelta(days=30)).isoformat()
    call(client, "identify", anonymousId="a-old", traits={"phone": "+447911123458"}, timestamp=old_at)
    call(client, "track", anonymousId="a-old", event="Product Viewed", timestamp=old_at)
    call(client, "identify", userId="u-race", traits={"email": "race@example.org", "name": "Rae Cee"})
    call(client, "track", userId="u-race", event="Order Completed", properties={"revenue": 9})
    older, live = _profile_of("anonymous_id", "a-old"), _profile_of("user_id", "u-race")
    assert older.first_seen_at < live.first_seen_at

    # and a merge that moves the live profile into the older one right after erasure read the group
    import consent.requests as requests_module
    from profiles.identity.merge import profile_merge

    real_group_ids = requests_module.profile_group_ids
    merged = threading.Event()

    def group_then_merge(*, profile_id):
        group = real_group_ids(profile_id=profile_id)
        if not merged.is_set():
            merged.set()

            def merge():
                try:
                    profile_merge(
                        winner=Profile.objects.get(pk=older.pk), loser=Profile.objects.get(pk=live.pk), reason="manual"
                    )
                finally:
                    connection.close()

            worker = threading.Thread(target=merge)
            worker.start()
            worker.join(30)
        return group

    monkeypatch.setattr(requests_module, "profile_group_ids", group_then_merge)

    # when the person (asked for by their live profile) is erased
    result = privacy_erase(profile_id=str(live.pk))

    # then the erasure followed the merge: both profiles, every event and identifier are gone, and
    # every identifier (also those that were only on the winner) is suppressed
    assert merged.is_set() and result["profiles"] == 2
    assert not Profile.objects.exists() and not Event.objects.exists() and not Identifier.objects.exists()
    assert Suppression.objects.count() == 4  # user id, e-mail, anonymous id, phone
    assert call(client, "track", anonymousId="a-old", event="Product Viewed").json()["accepted"] == 0


@pytest.mark.django_db(transaction=True)
def test_a_batch_that_passed_the_suppression_check_before_an_erasure_does_not_recreate_the_person(
    write_key, monkeypatch, stitched_here_only
):
    # given a known person, erased right after a new batch of theirs passed the suppression filter
    client = writer(write_key)
    call(client, "identify", userId="u-late", traits={"email": "late.batch@example.org"})
    owner = _profile_of("user_id", "u-late")
    from profiles.tracking import stitch

    real_owners_of = stitch.owners_of
    erased = threading.Event()

    def erase_then_owners(identifiers):
        if not erased.is_set():
            erased.set()

            def erase():
                try:
                    privacy_erase(profile_id=str(owner.pk))
                finally:
                    connection.close()

            worker = threading.Thread(target=erase)
            worker.start()
            worker.join(30)
        return real_owners_of(identifiers)

    monkeypatch.setattr(stitch, "owners_of", erase_then_owners)

    # when the batch goes on to resolve identity (nobody owns the identifiers any more)
    response = call(
        client, "identify", userId="u-late", anonymousId="a-late", traits={"email": "late.batch@example.org"}
    )

    # then the check under the identifier locks drops it when stitched (it was accepted into the
    # intake log before the erasure): the erased person is not created again
    assert erased.is_set() and response.status_code == 200
    assert response.json()["accepted"] == 1
    assert not Profile.objects.exists() and not Identifier.objects.exists()
