"""A matching run goes from admin/schedule through a real Celery worker to a finished report."""

import time

import pytest

from profiles import services
from profiles.models import MatchCandidate, MatchingRun, Merge, Profile, RunStatus
from tests.profiles.helpers import call, writer

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def ingest_people(write_key) -> None:
    client = writer(write_key)
    address = {"street": "12 Mill Lane", "city": "Leeds", "postal_code": "LS1 4AB"}
    # one person on two devices with no shared identifier: a nickname and a new email
    call(
        client,
        "identify",
        anonymousId="dev-1",
        traits={
            "first_name": "Robert",
            "last_name": "Hartley",
            "email": "robert.hartley@example.com",
            "birthday": "1980-04-02",
            "address": address,
        },
    )
    call(
        client,
        "identify",
        anonymousId="dev-2",
        traits={
            "first_name": "Bob",
            "last_name": "Hartley",
            "email": "bobh@example.net",
            "birthday": "1980-04-02",
            "address": address,
        },
    )
    # someone else entirely
    call(
        client,
        "identify",
        anonymousId="dev-3",
        traits={
            "first_name": "Priya",
            "last_name": "Natarajan",
            "email": "priya@example.org",
            "birthday": "1991-11-30",
            "address": {"city": "York"},
        },
    )


def wait_for(predicate, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_a_run_started_like_admin_does_finishes_in_the_worker(celery_worker, write_key):
    ingest_people(write_key)
    run = services.matching_run_start(mode="full", requested_by="tester")
    assert wait_for(lambda: MatchingRun.objects.get(pk=run.pk).status in (RunStatus.DONE, RunStatus.FAILED))
    run.refresh_from_db()
    assert run.status == RunStatus.DONE, run.error
    assert run.progress_total > 0 and run.progress_done == run.progress_total
    assert run.report["profiles"] == 3
    # the two Hartley records are one person: merged or queued for review, never left unseen
    hartleys = set(Profile.objects.filter(traits__last_name="Hartley").values_list("pk", flat=True))
    joined = Merge.objects.filter(reason="fuzzy", status="merged", winner__in=hartleys, loser__in=hartleys)
    queued = MatchCandidate.objects.filter(profile_a__in=hartleys, profile_b__in=hartleys)
    assert joined.exists() or queued.exists()
    # and Priya is joined with nobody
    priya = Profile.objects.get(traits__first_name="Priya")
    assert priya.merged_into is None and not Merge.objects.filter(loser=priya).exists()


def test_executing_a_run_twice_is_a_no_op(write_key):
    ingest_people(write_key)
    run = MatchingRun.objects.create(mode="incremental", requested_by="tester")
    first = services.matching_run_execute(run_id=run.pk)
    merges = Merge.objects.count()
    again = services.matching_run_execute(run_id=run.pk)
    assert (first.status, again.status) == (RunStatus.DONE, RunStatus.DONE)
    assert Merge.objects.count() == merges
    # a second incremental run re-examines only what changed since the first: the merge's survivor
    second = services.matching_run_execute(
        run_id=MatchingRun.objects.create(mode="incremental", since=first.started_at).pk
    )
    assert second.report["query_profiles"] == 1
    assert second.report["merged"] == 0
