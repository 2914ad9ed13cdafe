"""Recommendations speed: the serving API under load, and the model refresh on Online Retail.

    python benchmarks/recommendations_speed.py [--products 50000] [--profiles 200000] [--rate 300]
        [--seconds 30] [--workers 4] [--threads 2] [--preload] [--no-reuse-port]
        [--part serving|retail|quality|all] [--keep]

Serving: a scratch database (``cdp_bench_recs``) gets 50,000 products, 200,000 profiles with a
user id each, about a million interactions (orders and product views, generated with set-based
SQL), personalisation consent for 70 % of the people and five segments; a model is trained by the
refresh service; gunicorn (``--workers`` gthread workers, each on its own ``SO_REUSEPORT`` socket as
the Procfile runs them) serves it. An open-loop load generator
(asyncio; each request has a fixed start time, latency is measured from that time, so a slow
server cannot slow the generator down and hide its own queueing) sends ``--rate`` requests/s for
``--seconds`` to a trivial authenticated DRF endpoint (``GET /api/v1/products/{sku}/``: key auth,
throttle, one query) and then to ``GET /api/v1/recommendations/`` in the same run, against the
same server. Prints p50/p95/p99 and the ratio.

Memory: each web worker's RSS, PSS and private memory (USS), and the resident pages of the mapped
model files, three times: after a few trivial requests (Django and every URL module loaded, no
model yet), after the warm-up (the model loaded) and after the measured load. ``--preload`` starts
gunicorn with ``--preload`` (the application imported once in the master, before the fork).

Retail: another scratch database (``cdp_bench_recs_retail``) imports
/work/shared/datasets/online_retail/online_retail.csv.gz with profiles' import_orders (timed apart),
then the model refresh end to end (extract from PostgreSQL, holdout split, train, evaluate, retrain
on all data, publish) is timed, twice: the first model, and a second refresh that also evaluates
the active model.

Quality (``--part quality``, in ``all`` too): ``evaluate_recommendations`` with the default recipe
and every protocol baseline, on Online Retail and on two grocery-like histories generated with a
fixed seed by ``benchmarks/grocery_histories.py`` (staples at random, staples on replenishment
cycles); the hybrid's nDCG@10 against buy-again's (targets: ≥ 1.10 on Online Retail, no loss on
the grocery histories). So ``--part all`` is issue 15's "one run": speed and quality together.

Servers: a private PostgreSQL and Redis of the run's own (``benchmarks/servers.py``, decision 0072:
127.0.0.1, free ports, the machine's PostgreSQL build with its defaults and ``fsync`` on), stopped
and removed at the end; ``--server-url postgres://…`` / ``--redis-url redis://…`` use given servers
instead (needed with ``--keep``, ``--generate-only`` and ``--reuse``, whose data outlives the run).
The databases are dropped at the end unless ``--keep``. Redis DB ``--redis-db`` (default 14) is
used by the server; on a shared Redis, do not run tests on it meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.scratch import scratch_database_create, scratch_database_drop  # noqa: E402

RETAIL = Path("/work/shared/datasets/online_retail/online_retail.csv.gz")


def redis_url(db: int) -> str:
    base = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    head, _, _ = base.rpartition("/")
    return f"{head}/{db}"


def bench_env(url: str, args) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": url,
        "REDIS_URL": redis_url(args.redis_db),
        "CACHE_KEY_PREFIX": "cdp-bench-recs",
        "DEBUG": "false",
        "SECRET_KEY": "benchmark-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
        "CONSENT_HASH_SALT": "benchmark-only-consent-salt-0123456789",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "false",
        "LOG_LEVEL": "WARNING",
        "DB_STATEMENT_TIMEOUT_MS": "0",
        "OPENBLAS_NUM_THREADS": "1",
        "DJANGO_SETTINGS_MODULE": "cdp.settings",
    }


def create_db(name: str, args) -> str:
    url = scratch_database_create(name)
    env = bench_env(url, args)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=REPO, env=env, check=True)
    return url


def drop_db(name: str) -> None:
    scratch_database_drop(name)


def run_child(argv: list[str], env: dict[str, str], what: str) -> str:
    """Run a child process in the repository; its stdout, or SystemExit with the end of its stderr."""
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{what} failed:\n{done.stderr[-4000:]}")
    return done.stdout


def inner(flag: str, env: dict[str, str], what: str) -> dict:
    """This script again with ``flag`` (one of the ``--inner-*``): the JSON its last line prints."""
    stdout = run_child([sys.executable, __file__, flag, *sys.argv[1:]], env, what)
    return json.loads(stdout.strip().splitlines()[-1])


# --- data -----------------------------------------------------------------------------------------

GENERATE_SQL = """
SELECT setseed(0.42);
INSERT INTO profiles_source
    (name, write_key_prefix, write_key_hash, is_active, created_at, allowed_origins, user_token_secret)
