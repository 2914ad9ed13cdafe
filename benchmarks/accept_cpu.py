"""CPU per accepted call: the accept side alone, in one process, Python and PostgreSQL counted.

On two cores the web workers, the stitch workers and PostgreSQL share the CPU, so what accepting a
call costs (the web worker's own CPU plus its PostgreSQL backend's) is what the batch API's rate and
the track tail are made of. This calls the WSGI application in-process (every middleware, DRF,
authentication, the rate limit, validation, the intake INSERT, the response and its closers: the
wake) with ``benchmarks/ingest.py``'s bodies, one request after another, and reads the CPU time of
this process and of the database's backends (``/proc/<pid>/stat``; needs the server on this
machine). No HTTP and no gunicorn: what they add is the same before and after a change to the path.

    python benchmarks/accept_cpu.py [--events 20000] [--tracks 2000] [--rounds 3] [--database bench_accept]
                                    [--redis-db 9] [--spy FILE]

Rounds alternate batch (``--events`` calls in batches of 100, fresh messageIds each round) and
``/v1/track`` requests; the first round warms the process up and is printed but not summed.
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import random
import signal
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.procstat import process_cpu  # noqa: E402


class Backends:
    """CPU of every backend of one database, read from a monitoring connection of its own."""

    def __init__(self, url: str, database: str) -> None:
        import psycopg

        self.conn = psycopg.connect(url, autocommit=True)
        self.database = database
        self.start: dict[int, float] = {}

    def pids(self) -> list[int]:
        rows = self.conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", [self.database]
        ).fetchall()
        return [row[0] for row in rows]

    def mark(self) -> None:
        self.start = {pid: process_cpu(pid) for pid in self.pids()}

    def spent(self) -> float:
        return sum(process_cpu(pid) - self.start.get(pid, 0.0) for pid in self.pids())


def wsgi_post(app, path: str, body: bytes, auth: str) -> tuple[int, bytes]:
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_HOST": "127.0.0.1",
        "HTTP_AUTHORIZATION": auth,
        "HTTP_USER_AGENT": "cdp-bench/1",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.url_scheme": "http",
        "wsgi.version": (1, 0),
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    status: list[str] = []
    response = app(environ, lambda s, headers, exc_info=None: status.append(s))
    try:
        content = b"".join(response)
    finally:
        response.close()  # runs the response's closers: the stitch workers' wake, as gunicorn does
    return int(status[0].split()[0]), content


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="calls per batch round (batches of 100)")
    parser.add_argument("--tracks", type=int, default=2_000, help="/v1/track requests per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the first is a warm-up, not summed")
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--database", default="bench_accept")
    parser.add_argument("--redis-db", type=int, default=9)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--spy", metavar="FILE", help="py-spy (raw format) of the last round into FILE")
    args = parser.parse_args(argv)

    from benchmarks import ingest as traffic
    from benchmarks.scratch import django_on_scratch, scratch_database_drop, spy_start, with_db

    url = django_on_scratch(args.database, args.redis_db)
    import gc

    from django.core.management import call_command
    from django.core.wsgi import get_wsgi_application
    from django.db import connection

    from profiles.models import IntakeEvent
    from profiles.services import source_create

    backends = None
    try:
        call_command("migrate", verbosity=0)
        _, write_key = source_create(name="bench")
        auth = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
        app = get_wsgi_application()
        population = traffic.people(args.users, random.Random(args.seed))
        connection.close()
        gc.collect()
        gc.freeze()  # as gunicorn.conf.py does in a web worker
        backends = Backends(with_db(url, args.database), args.database)
        totals = {"batch": [0, 0.0, 0.0], "track": [0, 0.0, 0.0]}
        for round_ in range(args.rounds):
            batches = traffic.batch_bodies(population, args.events, 100, args.seed + 1 + round_)
            tracks = traffic.track_bodies(population, args.tracks, args.seed + 101 + round_)
            spy = spy_start(args.spy if round_ == args.rounds - 1 else None)
            for kind, path, bodies in (("batch", "/v1/batch", batches), ("track", "/v1/track", tracks)):
                if not bodies:
                    continue
                calls = 0
                backends.mark()
                wall, cpu = time.perf_counter(), time.process_time()
                for body in bodies:
                    status, content = wsgi_post(app, path, body, auth)
                    if status != 200:
                        raise RuntimeError(f"{path} answered {status}: {content[:300]!r}")
                    calls += int(content.split(b'"accepted":', 1)[1].split(b",", 1)[0])
                wall, cpu, pg = time.perf_counter() - wall, time.process_time() - cpu, backends.spent()
                unit = "call" if kind == "batch" else "request"
                print(
                    f"round {round_ + 1} {kind}: {len(bodies)} requests, {calls} calls accepted in {wall:.2f} s; "
                    f"CPU per {unit}: python {cpu / calls * 1e6:.1f} µs + postgres {pg / calls * 1e6:.1f} µs = "
                    f"{(cpu + pg) / calls * 1e6:.1f} µs",
                    flush=True,
                )
                if round_:
                    totals[kind][0] += calls
                    totals[kind][1] += cpu
                    totals[kind][2] += pg
            if spy:
                spy.send_signal(signal.SIGINT)
                spy.wait(30)
        for kind, (calls, cpu, pg) in totals.items():
            if calls:
                unit = "accepted call" if kind == "batch" else "track request"
                print(
                    f"{kind} (rounds 2-{args.rounds}): CPU per {unit}: python {cpu / calls * 1e6:.1f} µs + postgres "
                    f"{pg / calls * 1e6:.1f} µs = {(cpu + pg) / calls * 1e6:.1f} µs"
                )
        print(f"stored {IntakeEvent.objects.count()} calls in intake; load {os.getloadavg()[0]:.2f}")
    finally:
        if backends is not None:
            backends.conn.close()
        connection.close()
        scratch_database_drop(args.database)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
