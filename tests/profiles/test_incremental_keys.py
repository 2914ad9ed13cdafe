"""An incremental run through the stored blocking keys (decision 0065) decides what the run that reads
every live profile decides: same merges, review candidates and refusals, on the same database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from django.db import transaction
from django.utils import timezone

from profiles.identity.fuzzy import blocking, keys, service
from profiles.identity.fuzzy.records import records_load
from profiles.identity.fuzzy.synthetic import shops
from profiles.identity.runs import changed_profile_ids
from profiles.models import BlockingKeys, Identifier, MatchCandidate, Merge, Profile
from profiles.normalize import normalize_email, normalize_phone

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 1, 1, tzinfo=UTC)
CROWD_FIRST = ("ann", "anne", "bob", "robert", "carl", "dora", "eve", "fred", "gina", "hal", "ivy", "jon")


@pytest.fixture(autouse=True)
def _whole_review_queue(settings):
    settings.CDP_REVIEW_QUEUE_MAX_SHARE = 1.0
    settings.CDP_FUZZY_INCREMENTAL_KEYS = True


def _crowd(n: int, rng: np.random.Generator, start: int) -> list[dict]:
    """People with one dummy birth date, most named Smith in London: blocks far above ``MAX_BLOCK``
    (bounded by the sorted neighbourhood), some of them twice."""
    rows = []
    for k in range(n):
        rows.append(
            {
                "record_id": f"crowd-{start + k}",
                "first_name": str(rng.choice(CROWD_FIRST)),
                "last_name": "Smith" if rng.random() < 0.8 else "Smyth",
                "birth_date": "1900-01-01",
                "street": f"{int(rng.integers(1, 40))} High Street",
                "city": "London",
                "postal_code": f"E{int(rng.integers(1, 4))} {int(rng.integers(1, 9))}AA",
                "email": "",
                "phone": "",
            }
        )
    return rows


def _load(rows: list[dict], at: datetime) -> list[Profile]:
    profiles, identifiers = [], []
    for i, r in enumerate(rows):
        traits = {k: r[k] for k in ("first_name", "last_name", "email", "phone") if r.get(k)}
        address = {k: r[k] for k in ("street", "city", "postal_code") if r.get(k)}
        if address:
            traits["address"] = address
        if r.get("birth_date"):
            traits["birthday"] = r["birth_date"]
        seen = at + timedelta(seconds=i)
        profile = Profile(id=uuid.uuid4(), traits=traits, first_seen_at=seen, last_seen_at=seen)
        profiles.append(profile)
        identifiers.append(Identifier(kind="anonymous_id", value=r["record_id"], profile=profile, last_seen_at=seen))
        for kind, normalise in (("email", normalize_email), ("phone", normalize_phone)):
            value = normalise(r[kind]) if r.get(kind) else None
            if value and not Identifier.objects.filter(kind=kind, value=value).exists():
                identifiers.append(Identifier(kind=kind, value=value, profile=profile, last_seen_at=seen))
    Profile.objects.bulk_create(profiles)
    for ident in identifiers:  # one at a time: a shared mailbox stays with its first profile
        if ident.kind == "anonymous_id" or not Identifier.objects.filter(kind=ident.kind, value=ident.value).exists():
            ident.save()
    return profiles


def _outcome(report) -> dict:
    """What a run decided, as the database and the report state it."""
    merges = sorted(
        (str(m.winner_id), str(m.loser_id), m.reason, m.status, m.score, str(m.evidence)) for m in Merge.objects.all()
    )
    candidates = sorted(
        (str(c.profile_a_id), str(c.profile_b_id), c.status, c.score, str(c.evidence))
        for c in MatchCandidate.objects.all()
    )
    profiles = sorted((str(p), str(m)) for p, m in Profile.objects.values_list("pk", "merged_into_id"))
    summary = {
        "merged": report.merged,
        "queued": report.queued,
        "deferred": report.deferred,
        "refused": report.refused,
        "refusals": report.refusals,
        "compared": report.compared,
        "profiles": report.profiles,
        "query_profiles": report.query_profiles,
    }
    return {"summary": summary, "merges": merges, "candidates": candidates, "profiles": profiles}


class _Rollback(Exception):
    pass


def _run_and_undo(**kwargs):
    """Run, take the outcome, and roll the database back to where it was."""
    try:
        with transaction.atomic():
            report = service.identity_match(**kwargs)
            seen = _outcome(report), report
            raise _Rollback
    except _Rollback:
        return seen


def test_an_incremental_run_through_the_keys_decides_what_reading_everyone_decides():
    rng = np.random.default_rng(17)
    rows = shops(700, seed=17) + _crowd(140, rng, 0)
    order = rng.permutation(len(rows))
    later = {int(i) for i in order[: len(rows) // 15]}  # arrive after the full run: duplicates of known people
    _load([r for i, r in enumerate(rows) if i not in later], T0)
    full_started = timezone.now()
    full = service.identity_match()
    assert full.merged and BlockingKeys.objects.count() == Profile.objects.filter(merged_into__isnull=True).count()

    # what changes before the incremental run: new records (households, twins, Jr./Sr., the crowd),
    # a moved and a renamed profile, a profile merged away by something else (its keys are stale)
    new = _load([r for i, r in enumerate(rows) if i in later] + _crowd(30, rng, 1000), timezone.now())
    live = list(Profile.objects.filter(merged_into__isnull=True).order_by("first_seen_at")[:400])
    moved, renamed, gone, into = live[10], live[20], live[30], live[31]
    moved.traits = {**moved.traits, "address": {"street": "9 Elm Road", "city": "Leeds", "postal_code": "LS1 4AB"}}
    moved.save()
    renamed.traits = {**renamed.traits, "last_name": renamed.traits.get("last_name", "x") + "son"}
    renamed.save()
    Profile.objects.filter(pk=gone.pk).update(merged_into=into)
    changed = changed_profile_ids(since=full_started)
    assert {moved.pk, renamed.pk} <= set(changed) and len(changed) >= len(new)

    existing = _outcome(service.MatchReport())
    before, old = _run_and_undo(profile_ids=changed, read_all=True)
    after, report = _run_and_undo(profile_ids=changed)

    assert report.key_rows_read and report.profiles_read < old.profiles_read  # the keyed path was taken
    assert before["summary"]["merged"] and before["summary"]["queued"] and before["summary"]["refused"]
    assert before["summary"]["refusals"]  # the guards were exercised
    assert after == before
    # the merged-away profile's row (written by the full run) paired it with nobody
    dead = str(gone.pk)
    assert not any(dead in m[:2] for m in set(after["merges"]) - set(existing["merges"]))
    assert not any(dead in c[:2] for c in set(after["candidates"]) - set(existing["candidates"]))
    assert set(after["merges"]) - set(existing["merges"])
    service.identity_match(profile_ids=changed)  # kept this time: the keys follow the merges
    live = set(Profile.objects.filter(merged_into__isnull=True).values_list("pk", flat=True))
    assert set(BlockingKeys.objects.values_list("profile_id", flat=True)) == live and gone.pk not in live


def test_big_blocks_are_bounded_as_over_the_whole_population():
    rng = np.random.default_rng(3)
    _load(_crowd(200, rng, 0), T0)
    service.identity_match()
    new = _load(_crowd(5, rng, 500), timezone.now())
    table = records_load()
    query = np.isin(np.array(table.ids, dtype=object), [p.pk for p in new])
    a, b = blocking.candidate_pairs(table, query=query)
    everyone = {frozenset((table.ids[i], table.ids[j])) for i, j in zip(a, b, strict=True)}
    found = keys.candidates_load({p.pk for p in new})
    through_keys = {frozenset((found.table.ids[i], found.table.ids[j])) for i, j in zip(found.a, found.b, strict=True)}
    assert through_keys == everyone and len(everyone) > 5 * blocking.WINDOW
    assert len(found.table) < len(table)  # the blocks are far above MAX_BLOCK: only neighbours are read


def test_a_first_run_on_a_database_without_keys_reads_everyone_and_writes_them():
    rng = np.random.default_rng(5)
    _load(_crowd(60, rng, 0), T0)
    assert not keys.keys_present()
    first = service.identity_match(profile_ids=list(Profile.objects.values_list("pk", flat=True)))
    assert first.profiles_read == 60 and not first.key_rows_read
    live = set(Profile.objects.filter(merged_into__isnull=True).values_list("pk", flat=True))
    assert set(BlockingKeys.objects.values_list("profile_id", flat=True)) == live


def test_without_the_setting_no_keys_are_written_or_read(settings):
    settings.CDP_FUZZY_INCREMENTAL_KEYS = False
    rng = np.random.default_rng(7)
    _load(_crowd(40, rng, 0), T0)
    service.identity_match()
    new = _load(_crowd(3, rng, 100), timezone.now())
    report = service.identity_match(profile_ids=[p.pk for p in new])
    assert not BlockingKeys.objects.exists() and not report.key_rows_read and report.profiles_read == report.profiles
