"""CPU per request of the serving path: gunicorn's workers and their PostgreSQL backends, counted.

    python benchmarks/serving_cpu.py --database bench_lead --redis-db 8 [--requests 3000] [--rounds 3]
        [--conns 4] [--code /tmp/x] [--workers 4] [--threads 2]

On two cores the web workers, PostgreSQL, Redis and the load generator share the CPU, so whether
``GET /api/v1/recommendations/`` keeps up with 300 requests/s depends on the CPU a request costs
all of them together. The open-loop runs of ``recommendations_speed.py`` (8 minutes, a fresh model
each time) show it only through queueing, which amplifies the machine's hour-to-hour drift. This
reads the cost directly, in about a minute: it starts gunicorn as that benchmark does (its own code:
``gunicorn_start``, ``request_paths``, ``warm_up``), on the data and the **active model** an earlier
``recommendations_speed.py --reuse --keep`` (or ``--generate-only --keep`` and a refresh) left in
``--database``; warms every worker; then sends ``--requests`` requests per endpoint closed-loop on
``--conns`` keep-alive connections, the trivial endpoint and recommendations alternating in
``--rounds`` rounds, and reads from ``/proc``:

- the gunicorn workers' CPU (user + system, all threads) per request;
- the CPU of the PostgreSQL backends connected to ``--database`` (from ``pg_stat_activity``) per request;
- this process's own CPU (the load generator) and the whole machine's busy CPU (``/proc/stat``),
  whose rest is Redis, PostgreSQL's own processes and everything else running;
- the latency distribution (p50 / p90 / p99 / max: a collection's pause shows in the max).

``--code DIR`` serves the code in DIR (a ``git archive`` export of another commit) instead of this
checkout's, for an A/B on the same data and model; the key and the URL mix come from this checkout.
Run it under ``/work/wt/bin/bench`` like every timed run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks import recommendations_speed as speed  # noqa: E402
from benchmarks.procstat import machine_busy, process_cpu  # noqa: E402


def backends(database: str) -> list[int]:
    """PostgreSQL backends connected to ``database`` (the web workers' pooled connections)."""
    import psycopg

    from benchmarks.scratch import server_url, with_db

    with psycopg.connect(with_db(server_url(), "postgres"), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND backend_type = 'client backend'", [database]
        ).fetchall()
    return [pid for (pid,) in rows]


def snapshot(worker_pids: list[int], database: str) -> dict:
    pg = backends(database)
    return {
        "workers": {pid: process_cpu(pid) for pid in worker_pids},
        "pg": {pid: process_cpu(pid) for pid in pg},
        "self": time.process_time(),
        "machine": machine_busy(),
        "wall": time.perf_counter(),
    }


async def closed_loop(port: int, key: str, paths: list[str], count: int, conns: int, start: int) -> list[float]:
    """``count`` requests on ``conns`` keep-alive connections, each sent when its connection's last
    answer is in; latency from sending to the answer's last byte."""
    latencies: list[float] = []
    errors = 0
    next_index = start

    async def one_connection() -> None:
        nonlocal next_index, errors
        reader, writer = await speed._open("127.0.0.1", port)
        try:
            while next_index < start + count:
                path = paths[next_index % len(paths)]
                next_index += 1
                sent = time.perf_counter()
                status = await speed._request(reader, writer, path, key)
                if status != 200:
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - sent)
        finally:
            writer.close()

    await asyncio.gather(*(one_connection() for _ in range(conns)))
    if errors:
        raise SystemExit(f"{errors} requests did not answer 200")
    return latencies


def phase_cost(before: dict, after: dict, requests: int) -> dict:
    workers = sum(after["workers"][pid] - before["workers"].get(pid, 0.0) for pid in after["workers"])
    pg = sum(after["pg"][pid] - before["pg"].get(pid, 0.0) for pid in after["pg"])
    own = after["self"] - before["self"]
    machine = after["machine"] - before["machine"]
    return {
        "requests": requests,
        "seconds": after["wall"] - before["wall"],
        "workers_s": workers,
        "pg_s": pg,
        "client_s": own,
        "machine_s": machine,
        "per_worker_s": [round(after["workers"][pid] - before["workers"][pid], 3) for pid in after["workers"]],
    }


def summary(costs: list[dict], latencies: list[float]) -> dict:
    import numpy as np

    n = sum(c["requests"] for c in costs)
    ms = np.array(latencies) * 1000

    def per_request_ms(key: str) -> float:
        return round(sum(c[key] for c in costs) / n * 1000, 3)

    workers, pg, client, machine = (per_request_ms(k) for k in ("workers_s", "pg_s", "client_s", "machine_s"))
    return {
        "requests": n,
        "closed_loop_rate": round(n / sum(c["seconds"] for c in costs), 1),
        "cpu_ms_per_request": {
            "gunicorn_workers": workers,
            "postgresql_backends": pg,
            "server_side": round(workers + pg, 3),
            "load_generator": client,
            "machine": machine,
            "rest_of_machine": round(machine - workers - pg - client, 3),
        },
        "per_round_workers_ms": [round(c["workers_s"] / c["requests"] * 1000, 3) for c in costs],
        "per_worker_s": [c["per_worker_s"] for c in costs],
        "latency_ms": {
            "p50": round(float(np.percentile(ms, 50)), 2),
            "p90": round(float(np.percentile(ms, 90)), 2),
            "p99": round(float(np.percentile(ms, 99)), 2),
            "max": round(float(ms.max()), 2),
        },
    }


