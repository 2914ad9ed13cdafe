"""Per-unit rows and per-variant rollups kept up incrementally equal the full recompute from the
served log and events, whatever the history: batches in any order, replayed, merges (the earlier
exposure wins), erasure (the person's rows go), consent withdrawn and given."""

from __future__ import annotations

import itertools
import time
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from profiles.models import Event, Profile, Source
from recommendations.experiments import selectors, services, units
from recommendations.experiments.models import Experiment, ExperimentRollup, ExperimentUnit, Exposure
from recommendations.models import RecommendationServed

from .conftest import add_event, grant

_keys = itertools.count()

PEOPLE = 6
action = st.one_of(
    st.tuples(st.just("serve"), st.integers(0, PEOPLE - 1), st.sampled_from(["a", "b"])),
    st.tuples(st.just("click"), st.integers(0, PEOPLE - 1), st.integers(0, 20)),
    st.tuples(st.just("order"), st.integers(0, PEOPLE - 1), st.integers(-30, 300)),  # hours around now
    st.tuples(st.just("refresh"), st.just(0), st.just(0)),
    st.tuples(st.just("drain"), st.just(0), st.just(0)),
    st.tuples(st.just("replay"), st.integers(0, 50), st.just(0)),
    st.tuples(st.just("merge"), st.integers(0, PEOPLE - 1), st.integers(0, PEOPLE - 1)),
    st.tuples(st.just("consent"), st.integers(0, PEOPLE - 1), st.booleans()),
    st.tuples(st.just("erase"), st.integers(0, PEOPLE - 1), st.just(0)),
)


def _source():
    from profiles.services import source_create

    return Source.objects.filter(name="units-test").first() or source_create(name="units-test")[0]


def _experiment(**fields) -> Experiment:
    key = f"units-{next(_keys)}"
    experiment = services.experiment_start(
        experiment=services.experiment_create(
            key=key,
            layer=key,  # one per example: they never overlap
            placements=["home"],
            primary_metric="revenue",
            guardrail_metrics=["ctr", "conversion", "aov"],
            variants=[{"key": "a", "weight": 50, "is_control": True}, {"key": "b", "weight": 50}],
            **fields,
        )
    )
    Experiment.objects.filter(pk=experiment.pk).update(started_at=timezone.now() - timedelta(days=60))
    experiment.refresh_from_db()
    return experiment


def _live(pid: str) -> str:
    profile = Profile.objects.filter(pk=pid).first()
    if profile is None:
        return ""
    return str(profile.merged_into_id or profile.pk)


