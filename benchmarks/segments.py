"""Rule-segment speed: full refresh, single-profile evaluation, real-time membership latency.

    python benchmarks/segments.py [--profiles 100000] [--events 5000000] [--samples 1000] [--realtime 20] [--keep]

Creates a scratch database (``cdp_bench_segments``) on the DATABASE_URL server, migrates it, and
generates the profiles and events with set-based SQL (generate_series, time-ordered like real
arrivals; indexes built after the load). Then, in one run:

- full refresh (``segment_refresh``: one SQL query over every live profile, membership written
  with history) of rule segments with event conditions, first (everyone enters) and again
  (steady state); baseline: a plain COUNT of the same events, and the members query alone;
- single-profile evaluation (``profile_segments_evaluate``: the path real time uses) of those
  segments for random profiles, p50/p99; baseline: reading the profile's events alone;
- real-time latency: an event of an existing profile (its user id; ~50 events of history) POSTed
  through the tracking API (in-process client, the real view
  and ingest path) with a real Celery worker running -> membership visible in the database;
  baseline: the profiles follow-up alone (computed traits refreshed) in the same runs.

Prints a markdown table; the database is dropped at the end unless ``--keep``. Uses Redis DB 11.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.scratch import scratch_database_create, scratch_database_drop  # noqa: E402
from segments.examples import EXAMPLES as ISSUE_EXAMPLES  # noqa: E402  (pure data, no Django)

REDIS_URL = "redis://127.0.0.1:6379/11"

REFRESH_SEGMENT = {
    "all": [
        {
            "event": "Product Viewed",
            "where": [{"property": "category", "op": "=", "value": "outdoor"}],
            "within_last": {"days": 7},
            "count": {"op": ">=", "value": 2},
        },
        {"event": "Order Completed", "within_last": {"days": 30}, "did_not": True},
    ]
}
EXAMPLES = {slug: definition for slug, (_, definition) in ISSUE_EXAMPLES.items()}
REALTIME_SEGMENT = {
    "event": "Product Viewed",
    "where": [{"property": "category", "op": "=", "value": "bench-realtime"}],
    "within_last": {"hours": 1},
}

CATEGORIES = (
    "(ARRAY['outdoor','home decor','electronics','fashion','beauty','toys','sports','books',"
    "'luxury watches','luxury bags'])"
)

LOAD_SQL = [
    "INSERT INTO profiles_source (name, write_key_prefix, write_key_hash, is_active, created_at) "
    "VALUES ('bench', 'wk_bench', md5('bench'), true, now())",
    """
    INSERT INTO profiles_profile (id, traits, trait_meta, computed, computed_at, merged_into_id, first_seen_at,
                                  last_seen_at, created_at, updated_at)
    SELECT md5('p' || g)::uuid,
           jsonb_build_object('email', 'p' || g || '@example.com', 'plan', (ARRAY['free','pro'])[1 + g % 2]),
           '{{}}'::jsonb,
           jsonb_build_object(
             'sessions', (random() * 60)::int,
             'revenue_365d', round((random() * random() * 2000)::numeric, 2),
             'last_order_at', to_char(now() - random() * interval '300 days', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
             'preferred_device', (ARRAY['mobile','desktop','tablet'])[1 + g % 3]),
           now(), NULL, now() - interval '60 days', now(), now(), now()
    FROM generate_series(1, {profiles}) g
    """,
    # a user id per profile, so real-time events reach existing profiles with their ~50 events
    """
    INSERT INTO profiles_identifier (kind, value, profile_id, created_at, last_seen_at)
    SELECT 'user_id', 'u' || g, md5('p' || g)::uuid, now(), now() FROM generate_series(1, {profiles}) g
    """,
    """
    INSERT INTO profiles_event (source_id, message_id, profile_id, type, name, user_id, anonymous_id, properties,
                                traits, context, occurred_at, received_at, device_type, local_hour)
    SELECT s.id, 'm' || g, md5('p' || (1 + (g::bigint * 7919) % {profiles}))::uuid,
           CASE WHEN r < 0.9 THEN 'track' ELSE 'page' END,
           CASE WHEN r < 0.70 THEN 'Product Viewed' WHEN r < 0.85 THEN 'Product Added'
                WHEN r < 0.90 THEN 'Order Completed' ELSE '' END,
           '', '',
           CASE WHEN r < 0.85 THEN jsonb_build_object('category', {categories}[1 + c],
                                                      'product_id', 'SKU-' || (g % 5000), 'price', 10 + g % 300)
                WHEN r < 0.90 THEN jsonb_build_object('revenue', 20 + g % 500, 'products', jsonb_build_array(
                     jsonb_build_object('category', {categories}[1 + c], 'price', 20 + g % 500,
                                        'quantity', 1)))
                ELSE '{{}}'::jsonb END,
           '{{}}'::jsonb, '{{}}'::jsonb, t, t,
           (ARRAY['mobile','desktop','tablet'])[1 + d], h::smallint
    FROM (SELECT g, random() AS r, floor(random() * 10)::int AS c, floor(random() * 3)::int AS d,
                 floor(random() * 24)::int AS h,
                 now() - interval '60 days' + (g::float8 / {events}) * interval '60 days' AS t
          FROM generate_series(1, {events}) g) x, (SELECT id FROM profiles_source WHERE name = 'bench') s
    """,
]


def outer(args) -> int:
    bench_url = scratch_database_create(args.database)
    env = {
        **os.environ,
        "DATABASE_URL": bench_url,
        "REDIS_URL": REDIS_URL,
        "CELERY_BROKER_URL": REDIS_URL,
        "CELERY_RESULT_BACKEND": REDIS_URL,
        "DEBUG": "true",
        "LOG_LEVEL": "WARNING",
        "DB_STATEMENT_TIMEOUT_MS": "0",
    }
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=REPO, env=env, check=True)
        load(bench_url, args)
        done = subprocess.run([sys.executable, __file__, "--inner", *sys.argv[1:]], cwd=REPO, env=env)
        return done.returncode
    finally:
        if not args.keep:
            scratch_database_drop(args.database)


def load(url: str, args) -> None:
    """Set-based load with the event indexes dropped, then rebuilt (as a bulk import would)."""
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        indexes = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'profiles_event' "
            "AND indexname NOT IN ('profiles_event_pkey')"
        ).fetchall()
        constraints = conn.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = 'profiles_event'::regclass AND contype = 'u'"
        ).fetchall()
        for name, _ in constraints:
            conn.execute(f'ALTER TABLE profiles_event DROP CONSTRAINT "{name}"')
        for name, _ in indexes:
            if name not in {c for c, _ in constraints}:
                conn.execute(f'DROP INDEX IF EXISTS "{name}"')
        conn.execute("SET session_replication_role = replica")  # no FK triggers per row during the load
        for sql in LOAD_SQL:
            conn.execute(sql.format(profiles=args.profiles, events=args.events, categories=CATEGORIES))
        conn.execute("SET session_replication_role = origin")
        conn.execute("SET maintenance_work_mem = '256MB'")
        for name, definition in constraints:
            conn.execute(f'ALTER TABLE profiles_event ADD CONSTRAINT "{name}" {definition}')
        for name, definition in indexes:
            if name not in {c for c, _ in constraints}:
                conn.execute(definition)
        conn.execute("SELECT setval(pg_get_serial_sequence('profiles_event', 'id'), max(id)) FROM profiles_event")
        conn.execute("VACUUM ANALYZE profiles_event")
        conn.execute("VACUUM ANALYZE profiles_profile")
    print(f"loaded {args.profiles:,} profiles and {args.events:,} events in {time.perf_counter() - started:.0f} s\n")


def timed(fn, repeat: int = 1) -> tuple[float, object]:
    best, result = None, None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        took = time.perf_counter() - started
        best = took if best is None else min(best, took)
    return best, result


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def inner(args) -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cdp.settings")
    import django

    django.setup()
    from django.core.cache import cache
    from django.db import connection
    from django.utils import timezone

    from profiles.models import Profile
    from segments.models import SegmentMembership
    from segments.rules.compile import members_queryset
    from segments.services import profile_segments_evaluate, segment_create, segment_refresh, segments_index

    cache.clear()
    rows: list[tuple[str, str, str]] = []  # (measure, value, x baseline)

    # -- full refresh ------------------------------------------------------------------------------
    now = timezone.now()
    with connection.cursor() as cursor:

        def baseline_count():
            cursor.execute(
                "SELECT count(*) FROM profiles_event WHERE name = 'Product Viewed' AND occurred_at >= %s",
                [now - timedelta(days=7)],
            )
            return cursor.fetchone()[0]

        base_s, counted = timed(baseline_count, repeat=3)
    rows.append(
        (f"baseline: COUNT of the {counted:,} 'Product Viewed' events of the last 7 days", f"{base_s:.2f} s", "1.0")
    )
    seg = segment_create(slug="bench-refresh", name="bench refresh", definition=REFRESH_SEGMENT, refresh="no")
    query_s, _ = timed(lambda: members_queryset(REFRESH_SEGMENT, now=now).count(), repeat=3)
    rows.append(
        (
            "members query alone (count), viewed outdoor >= 2 in 7 d, no order in 30 d",
            f"{query_s:.2f} s",
            f"{query_s / base_s:.1f}",
        )
    )
    first_s, first = timed(lambda: segment_refresh(segment=seg))
    rows.append((f"full refresh, first (all {first[0]:,} enter)", f"{first_s:.2f} s", f"{first_s / base_s:.1f}"))
    again_s, _ = timed(lambda: segment_refresh(segment=seg), repeat=3)
    rows.append(("full refresh, again (steady state, best of 3)", f"{again_s:.2f} s", f"{again_s / base_s:.1f}"))
    for slug, definition in EXAMPLES.items():
        s = segment_create(slug=slug, name=slug, definition=definition, refresh="no")
        took, (entered, _) = timed(lambda s=s: segment_refresh(segment=s))
        rows.append(
            (f"full refresh of example '{slug}' ({entered:,} members)", f"{took:.2f} s", f"{took / base_s:.1f}")
        )

    # -- single-profile evaluation -------------------------------------------------------------------
    ids = [str(p) for p in Profile.objects.values_list("pk", flat=True)]
    sample = random.Random(5).sample(ids, min(args.samples, len(ids)))
    entries = list(segments_index().values())
    profile_segments_evaluate(profile_id=sample[0], segments=entries)  # warm the percentile cache
    evals, reads = [], []
    with connection.cursor() as cursor:
        for pid in sample:
            started = time.perf_counter()
            cursor.execute("SELECT id, name, properties, occurred_at FROM profiles_event WHERE profile_id = %s", [pid])
            cursor.fetchall()
            reads.append(time.perf_counter() - started)
            started = time.perf_counter()
            profile_segments_evaluate(profile_id=pid, segments=entries)
            evals.append(time.perf_counter() - started)
    read99 = pct(reads, 0.99)
    rows.append((f"baseline: read one profile's events, p99 of {len(sample)}", f"{read99 * 1000:.1f} ms", "1.0"))
    rows.append(
        (
            f"single-profile evaluation of {len(entries)} segments, p50",
            f"{pct(evals, 0.5) * 1000:.1f} ms",
            f"{pct(evals, 0.5) / read99:.1f}",
        )
    )
    rows.append(
        (
            f"single-profile evaluation of {len(entries)} segments, p99",
            f"{pct(evals, 0.99) * 1000:.1f} ms",
            f"{pct(evals, 0.99) / read99:.1f}",
        )
    )

    # -- real time ---------------------------------------------------------------------------------
    if args.realtime:
        rows.extend(realtime(args, connection, Profile, SegmentMembership, segment_create))

    print("| measure | figure | x baseline |")
    print("|---|---:|---:|")
    for measure, value, ratio in rows:
        print(f"| {measure} | {value} | {ratio} |")
    return 0


def realtime(args, connection, Profile, SegmentMembership, segment_create) -> list[tuple[str, str, str]]:
    from rest_framework.test import APIClient

    from profiles.services import source_create

    seg = segment_create(slug="bench-realtime", name="bench realtime", definition=REALTIME_SEGMENT, refresh="now")
    _, key = source_create(name="bench-realtime")
    client = APIClient(SERVER_NAME="localhost")
    import base64

    client.credentials(HTTP_AUTHORIZATION="Basic " + base64.b64encode(f"{key}:".encode()).decode())
    (REPO / ".cdp").mkdir(exist_ok=True)  # made by make; the benchmark may run first on a fresh clone
    log = open(REPO / ".cdp" / "bench-segments-worker.log", "w")  # noqa: SIM115
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "cdp",
            "worker",
            "--queues",
            "quick,ml,intake",
            "--pool",
            "solo",
            "--loglevel",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
            "--hostname",
            f"bench-seg-{os.getpid()}@%h",
        ],
        cwd=REPO,
        env=os.environ.copy(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        from cdp.celery import app

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not app.control.ping(timeout=0.5):
            pass
        seg_lat, trait_lat = [], []
        users = random.Random(9).sample(range(1, args.profiles + 1), args.realtime)
        for g in users:
            time.sleep(1.2)  # profiles debounces its follow-up task to one a second
            user_id = f"u{g}"
            started = time.perf_counter()
            posted_at = datetime.now(UTC)
            response = client.post(
                "/v1/track",
                {"userId": user_id, "event": "Product Viewed", "properties": {"category": "bench-realtime"}},
                format="json",
            )
            assert response.status_code == 200, response.content[:300]
            traits_at = None
            while time.perf_counter() - started < 30:
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT m.profile_id, p.computed_at FROM segments_segmentmembership m "
                        "JOIN profiles_profile p ON p.id = m.profile_id "
                        "JOIN profiles_identifier i ON i.profile_id = p.id AND i.kind = 'user_id' AND i.value = %s "
                        "WHERE m.segment_id = %s AND m.exited_at IS NULL",
                        [user_id, seg.pk],
                    )
                    found = cursor.fetchone()
                    if traits_at is None:
                        cursor.execute(
                            "SELECT 1 FROM profiles_profile p JOIN profiles_identifier i ON i.profile_id = p.id "
                            "WHERE i.kind = 'user_id' AND i.value = %s AND p.computed_at >= %s",
                            [user_id, posted_at],
                        )
                        if cursor.fetchone():
                            traits_at = time.perf_counter() - started
                if found:
                    seg_lat.append(time.perf_counter() - started)
                    trait_lat.append(traits_at if traits_at is not None else seg_lat[-1])
                    break
                time.sleep(0.01)
    finally:
        worker.terminate()
        worker.wait(20)
        log.close()
    if not seg_lat:
        return [("real-time membership", "no membership appeared within 30 s", "-")]
    base = statistics.median(trait_lat)
    return [
        (
            f"baseline: event POSTed -> computed traits refreshed (profiles follow-up), median of {len(trait_lat)}",
            f"{base:.2f} s",
            "1.0",
        ),
        (
            f"event POSTed -> segment membership visible, median of {len(seg_lat)}",
            f"{statistics.median(seg_lat):.2f} s",
            f"{statistics.median(seg_lat) / base:.1f}",
        ),
        (
            f"event POSTed -> segment membership visible, max of {len(seg_lat)}",
            f"{max(seg_lat):.2f} s",
            f"{max(seg_lat) / base:.1f}",
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--samples", type=int, default=1000, help="profiles for the single-profile evaluation")
    parser.add_argument("--realtime", type=int, default=20, help="events for the real-time latency (0: skip)")
    parser.add_argument("--database", default="cdp_bench_segments")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    return inner(args) if args.inner else outer(args)


if __name__ == "__main__":
    sys.exit(main())
