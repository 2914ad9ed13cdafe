# ruff: noqa: E501
"""The SQL side of experiment results (exposure refresh + per-variant sums over the served log and
events), in a scratch database.

    OPENBLAS_NUM_THREADS=1 python benchmarks/experiments_sql.py [UNITS] [ANSWERS_PER_UNIT]

Creates ``cdp_bench_experiments`` on the dev database's server (dropped at the end), migrates it,
writes UNITS profiles (default 200,000) with ANSWERS_PER_UNIT served answers each (default 5) in a
two-variant experiment, a click on 5 % of the answers, an order for 10 % of the units after exposure
and one before (CUPED's pre-period) for 20 %; then times ``exposures_refresh`` (first run: all rows),
``variant_sums`` and the statistics, each as a ratio to a baseline measured in the same run: a
plain ``count(*)`` over the same served rows.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
NAME = "cdp_bench_experiments"


def main(argv: list[str]) -> None:
    from benchmarks.scratch import scratch_database_create, scratch_database_drop

    units = int(argv[0]) if argv else 200_000
    answers = int(argv[1]) if len(argv) > 1 else 5
    os.environ["DATABASE_URL"] = scratch_database_create(NAME)
    os.environ["DB_STATEMENT_TIMEOUT_MS"] = "0"  # generating millions of rows on a loaded machine
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cdp.settings")
    os.environ.setdefault("DEBUG", "true")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    try:
        call_command("migrate", verbosity=0)
        from consent.models import Purpose
        from consent.services import purposes_ensure
        from profiles.services import source_create
        from recommendations.experiments import selectors, services
        from recommendations.experiments.models import Experiment

        purposes_ensure()
        Purpose.objects.filter(key="personalisation").update(default_granted=True)
        source, _ = source_create(name="bench")
        experiment = services.experiment_create(
            key="bench",
            placements=["home"],
            primary_metric="ctr",
            guardrail_metrics=["conversion", "revenue", "aov"],
            variants=[{"key": "a", "weight": 50, "is_control": True}, {"key": "b", "weight": 50}],
        )
        experiment = services.experiment_start(experiment=experiment)
        Experiment.objects.filter(pk=experiment.pk).update(started_at=experiment.started_at.replace(year=2000))
        experiment.refresh_from_db()
        started = time.perf_counter()
        with connection.cursor() as c:
            c.execute(
                "CREATE TEMP TABLE u AS SELECT gen_random_uuid() AS id, (random() < 0.5) AS b FROM generate_series(1, %s)",
                [units],
            )
            c.execute(
                "INSERT INTO profiles_profile (id, traits, trait_meta, computed, first_seen_at, last_seen_at, created_at, updated_at)"
                " SELECT id, '{}', '{}', '{}', now(), now(), now(), now() FROM u"
            )
            c.execute(
                "INSERT INTO recommendations_recommendationserved"
                " (id, profile_id, placement, personalised, items, experiment, variant, policy, arm_context, propensity, created_at)"
                " SELECT gen_random_uuid(), u.id, 'home', true, '[]', 'bench', CASE WHEN u.b THEN 'b' ELSE 'a' END, '', '', 1,"
                "        now() - interval '2 days' + g * interval '1 hour'"
                " FROM u, generate_series(1, %s) g",
                [answers],
            )
            c.execute(
                "INSERT INTO profiles_event (source_id, message_id, profile_id, type, name, user_id, anonymous_id, properties,"
                " traits, context, occurred_at, received_at, device_type)"
                " SELECT %s, gen_random_uuid()::text, s.profile_id, 'track', 'Product Clicked', '', '',"
                "        jsonb_build_object('recommendation_id', s.id::text), '{}', '{}', s.created_at + interval '1 minute', now(), ''"
                " FROM recommendations_recommendationserved s WHERE random() < 0.05",
                [source.pk],
            )
            c.execute(
                "INSERT INTO profiles_event (source_id, message_id, profile_id, type, name, user_id, anonymous_id, properties,"
                " traits, context, occurred_at, received_at, device_type)"
                " SELECT %s, gen_random_uuid()::text, u.id, 'track', 'Order Completed', '', '',"
                "        jsonb_build_object('revenue', round((random() * 100)::numeric, 2)), '{}', '{}',"
                "        now() - CASE WHEN random() < 0.33 THEN interval '5 days' ELSE interval '1 day' END, now(), ''"
                " FROM u WHERE random() < 0.3",
                [source.pk],
            )
            c.execute("ANALYZE")
        generated = time.perf_counter() - started
        t0 = time.perf_counter()
        with connection.cursor() as c:
            c.execute("SELECT count(*) FROM recommendations_recommendationserved WHERE experiment = 'bench'")
            served = c.fetchone()[0]
        baseline = time.perf_counter() - t0
        t0 = time.perf_counter()
        services.exposures_refresh(experiment=experiment)
        refresh = time.perf_counter() - t0
        t0 = time.perf_counter()
        rows = selectors.variant_sums(experiment=experiment)
        sums = time.perf_counter() - t0
        t0 = time.perf_counter()
        results = selectors.compute_results(experiment=experiment, rows=rows)
        stats_seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        services.exposures_refresh(experiment=experiment)
        refresh_again = time.perf_counter() - t0
        print(
            json.dumps(
                {
                    "units": units,
                    "served_answers": served,
                    "generate_seconds": round(generated, 1),
                    "baseline_count_seconds": round(baseline, 3),
                    "exposures_refresh_first_seconds": round(refresh, 2),
                    "exposures_refresh_incremental_seconds": round(refresh_again, 3),
                    "variant_sums_seconds": round(sums, 2),
                    "statistics_seconds": round(stats_seconds, 3),
                    "sums_to_count_ratio": round(sums / baseline, 1),
                    "units_analysed": results["units"],
                    "load_average": os.getloadavg(),
                }
            )
        )
    finally:
        connection.close()
        scratch_database_drop(NAME)


if __name__ == "__main__":
    main(sys.argv[1:])