VALUES ('bench', 'wk_bench', md5('bench'), true, now(), '{}', md5('bench-user-token'));

INSERT INTO recommendations_product
    (sku, title, description, category, brand, price, attributes, in_stock, first_seen_source, created_at, updated_at)
SELECT 'P' || lpad(g::text, 6, '0'), 'Product ' || g, '', 'cat' || (g %% 40) || ' > sub' || (g %% 7),
       'brand' || (g %% 300), (5 + (g * 7919) %% 500)::numeric, '{}'::jsonb, (g %% 23) <> 0, 'import', now(), now()
FROM generate_series(1, %(products)s) g;

CREATE TEMP TABLE bench_people AS
SELECT g AS n, md5('person' || g)::uuid AS id FROM generate_series(1, %(profiles)s) g;

INSERT INTO profiles_profile (id, traits, trait_meta, computed, first_seen_at, last_seen_at, created_at, updated_at)
SELECT id, jsonb_build_object('user_id', 'u' || n), '{}'::jsonb, '{}'::jsonb, now() - interval '120 days',
       now(), now(), now()
FROM bench_people;

INSERT INTO profiles_identifier (kind, value, profile_id, created_at, last_seen_at)
SELECT 'user_id', 'u' || n, id, now(), now() FROM bench_people;

-- orders: 60 %% of people, 1-2 orders of 1-3 lines; item popularity skewed (a few best sellers)
CREATE TEMP TABLE bench_lines AS
SELECT p.n, p.id, o AS order_no, 1 + floor(%(products)s * power(random(), 2.5))::int AS item,
       now() - (random() * interval '90 days') AS at
FROM bench_people p
CROSS JOIN LATERAL generate_series(1, 1 + (p.n %% 2)) o
CROSS JOIN LATERAL generate_series(1, 1 + (p.n * 7 + o) %% 3) l
WHERE p.n %% 10 < 6;

INSERT INTO profiles_event
    (source_id, message_id, profile_id, type, name, user_id, anonymous_id, properties, traits, context,
     occurred_at, original_timestamp, sent_at, received_at, device_type, local_hour)
SELECT (SELECT id FROM profiles_source WHERE name = 'bench'), 'order-' || n || '-' || order_no, id, 'track',
       'Order Completed', 'u' || n, '',
       jsonb_build_object('order_id', 'o' || n || '-' || order_no, 'products', jsonb_agg(jsonb_build_object(
           'product_id', 'P' || lpad(item::text, 6, '0'), 'quantity', 1, 'price', 20,
           'category', 'cat' || (item %% 40) || ' > sub' || (item %% 7)))),
       '{}'::jsonb, '{}'::jsonb, min(at), min(at), min(at), min(at), 'desktop', 20
FROM bench_lines GROUP BY n, id, order_no;

-- product views: 0-6 per person
INSERT INTO profiles_event
    (source_id, message_id, profile_id, type, name, user_id, anonymous_id, properties, traits, context,
     occurred_at, original_timestamp, sent_at, received_at, device_type, local_hour)
SELECT (SELECT id FROM profiles_source WHERE name = 'bench'), 'view-' || p.n || '-' || v, p.id, 'track',
       'Product Viewed', 'u' || p.n, '',
       jsonb_build_object('product_id', 'P' || lpad(x.item::text, 6, '0'),
                          'category', 'cat' || (x.item %% 40) || ' > sub' || (x.item %% 7)),
       '{}'::jsonb, '{}'::jsonb, x.at, x.at, x.at, x.at,
       CASE WHEN p.n %% 3 = 0 THEN 'mobile' ELSE 'desktop' END, (p.n %% 24)
