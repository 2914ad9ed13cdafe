"""Identity matching speed: ~100,000 generated profiles resolved by the matching job.

    python benchmarks/identity_speed.py [--entities 75000] [--incremental 1000] [--keep]

Creates a scratch database (``cdp_bench_identity``) on the DATABASE_URL server, migrates it, loads
generated shop customers with known duplicates (``profiles.identity.fuzzy.synthetic``: 75,000 people
give about 105,000 profiles), then times, in one run:

- baseline: reading the same live profiles and identifiers from PostgreSQL (the floor any matcher
  pays before comparing anything);
- the matching job over every new profile against everyone (``identity_match(profile_ids=all)``:
  an incremental run in which everything is new), with its phases and peak memory;
- an incremental run of the last ``--incremental`` profiles against everyone, reusing the model.

Prints a markdown table; the database is dropped at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.scratch import scratch_database_create, scratch_database_drop  # noqa: E402


def outer(args) -> int:
    bench_url = scratch_database_create(args.database)
    env = {
        **os.environ,
        "DATABASE_URL": bench_url,
        "DEBUG": "true",
        "LOG_LEVEL": "WARNING",
        "DB_STATEMENT_TIMEOUT_MS": "0",
    }
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=REPO, env=env, check=True)
        done = subprocess.run([sys.executable, __file__, "--inner", *sys.argv[1:]], cwd=REPO, env=env)
        return done.returncode
    finally:
        if not args.keep:
            scratch_database_drop(args.database)


def inner(args) -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cdp.settings")
    import django

    django.setup()
    from django.core.cache import cache
    from django.db import connection

    from profiles.identity.fuzzy.service import PARAMS_CACHE_KEY, identity_match
    from profiles.identity.fuzzy.synthetic import people
    from profiles.models import Identifier, Profile
    from profiles.normalize import normalize_email, normalize_phone

    cache.delete(PARAMS_CACHE_KEY)
    rows = people(args.entities, seed=3)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    started = time.perf_counter()
    profiles, identifiers, taken = [], [], set()
    for i, r in enumerate(rows):
        traits = {k: r[k] for k in ("first_name", "last_name", "email", "phone") if r.get(k)}
        address = {k: r[k] for k in ("street", "city", "postal_code") if r.get(k)}
        if address:
            traits["address"] = address
        if r.get("birth_date"):
            traits["birthday"] = r["birth_date"]
        at = t0 + timedelta(seconds=i)
        profile = Profile(id=uuid.uuid4(), traits=traits, first_seen_at=at, last_seen_at=at)
        profiles.append(profile)
        identifiers.append(Identifier(kind="anonymous_id", value=r["record_id"], profile=profile, last_seen_at=at))
        for kind, normalise in (("email", normalize_email), ("phone", normalize_phone)):
            value = normalise(r[kind]) if r.get(kind) else None
            if value and (kind, value) not in taken:
                taken.add((kind, value))
                identifiers.append(Identifier(kind=kind, value=value, profile=profile, last_seen_at=at))
    Profile.objects.bulk_create(profiles, batch_size=5000)
    Identifier.objects.bulk_create(identifiers, batch_size=5000)
    load_seconds = time.perf_counter() - started
    entities = len({r["entity_id"] for r in rows})

    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, traits FROM profiles_profile WHERE merged_into_id IS NULL")
        read = len(cursor.fetchall())
        cursor.execute("SELECT profile_id, kind, value FROM profiles_identifier")
        cursor.fetchall()
    read_seconds = time.perf_counter() - started

    ids = [p.pk for p in profiles]
    started = time.perf_counter()
    report = identity_match(profile_ids=ids, reuse_parameters=False, store_parameters=True)
    full_seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    tail = [p.pk for p in profiles[-args.incremental :]]
    started = time.perf_counter()
    small = identity_match(profile_ids=tail)
    small_seconds = time.perf_counter() - started
    cache.delete(PARAMS_CACHE_KEY)

    timings = ", ".join(f"{k} {v:.1f} s" for k, v in report.timings.items())
    matching_only = sum(v for k, v in report.timings.items() if k != "write")
    print(
        f"{len(rows):,} profiles of {entities:,} people, {len(identifiers):,} identifiers "
        f"(loaded in {load_seconds:.1f} s, not timed below)\n"
    )
    print("| measure | seconds | x baseline |")
    print("|---|---:|---:|")
    print(f"| baseline: read {read:,} live profiles and their identifiers from PostgreSQL | {read_seconds:.1f} | 1.0 |")
    print(
        f"| matching job, all {len(ids):,} profiles new (incremental against everyone), end to end | "
        f"{full_seconds:.1f} | {full_seconds / read_seconds:.0f} |"
    )
    print(
        f"| ... of which matching (load, estimate, block, compare, decide) | {matching_only:.1f} | "
        f"{matching_only / read_seconds:.0f} |"
    )
    print(
        f"| incremental run, last {len(tail):,} profiles against everyone (model reused) | {small_seconds:.1f} | "
        f"{small_seconds / read_seconds:.0f} |"
    )
    print(
        f"\nmatching job: {report.line()}; phases: {timings}; peak memory {peak_mb:.0f} MB (whole process, "
        f"including the generated data); target: under 120 s"
    )
    print(f"incremental: {small.line()}")
    print(f"machine: {os.cpu_count()} CPUs, PostgreSQL {connection.pg_version}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entities", type=int, default=75_000, help="generated people (about 1.4 profiles each)")
    parser.add_argument("--incremental", type=int, default=1000, help="profiles in the small incremental run")
    parser.add_argument("--database", default="cdp_bench_identity")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    return inner(args) if args.inner else outer(args)


if __name__ == "__main__":
    sys.exit(main())
