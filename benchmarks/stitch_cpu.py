"""CPU per stitched event: the stitch side alone, in one process, Python and PostgreSQL counted.

On two cores the web workers, the stitch workers and PostgreSQL share the CPU, so what stitching
costs per event (the worker's own CPU plus its PostgreSQL backend's) is taken from accepting too.
This fills a scratch database's intake log through ``events_accept`` (the accept path, no HTTP)
with ``benchmarks/ingest.py``'s traffic, then drains it in this process with ``intake_drain`` and
reads the CPU time of this process and of its PostgreSQL backend (``/proc/<pid>/stat``; needs the
server on this machine). Two rounds: the first mostly new people, the second the same customers
returning (new devices, new emails, merges).

    python benchmarks/stitch_cpu.py [--events 20000] [--rounds 2] [--batch 2000] [--database bench_stitch]

``--statements`` adds, per round, the backend's CPU per statement of the drain (``/proc/<pid>/schedstat``
around each statement and COMMIT, summed by statement text): where the PostgreSQL half goes. It adds
a little Python per statement, so per-call totals are read from runs without it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.procstat import process_cpu  # noqa: E402


def backend_ns(pid: int) -> int:
    """Nanoseconds a process has run on a CPU (``/proc/<pid>/schedstat``: finer than ``stat``'s ticks)."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])


class StatementMeter:
    """The backend's CPU around each statement of a drain (and each COMMIT), summed per statement
    text (its first words, numbers and lists folded): where a stitched call's PostgreSQL CPU goes."""

    def __init__(self, connection, backend: int) -> None:
        self.connection, self.backend = connection, backend
        self.spent: dict[str, list] = {}

    def _note(self, label: str, ns: int) -> None:
        entry = self.spent.setdefault(label, [0, 0])
        entry[0] += ns
        entry[1] += 1

    def _execute(self, execute, sql, params, many, context):
        before = backend_ns(self.backend)
        try:
            return execute(sql, params, many, context)
        finally:
            label = " ".join(str(sql).split())
            label = re.sub(r"'[^']*'|\b\d+\b", "?", label)[:110]
            self._note(label, backend_ns(self.backend) - before)

    def _commit(self):
        before = backend_ns(self.backend)
        try:
            return self._plain_commit()
        finally:
            self._note("COMMIT", backend_ns(self.backend) - before)

    def __enter__(self):
        self._wrapper = self.connection.execute_wrapper(self._execute)
        self._wrapper.__enter__()
        self._plain_commit = self.connection._commit
        self.connection._commit = self._commit
        return self

    def __exit__(self, *exc):
        del self.connection._commit
        self._wrapper.__exit__(*exc)

    def report(self, calls: int) -> None:
        total = sum(ns for ns, _ in self.spent.values())
        print(f"  PostgreSQL CPU per statement ({total / calls / 1e3:.1f} µs per call in statements):")
        for label, (ns, n) in sorted(self.spent.items(), key=lambda item: -item[1][0]):
            if ns / calls >= 100:
                print(f"  {ns / calls / 1e3:7.2f} µs/call {n:6d}x  {label}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="calls per round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--database", default="bench_stitch")
    parser.add_argument("--redis-db", type=int, default=9)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--fill-only", action="store_true", help="fill the log, do not drain, keep the database")
    parser.add_argument("--spy", metavar="FILE", help="py-spy (raw format) of the last round's drain into FILE")
    parser.add_argument(
        "--statements", action="store_true", help="PostgreSQL CPU per statement of each drain (adds Python overhead)"
    )
    args = parser.parse_args(argv)

    from benchmarks import ingest as traffic
    from benchmarks.scratch import django_on_scratch, scratch_database_drop, spy_start

    django_on_scratch(args.database, args.redis_db)
    from django.core.management import call_command
    from django.db import connection

    from profiles.models import Event, Merge, Profile, Source
    from profiles.tracking.intake import events_accept
    from profiles.tracking.validate import clean_event
    from profiles.tracking.worker import intake_drain

    try:
        call_command("migrate", verbosity=0)
        source = Source.objects.create(name="bench")
        population = traffic.people(args.users, random.Random(args.seed))
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            backend = cursor.fetchone()[0]
        results = []
        for round_ in range(args.rounds):
            bodies = traffic.batch_bodies(population, args.events, 100, args.seed + 1 + round_)
            for body in bodies:
                received = datetime.now(UTC)
                batch = json.loads(body)["batch"]
                events_accept(
                    source=source,
                    events=[clean_event(item, received_at=received) for item in batch],
                    wake=lambda _: None,
                )
            if args.fill_only:
                return 0
            spy = spy_start(args.spy if round_ == args.rounds - 1 else None)
            meter = StatementMeter(connection, backend) if args.statements else None
            wall, cpu, pg = time.perf_counter(), time.process_time(), process_cpu(backend)
            with meter or contextlib.nullcontext():
                done = intake_drain()
            wall, cpu, pg = time.perf_counter() - wall, time.process_time() - cpu, process_cpu(backend) - pg
            if spy:
                spy.send_signal(signal.SIGINT)
                spy.wait(30)
            results.append((round_, done, wall, cpu, pg))
            if meter:
                meter.report(done)
            print(
                f"round {round_ + 1}: {done} calls in {wall:.2f} s ({done / wall:,.0f}/s); CPU per call: "
                f"python {cpu / done * 1e6:.0f} µs + postgres {pg / done * 1e6:.0f} µs = "
                f"{(cpu + pg) / done * 1e6:.0f} µs",
                flush=True,
            )
        print(
            f"stored {Event.objects.count()} events, {Profile.objects.filter(merged_into__isnull=True).count()} live "
            f"profiles, {Merge.objects.count()} merges; load {os.getloadavg()[0]:.2f}"
        )
    finally:
        connection.close()
        if not args.fill_only:
            scratch_database_drop(args.database)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
