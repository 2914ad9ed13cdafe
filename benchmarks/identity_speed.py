"""Identity matching speed: ~100,000 generated profiles resolved by the matching job.

    python benchmarks/identity_speed.py [--entities 75000] [--incremental 1000] [--keep] [--profile FILE]
    python benchmarks/identity_speed.py --entities 720000 --prepare     # generate and load only (untimed)
    python benchmarks/identity_speed.py --existing                      # time on what --prepare left

Creates a scratch database (``cdp_bench_identity``) on the DATABASE_URL server, migrates it, loads
generated shop customers with known duplicates (``profiles.identity.fuzzy.synthetic``: 75,000 people
give about 105,000 profiles), then times, in one run:

- baseline: reading the same live profiles and identifiers from PostgreSQL (the floor any matcher
  pays before comparing anything);
- the matching job over every new profile against everyone (``identity_match(profile_ids=all)``:
  an incremental run in which everything is new), with its phases and peak memory;
- an incremental run as the scheduled job does it, after ``--incremental`` new records of known
  people (copies of live profiles' traits under new anonymous ids): the profiles changed since the
  full run started (``changed_profile_ids``) against everyone, reusing the model; with the rows it
  read, the pairs it compared and the rows it wrote per table (PostgreSQL's statistics).

Each phase is printed as it ends (seconds, counts, RSS now and peak), so a long or stopped run shows
where its time went. Prints a markdown table; the database is dropped at the end unless ``--keep``. ``--prepare`` stops
after loading and keeps the database, so that generating a large population (1,000,000 profiles take
minutes) runs apart from the timed run (``--existing``, which reads the profiles back in creation order
and drops the database at the end).
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
    if args.existing:
        from benchmarks.scratch import server_url, with_db

        bench_url = with_db(server_url(), args.database)
    else:
        bench_url = scratch_database_create(args.database)
    env = {
        **os.environ,
        "DATABASE_URL": bench_url,
        # issue 17's Redis database for benchmarks (the cache and the broker the merge hooks queue to)
        "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12"),
        # this database's own cache keys: the model the full run stores is the incremental run's, even
        # when another identity benchmark shares the Redis database
        "CACHE_KEY_PREFIX": f"cdp-{args.database}",
        "DEBUG": "true",
        "LOG_LEVEL": "WARNING",
        "DB_STATEMENT_TIMEOUT_MS": "0",
    }
    try:
        if not args.existing:
            subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=REPO, env=env, check=True)
        done = subprocess.run([sys.executable, __file__, "--inner", *sys.argv[1:]], cwd=REPO, env=env)
        return done.returncode
    finally:
        if not (args.keep or args.prepare):
            scratch_database_drop(args.database)


def inner(args) -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cdp.settings")
    import django

    django.setup()
    from django.conf import settings

    # DEBUG=true only to start without production settings; a worker runs without Django's debug log of
    # every statement (kept in memory: at 1,000,000 profiles, gigabytes of batch SQL)
    settings.DEBUG = False
    from django.core.cache import cache

    from profiles.identity.fuzzy.service import PARAMS_CACHE_KEY
    from profiles.identity.fuzzy.synthetic import people
    from profiles.models import Identifier, Profile
    from profiles.normalize import normalize_email, normalize_phone

    cache.delete(PARAMS_CACHE_KEY)
    if args.existing:
        analyze()
        ids = list(Profile.objects.order_by("first_seen_at", "pk").values_list("pk", flat=True))
        identifiers = Identifier.objects.count()
        return timed(args, ids, identifiers, "(loaded by --prepare)", None)
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
    analyze()
    entities = len({r["entity_id"] for r in rows})
    identifier_count = len(identifiers)
    loaded = f"(loaded in {load_seconds:.1f} s, not timed below)"
    if args.prepare:
        print(f"{len(rows):,} profiles of {entities:,} people, {len(identifiers):,} identifiers {loaded}")
        return 0
    ids = [p.pk for p in profiles]
    del profiles, identifiers[:], rows, taken
    return timed(args, ids, identifier_count, loaded, entities)


def analyze() -> None:
    """Table statistics for the planner, as autovacuum keeps them on a live server (it is off on this
    machine's: without them PostgreSQL guesses from the pages and scans whole tables to move a
    batch's identifiers). Not timed."""
    from django.db import connection

    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    print(f"ANALYZE (not timed): {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)


def added_profiles(n: int):
    """``n`` new profiles: copies of random live profiles' traits, each with a new anonymous id."""
    from django.utils import timezone

    from profiles.models import Identifier, Profile

    at = timezone.now()
    rows = list(Profile.objects.filter(merged_into__isnull=True).order_by("?").values_list("traits", flat=True)[:n])
    new = [Profile(id=uuid.uuid4(), traits=t, first_seen_at=at, last_seen_at=at) for t in rows]
    Profile.objects.bulk_create(new)
    Identifier.objects.bulk_create(
        [Identifier(kind="anonymous_id", value=f"again-{p.pk}", profile=p, last_seen_at=at) for p in new]
    )
    return at


def table_writes() -> dict:
    """Rows inserted, updated or deleted so far per profiles table (PostgreSQL's statistics)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT relname, n_tup_ins + n_tup_upd + n_tup_del FROM pg_stat_user_tables WHERE relname LIKE 'profiles_%'"
        )
        return dict(cursor.fetchall())


def rss_mb() -> tuple[float, float]:
    """(resident now, peak) of this process in MB."""
    now = 0.0
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                now = int(line.split()[1]) / 1024
    return now, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Progress:
    """Prints each phase of a run as it ends (seconds, counts, memory) and, within a long phase,
    how far it got every ``every`` seconds: flushed at once, so a run that is stopped still shows
    where its time went."""

    def __init__(self, label: str, every: float = 15.0) -> None:
        self.label, self.every = label, every
        self.started = self.last = time.perf_counter()

    def _print(self, text: str) -> None:
        now, peak = rss_mb()
        at = time.perf_counter() - self.started
        print(
            f"[{self.label} +{at:7.1f} s] {text}; RSS {now:,.0f} MB (peak {peak:,.0f} MB)", file=sys.stderr, flush=True
        )

    def phase(self, name: str, seconds: float, counts: dict) -> None:
        self.last = time.perf_counter()
        shown = ", ".join(
            f"{k} {v:,}" if isinstance(v, int) and not isinstance(v, bool) else f"{k} {v}" for k, v in counts.items()
        )
        self._print(f"{name} done in {seconds:.1f} s ({shown})")

    def progress(self, done: int, total: int) -> None:
        if time.perf_counter() - self.last >= self.every:
            self.last = time.perf_counter()
            self._print(f"  ... {done:,} / {total:,}")


def timed(args, ids: list, identifiers: int, loaded: str, entities: int | None) -> int:
    from django.core.cache import cache
    from django.db import connection
    from django.utils import timezone

    from profiles.identity.fuzzy.service import PARAMS_CACHE_KEY, WRITE_PHASES, identity_match
    from profiles.identity.runs import changed_profile_ids

    started = time.perf_counter()
    read = 0
    with connection.cursor() as cursor:  # rows fetched and let go in chunks: the run's memory stays its own
        cursor.execute("SELECT id, traits FROM profiles_profile WHERE merged_into_id IS NULL")
        while rows := cursor.fetchmany(20_000):
            read += len(rows)
        cursor.execute("SELECT profile_id, kind, value FROM profiles_identifier")
        while cursor.fetchmany(20_000):
            pass
    read_seconds = time.perf_counter() - started
    print(
        f"baseline read of {read:,} live profiles and their identifiers: {read_seconds:.1f} s",
        file=sys.stderr,
        flush=True,
    )

    full = Progress("full run")
    full_started_at = timezone.now()
    started = time.perf_counter()
    run = {"profile_ids": ids, "reuse_parameters": False, "store_parameters": True}
    run.update(phase=full.phase, progress=full.progress)
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        report = profiler.runcall(identity_match, **run)
        profiler.dump_stats(args.profile)
    else:
        report = identity_match(**run)
    full_seconds = time.perf_counter() - started
    peak_mb = rss_mb()[1]

    # a small change on top: new records of known people (copies of live profiles' traits under new
    # anonymous ids, as a returning customer on a new device), then an incremental run as the
    # scheduled job does it: what changed since the full run started, against everyone
    changed_at = added_profiles(args.incremental)
    before = table_writes()
    small_progress = Progress("incremental")
    started = time.perf_counter()
    changed = changed_profile_ids(since=full_started_at)
    small = identity_match(profile_ids=changed, phase=small_progress.phase)
    small_seconds = time.perf_counter() - started
    written = {t: n - before.get(t, 0) for t, n in table_writes().items() if n - before.get(t, 0)}
    del changed_at
    cache.delete(PARAMS_CACHE_KEY)

    timings = ", ".join(f"{k} {v:.1f} s" for k, v in report.timings.items())
    matching_only = sum(v for k, v in report.timings.items() if k not in WRITE_PHASES)
    writing = sum(v for k, v in report.timings.items() if k in WRITE_PHASES)
    people_ = f" of {entities:,} people" if entities else ""
    print(f"{len(ids):,} profiles{people_}, {identifiers:,} identifiers {loaded}\n")
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
        f"| ... of which writing (merges, review candidates, the queue's line) | {writing:.1f} | "
        f"{writing / read_seconds:.0f} |"
    )
    print(
        f"| incremental run: {small.query_profiles:,} changed profiles ({args.incremental:,} new records of known "
        f"people) against everyone | {small_seconds:.1f} | {small_seconds / read_seconds:.0f} |"
    )
    print(
        f"\nmatching job: {report.line()}; phases: {timings}; peak memory {peak_mb:.0f} MB (whole process: "
        f"the generated rows are let go before the run); target: under 120 s"
    )
    print(f"incremental: {small.line()}; phases: " + ", ".join(f"{k} {v:.1f} s" for k, v in small.timings.items()))
    print(
        f"incremental touched: {small.profiles:,} profiles read, {small.query_profiles:,} queried, "
        f"{small.candidate_pairs:,} pairs compared (full run: {report.candidate_pairs:,}); rows written: "
        + (", ".join(f"{t} {n:,}" for t, n in sorted(written.items())) or "none")
    )
    print(f"machine: {os.cpu_count()} CPUs, PostgreSQL {connection.pg_version}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entities", type=int, default=75_000, help="generated people (about 1.4 profiles each)")
    parser.add_argument("--incremental", type=int, default=1000, help="new records before the incremental run")
    parser.add_argument("--database", default="bench_identity_i17")
    parser.add_argument("--prepare", action="store_true", help="generate and load only; keep the database")
    parser.add_argument("--existing", action="store_true", help="time on the database --prepare left")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument("--profile", metavar="FILE", help="cProfile the full run into FILE (not a timed figure)")
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    return inner(args) if args.inner else outer(args)


if __name__ == "__main__":
    sys.exit(main())