def spy_start(server_pid: int, output: str) -> subprocess.Popen:
    spy = subprocess.Popen(
        [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(server_pid), "--subprocesses",
         "--gil", "--format", "raw", "--rate", "250", "--nonblocking", "--output", output],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(1.5)  # attached
    return spy


def inner_key() -> dict:
    """(In the benchmark's database, Django set up) an API key, and which model is active."""
    from cdp.services import api_key_create
    from recommendations.models import ModelStatus, ModelVersion

    active = ModelVersion.objects.filter(status=ModelStatus.ACTIVE).values_list("pk", flat=True).first()
    if active is None:
        raise SystemExit("no active model: run recommendations_speed.py --reuse --keep on this database first")
    _, key = api_key_create(name="serving_cpu")
    return {"key": key, "model": active}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", default="bench_lead")
    parser.add_argument("--redis-db", type=int, default=8)
    parser.add_argument("--requests", type=int, default=3000, help="requests per endpoint, over all rounds")
    parser.add_argument("--rounds", type=int, default=3, help="trivial and recommendations alternate this often")
    parser.add_argument("--conns", type=int, default=4, help="closed-loop keep-alive connections")
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="open loop instead: this many requests/s for --seconds per endpoint and round (the benchmark's "
        "load generator and 64 connections), to see the tail a CPU cost makes at a rate",
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="with --rate: seconds per endpoint and round")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--products", type=int, default=50_000, help="as the data was generated")
    parser.add_argument("--profiles", type=int, default=200_000, help="as the data was generated")
    parser.add_argument("--code", type=Path, default=REPO, help="serve this directory's code (an export)")
    parser.add_argument("--label", default="", help="a name for this run in the output")
    parser.add_argument(
        "--spy",
        metavar="PREFIX",
        help="py-spy (collapsed stacks, --gil) of the workers during the last round, one file per endpoint: "
        "PREFIX-trivial.txt, PREFIX-recommendations.txt (the sampling costs CPU: not for the figures)",
    )
    parser.add_argument("--inner-key", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.reuse_port, args.preload = True, False  # as the Procfile and the benchmark

    from benchmarks.scratch import server_url, with_db

    env = speed.bench_env(with_db(server_url(), args.database), args)
    if args.inner_key:
        import django

        django.setup()
        print(json.dumps(inner_key()))
        return 0
    made = subprocess.run(
        [sys.executable, __file__, "--inner-key", *(argv if argv is not None else sys.argv[1:])],
        cwd=REPO, env=env, capture_output=True, text=True,
    )  # fmt: skip
    if made.returncode != 0:
        raise SystemExit(made.stderr[-3000:])
    setup = json.loads(made.stdout.strip().splitlines()[-1])
    key = setup["key"]
    trivial, recs = speed.request_paths(args.products, args.profiles)
    port = speed.free_port()
    load_before = [round(x, 2) for x in os.getloadavg()]
    server, log = speed.gunicorn_start(env, port, args, code=args.code.resolve())
    try:
        speed.warm_up(port, key, recs, server.pid, 64)
        asyncio.run(speed.load("127.0.0.1", port, key, trivial, 50, 2, 16))
        import psutil

        worker_pids = [p.pid for p in psutil.Process(server.pid).children(recursive=True)]
        per_round = args.requests // args.rounds
        costs: dict[str, list[dict]] = {"trivial": [], "recommendations": []}
        latencies: dict[str, list[float]] = {"trivial": [], "recommendations": []}
        for r in range(args.rounds):
            for name, paths in (("trivial", trivial), ("recommendations", recs)):
                spy = spy_start(server.pid, f"{args.spy}-{name}.txt") if args.spy and r == args.rounds - 1 else None
                before = snapshot(worker_pids, args.database)
                if args.rate:  # open loop, as recommendations_speed.py (its 64 connections)
                    got = []
                    row = asyncio.run(speed.load("127.0.0.1", port, key, paths, args.rate, args.seconds, 64, got))
                    if row["errors"]:
                        raise SystemExit(f"{row['errors']} requests did not answer 200")
                else:
                    got = asyncio.run(closed_loop(port, key, paths, per_round, args.conns, 1000 + r * per_round))
                after = snapshot(worker_pids, args.database)
                if spy is not None:
                    spy.send_signal(signal.SIGINT)
                    spy.wait(30)
                costs[name].append(phase_cost(before, after, len(got)))
                latencies[name] += got
        rss = speed.worker_rss_mb(server.pid)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
        log.close()
    report = {
        "label": args.label,
        "code": str(args.code),
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "model": setup["model"],
        "load_average_before": load_before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "conns": args.conns,
        "open_loop_rate": args.rate or None,
        "worker_rss_mb": rss,
        **{name: summary(costs[name], latencies[name]) for name in costs},
    }
    t, r = report["trivial"]["cpu_ms_per_request"], report["recommendations"]["cpu_ms_per_request"]
    report["ratio_server_side_cpu"] = round(r["server_side"] / t["server_side"], 2)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
