"""A matching run goes from admin/schedule through a real Celery worker to a finished report."""

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from profiles import services
from profiles.identity.fuzzy.synthetic import people
from profiles.models import Identifier, MatchCandidate, MatchingRun, Merge, Profile, RunStatus
from profiles.normalize import normalize_email
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
    # a second incremental run re-examines only what changed since the first: nothing (the merge's
    # survivor changed by that run's own merge only; decision 0042)
    second = services.matching_run_execute(
        run_id=MatchingRun.objects.create(mode="incremental", since=first.started_at).pk
    )
    assert second.report["query_profiles"] == 0
    assert second.report["merged"] == 0


# --- incremental runs touch only what changed ---------------------------------------------------------

WRITTEN = ("profiles_profile", "profiles_identifier", "profiles_merge", "profiles_matchcandidate")


def _writes() -> dict:
    """Rows inserted, updated or deleted per table in this test's transaction so far (PostgreSQL's own
    count: any statement that touched a row, whatever it wrote)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname, n_tup_ins + n_tup_upd + n_tup_del FROM pg_stat_xact_user_tables WHERE relname = ANY(%s)",
            [list(WRITTEN)],
        )
        found = dict(cursor.fetchall())
    return {t: found.get(t, 0) for t in WRITTEN}


def _load(rows: list[dict], start: datetime) -> list[Profile]:
    out = []
    for i, r in enumerate(rows):
        at = start + timedelta(seconds=i)
        traits = {k: r[k] for k in ("first_name", "last_name", "email") if r.get(k)}
        traits["address"] = {k: r[k] for k in ("street", "city", "postal_code") if r.get(k)}
        if r.get("birth_date"):
            traits["birthday"] = r["birth_date"]
        p = Profile.objects.create(id=uuid.uuid4(), traits=traits, first_seen_at=at, last_seen_at=at)
        Identifier.objects.create(profile=p, kind="anonymous_id", value=f"{r['record_id']}-{at:%s}", last_seen_at=at)
        out.append(p)
    return out


def _run(mode: str, since=None) -> MatchingRun:
    return services.matching_run_execute(run_id=MatchingRun.objects.create(mode=mode, since=since).pk)


@pytest.mark.django_db(transaction=False)  # pg_stat_xact_user_tables counts this test's own transaction
def test_an_incremental_run_touches_only_what_changed():
    rows = people(150, seed=5)
    _load(rows, datetime(2026, 1, 1, tzinfo=UTC))
    full = _run("full")
    assert full.report["merged"] > 10
    after_full = _writes()

    # nothing changed since: nothing is read, compared or written
    quiet = _run("incremental", since=full.started_at)
    assert quiet.report["query_profiles"] == quiet.report["profiles"] == quiet.report["candidate_pairs"] == 0
    assert _writes() == after_full

    # a small change: five new records of people already known, one known profile with a new email
    known = {r["entity_id"]: r for r in rows}
    new = _load(
        [{**row, "record_id": f"again-{n}"} for n, row in enumerate(list(known.values())[:5])], datetime.now(UTC)
    )
    moved = Profile.objects.filter(merged_into__isnull=True).exclude(pk__in=[p.pk for p in new]).first()
    moved.traits = {**moved.traits, "email": "a.new.address@example.org"}
    moved.save()
    Identifier.objects.create(
        profile=moved, kind="email", value=normalize_email("a.new.address@example.org"), last_seen_at=moved.last_seen_at
    )
    changed = {p.pk for p in new} | {moved.pk}
    last_candidate = MatchCandidate.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    before = _writes()
    small = _run("incremental", since=quiet.started_at)
    touched = {t: n - before[t] for t, n in _writes().items()}

    assert small.report["query_profiles"] == len(changed)
    assert small.report["parameters_reused"]
    # compared: only pairs with a changed profile, a sliver of the full run's
    assert 0 < small.report["candidate_pairs"] <= full.report["candidate_pairs"] / 10
    written = list(Merge.objects.filter(created_at__gte=small.started_at))  # merges and refusals
    assert written and all(set(m.evidence["cluster"]) & {str(pk) for pk in changed} for m in written)
    merges = [m for m in written if m.status == "merged"]
    # rows written: each merge's two profiles (a survivor once per batch), the profiles merged into a
    # loser before, the identifiers that moved, its Merge row, the review pairs of changed profiles
    merged_profiles = {m.winner_id for m in merges} | {m.loser_id for m in merges}
    repointed = sum(len(m.evidence["repointed_profile_ids"]) for m in merges)
    assert touched["profiles_profile"] == len(merged_profiles) + repointed
    assert touched["profiles_identifier"] == sum(len(m.moved_identifier_ids) for m in merges)
    assert touched["profiles_merge"] == len(written)
    filed = MatchCandidate.objects.filter(pk__gt=last_candidate)
    involved = changed | merged_profiles
    assert all({c.profile_a_id, c.profile_b_id} & involved for c in filed)
