# ruff: noqa: E501
"""Experiment results at scale: the results call reads per-variant rollups kept up incrementally
(``recommendations.experiments.units``); the full recompute from the served log and events is the
baseline, in the same run. Also what the write path costs per ingested batch.

    OPENBLAS_NUM_THREADS=1 python benchmarks/experiments_sql.py generate [--units 10000000]   # under `load`
    OPENBLAS_NUM_THREADS=1 python benchmarks/experiments_sql.py measure [--batches 40]        # under `bench`
    python benchmarks/experiments_sql.py drop

``generate`` (untimed) creates the database ``bench_experiments_i14`` on the dev server and migrates
it, writes UNITS profiles with one answer served each in a two-variant experiment (plus a second
answer for 20 %), a click on 5 % of the answers, an order after exposure for 20 % of the units and
one before it (CUPED's pre-period) for 10 %; then the first ``exposures_refresh`` records the
exposures and builds every unit row and the rollups (the incremental path's own first step).
``measure`` times, in one run:

- the results call end to end (``experiment_results``: drain pending units, refresh exposures from
  the served log since the last refresh, read the rollups, every statistic), and the API's GET;
- the baseline: the full recompute of the per-variant sums from exposures, served log and events;
- the per-variant sums over the stored unit rows (what the rollups save);
- the write path per ingested batch: ``events_ingest`` of batches of 100 events (a third of them
  orders of exposed units) with the experiments' ``on_events_stored`` subscriber on and off in
  alternation, the subscriber alone, and the worker's drain of one batch's units;
- one minute of served answers (1,000) through ``exposures_refresh``.

Redis database 10 (issue 14's benchmark database) carries the pending set and the broker.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
NAME = "bench_experiments_i14"
KEY = "bench"


def _setup(*, create: bool) -> None:
    from benchmarks.scratch import scratch_database_create, server_url, with_db

    os.environ["DATABASE_URL"] = scratch_database_create(NAME) if create else with_db(server_url(), NAME)
    os.environ["REDIS_URL"] = "redis://127.0.0.1:6379/10"
    os.environ["CELERY_BROKER_URL"] = "redis://127.0.0.1:6379/10"
    os.environ["DB_STATEMENT_TIMEOUT_MS"] = "0"  # generating and recomputing millions of rows
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cdp.settings")
    os.environ.setdefault("DEBUG", "true")
    import django

    django.setup()


def generate(units: int) -> None:
    _setup(create=True)
    from django.core.management import call_command
    from django.db import connection
    from tqdm import tqdm

    from consent.models import Purpose
    from consent.services import purposes_ensure
    from profiles.services import source_create
    from recommendations.experiments import services
    from recommendations.experiments.models import Experiment

    call_command("migrate", verbosity=0)
    purposes_ensure()
    Purpose.objects.filter(key="personalisation").update(default_granted=True)
    source, _ = source_create(name="bench")
    experiment = services.experiment_create(
        key=KEY,
        placements=["home"],
        primary_metric="conversion",
        guardrail_metrics=["ctr", "revenue", "aov"],
        variants=[{"key": "a", "weight": 50, "is_control": True}, {"key": "b", "weight": 50}],
    )
    experiment = services.experiment_start(experiment=experiment)
    Experiment.objects.filter(pk=experiment.pk).update(started_at=experiment.started_at.replace(year=2000))
    experiment.refresh_from_db()
    started = time.perf_counter()
    chunk = 1_000_000
    with connection.cursor() as c:
        c.execute("CREATE UNLOGGED TABLE bench_units (n bigint PRIMARY KEY, id uuid, b bool)")
        for lo in tqdm(range(0, units, chunk), desc="profiles + answers", unit=" M"):
            hi = min(lo + chunk, units)
            c.execute(
                "INSERT INTO bench_units SELECT g, gen_random_uuid(), random() < 0.5 FROM generate_series(%s, %s) g",
                [lo, hi - 1],
            )
            c.execute(
                "INSERT INTO profiles_profile (id, traits, trait_meta, computed, first_seen_at, last_seen_at, created_at, updated_at)"
                " SELECT id, '{}', '{}', '{}', now(), now(), now(), now() FROM bench_units WHERE n >= %s AND n < %s",
                [lo, hi],
            )
            # answers two days ago (a second one an hour later for 20 %)
            c.execute(
                "INSERT INTO recommendations_recommendationserved"
                " (id, profile_id, placement, personalised, items, experiment, variant, policy, arm_context, propensity, created_at)"
                " SELECT gen_random_uuid(), u.id, 'home', true, '[]', %s, CASE WHEN u.b THEN 'b' ELSE 'a' END, '', '', 1,"
                "        now() - interval '2 days' + g * interval '1 hour' + (u.n %% 3600) * interval '1 second'"
                " FROM bench_units u, generate_series(0, 1) g WHERE u.n >= %s AND u.n < %s AND (g = 0 OR u.n %% 5 = 0)",
                [KEY, lo, hi],
            )
            c.execute(
                "INSERT INTO profiles_event (source_id, message_id, profile_id, type, name, user_id, anonymous_id, properties,"
                " traits, context, occurred_at, received_at, device_type)"
                " SELECT %s, gen_random_uuid()::text, u.id, 'track', 'Order Completed', '', '',"
                "        jsonb_build_object('revenue', round((10 + (u.n %% 9000) / 100.0)::numeric, 2)), '{}', '{}',"
                "        now() - CASE WHEN u.n %% 10 < 2 THEN interval '1 day' ELSE interval '5 days' END, now(), ''"
                " FROM bench_units u WHERE u.n >= %s AND u.n < %s AND u.n %% 10 < 3",
                [source.pk, lo, hi],
            )
        c.execute(
            "INSERT INTO profiles_event (source_id, message_id, profile_id, type, name, user_id, anonymous_id, properties,"
            " traits, context, occurred_at, received_at, device_type)"
            " SELECT %s, gen_random_uuid()::text, s.profile_id, 'track', 'Product Clicked', '', '',"
            "        jsonb_build_object('recommendation_id', s.id::text), '{}', '{}', s.created_at + interval '1 minute', now(), ''"
            " FROM recommendations_recommendationserved s WHERE random() < 0.05",
            [source.pk],
        )
        # the first 5,000 units have a user id: the ingestion batches of `measure` land on them
        c.execute(
            "INSERT INTO profiles_identifier (kind, value, profile_id, created_at, last_seen_at)"
            " SELECT 'user_id', 'u' || n, id, now(), now() FROM bench_units WHERE n < 5000"
        )
        c.execute("ANALYZE")
    generated = time.perf_counter() - started
    print(f"generated in {generated:.0f} s; first exposure refresh and unit rows ...", flush=True)
    t0 = time.perf_counter()
    touched = services.exposures_refresh(experiment=experiment)
    with connection.cursor() as c:
        c.execute("ANALYZE")
    print(
        json.dumps(
            {
                "units": units,
                "generate_seconds": round(generated),
                "first_refresh_and_unit_rows_seconds": round(time.perf_counter() - t0),
                "units_touched": touched,
                "load_average": os.getloadavg(),
            }
        ),
        flush=True,
    )


def _timed(fn, repeat: int = 1) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def measure(batches: int, reference: bool) -> None:
    _setup(create=False)
    from django.db import connection
    from django.test import Client
    from django.utils import timezone

    from cdp.services import api_key_create
    from profiles import hooks
    from profiles.services import events_ingest
    from profiles.tracking.validate import clean_event
    from recommendations.experiments import selectors, services, units
    from recommendations.experiments.models import Experiment

    load_start = os.getloadavg()
    experiment = Experiment.objects.get(key=KEY)
    out: dict = {"load_average_start": load_start}
    with connection.cursor() as c:
        c.execute("SELECT count(*) FROM recommendations_experimentunit WHERE experiment_id = %s", [experiment.pk])
        out["unit_rows"] = c.fetchone()[0]
        c.execute("SELECT count(*) FROM recommendations_recommendationserved")
        out["answers_served"] = c.fetchone()[0]
        c.execute("SELECT count(*) FROM profiles_event")
        out["events"] = c.fetchone()[0]

    # the results call, end to end (service and API)
    seconds, results = _timed(lambda: selectors.experiment_results(experiment=experiment), repeat=5)
    out["results_call_seconds_median_of_5"] = round(seconds, 3)
    out["units_analysed"] = results["units"]
    out["excluded"] = results["excluded"]
    _, raw = api_key_create(name="bench")
    client = Client(HTTP_HOST="localhost")
    seconds, response = _timed(
        lambda: client.get(f"/api/v1/experiments/{KEY}/results/", HTTP_AUTHORIZATION=f"Bearer {raw}"), repeat=5
    )
    out["results_api_seconds_median_of_5"] = round(seconds, 3)
    out["results_api_status"] = response.status_code

    # what the rollups save: the same sums over the stored unit rows
    seconds, from_rows = _timed(lambda: units.rollup_from_units(experiment=experiment))
    out["sums_over_unit_rows_seconds"] = round(seconds, 2)
    out["rollups_equal_unit_rows"] = units.sums_equal(from_rows, units.variant_sums_stored(experiment=experiment))

    # the write path: ingestion batches with the subscriber on and off, the subscriber alone, the drain
    from profiles.models import Source

    source = Source.objects.get(name="bench")
    on, off, hook_only, drain = [], [], [], []
    client_redis = units._redis()
    client_redis.delete(units.PENDING_KEY, units.SCHEDULED_KEY)
    for i in range(batches):
        now = timezone.now()
        calls = []
        for j in range(100):
            user = f"u{(i * 100 + j) % 5000}"
            event = ["Product Viewed", "Product Added", "Order Completed"][j % 3]
            properties = {"sku": f"SKU-{j}", "revenue": 20 + j} if event == "Order Completed" else {"sku": f"SKU-{j}"}
            calls.append(
                {
                    "type": "track",
                    "userId": user,
                    "event": event,
                    "messageId": uuid.uuid4().hex,
                    "properties": properties,
                }
            )
        events = [clean_event(c, received_at=now) for c in calls]
        subscribed = i % 2 == 0
        if subscribed:
            hooks.on_events_stored.subscribe(units.on_events_stored)
        else:
            hooks.on_events_stored.unsubscribe(units.on_events_stored)
        t0 = time.perf_counter()
        events_ingest(source=source, events=events)
        (on if subscribed else off).append(time.perf_counter() - t0)
        payload = [{"profile_id": str(uuid.uuid4()), "type": e.type, "name": e.name} for e in events]
        t0 = time.perf_counter()
        units.on_events_stored(events=payload)
        hook_only.append(time.perf_counter() - t0)
        client_redis.delete(units.PENDING_KEY)  # the random ids of the hook-alone call
        if subscribed:
            # the batch's own units, as the worker drains them
            with connection.cursor() as c:
                c.execute(
                    "SELECT DISTINCT profile_id FROM profiles_identifier WHERE kind = 'user_id' AND value = ANY(%s)",
                    [sorted({c["userId"] for c in calls if c["event"] == "Order Completed"})],
                )
                ids = [str(r[0]) for r in c.fetchall()]
            client_redis.sadd(units.PENDING_KEY, *ids)
            t0 = time.perf_counter()
            units.units_drain()
            drain.append(time.perf_counter() - t0)
    hooks.on_events_stored.subscribe(units.on_events_stored)
    # the batches ingested with the subscriber off were not marked: recompute their units too, so
    # that the rollups can be compared with the full recompute below
    with connection.cursor() as c:
        c.execute("SELECT profile_id FROM profiles_identifier WHERE kind = 'user_id'")
        units.units_apply(profile_ids=[str(r[0]) for r in c.fetchall()])
    out["ingest_batch_ms_subscriber_off_median"] = round(statistics.median(off) * 1000, 1)
    out["ingest_batch_ms_subscriber_on_median"] = round(statistics.median(on) * 1000, 1)
    out["subscriber_alone_ms_median"] = round(statistics.median(hook_only) * 1000, 2)
    out["drain_per_batch_ms_median"] = round(statistics.median(drain) * 1000, 1)
    out["drain_units_per_batch"] = len(ids)

    # a minute of served answers (1,000 to existing units) through the refresh
    with connection.cursor() as c:
        c.execute(
            "INSERT INTO recommendations_recommendationserved"
            " (id, profile_id, placement, personalised, items, experiment, variant, policy, arm_context, propensity, created_at)"
            " SELECT gen_random_uuid(), u.profile_id, 'home', true, '[]', %s, v.key, '', '', 1, now()"
            " FROM (SELECT profile_id, variant_id FROM recommendations_experimentunit WHERE experiment_id = %s LIMIT 1000) u"
            " JOIN recommendations_variant v ON v.id = u.variant_id",
            [KEY, experiment.pk],
        )
    experiment.refresh_from_db()
    seconds, touched = _timed(lambda: services.exposures_refresh(experiment=experiment))
    out["refresh_1000_answers_seconds"] = round(seconds, 3)
    out["refresh_units_touched"] = touched

    # the baseline: the full recompute from exposures, served log and events (same run)
    if reference:
        seconds, ref = _timed(lambda: units.variant_sums_reference(experiment=experiment))
        out["full_recompute_seconds"] = round(seconds, 1)
        out["rollups_equal_full_recompute"] = units.sums_equal(units.variant_sums_stored(experiment=experiment), ref)
        out["full_recompute_to_results_call_ratio"] = round(seconds / out["results_call_seconds_median_of_5"], 1)
    out["load_average_end"] = os.getloadavg()
    print(json.dumps(out, indent=1), flush=True)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("step", choices=["generate", "measure", "drop"])
    parser.add_argument("--units", type=int, default=10_000_000)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--no-reference", action="store_true", help="skip the full recompute baseline")
    args = parser.parse_args(argv)
    if args.step == "generate":
        generate(args.units)
    elif args.step == "measure":
        measure(args.batches, reference=not args.no_reference)
    else:
        from benchmarks.scratch import scratch_database_drop

        scratch_database_drop(NAME)


if __name__ == "__main__":
    main(sys.argv[1:])