FROM bench_people p
CROSS JOIN LATERAL generate_series(1, p.n %% 7) v
CROSS JOIN LATERAL (SELECT 1 + floor(%(products)s * power(random() + v * 0, 2.5))::int AS item,
                           now() - (random() * interval '90 days') AS at) x;

-- personalisation consent for 70 %% of the people
INSERT INTO consent_consentrecord
    (profile_id, purpose_id, granted, source, policy_version, evidence, recorded_at, expires_at)
SELECT id, (SELECT id FROM consent_purpose WHERE key = 'personalisation'), true, 'import', '1', '{}'::jsonb,
       now() - interval '100 days', now() + interval '295 days'
FROM bench_people WHERE n %% 10 < 7;

-- five segments of 20,000 people each
INSERT INTO segments_segment
    (slug, name, description, kind, status, definition, definition_text, cluster_profile, size, created_at,
     updated_at, created_by)
SELECT 'bench-' || s, 'Bench segment ' || s, '', 'rule', 'active', NULL, '', '{}'::jsonb, 0, now(), now(), 'bench'
FROM generate_series(1, 5) s;
INSERT INTO segments_segmentmembership (segment_id, profile_id, entered_at, exited_at)
SELECT seg.id, p.id, now(), NULL
FROM bench_people p JOIN segments_segment seg ON seg.slug = 'bench-' || (1 + p.n %% 5)
WHERE p.n %% 2 = 0;
ANALYZE;
"""


def generate(args) -> dict:
    """Inside the benchmark database (Django set up): data, consent state, a trained model, a key."""
    from django.db import connection

    from cdp.services import api_key_create
    from consent.services import consent_state_rebuild, purposes_ensure
    from recommendations import services

    purposes_ensure()
    started = time.perf_counter()
    with connection.cursor() as cursor:
        if not args.reuse:
            cursor.execute(GENERATE_SQL, {"products": args.products, "profiles": args.profiles})
        cursor.execute("SELECT count(*) FROM profiles_event")
        (events,) = cursor.fetchone()
    if not args.reuse:
        consent_state_rebuild()
    else:  # the refresh below is the first one, as on fresh data
        from recommendations.models import ModelVersion

        ModelVersion.objects.all().delete()
    generate_seconds = time.perf_counter() - started
    if args.generate_only:
        return {"events": events, "generate_seconds": round(generate_seconds, 1)}
    started = time.perf_counter()
    version = services.model_refresh_start(requested_by="benchmark", queue=False)
    version = services.model_refresh_execute(version_id=version.pk)
    if version.status != "active":
        raise SystemExit(f"model refresh did not produce an active model: {version.status} {version.error}")
    refresh_seconds = time.perf_counter() - started
    # what one does after a bulk load: the tables vacuumed and analyzed before serving is measured, so
    # autovacuum (on in the private server, as in production) does not take its turn on ~800,000 new
    # rows in the middle of the measured load (decision 0072)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE)")
    _, key = api_key_create(name="benchmark")
    import resource

    return {
        "events": events,
        # the peak resident memory of this process: the refresh (extract, train, evaluate, store)
        "refresh_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "interactions": version.data_stats.get("interactions"),
        "generate_seconds": round(generate_seconds, 1),
        "refresh_seconds": round(refresh_seconds, 1),
        "refresh_timings": version.data_stats.get("seconds", {}),
        "artifact_mb": round(version.artifact_bytes / 1e6, 1),
        "ndcg": version.metrics.get("ndcg@10"),
        "key": key,
    }


def second_model(args) -> dict:
    """Train a model with ``--also-params`` and make it the active one (servers swap within a second)."""
    from recommendations import services

    started = time.perf_counter()
    params = json.loads(args.also_params)
    version = services.model_refresh_start(requested_by="benchmark", queue=False)
    version.params = params  # exactly this recipe, not merged with RECS_TRAIN_PARAMS
    version.save(update_fields=["params"])
    version = services.model_refresh_execute(version_id=version.pk)
    if version.status == "candidate":
        version = services.model_version_promote(version=version, by="benchmark", reason="benchmark comparison")
    if version.status != "active":
        raise SystemExit(f"second model: {version.status} {version.error}")
    return {
        "version": version.pk,
        "refresh_seconds": round(time.perf_counter() - started, 1),
        "ndcg": version.metrics.get("ndcg@10"),
    }


# --- the load generator ------------------------------------------------------------------------------


async def _open(host: str, port: int):
    return await asyncio.open_connection(host, port)


async def _request(reader, writer, path: str, key: str) -> int:
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
        "Accept: application/json\r\n\r\n".encode()
    )
    status_line = await reader.readline()
    status = int(status_line.split()[1])
    length = 0
    chunked = False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        if name.lower() == "content-length":
            length = int(value)
        elif name.lower() == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
    if chunked:  # not expected from Django, but be correct
        while True:
            size = int((await reader.readline()).strip(), 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status


async def load(
    host: str, port: int, key: str, paths: list[str], rate: float, seconds: float, conns: int, keep: list | None = None
) -> dict:
    """Open loop: request i starts at t0 + i / rate whatever happened before; latency from that time
    (``keep``: a list the latencies in seconds are added to)."""
    loop = asyncio.get_running_loop()
    pool: asyncio.Queue = asyncio.Queue()
    for _ in range(conns):
        pool.put_nowait(await _open(host, port))
    n = int(rate * seconds)
    latencies = [0.0] * n
    statuses = [0] * n
    t0 = loop.time() + 0.2

    async def one(i: int) -> None:
        scheduled = t0 + i / rate
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        reader, writer = await pool.get()
        try:
            statuses[i] = await _request(reader, writer, paths[i % len(paths)], key)
        except (ConnectionError, asyncio.IncompleteReadError, ValueError, IndexError):
            writer.close()
            reader, writer = await _open(host, port)
            statuses[i] = -1
        finally:
            pool.put_nowait((reader, writer))
        latencies[i] = loop.time() - scheduled

    tasks = []
    for i in range(n):  # create tasks just ahead of their time (a few thousand sleeping tasks at most)
        ahead = t0 + i / rate - loop.time()
        if ahead > 1.0:
            await asyncio.sleep(ahead - 1.0)
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    while not pool.empty():
        _, writer = pool.get_nowait()
        writer.close()
    import numpy as np

    if keep is not None:
        keep.extend(latencies)
    ms = np.array(latencies) * 1000
    ok = sum(1 for s in statuses if s == 200)
    achieved = n / (max(latencies[-1] + (n - 1) / rate, 1e-9))
    return {
        "requests": n,
        "ok": ok,
        "errors": n - ok,
        "p50": round(float(np.percentile(ms, 50)), 2),
        "p95": round(float(np.percentile(ms, 95)), 2),
        "p99": round(float(np.percentile(ms, 99)), 2),
        "max": round(float(ms.max()), 2),
        "achieved_rate": round(achieved, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def worker_rss_mb(server_pid: int) -> list[float]:
    """Resident memory of each gunicorn worker (the processes that hold a loaded model)."""
    import psutil

    return [round(p.memory_info().rss / 1e6, 1) for p in psutil.Process(server_pid).children(recursive=True)]


def worker_memory(server_pid: int) -> list[dict]:
    """Per worker: resident (RSS), proportional (PSS: shared pages divided among the processes that
    map them) and the resident pages of the mapped model files (shared by every worker)."""
    import psutil

    out = []
    for proc in psutil.Process(server_pid).children(recursive=True):
        model_rss = model_pss = 0
        for region in proc.memory_maps(grouped=True):
            if "recs-models" in region.path:
                model_rss += region.rss
                model_pss += region.pss
        full = proc.memory_full_info()
        out.append(
            {
                "rss_mb": round(full.rss / 1e6, 1),
                "pss_mb": round(full.pss / 1e6, 1),
                "uss_mb": round(full.uss / 1e6, 1),
                "model_files_rss_mb": round(model_rss / 1e6, 1),
                "model_files_pss_mb": round(model_pss / 1e6, 1),
            }
        )
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request_paths(products: int, profiles: int) -> tuple[list[str], list[str]]:
    """The benchmark's requests (fixed seed): 5,000 trivial ones (a product by sku) and 5,000
    recommendations (85 % a known person's home list, 15 % an anonymous visitor with a session item)."""
    rng = random.Random(7)
    trivial = [f"/api/v1/products/P{rng.randint(1, products):06d}/" for _ in range(5000)]
    recs = []
    for _ in range(5000):
        if rng.random() < 0.85:
            recs.append(f"/api/v1/recommendations/?user_id=u{rng.randint(1, profiles)}&k=10&placement=home")
        else:
            sku = f"P{rng.randint(1, 2000):06d}"
            recs.append(
                f"/api/v1/recommendations/?anonymous_id=visitor-{rng.randint(1, 10**9)}&k=10&session_items={sku}"
            )
    return trivial, recs


def gunicorn_start(env: dict[str, str], port: int, args, code: Path = REPO):
    """gunicorn as the Procfile runs it (gthread workers, ``--reuse-port`` unless told otherwise), on
    the code in ``code`` (another checkout or a ``git archive`` export for an A/B); returns once it
    listens, with its log file."""
    (code / ".cdp").mkdir(exist_ok=True)  # made by make; the benchmark may run first on a fresh clone
    log = open(code / ".cdp" / "bench-recs-gunicorn.log", "w")  # noqa: SIM115
    server = subprocess.Popen(
        [
            sys.executable, "-m", "gunicorn", "cdp.wsgi:application",
            "--bind", f"127.0.0.1:{port}", "--workers", str(args.workers), "--threads", str(args.threads),
            "--worker-class", "gthread", "--keep-alive", "5", "--timeout", "120",
            *(["--reuse-port"] if args.reuse_port else []),
            *(["--preload"] if args.preload else []),
        ],
        cwd=code, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.2)
    return server, log


def warm_up(port: int, key: str, recs: list[str], server_pid: int, conns: int) -> None:
    """Every worker loads the model and the catalog once (the kernel may hand every warm-up
    connection to one worker: more rounds, on as many connections as the run, until each worker has
    mapped the model, at most six)."""
    asyncio.run(load("127.0.0.1", port, key, recs, 50, 10, 16))
    for _ in range(6):
        if all(w["model_files_rss_mb"] > 0 for w in worker_memory(server_pid)):
            break
        asyncio.run(load("127.0.0.1", port, key, recs, 50, 5, conns))


def serving_part(args) -> dict:
    if args.reuse:  # the data of an earlier ``--generate-only --keep`` run (a new model is trained)
        from benchmarks.scratch import server_url, with_db

        url = with_db(server_url(), args.database)
    else:
        url = create_db(args.database, args)
    # the first model's recipe; no retrain on all data (the serving figures do not depend on it)
    env = {**bench_env(url, args), "RECS_TRAIN_PARAMS": args.params or "{}", "RECS_RETRAIN_ON_ALL_DATA": "false"}
    try:
        info = inner("--inner-generate", env, "data generation")
        print("setup", json.dumps({k: v for k, v in info.items() if k != "key"}), file=sys.stderr, flush=True)
        if args.generate_only:
            return info
        port = free_port()
        server, log = gunicorn_start(env, port, args)
        try:
            trivial, recs = request_paths(args.products, args.profiles)
            key = info["key"]
            results = {"model": {k: v for k, v in info.items() if k != "key"}}
            # every worker answers a few trivial requests: Django and the URLs loaded, no model yet
            asyncio.run(load("127.0.0.1", port, key, trivial, 50, 2, 16))
            results["worker_memory_before_model"] = worker_memory(server.pid)
            print("worker memory before the model", json.dumps(results["worker_memory_before_model"]), file=sys.stderr)
            warm_up(port, key, recs, server.pid, args.conns)
            asyncio.run(load("127.0.0.1", port, key, trivial, 50, 3, 16))
            results["worker_rss_mb"] = worker_rss_mb(server.pid)
            results["worker_memory"] = worker_memory(server.pid)
            print("worker memory", json.dumps(results["worker_memory"]), file=sys.stderr, flush=True)
            for name, paths in (("trivial", trivial), ("recommendations", recs)):
                results[name] = asyncio.run(load("127.0.0.1", port, key, paths, args.rate, args.seconds, args.conns))
                print(name, json.dumps(results[name]), file=sys.stderr, flush=True)  # partial results survive
            results["worker_memory_after"] = worker_memory(server.pid)  # after every request of the run
            print("worker memory after", json.dumps(results["worker_memory_after"]), file=sys.stderr, flush=True)
            for rate in args.also_rates:  # the same two endpoints at other rates (where does it saturate?)
                for name, paths in (("trivial", trivial), ("recommendations", recs)):
                    row = asyncio.run(load("127.0.0.1", port, key, paths, rate, args.seconds, args.conns))
                    results[f"{name}@{rate:g}"] = row
                    print(f"{name}@{rate:g}", json.dumps(row), file=sys.stderr, flush=True)
            if args.also_params:
                # another recipe, promoted while the server runs: it swaps models without a restart
                results["second_model"] = inner("--inner-second", env, "second model")
                print("second model", json.dumps(results["second_model"]), file=sys.stderr, flush=True)
                asyncio.run(load("127.0.0.1", port, key, recs, 50, 10, 16))  # every worker loads it
                results["recommendations_second_model"] = asyncio.run(
                    load("127.0.0.1", port, key, recs, args.rate, args.seconds, args.conns)
                )
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(30)
            log.close()
        return {**info, "key": "…", **results}
    finally:
        if not args.keep:
            drop_db(args.database)


# --- Online Retail refresh --------------------------------------------------------------------------


def retail_inner(args) -> dict:
    from django.core.management import call_command

    from recommendations import services

    started = time.perf_counter()
    call_command("import_orders", str(RETAIL), "--no-progress", stdout=open(os.devnull, "w"))  # noqa: SIM115
    import_seconds = time.perf_counter() - started
    # models learn only from people who allow personalisation: the shop imports its customers'
    # recorded answers with their orders (here: every customer agreed), as the serving part does for 70 %
    from django.utils import timezone

    from consent.services import consent_records_bulk, purposes_ensure
    from profiles.models import Profile

    purposes_ensure()
    now = timezone.now()
    people = Profile.objects.filter(merged_into__isnull=True).values_list("pk", flat=True)
    consent_records_bulk(entries=[(str(pk), {"personalisation": True}, now, {}) for pk in people], source="import")
    out = {"import_seconds": round(import_seconds, 1), "refreshes": []}
    for _ in range(2):
        started = time.perf_counter()
        version = services.model_refresh_start(requested_by="benchmark", queue=False)
        version = services.model_refresh_execute(version_id=version.pk)
        seconds = time.perf_counter() - started
        out["refreshes"].append(
            {
                "seconds": round(seconds, 1),
                "status": version.status,
                "error": version.error,
                "timings": version.data_stats.get("seconds", {}),
                "interactions": version.data_stats.get("interactions"),
                "users": version.data_stats.get("users"),
                "items": version.data_stats.get("items"),
                "holdout_users": version.data_stats.get("holdout_users"),
                "ndcg": version.metrics.get("ndcg@10"),
                "baseline_ndcg": version.baseline_metrics.get("ndcg@10"),
                "artifact_mb": round(version.artifact_bytes / 1e6, 1),
            }
        )
    return out


def retail_part(args) -> dict:
    name = f"{args.database}_retail"
    url = create_db(name, args)
    try:
        return inner("--inner-retail", bench_env(url, args), "retail refresh")
    finally:
        if not args.keep:
            drop_db(name)


# --- quality: protocol R on Online Retail and on two grocery-like histories ---------------------

QUALITY_TARGETS = {"online_retail": 1.10, "grocery_random": 1.0, "grocery_cycles": 1.0}


def quality_part(args) -> dict:
    """The quality half of the issue's one run: ``evaluate_recommendations`` (the default recipe,
    every protocol baseline in the same run) on Online Retail and on two grocery-like histories
    generated with a fixed seed (benchmarks/grocery_histories.py), in a scratch database; the
    hybrid's nDCG@10 against buy-again's."""
    import tempfile

    from benchmarks.grocery_histories import grocery_history

    name = f"{args.database}_quality"
    url = create_db(name, args)
    out: dict = {}
    try:
        with tempfile.TemporaryDirectory(prefix="cdp-grocery-") as tmp:
            files = {"online_retail": RETAIL}
            for variant in ("random", "cycles"):
                files[f"grocery_{variant}"] = Path(tmp) / f"grocery-{variant}.csv.gz"
                grocery_history(files[f"grocery_{variant}"], variant=variant, seed=args.grocery_seed)
            for label, path in files.items():
                stdout = run_child(
                    [sys.executable, "manage.py", "evaluate_recommendations", str(path), "--no-progress"],
                    bench_env(url, args),
                    f"evaluate_recommendations on {label}",
                )
                result = json.loads(stdout)  # one indented JSON object
                models = result["models"]
                hybrid, buy_again = models["hybrid"]["ndcg@10"], models["buy_again"]["ndcg@10"]
                ratio = hybrid / buy_again if buy_again else None
                out[label] = {
                    "customers_evaluated": result["users_evaluated"],
                    "items": result["items"],
                    "hybrid_ndcg": hybrid,
                    "buy_again_ndcg": buy_again,
                    "best_baseline": result["best_baseline"],
                    "hybrid_vs_buy_again": round(ratio, 4) if ratio is not None else None,
                    "hybrid_vs_best_baseline": result["hybrid_vs_best_baseline"],
                    "target": QUALITY_TARGETS[label],
                    "met": ratio is not None and ratio >= QUALITY_TARGETS[label],
                    "seconds": result["seconds"],
                }
    finally:
        if not args.keep:
            drop_db(name)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--products", type=int, default=50_000)
    parser.add_argument("--profiles", type=int, default=200_000)
    parser.add_argument("--rate", type=float, default=300.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds of load per endpoint")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn gthread workers (the Procfile's default)")
    parser.add_argument("--threads", type=int, default=2, help="threads per worker (the Procfile's default)")
    parser.add_argument("--preload", action="store_true", help="gunicorn --preload (import the app before the fork)")
    parser.add_argument(
        "--reuse-port",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="gunicorn --reuse-port, as the Procfile runs it: each worker listens on its own SO_REUSEPORT "
        "socket and the kernel spreads new connections over them (--no-reuse-port: one shared socket)",
    )
    parser.add_argument("--conns", type=int, default=64, help="keep-alive connections of the load generator")
    parser.add_argument(
        "--part",
        choices=["serving", "retail", "quality", "all"],
        default="all",
        help="serving: the API under load; retail: the refresh timed on Online Retail; quality: nDCG@10 "
        "of the default recipe against buy-again on Online Retail and two grocery-like histories; all: the three",
    )
    parser.add_argument("--grocery-seed", type=int, default=1, help="seed of the generated grocery histories")
    parser.add_argument("--database", default="cdp_bench_recs")
    parser.add_argument("--redis-db", type=int, default=14)
    parser.add_argument(
        "--server-url", help="PostgreSQL server (postgres://user@host:port) to use instead of a private one"
    )
    parser.add_argument("--redis-url", help="Redis server (redis://host:port) to use instead of a private one")
    parser.add_argument("--keep", action="store_true", help="keep the scratch databases")
    parser.add_argument(
        "--generate-only", action="store_true", help="only create and fill the serving database (use with --keep)"
    )
    parser.add_argument(
        "--reuse", action="store_true", help="serving: use the data of an earlier --generate-only --keep run"
    )
    parser.add_argument("--inner-generate", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--inner-retail", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--inner-second", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--also-rates", type=lambda v: [float(x) for x in v.split(",") if x], default=[], help="e.g. 150,200"
    )
    parser.add_argument("--params", default="", help="JSON recipe of the first model (default: the engine's)")
    parser.add_argument(
        "--also-params",
        default="",
        help='JSON recipe of a second model, measured in the same run after a hot swap, e.g. \'{"primary": "als"}\'',
    )
    args = parser.parse_args()
    if args.inner_generate or args.inner_retail or args.inner_second:
        import django

        django.setup()
        if args.inner_second:
            result = second_model(args)
        else:
            result = generate(args) if args.inner_generate else retail_inner(args)
        print(json.dumps(result, default=str))
        return 0
    if (args.keep or args.generate_only or args.reuse) and not args.server_url:
        parser.error("--keep, --generate-only and --reuse keep data beyond the run: give --server-url")
    from benchmarks.servers import given_servers_problem, private_servers

    problem = given_servers_problem(postgres_url=args.server_url, redis_url=args.redis_url)
    if problem:
        parser.error(problem)

    with private_servers(postgres_url=args.server_url, redis_url=args.redis_url) as servers:
        # the children (this script's --inner-* runs, manage.py, gunicorn) inherit these
        os.environ["DATABASE_URL"] = f"{servers.postgres_url}/postgres"
        os.environ["REDIS_URL"] = f"{servers.redis_url}/0"
        print(f"servers: {servers.described}", file=sys.stderr, flush=True)
        return _measure(args, servers.described)


def _measure(args, servers: str) -> int:
    report: dict = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpus": os.cpu_count()}
    report["servers"] = servers
    report["load_average_before"] = [round(x, 2) for x in os.getloadavg()]
    if args.part in ("serving", "all"):
        report["serving"] = serving_part(args)
    if args.part in ("retail", "all"):
        report["retail"] = retail_part(args)
    if args.part in ("quality", "all"):
        report["quality"] = quality_part(args)
    report["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(report, indent=2, default=str))
    if "serving" in report and "trivial" in report["serving"]:
        t, r = report["serving"]["trivial"], report["serving"]["recommendations"]
        print("\n| endpoint | requests | errors | p50 ms | p95 ms | p99 ms | max ms |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        rows = [("trivial: GET /api/v1/products/{sku}/", t), (f"GET /api/v1/recommendations/ {args.params}", r)]
        for rate in args.also_rates:
            rows.append((f"trivial at {rate:g}/s", report["serving"][f"trivial@{rate:g}"]))
            rows.append((f"recommendations at {rate:g}/s", report["serving"][f"recommendations@{rate:g}"]))
        if "recommendations_second_model" in report["serving"]:
            rows.append(
                (f"… after a hot swap to {args.also_params}", report["serving"]["recommendations_second_model"])
            )
        for name, row in rows:
            print(
                f"| {name} | {row['requests']} | {row['errors']} | {row['p50']} | {row['p95']} | "
                f"{row['p99']} | {row['max']} |"
            )
        print(f"\np99 ratio recommendations / trivial: {r['p99'] / max(t['p99'], 1e-9):.2f}")
        print(f"web workers' resident memory with the model loaded (MB): {report['serving'].get('worker_rss_mb')}")
        for stage, label in (
            ("worker_memory_before_model", "before the model"),
            ("worker_memory", "after the warm-up"),
            ("worker_memory_after", "after the measured load"),
        ):
            rows = report["serving"].get(stage) or []
            figures = "; ".join(
                f"RSS {w['rss_mb']}, PSS {w['pss_mb']}, USS {w['uss_mb']}, model files {w['model_files_rss_mb']}"
                for w in rows
            )
            print(f"workers {label} (MB): {figures}")
        worst = max((w["rss_mb"] for w in report["serving"].get("worker_memory_after") or []), default=None)
        if worst is not None:
            verdict = "met" if worst < 500 else "missed"
            print(f"largest worker RSS after the run: {worst} MB (target < 500 MB: {verdict})")
    if "retail" in report:
        for n, row in enumerate(report["retail"]["refreshes"], start=1):
            print(f"retail refresh {n}: {row['seconds']} s ({row['status']}; {row['timings']})")
    if "quality" in report:
        print("\n| history | customers evaluated | buy_again nDCG@10 | hybrid nDCG@10 | ratio | target |")
        print("|---|---:|---:|---:|---:|---|")
        for label, row in report["quality"].items():
            verdict = "met" if row["met"] else "missed"
            print(
                f"| {label} | {row['customers_evaluated']:,} | {row['buy_again_ndcg']:.4f} | "
                f"{row['hybrid_ndcg']:.4f} | {row['hybrid_vs_buy_again']} | >= {row['target']:.2f}: {verdict} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