def _exposures_from_scratch(experiment) -> set:
    """First exposure per live unit and variant straight from the served log (started .. refreshed)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(p.merged_into_id, p.id), v.id, min(s.created_at)"
            " FROM recommendations_recommendationserved s"
            " JOIN profiles_profile p ON p.id = s.profile_id"
            " JOIN recommendations_variant v ON v.experiment_id = %(x)s AND v.key = s.variant"
            " WHERE s.experiment = %(k)s AND s.created_at >= %(start)s AND s.created_at <= %(until)s GROUP BY 1, 2",
            {
                "x": experiment.pk,
                "k": experiment.key,
                "start": experiment.started_at,
                "until": experiment.exposures_until,
            },
        )
        return set(cursor.fetchall())


@pytest.mark.django_db
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(actions=st.lists(action, min_size=5, max_size=40), attribution=st.sampled_from([6, 48, 168]))
def test_incremental_equals_full_recompute_on_random_histories(actions, attribution):
    from consent.requests import privacy_erase
    from consent.services import purposes_ensure
    from profiles.identity.merge import profile_merge

    purposes_ensure()
    source = _source()
    experiment = _experiment(attribution_hours=attribution, cuped_days=3)
    now = timezone.now()
    people = [str(Profile.objects.create(first_seen_at=now, last_seen_at=now).pk) for _ in range(PEOPLE)]
    for pid in people[:-1]:  # the last one never consented: never in the analysis
        grant(pid)
    clock = timezone.now() - timedelta(days=30)
    served: list = []
    batches: list[list[str]] = []  # what the hooks would have marked, in order (for replays)
    pending: set[str] = set()

    def mark(ids):
        ids = [i for i in ids if i]
        batches.append(ids)
        pending.update(ids)

    for kind, x, y in actions:
        clock += timedelta(hours=3)
        person = people[x % PEOPLE]
        live = _live(person)
        if kind == "serve" and live:
            served.append(
                RecommendationServed.objects.create(
                    profile_id=live, placement="home", experiment=experiment.key, variant=y, items=[], created_at=clock
                )
            )
        elif kind == "click" and live and served:
            answer = served[y % len(served)]
            if _live(str(answer.profile_id)) == live:
                add_event(source, live, "Product Clicked", {"recommendation_id": str(answer.id)}, clock)
                mark([live])
        elif kind == "order" and live:
            add_event(source, live, "Order Completed", {"revenue": f"{(y % 97) + 0.5:.2f}"}, clock + timedelta(hours=y))
            mark([live])
        elif kind == "refresh":
            services.exposures_refresh(experiment=experiment, until=clock)
        elif kind == "drain" and pending:
            units.units_apply(profile_ids=sorted(pending))
            pending.clear()
        elif kind == "replay" and batches:
            units.units_apply(profile_ids=batches[x % len(batches)])  # a retried or replayed batch
        elif kind == "merge":
            other = _live(people[y])
            if live and other and live != other:
                winner, loser = Profile.objects.get(pk=live), Profile.objects.get(pk=other)
                profile_merge(winner=winner, loser=loser, reason="manual")
                services.experiments_on_profiles_merged(winner_id=live, loser_id=other)  # the merge hook
        elif kind == "consent" and live:
            grant(live, granted=y)
            mark([live])  # consent's hook
        elif kind == "erase" and live:
            privacy_erase(profile_id=live)
            pending.discard(live)
    services.exposures_refresh(experiment=experiment, until=clock)
    units.units_apply(profile_ids=sorted(pending))

    stored = units.variant_sums_stored(experiment=experiment)
    reference = units.variant_sums_reference(experiment=experiment)
    assert units.sums_equal(stored, reference), (stored, reference)
    assert units.sums_equal(units.rollup_from_units(experiment=experiment), reference)
    assert units.rollup_verify(experiment=experiment)
    # the exposures themselves equal a derivation from scratch (merges: the earlier exposure wins)
    recorded = set(
        Exposure.objects.filter(experiment=experiment).values_list("profile_id", "variant_id", "first_exposed_at")
    )
    assert recorded == _exposures_from_scratch(experiment)
    # erased people have no rows; every unit row is a live profile
    live_ids = set(Profile.objects.filter(merged_into__isnull=True).values_list("pk", flat=True))
    assert set(ExperimentUnit.objects.filter(experiment=experiment).values_list("profile_id", flat=True)) <= live_ids


@pytest.mark.django_db
def test_results_read_the_rollups_and_the_rebuild_repairs_drift(shop):
    experiment = _experiment(attribution_hours=48)
    now = timezone.now()
    people = [shop.person(n) for n in range(4)]
    for pid in people:
        grant(pid)
    for n, pid in enumerate(people):
        RecommendationServed.objects.create(
            profile_id=pid, placement="home", experiment=experiment.key, variant="ab"[n % 2], items=[], created_at=now
        )
    services.exposures_refresh(experiment=experiment, until=now + timedelta(seconds=1))
    before = selectors.experiment_results(experiment=experiment, refresh=False)
    assert before["units"] == {"a": 2, "b": 2}
    # an order stored without any hook (a bulk import): not counted until the units are recomputed
    add_event(shop.source, people[1], "Order Completed", {"revenue": 40}, now + timedelta(minutes=5))
    assert units.variant_sums_stored(experiment=experiment) != units.variant_sums_reference(experiment=experiment)
    # a damaged rollup is found by the check and fixed by the rebuild
    ExperimentRollup.objects.filter(experiment=experiment).update(n=999)
    assert not units.rollup_verify(experiment=experiment)
    assert units.units_rebuild(experiment=experiment) == 4
    assert units.sums_equal(
        units.variant_sums_stored(experiment=experiment), units.variant_sums_reference(experiment=experiment)
    )
    after = selectors.experiment_results(experiment=experiment, refresh=False)
    rows = {(r["metric"], r["variant"]): r for r in after["metrics"]}
    assert rows[("revenue", "b")]["value"] == pytest.approx(20.0)  # person 1 is in b: 40 / 2 units


@pytest.mark.django_db
def test_a_revenue_that_is_not_a_number_counts_zero_instead_of_breaking_the_results(shop):
    experiment = _experiment()
    now = timezone.now()
    grant(shop.person(0))
    RecommendationServed.objects.create(
        profile_id=shop.person(0), placement="home", experiment=experiment.key, variant="a", items=[], created_at=now
    )
    add_event(shop.source, shop.person(0), "Order Completed", {"revenue": "twelve"}, now + timedelta(minutes=1))
    add_event(shop.source, shop.person(0), "Order Completed", {"revenue": "12.5"}, now + timedelta(minutes=2))
    services.exposures_refresh(experiment=experiment, until=now + timedelta(seconds=1))
    unit = ExperimentUnit.objects.get(experiment=experiment)
    assert (unit.o, unit.r) == (2, 12.5)


def test_the_command_checks_and_rebuilds(db, capsys):
    from django.core.management import CommandError, call_command

    experiment = _experiment()
    call_command("experiments_units_rebuild", experiment.key, "--check")
    assert "matches" in capsys.readouterr().out
    call_command("experiments_units_rebuild", experiment.key)
    assert "0 units recomputed" in capsys.readouterr().out
    with pytest.raises(CommandError, match="No experiment nope"):
        call_command("experiments_units_rebuild", "nope")


@pytest.mark.django_db(transaction=True)
def test_events_ingested_through_tracking_reach_the_unit_rows_through_the_hook(celery_worker):
    """The real path: tracking stores events, the hook marks the units after commit, the worker's
    drain recomputes them; a replayed batch (same message ids) changes nothing."""
    from consent.services import purposes_ensure
    from profiles.tracking.ingest import events_ingest
    from profiles.tracking.validate import clean_event

    purposes_ensure()
    source = _source()
    experiment = _experiment()
    now = timezone.now()

    def event(name: str, message_id: str, at, **properties):
        payload = {"type": "track", "event": name, "userId": "u-hook", "messageId": message_id}
        return clean_event({**payload, "properties": properties, "timestamp": at.isoformat()}, received_at=now)

    events_ingest(source=source, events=[event("Page Viewed", "hook-visit", now - timedelta(minutes=1))])
    pid = str(Event.objects.get(message_id="hook-visit").profile_id)
    grant(pid)
    RecommendationServed.objects.create(
        profile_id=pid, placement="home", experiment=experiment.key, variant="b", items=[], created_at=now
    )
    services.exposures_refresh(experiment=experiment, until=now + timedelta(seconds=1))
    batch = [event("Order Completed", "hook-order-1", now + timedelta(minutes=1), revenue=25)]
    events_ingest(source=source, events=batch)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        unit = ExperimentUnit.objects.get(experiment=experiment)
        if unit.o:
            break
        time.sleep(0.2)
    assert (unit.o, unit.r) == (1, 25.0)
    events_ingest(source=source, events=batch)  # replayed: stored once, counted once
    units.units_drain()
    assert ExperimentUnit.objects.get(experiment=experiment).o == 1
    assert Event.objects.filter(message_id="hook-order-1").count() == 1
    assert units.sums_equal(
        units.variant_sums_stored(experiment=experiment), units.variant_sums_reference(experiment=experiment)
    )


@pytest.mark.django_db(transaction=True)  # the lock of a committed recompute is released
def test_a_drain_finds_a_rebuilding_experiment_busy_and_puts_the_units_back(monkeypatch):
    """While a rebuild holds an experiment (here: another session holds its lock), the drain does not
    wait: the units go back to the pending set and a later drain counts them."""
    import psycopg

    monkeypatch.setattr(units, "PENDING_KEY", f"test:units:pending:{uuid.uuid4().hex}")  # not the worker's
    later = []
    monkeypatch.setattr(units, "_drain_later", lambda: later.append(True))
    from consent.services import purposes_ensure

    purposes_ensure()
    experiment = _experiment()
    now = timezone.now()
    person = str(Profile.objects.create(first_seen_at=now, last_seen_at=now).pk)
    grant(person)
    RecommendationServed.objects.create(
        profile_id=person, placement="home", experiment=experiment.key, variant="a", items=[], created_at=now
    )
    services.exposures_refresh(experiment=experiment, until=now + timedelta(seconds=1))
    add_event(_source(), person, "Order Completed", {"revenue": 12}, now + timedelta(minutes=1))
    units.units_mark(profile_ids=[person])
    db = connection.settings_dict
    other = psycopg.connect(
        dbname=db["NAME"], host=db["HOST"], port=db["PORT"] or 5432, user=db["USER"], password=db["PASSWORD"]
    )
    try:
        other.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", [f"cdp:experiment-units:{experiment.pk}"])
        assert units.units_drain() == 0
        assert later and units._redis().sismember(units.PENDING_KEY, person)
        assert ExperimentUnit.objects.get(experiment=experiment).o == 0
    finally:
        other.close()
    assert units.units_drain() == 1
    assert ExperimentUnit.objects.get(experiment=experiment).o == 1
