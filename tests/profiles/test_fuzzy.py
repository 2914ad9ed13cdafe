"""Probabilistic identity resolution: the hard cases of real shops, guards, coherence, the model.

Every case goes in through the ingestion service as identify calls (so deterministic resolution
does what it does in production first), next to a generated background of ~700 customers so that
the model has a population to learn from, as it would in a shop. Then ``identity_match`` runs.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from profiles.identity.fuzzy import blocking, model, service
from profiles.identity.fuzzy.cluster import conflicts, decide, refusal
from profiles.identity.fuzzy.compare import COMPARISONS, DOB, FIRST, INDEX, compare
from profiles.identity.fuzzy.records import Record, RecordTable, record_from
from profiles.identity.fuzzy.synthetic import people
from profiles.management.commands.evaluate_identity import record_payload
from profiles.models import CandidateStatus, Event, Identifier, MatchCandidate, Merge, MergeStatus, Profile
from profiles.services import events_ingest, profile_unmerge, source_create
from profiles.tracking.validate import clean_event

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _whole_review_queue(settings):
    """These tests look at every pair the matcher finds likely; the queue's cap (2 % of the records,
    most uncertain first) is tested in test_fuzzy_scale.py."""
    settings.CDP_REVIEW_QUEUE_MAX_SHARE = 1.0


@pytest.fixture
def source(db):
    return source_create(name="shop")[0]


def ingest(source, rows: list[dict], *, start: int = 0) -> None:
    """One identify call per row (the row's record_id is the anonymous id; user_id if given)."""
    events = []
    for n, row in enumerate(rows, start):
        payload = record_payload(row, n, row["record_id"], T0 + timedelta(minutes=n))
        payload["messageId"] = f"m-{row['record_id']}"
        if row.get("user_id"):
            payload["userId"] = row["user_id"]
        events.append(clean_event(payload, received_at=T0 + timedelta(days=1)))
    events_ingest(source=source, events=events)


def person(record_id: str, first: str, last: str, **fields) -> dict:
    return {"record_id": record_id, "first_name": first, "last_name": last, **fields}


def live(record_id: str) -> Profile:
    profile = Identifier.objects.get(kind="anonymous_id", value=record_id).profile
    return Profile.objects.get(pk=profile.merged_into_id) if profile.merged_into_id else profile


def together(*record_ids: str) -> bool:
    return len({live(r).pk for r in record_ids}) == 1


def queued(a: str, b: str) -> MatchCandidate | None:
    low, high = sorted([live(a).pk, live(b).pk])
    return MatchCandidate.objects.filter(profile_a=low, profile_b=high, status=CandidateStatus.PENDING).first()


def background() -> list[dict]:
    """~700 generated customers (with their own duplicates and households) around the cases."""
    return [{**row, "record_id": f"bg-{row['record_id']}"} for row in people(300, seed=11)]


LEEDS = {"street": "21 Rowan Close", "city": "Leeds", "postal_code": "LS6 2QT"}
NORWICH = {"street": "77 Grange Road", "city": "Norwich", "postal_code": "NR2 3JP"}
MANCHESTER = {"street": "12 Elm Grove", "city": "Manchester", "postal_code": "M14 5TT"}
CHURCH_LANE = {"street": "30 Church Lane", "city": "Leeds", "postal_code": "LS11 5AB"}

MUST_MERGE = {
    "a typo in the last name, another email": [
        person(
            "typo-1",
            "Katherine",
            "Featherstone",
            email="kfeather@mailbox.org",
            phone="+447911500101",
            birth_date="1984-03-12",
            street="14 Orchard Way",
            city="York",
            postal_code="YO10 3DD",
        ),
        person(
            "typo-2",
            "Katherine",
            "Featherstnoe",
            email="k.featherstone@work.example.com",
            birth_date="1984-03-12",
            street="14 Orchard Way",
            city="York",
            postal_code="YO10 3DD",
        ),
    ],
    "a nickname and a second email": [
        person(
            "nick-1",
            "Robert",
            "Abernathy",
            email="rob.abernathy@gmail.com",
            birth_date="1979-11-02",
            street="3 Mill Lane",
            city="Bath",
            postal_code="BA2 4XY",
        ),
        person(
            "nick-2",
            "Bob",
            "Abernathy",
            email="bobby.a@outlook.com",
            birth_date="1979-11-02",
            street="3 Mill Lane",
            city="Bath",
            postal_code="BA2 4XY",
        ),
    ],
    "a landline instead of the mobile": [
        person(
            "land-1",
            "Priya",
            "Raman",
            phone="07911 500202",
            email="priya.r@example.org",
            birth_date="1990-07-21",
            street="9 Cedar Court",
            city="Derby",
            postal_code="DE22 1AB",
        ),
        person(
            "land-2",
            "Priya",
            "Raman",
            phone="0113 496 0777",
            birth_date="1990-07-21",
            street="9 Cedar Ct",
            city="Derby",
            postal_code="DE22 1AB",
        ),
    ],
    "a married name": [
        person(
            "wed-1",
            "Emily",
            "Okafor",
            email="emily.okafor@gmail.com",
            phone="+447911500303",
            birth_date="1988-05-30",
            **LEEDS,
        ),
        person("wed-2", "Emily", "Lindqvist", email="emily.lindqvist@gmail.com", birth_date="1988-05-30", **LEEDS),
    ],
    "a move to another town, a new email": [
        person(
            "move-1",
            "Tomasz",
            "Wojcik",
            email="tomasz.w@example.net",
            birth_date="1975-09-09",
            street="5 Park Road",
            city="Bristol",
            postal_code="BS7 8AA",
        ),
        person(
            "move-2",
            "Tomasz",
            "Wojcik",
            email="t.wojcik@newjob.example.com",
            birth_date="1975-09-09",
            street="40 High Street",
            city="Exeter",
            postal_code="EX1 1AA",
        ),
    ],
}
MUST_STAY_APART = {
    "a household at one address with one landline": [
        person(
            "home-1",
            "Mark",
            "Hollis",
            phone="0161 496 0555",
            email="mark.hollis@example.com",
            birth_date="1968-02-14",
            **NORWICH,
        ),
        person(
            "home-2",
            "Susan",
            "Hollis",
            phone="0161 496 0555",
            email="sue.hollis@example.com",
            birth_date="1970-06-01",
            **NORWICH,
        ),
        person("home-3", "Jack", "Hollis", phone="0161 496 0555", birth_date="2006-09-30", **NORWICH),
    ],
    "twins with one birth date": [
        person(
            "twin-1",
            "Olivia",
            "Brennan",
            email="olivia.brennan@gmail.com",
            phone="+447911500404",
            birth_date="2001-04-04",
            **MANCHESTER,
        ),
        person(
            "twin-2",
            "Sophie",
            "Brennan",
            email="sophieb01@yahoo.co.uk",
            phone="+447911500505",
            birth_date="2001-04-04",
            **MANCHESTER,
        ),
    ],
    "a father and son with one name": [
        person(
            "gen-1",
            "John",
            "Carver",
            email="john.carver@example.com",
            phone="0113 496 0888",
            birth_date="1961-08-19",
            **CHURCH_LANE,
        ),
        person(
            "gen-2",
            "John",
            "Carver",
            email="jc.carver92@example.com",
            phone="0113 496 0888",
            birth_date="1992-01-05",
            **CHURCH_LANE,
        ),
    ],
    "a family mailbox": [
        person(
            "box-1",
            "Ann",
            "Whitfield",
            email="whitfields@example.com",
            street="8 Holly Lane",
            city="Exeter",
            postal_code="EX4 4QJ",
        ),
        person(
            "box-2",
            "Tom",
            "Whitfield",
            email="whitfields@example.com",
            street="8 Holly Lane",
            city="Exeter",
            postal_code="EX4 4QJ",
        ),
    ],
    "very common names": [
        person(
            "common-1",
            "James",
            "Smith",
            email="jsmith71@gmail.com",
            birth_date="1971-01-09",
            street="4 Station Road",
            city="Leeds",
            postal_code="LS1 4AP",
        ),
        person(
            "common-2",
            "James",
            "Smith",
            email="james.smith@outlook.com",
            birth_date="1983-12-02",
            street="61 Queens Road",
            city="Bristol",
            postal_code="BS8 1QU",
        ),
        person(
            "common-3",
            "James",
            "Smith",
            email="smithy@example.org",
            street="19 Kings Road",
            city="London",
            postal_code="SW3 4UD",
        ),
        person(
            "common-4",
            "Jim",
            "Smith",
            email="jim.smith@btinternet.com",
            birth_date="1958-06-17",
            street="2 York Road",
            city="York",
            postal_code="YO24 1AB",
        ),
    ],
}


def test_hard_cases_of_real_shops(source):
    # given a shop's customers and, among them, the hard cases, all sent as identify calls
    cases = [row for rows in (*MUST_MERGE.values(), *MUST_STAY_APART.values()) for row in rows]
    ingest(source, background() + cases)
    # when the matching job runs over everyone
    report = service.identity_match()
    # then every must-merge case is one profile, through a fuzzy merge with its evidence
    for case, rows in MUST_MERGE.items():
        ids = [r["record_id"] for r in rows]
        assert together(*ids), f"{case}: not merged"
        anonymous = list(Identifier.objects.filter(kind="anonymous_id", value__in=ids).values_list("pk", flat=True))
        merge = Merge.objects.get(reason="fuzzy", moved_identifier_ids__overlap=anonymous)
        assert merge.score >= 0.99, case
        assert set(merge.evidence["fields"]) == {c.name for c in COMPARISONS}
    # and no must-stay-apart case shares a profile
    for case, rows in MUST_STAY_APART.items():
        profiles = [live(r["record_id"]).pk for r in rows]
        assert len(set(profiles)) == len(profiles), f"{case}: merged"
    # they are the ones the model finds alike, so they wait in the review queue, with the reason the
    # matcher refused to merge them: father and son (one name, one address, one landline) contradict
    # on birth dates and emails, the twins (one birth date, one address) on first names and emails.
    # Ingestion had already queued father and son (a shared landline, two birth dates) and the family
    # mailbox (a shared email, two first names); the matcher adds its comparison to those.
    father_son = queued("gen-1", "gen-2")
    assert father_son.reason == "shared_phone_contradicted"
    assert father_son.evidence["fuzzy"]["conflicts"] == ["birth_date", "contact"]
    assert father_son.evidence["fuzzy"]["refused"] == "conflicting_birth_date_and_contact"
    twins = queued("twin-1", "twin-2")
    assert (twins.reason, twins.evidence["refused"]) == ("fuzzy", "conflicting_first_name_and_contact")
    assert queued("box-1", "box-2").reason == "shared_email_contradicted"
    assert report.merged >= len(MUST_MERGE)
    assert report.parameters["comparisons"]["first_name"]["exact"]["bits"] > 0


def test_a_record_that_could_be_either_of_two_people_does_not_chain_them(source):
    # given A and C, clearly two people (a father and son: their own birth dates and emails), and B
    # with only the name and the address, who could be either
    rows = [
        person(
            "chain-a",
            "Robert",
            "Quigley",
            email="rq80@example.com",
            birth_date="1980-02-02",
            street="1 High Street",
            city="Bath",
            postal_code="BA1 1AA",
        ),
        person("chain-b", "Robert", "Quigley", street="1 High Street", city="Bath", postal_code="BA1 1AA"),
        person(
            "chain-c",
            "Robert",
            "Quigley",
            email="robert.quigley55@example.com",
            birth_date="1955-06-06",
            street="1 High Street",
            city="Bath",
            postal_code="BA1 1AA",
        ),
    ]
    ingest(source, background() + rows)
    service.identity_match()
    # then A and C stay apart, and B is not merged into both: it waits for a reviewer
    assert not together("chain-a", "chain-c")
    assert not (together("chain-b", "chain-a") and together("chain-b", "chain-c"))
    assert queued("chain-a", "chain-b") or queued("chain-b", "chain-c")


def test_cluster_coherence_on_scored_pairs():
    # A~B and B~C score as sure matches; A and C contradict each other on birth date and email
    table = RecordTable.build(
        ["a", "b", "c"],
        [
            Record(first="robert", last="quigley", dob="19800202", emails=("rq80@example.com",)),
            Record(first="robert", last="quigley"),
            Record(first="robert", last="quigley", dob="19550606", emails=("rq55@example.com",)),
        ],
    )
    a, b = np.array([0, 1]), np.array([1, 2])
    levels = compare(table, a, b)

    def score(x, y):  # pairs blocking did not propose: here only A~C, clearly two people
        return compare(table, x, y), np.array([0.001] * len(x))

    decisions = decide(
        table, a, b, levels, np.array([0.999, 0.998]), auto=0.99, review=0.5, never=set(), prior=0.01, score=score
    )
    assert decisions.clusters == [[0, 1]]
    assert decisions.refused == {1: "incoherent_cluster"}
    assert decisions.review == [1]  # B~C goes to a reviewer


def test_never_merge_pair_and_user_id_limit_are_respected(source):
    # given two must-merge pairs: a reviewer rejected one; the other are two registered accounts
    rejected, accounts = MUST_MERGE["a nickname and a second email"], MUST_MERGE["a married name"]
    accounts = [{**accounts[0], "user_id": "u-1"}, {**accounts[1], "user_id": "u-2"}]
    ingest(source, background() + rejected + accounts)
    low, high = sorted([live("nick-1").pk, live("nick-2").pk])
    MatchCandidate.objects.create(profile_a_id=low, profile_b_id=high, reason="manual", status="rejected")
    # when matching runs
    report = service.identity_match()
    # then neither pair merges, and no new candidate re-asks the reviewer
    assert not together("nick-1", "nick-2")
    assert not together("wed-1", "wed-2")
    assert MatchCandidate.objects.filter(profile_a=low, profile_b=high).count() == 1
    assert report.refusals.get("identifier_limit", 0) >= 1


def test_a_fuzzy_merge_is_recorded_and_can_be_undone(source):
    rows = MUST_MERGE["a move to another town, a new email"]
    ingest(source, background() + rows)
    before = {r: Identifier.objects.get(value=r).profile_id for r in ("move-1", "move-2")}
    service.identity_match()
    merge = Merge.objects.get(reason="fuzzy", loser_id__in=before.values())
    assert merge.status == MergeStatus.MERGED
    assert merge.winner_id == before["move-1"]  # the older profile survives
    assert merge.evidence["fields"]["birth_date"]["level"] == "exact"
    profile_unmerge(merge=merge)
    assert not together("move-1", "move-2")
    assert Event.objects.get(message_id="m-move-2").profile_id == before["move-2"]


def test_incremental_run_matches_new_profiles_against_everyone(source):
    first, second = MUST_MERGE["a typo in the last name, another email"]
    ingest(source, [*background(), first])
    service.identity_match()
    ingest(source, [second], start=1000)
    report = service.identity_match(profile_ids=[live("typo-2").pk])
    assert report.incremental and report.query_profiles == 1
    assert together("typo-1", "typo-2")


# --- the model ------------------------------------------------------------------------------------


def generated_pairs(n: int, rng: np.random.Generator, *, first_exact: float, dob_exact: float) -> RecordTable:
    """People with random names and dates, each with one copy whose first name is kept with
    probability ``first_exact`` (else a one-letter typo) and birth date with ``dob_exact``."""
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    records = []
    for _ in range(n):
        first = "".join(rng.choice(letters, 6))
        last = "".join(rng.choice(letters, 8))
        dob = f"{rng.integers(1940, 2005)}-{rng.integers(1, 13):02d}-{rng.integers(1, 29):02d}"
        city = f"town{rng.integers(0, 40)}"
        records.append(record_from({"first_name": first, "last_name": last, "birthday": dob, "city": city}))
        copy_first = first if rng.random() < first_exact else first[:-1] + "z"
        copy_dob = dob if rng.random() < dob_exact else f"{int(dob[:4]) + 1}{dob[4:]}"
        records.append(record_from({"first_name": copy_first, "last_name": last, "birthday": copy_dob, "city": city}))
    return RecordTable.build(list(range(len(records))), records)


def test_em_recovers_m_and_u_from_the_data():
    table = generated_pairs(1500, np.random.default_rng(5), first_exact=0.7, dob_exact=0.9)
    params = model.estimate(table, rng=np.random.default_rng(1), random_pairs=200_000, training_pairs=50_000)
    first, dob = INDEX["first_name"], INDEX["birth_date"]
    assert params.m[first][4] == pytest.approx(0.7, abs=0.04)  # exact first name among true pairs
    assert params.m[dob][3] == pytest.approx(0.9, abs=0.04)
    assert params.m[dob][2] == pytest.approx(0.1, abs=0.04)  # a year off: one digit
    assert params.u[first][4] < 0.001  # random 6-letter names almost never agree
    a, b = blocking.candidate_pairs(table)
    bits = model.log2_bayes_factors(params, compare(table, a, b), table, a, model.Frequencies.of(table))
    mu = model.estimate_matches_per_record(params, bits, len(table))
    assert mu == pytest.approx(0.5, abs=0.05)  # 1500 true pairs among 3000 records


def test_reviewers_decisions_move_the_weights_their_way():
    table = generated_pairs(400, np.random.default_rng(7), first_exact=0.9, dob_exact=0.95)
    rng = np.random.default_rng(3)
    plain = model.estimate(table, rng=np.random.default_rng(3), random_pairs=50_000, training_pairs=20_000)
    # reviewers approved pairs whose first names differ (a name the table does not know),
    # and rejected pairs that share a birth date and a last name (twins)
    approved = np.full((20, len(COMPARISONS)), -1, dtype=np.int8)
    approved[:, FIRST], approved[:, DOB] = 0, 3
    rejected = np.full((20, len(COMPARISONS)), -1, dtype=np.int8)
    rejected[:, DOB], rejected[:, INDEX["last_name"]] = 3, 3
    refined = model.estimate(
        table, rng=rng, approved=approved, rejected=rejected, random_pairs=50_000, training_pairs=20_000
    )
    assert refined.weights()[FIRST][0] > plain.weights()[FIRST][0]
    assert refined.weights()[DOB][3] < plain.weights()[DOB][3]
    assert refined.labelled == {"approved": 20, "rejected": 20}


def test_labelled_pairs_come_from_reviews_and_undone_fuzzy_merges(source):
    rows = [*MUST_MERGE["a nickname and a second email"], *MUST_STAY_APART["twins with one birth date"]]
    ingest(source, rows)
    twins = sorted([live("twin-1").pk, live("twin-2").pk])
    MatchCandidate.objects.create(profile_a_id=twins[0], profile_b_id=twins[1], reason="fuzzy", status="rejected")
    nick = sorted([live("nick-1").pk, live("nick-2").pk])
    MatchCandidate.objects.create(profile_a_id=nick[0], profile_b_id=nick[1], reason="fuzzy", status="approved")
    approved, rejected = service.labelled_levels()
    assert approved.shape[0] == rejected.shape[0] == 1
    assert COMPARISONS[FIRST].levels[approved[0, FIRST]] == "nickname"  # Bob is Robert
    assert COMPARISONS[DOB].levels[rejected[0, DOB]] == "exact"


@pytest.mark.parametrize(
    ("left", "right", "why"),
    [
        ({"name": "John Carver Sr"}, {"name": "John Carver Jr"}, "generation_differs"),
        (  # twins with their own emails
            {"first_name": "Olivia", "last_name": "Brennan", "birthday": "2001-04-04", "email": "ob@example.com"},
            {"first_name": "Sophie", "last_name": "Brennan", "birthday": "2001-04-04", "email": "sb@example.com"},
            "conflicting_first_name_and_contact",
        ),
        (  # a family mailbox
            {"first_name": "Ann", "last_name": "Whitfield", "email": "home@example.com"},
            {"first_name": "Tom", "last_name": "Whitfield", "email": "home@example.com"},
            "shared_contact_with_different_first_name",
        ),
        (  # one contradiction alone may be a typing error: the score decides
            {"first_name": "Ann", "last_name": "Lee", "birthday": "1970-01-02"},
            {"first_name": "Ann", "last_name": "Lee", "birthday": "1988-07-30"},
            None,
        ),
    ],
)
def test_conflict_refusals(left, right, why):
    table = RecordTable.build([0, 1], [record_from(left), record_from(right)])
    a, b = np.array([0]), np.array([1])
    levels = compare(table, a, b)
    assert refusal(conflicts(table, a, b, levels)[0], levels[0]) == why


def test_twins_are_refused_only_where_people_live_together():
    twins = (
        {"first_name": "Ava", "last_name": "Hwang", "birthday": "1935-06-19", "city": "Edinburgh"},
        {"first_name": "David", "last_name": "Hwang", "birthday": "1935-06-19", "city": "Edinburgh"},
    )
    table = RecordTable.build([0, 1], [record_from(t) for t in twins])
    a, b = np.array([0]), np.array([1])
    levels = compare(table, a, b)
    found = conflicts(table, a, b, levels)[0]
    assert refusal(found, levels[0], households=True) == "shared_birth_date_with_different_first_name"
    assert refusal(found, levels[0], households=False) is None  # FEBRL: a badly typed record
    with_families = model.Parameters(sessions={"address": {"pairs": 100, "matches": 60.0}})
    without = model.Parameters(sessions={"address": {"pairs": 100, "matches": 100.0}})
    assert with_families.households_seen() and not without.households_seen()


def test_one_place_named_at_different_levels_is_one_area():
    rows = [
        {"city": "Didsbury", "postal_code": "M20 1SX"},
        {"city": "Greater Manchester", "postal_code": "M20 1SX"},  # the same code: the names are one area
        {"city": "Leeds", "postal_code": "LS7 5JA"},
        {"city": "Didsbury"},
        {"city": "Greater Manchester"},
        {"postal_code": "M20 1SX"},
        {"city": "Leeds"},
    ]
    records = [record_from({"first_name": "Ann", "last_name": "Lee", "address": r}) for r in rows]
    table = RecordTable.build(list(range(len(records))), records)
    a, b = np.array([3, 3, 4, 6]), np.array([4, 6, 5, 5])
    address = compare(table, a, b)[:, INDEX["address"]]
    area = COMPARISONS[INDEX["address"]].levels.index("area")
    # Didsbury ~ Greater Manchester; Didsbury vs Leeds differ; a place named with the other's code
    assert address.tolist() == [area, 0, area, 0]


def _place_table(rows: list[dict]) -> RecordTable:
    records = [
        record_from({"first_name": r.get("first", "Ann"), "last_name": r.get("last", "Lee"), "address": r})
        for r in rows
    ]
    return RecordTable.build(list(range(len(records))), records)


def test_a_shared_postal_code_weighs_by_how_many_records_share_it():
    # 3,000 records in Leeds at nine LS6 codes, two at LS7 5JA, one at LS7 (its outward part): agreeing on
    # LS7 5JA is rare, agreeing on Leeds is not
    rows = [{"city": "Leeds", "postal_code": f"LS6 {n % 9}AB"} for n in range(3000)]
    rows += [{"city": "Leeds", "postal_code": "LS7 5JA"}, {"city": "Leeds", "postal_code": "LS7 5JA"}]
    rows += [{"city": "Leeds"}, {"city": "Leeds"}, {"postal_code": "LS7"}]
    table = _place_table(rows)
    counts = model.place_counts(table["postal"], table["city"])
    assert counts["p:ls75ja"] == 2 and counts["p:ls7"] == 3  # the outward part also agrees with LS7 5JA
    a, b = np.array([3000, 3002, 3000]), np.array([3001, 3003, 3004])
    assert model.place_values(table, a, b, np.arange(3)).tolist() == ["p:ls75ja", "c:leeds", "p:ls7"]
    params = model.Parameters(records=len(table))
    levels = compare(table, a, b)
    freq = model.Frequencies.of(table)
    with_place = model.field_bits(params, levels, table, a, freq, b)[:, INDEX["address"], 0]
    without = model.field_bits(params, levels, table, a, freq)[:, INDEX["address"], 0]
    assert with_place[0] > without[0] + 3  # one postal code of two records: strong
    assert with_place[1] < without[1]  # one town of 3,004 records: weaker than the level's average
    assert with_place[0] > with_place[2] > with_place[1]


def test_a_postal_code_as_rare_as_a_street_reads_the_surname_as_a_familys():
    # two records agreeing on a full postal code (and the surname) are often two people of one family:
    # the surname is weighed against household members there, not against strangers
    rows = [{"city": f"town{n % 40}", "last": f"name{n % 300}"} for n in range(2000)]
    rows += [
        {"postal_code": "M20 1SX", "last": "Hwang", "first": "Ava"},
        {"postal_code": "M20 1SX", "last": "Hwang", "first": "Ava"},
    ]
    rows += [{"city": "town1", "last": "Hwang", "first": "Ava"}, {"city": "town1", "last": "Hwang", "first": "Ava"}]
    table = _place_table(rows)
    params = model.Parameters(records=len(table), h_counts=[np.zeros(len(c.levels)) for c in COMPARISONS])
    params.h_counts[INDEX["last_name"]][-1] = 1000.0  # households share their surname
    params.refit()
    a, b = np.array([2000, 2002]), np.array([2001, 2003])
    bits = model.field_bits(params, compare(table, a, b), table, a, model.Frequencies.of(table), b)
    last = bits[:, INDEX["last_name"], 0]
    assert last[0] < 1 < last[1]  # at one full postal code the shared surname says little; in a town a lot


def test_two_initials_agree_only_as_similar():
    table = RecordTable.build(
        [0, 1, 2],
        [record_from({"first_name": "S."}), record_from({"first_name": "S"}), record_from({"first_name": "Sophia"})],
    )
    levels = compare(table, np.array([0, 0]), np.array([1, 2]))[:, FIRST]
    assert [COMPARISONS[FIRST].levels[v] for v in levels] == ["similar", "similar"]


def test_a_shared_name_written_as_a_surname_reads_as_the_surname_when_one_record_is_swapped():
    people_ = [("Thomas", "Wright"), ("Wright", "Ava")] + [(f"First{n}", "Wright") for n in range(5)]
    table = RecordTable.build(
        list(range(len(people_))), [record_from({"first_name": f, "last_name": s}) for f, s in people_]
    )
    row = compare(table, np.array([0]), np.array([1]))[0]
    names = {c.name: c.levels[v] for c, v in zip(COMPARISONS, row, strict=True) if v >= 0}
    # Wright is a surname in this data: one surname, two first names (Thomas, Ava), not a changed surname
    assert names["first_name"] == "different" and names["last_name"] != "different"


def test_a_short_first_name_with_two_letters_swapped_is_similar():
    table = RecordTable.build([0, 1], [record_from({"first_name": "Ben"}), record_from({"first_name": "Bne"})])
    level = compare(table, np.array([0]), np.array([1]))[0, FIRST]
    assert COMPARISONS[FIRST].levels[level] == "similar"


def test_a_large_cluster_takes_a_record_despite_one_refused_pair_across():
    from profiles.identity.fuzzy.cluster import REFUSED_SHARE, _coherent

    one_refused = [(0.999, None)] * 9 + [(0.999, "conflicting_first_name_and_birth_date")]
    assert REFUSED_SHARE > 1 / 10
    assert _coherent(one_refused, auto=0.99, review=0.5, prior=1e-4)
    assert not _coherent([(0.999, "conflicting_first_name_and_birth_date")], auto=0.99, review=0.5, prior=1e-4)
    assert not _coherent([(0.999, None)] * 9 + [(0.999, "generation_differs")], auto=0.99, review=0.5, prior=1e-4)


def test_blocking_bounds_a_huge_block():
    records = [Record(first="james", last="smith", dob="19800101", city="leeds") for _ in range(1000)]
    table = RecordTable.build(list(range(1000)), records)
    a, _ = blocking.candidate_pairs(table)
    assert len(a) <= 1000 * blocking.WINDOW  # not 499,500


def test_comparison_levels():
    table = RecordTable.build(
        list(range(6)),
        [
            record_from({"firstName": "Robert", "lastName": "Smith", "birthday": "1980-03-04"}),
            record_from({"name": "Bob Smith", "birth_date": "1980-04-03"}),
            record_from({"first_name": "Smith", "last_name": "Robert", "phone": "07911 123456"}),
            record_from({"first_name": "Bob", "last_name": "Smith", "phone": "020 7946 0958"}),
            record_from({"address": {"street": "12 Main St", "city": "York", "postalCode": "YO1 7HH"}}),
            record_from({"street": "12 main street", "city": "york", "postal_code": "yo17hh"}),
        ],
    )
    levels = compare(table, np.array([0, 0, 2, 4]), np.array([1, 2, 3, 5]))
    names = [
        {c.name: (c.levels[v] if v >= 0 else None) for c, v in zip(COMPARISONS, row, strict=True)} for row in levels
    ]
    assert names[0]["first_name"] == "nickname" and names[0]["birth_date"] == "near"  # day and month swapped
    assert names[1]["first_name"] == "close" and names[1]["last_name"] == "close"  # swapped names
    assert names[2]["phone"] is None  # a mobile and a landline say nothing
    assert names[3]["address"] == "same"


# --- evaluate_identity ----------------------------------------------------------------------------

TINY = """record_id,entity_id,first_name,last_name,email,phone,street,city,postal_code,state,birth_date
r1,1,Katherine,Featherstone,kf@example.com,,14 Orchard Way,York,YO10 3DD,,1984-03-12
r2,1,Katherine,Featherstnoe,,,14 Orchard Way,York,YO10 3DD,,1984-03-12
r3,2,Tomasz,Wojcik,tw@example.net,,5 Park Road,Bristol,BS7 8AA,,1975-09-09
r4,2,Tomasz,Wojcik,TW@example.net,,,,,,
r5,3,Olivia,Brennan,olivia.b@example.com,+447911500404,12 Elm Grove,Manchester,M14 5TT,,2001-04-04
r6,4,Sophie,Brennan,sophie.b@example.com,+447911500505,12 Elm Grove,Manchester,M14 5TT,,2001-04-04
r7,5,Priya,Raman,,,9 Cedar Court,Derby,DE22 1AB,,1990-07-21
r8,6,,,,,,,,,
"""


def test_evaluate_identity_prints_the_scores_and_leaves_nothing_behind(db, tmp_path):
    path = tmp_path / "tiny.csv"
    path.write_text(TINY)
    out, err = io.StringIO(), io.StringIO()
    call_command("evaluate_identity", str(path), "--no-progress", stdout=out, stderr=err)
    result = json.loads(out.getvalue())
    assert result == {
        "dataset": "tiny",
        "records": 8,
        "true_pairs": 2,
        "precision": 1.0,
        "recall": 1.0,
        "f1": 1.0,
        "review_queue": 2,  # the twins
        "seconds": result["seconds"],
    }
    assert not Profile.objects.exists() and not Event.objects.exists() and not MatchCandidate.objects.exists()


def test_evaluate_identity_links_two_sources(db, tmp_path):
    rows = list(csv.DictReader(io.StringIO(TINY)))
    for n, row in enumerate(rows):
        row["source"] = "crm" if n % 2 == 0 else "shop"
    path = tmp_path / "linked.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    out = io.StringIO()
    call_command("evaluate_identity", str(path), "--link-on-source", "--no-progress", stdout=out, stderr=io.StringIO())
    assert json.loads(out.getvalue())["true_pairs"] == 2  # r1/r2 and r3/r4 are each across sources


def test_evaluate_identity_rejects_bad_input(db, tmp_path):
    with pytest.raises(CommandError, match="No such file"):
        call_command("evaluate_identity", str(tmp_path / "missing.csv"))
    path = tmp_path / "bad.csv"
    path.write_text("id,name\n1,Ann\n")
    with pytest.raises(CommandError, match="record_id, entity_id"):
        call_command("evaluate_identity", str(path))
