#!/usr/bin/env python
"""Ingestion benchmark: POST /v1/batch under gunicorn vs raw PostgreSQL COPY, /v1/track latency, and
the stitch workers behind the intake log (decision 0039): stitching rate, identity lag, lost/doubled.

    python benchmarks/ingest.py [--events N] [--batch-size B] [--concurrency C] [--track-seconds S]
                                [--lag-rate R] [--lag-seconds S] [--stitchers K]

What it does, all on this machine and over loopback only:

1. Starts a private PostgreSQL and Redis (``benchmarks/servers.py``: 127.0.0.1, free ports, fresh
   directories, PostgreSQL's defaults with ``fsync`` on; decision 0072), or uses the servers of
   ``--server-url`` / ``--redis-url`` instead; creates a fresh database (``cdp_bench_ingest``) there,
   migrates it and creates a source.
2. Starts ``gunicorn cdp.wsgi:application --workers W`` (sync workers; with ``--threads T`` > 1,
   gthread workers on their own ``SO_REUSEPORT`` sockets, as the Procfile's web line) on a free
   port, with Redis on its own database number (``--redis-db``) so that on a shared Redis no other
   process's workers or throttles see the benchmark's traffic.
3. Batch throughput: C load-generator processes (fork, one ``http.client`` connection each, bodies
   serialised before the clock starts) send N Segment events (identify/track/page for a shop with
   ``--users`` distinct people, several devices each) in batches of B; events/s = accepted events /
   wall time from the first request sent to the last response read. Any error fails the run.
4. Track latency: an open-loop generator sends ``POST /v1/track`` at a fixed 200 requests/s for S
   seconds (returning users), each request on its schedule; latency is measured from the scheduled
   start, so a stalled server shows up in the figures instead of slowing the generator down.
5. Baseline, same run: the calls the API accepted are written again with ``COPY ... FROM STDIN``
   (psycopg 3, JSON as text) into a logged table of the intake log's shape *with the same indexes*
   (what the request writes durably), and the stored events into a logged table of the events
   table's shape with its indexes (the earlier baseline) and into one without indexes. The ratio is
   API events/s / COPY events/s.
6. Stitching: a Celery worker on the ``intake`` queue (K prefork processes) runs through all of it;
   after the batch load the benchmark waits until the intake log is empty: stitching rate = calls /
   time from the first request to the empty log. Identity lag: an open-loop sender posts batches
   at R events/s for S seconds while a poller reads newly stitched events every 0.1 s; each event's
   lag is the poll time minus its received_at (an upper bound, within 0.1 s). Lost and doubled:
   every accepted messageId is in the events table once (or set aside as poison), counted.

It prints a markdown table, stops gunicorn, drops the database and stops the private servers (also on
failure or Ctrl-C).
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import multiprocessing
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.procstat import machine_busy, process_alive, process_cpu, process_tree  # noqa: E402
from benchmarks.servers import given_servers_problem, private_servers  # noqa: E402
from cdp.envfiles import BASE_DIR  # noqa: E402

HOST = "127.0.0.1"
TRACK_RATE = 200  # requests/s for the latency test (the target's rate; --track-rate changes it)
TRACK_SENDERS = 4  # open-loop sender processes for the latency test
TARGET_EVENTS_PER_S = 20_000
TARGET_TRACK_P99_MS = 20.0
TARGET_COPY_RATIO = 0.5
TARGET_LAG_P99_S = 2.0
LAG_RATE = 10_000
CELERY_LOG = BASE_DIR / ".cdp" / "bench-ingest-celery.log"
GUNICORN_LOG = BASE_DIR / ".cdp" / "bench-ingest-gunicorn.log"

EVENT_COLUMNS = (
    "source_id",
    "message_id",
    "profile_id",
    "type",
    "name",
    "user_id",
    "anonymous_id",
    "properties",
    "traits",
    "context",
    "occurred_at",
    "original_timestamp",
    "sent_at",
    "received_at",
    "device_type",
    "local_hour",
)


def log(message: str) -> None:
    print(f"[bench-ingest] {message}", file=sys.stderr, flush=True)


# --- environment: where PostgreSQL and Redis are -------------------------------------------------


def with_path(url: str, path: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=path))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@contextmanager
def fresh_database(server_url: str, name: str):
    import psycopg
    from psycopg import sql

    admin = with_path(server_url, "/postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    log(f"created database {name}")
    try:
        yield with_path(server_url, f"/{name}")
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        log(f"dropped database {name}")


def django_env(database_url: str, redis_url: str, debug: bool) -> dict[str, str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "cdp.settings",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "CACHE_KEY_PREFIX": "cdp-bench-ingest",
        "API_THROTTLE_WRITE_KEY": "1000000/s",
        "LOG_LEVEL": "WARNING",
        "DEBUG": "true" if debug else "false",
    }
    for inherited in ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
        env.pop(inherited, None)  # follow REDIS_URL, i.e. the benchmark's own Redis database
    if not debug:  # production settings, served over plain HTTP on loopback
        env.update(
            SECRET_KEY="bench-" + uuid.uuid4().hex * 2,
            CONSENT_HASH_SALT="bench-" + uuid.uuid4().hex,
            ALLOWED_HOSTS=HOST,
            SECURE_SSL_REDIRECT="false",
            SESSION_COOKIE_SECURE="false",
            CSRF_COOKIE_SECURE="false",
        )
    return env


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


GTHREAD = ["--worker-class", "gthread", "--keep-alive", "5", "--reuse-port"]  # as the Procfile's web line


@contextmanager
def gunicorn(env: dict[str, str], port: int, workers: int, threads: int = 1):
    GUNICORN_LOG.parent.mkdir(exist_ok=True)
    with open(GUNICORN_LOG, "w") as out:
        proc = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("gunicorn")),
                "cdp.wsgi:application",
                "--bind",
                f"{HOST}:{port}",
                "--workers",
                str(workers),
                "--timeout",
                "120",
                *([*GTHREAD, "--threads", str(threads)] if threads > 1 else []),
            ],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {proc.returncode}:\n{GUNICORN_LOG.read_text()}")
            with suppress(OSError):
                conn = http.client.HTTPConnection(HOST, port, timeout=2)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not answer /healthz:\n{GUNICORN_LOG.read_text()}")
            time.sleep(0.2)
        log(f"gunicorn up on {HOST}:{port} (pid {proc.pid}, {workers} workers)")
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        log("gunicorn stopped")


@contextmanager
def stitch_worker(env: dict[str, str], processes: int):
    """A Celery worker on the intake queue only (the stitch workers), K prefork processes."""
    CELERY_LOG.parent.mkdir(exist_ok=True)
    with open(CELERY_LOG, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "cdp", "worker", "--queues", "intake", "--pool", "prefork",
             "--concurrency", str(processes), "--without-gossip", "--without-mingle", "--loglevel", "WARNING",
             "--hostname", f"bench-stitch-{os.getpid()}@%h"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        time.sleep(3)
        if proc.poll() is not None:
            raise RuntimeError(f"celery exited with {proc.returncode}:\n{CELERY_LOG.read_text()}")
        log(f"stitch worker up (pid {proc.pid}, {processes} processes on queue intake)")
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        log("stitch worker stopped")


def intake_depth(database_url: str) -> int:
    import psycopg

    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT count(*) FROM profiles_intakeevent").fetchone()[0]


def wait_drained(database_url: str, timeout: float = 900) -> float:
    """Wait until the intake log is empty; returns the time.monotonic() at which it was seen empty."""
    import psycopg

    deadline = time.monotonic() + timeout
    with psycopg.connect(database_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            if not conn.execute("SELECT EXISTS (SELECT 1 FROM profiles_intakeevent)").fetchone()[0]:
                return time.monotonic()
            time.sleep(0.05)
    raise RuntimeError(f"the intake log was not drained within {timeout:.0f} s")


# --- realistic Segment traffic for a shop --------------------------------------------------------

FIRST_NAMES = ["Ann", "Ben", "Chloe", "Dan", "Emma", "Finn", "Grace", "Hugo", "Isla", "Jack", "Lena", "Noah", "Mia"]
LAST_NAMES = ["Lee", "Smith", "Jones", "Brown", "Müller", "Garcia", "Rossi", "Dubois", "Novak", "Kowalski", "Silva"]
DOMAINS = ["gmail.com", "outlook.com", "yahoo.com", "icloud.com", "web.de", "example.org", "hotmail.com"]
CATEGORIES = ["Shoes", "Outdoor", "Kitchen", "Books", "Toys", "Garden", "Beauty", "Electronics", "Sports", "Home"]
BRANDS = ["Acme", "Northwind", "Globex", "Initech", "Umbrella", "Stark", "Wayne", "Tyrell"]
ZONES = [  # (timezone, locale)
    ("Europe/Berlin", "de-DE"),
    ("Europe/London", "en-GB"),
    ("Europe/Paris", "fr-FR"),
    ("America/New_York", "en-US"),
    ("Europe/Madrid", "es-ES"),
    ("Asia/Tokyo", "ja-JP"),
]
USER_AGENTS = [
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605",
    "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
]
TRACK_EVENTS = [  # (name, weight)
    ("Product Viewed", 45),
    ("Product List Viewed", 15),
    ("Products Searched", 10),
    ("Product Added", 12),
    ("Cart Viewed", 6),
    ("Checkout Started", 5),
    ("Order Completed", 4),
    ("Product Added to Wishlist", 3),
]
PAGES = [("Home", "/"), ("Category", "/c/"), ("Product", "/p/"), ("Cart", "/cart"), ("Search", "/search")]


@dataclass
class Person:
    index: int
    user_id: str
    devices: list[tuple[str, str, str, str]]  # (anonymous id, user agent, timezone, locale)
    email: str
    first_name: str
    last_name: str
    phone: str | None
    registered: bool


def people(count: int, rng: random.Random) -> list[Person]:
    found = []
    for i in range(count):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        zone = rng.randrange(len(ZONES))
        devices = [
            (
                str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                rng.choice(USER_AGENTS),
                *ZONES[zone],
            )
            for _ in range(rng.choice((1, 1, 1, 2, 2, 3)))
        ]
        found.append(
            Person(
                index=i,
                user_id=f"u-{i:07d}",
                devices=devices,
                email=f"{first}.{last}{i}@{rng.choice(DOMAINS)}".lower().replace("ü", "ue"),
                first_name=first,
                last_name=last,
                phone=f"+44 7911 {i % 1_000_000:06d}" if rng.random() < 0.3 else None,
                registered=rng.random() < 0.45,
            )
        )
    return found


def product(rng: random.Random) -> dict:
    n = int(5000 * rng.random() ** 2)  # popular products are viewed more
    return {
        "product_id": f"sku-{n:05d}",
        "sku": f"SKU{n:05d}",
        "category": CATEGORIES[n % len(CATEGORIES)],
        "brand": BRANDS[n % len(BRANDS)],
        "name": f"{BRANDS[n % len(BRANDS)]} {CATEGORIES[n % len(CATEGORIES)]} item {n}",
        "price": round(5 + (n * 7919 % 20000) / 100, 2),
        "currency": "EUR",
    }


def make_event(person: Person, rng: random.Random, now: datetime, kind: str | None = None) -> dict:
    anonymous_id, user_agent, tz, locale = rng.choice(person.devices)
    logged_in = person.registered and rng.random() < 0.7
    kind = kind or rng.choices(("identify", "track", "page"), weights=(8, 57, 35))[0]
    if kind == "identify" and not person.registered:
        kind = "track"
    item = product(rng)
    page_name, page_path = rng.choice(PAGES)
    path = page_path + (item["product_id"] if page_path in ("/c/", "/p/") else "")
    context = {
        "library": {"name": "analytics.js", "version": "next-1.70.0"},
        "userAgent": user_agent,
        "timezone": tz,
        "locale": locale,
        "ip": f"203.0.113.{person.index % 250 + 1}",
        "page": {
            "path": path,
            "url": f"https://shop.example.com{path}",
            "referrer": rng.choice(("", "https://www.google.com/", "https://www.instagram.com/")),
            "title": f"{page_name} | Example Shop",
        },
    }
    event: dict = {
        "type": kind,
        "messageId": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "anonymousId": anonymous_id,
        "timestamp": (now - timedelta(milliseconds=rng.randrange(0, 3000))).isoformat(timespec="milliseconds"),
        "context": context,
    }
    if logged_in or kind == "identify":
        event["userId"] = person.user_id
    if kind == "identify":
        traits = {"email": person.email, "first_name": person.first_name, "last_name": person.last_name}
        if person.phone:
            traits["phone"] = person.phone
        event["traits"] = traits
    elif kind == "page":
        event["name"] = page_name
        event["properties"] = {"path": path, "url": context["page"]["url"], "title": context["page"]["title"]}
    else:
        name = rng.choices([n for n, _ in TRACK_EVENTS], weights=[w for _, w in TRACK_EVENTS])[0]
        event["event"] = name
        if name == "Products Searched":
            event["properties"] = {"query": rng.choice(CATEGORIES).lower()}
        elif name == "Order Completed":
            lines = [{**product(rng), "quantity": rng.randint(1, 3)} for _ in range(rng.randint(1, 4))]
            total = round(sum(line["price"] * line["quantity"] for line in lines), 2)
            event["properties"] = {
                "order_id": f"o-{rng.getrandbits(40):x}",
                "revenue": total,
                "currency": "EUR",
                "products": lines,
            }
        elif name in ("Cart Viewed", "Checkout Started"):
            event["properties"] = {"cart_id": f"c-{person.index}", "products": [item]}
        else:
            event["properties"] = {**item, "quantity": 1} if name == "Product Added" else item
    return event


def pick(population: list[Person], rng: random.Random) -> Person:
    return population[int(len(population) * rng.random() ** 1.5)]  # some customers are far more active


def batch_bodies(population: list[Person], events: int, batch_size: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    now = datetime.now(UTC)
    bodies = []
    for start in range(0, events, batch_size):
        size = min(batch_size, events - start)
        calls = [make_event(pick(population, rng), rng, now) for _ in range(size)]
        bodies.append(json.dumps({"batch": calls, "sentAt": now.isoformat(timespec="milliseconds")}).encode())
    return bodies


def track_bodies(population: list[Person], count: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    now = datetime.now(UTC)
    return [json.dumps(make_event(pick(population, rng), rng, now, kind="track")).encode() for _ in range(count)]


# --- load generators (forked processes; the request bodies are inherited, already serialised) -----

_BODIES: list[bytes] = []
_HEADERS: dict[str, str] = {}


def _post(conn: http.client.HTTPConnection, path: str, body: bytes) -> tuple[int, dict]:
    conn.request("POST", path, body=body, headers=_HEADERS)
    response = conn.getresponse()
    payload = response.read()
    if response.getheader("Connection", "").lower() == "close":
        conn.close()  # gunicorn's sync workers close after each response; http.client reconnects
    try:
        return response.status, json.loads(payload)
    except ValueError:
        return response.status, {"raw": payload[:200].decode(errors="replace")}


def _batch_worker(port: int, indexes: list[int], start_at: float) -> dict:
    conn = http.client.HTTPConnection(HOST, port, timeout=120)
    accepted = duplicates = 0
    errors: list = []
    while time.monotonic() < start_at:
        time.sleep(0.001)
    first = time.monotonic()
    for i in indexes:
        status, body = _post(conn, "/v1/batch", _BODIES[i])
        if status != 200 or body.get("errors"):
            errors.append({"batch": i, "status": status, "body": str(body)[:300]})
            continue
        accepted += body["accepted"]
        duplicates += body["duplicates"]
    last = time.monotonic()
    conn.close()
    return {"accepted": accepted, "duplicates": duplicates, "errors": errors, "first": first, "last": last}


def _paced_batch_worker(port: int, indexes: list[int], start_at: float, per_second: float) -> dict:
    """Open loop: body k of this sender is due at start_at + k / per_second."""
    conn = http.client.HTTPConnection(HOST, port, timeout=120)
    accepted, errors, late = 0, [], []
    for k, i in enumerate(indexes):
        scheduled = start_at + k / per_second
        delay = scheduled - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        try:
            status, body = _post(conn, "/v1/batch", _BODIES[i])
        except OSError as exc:
            conn.close()
            status, body = 0, {"exception": repr(exc)}
        late.append(time.monotonic() - scheduled)
        if status != 200 or body.get("errors"):
            errors.append({"batch": i, "status": status, "body": str(body)[:300]})
            continue
        accepted += body["accepted"]
    conn.close()
    return {"accepted": accepted, "errors": errors, "late": late}


def _track_worker(port: int, slots: list[int], start_at: float, rate: float) -> dict:
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    latencies: list[float] = []
    sent_at: list[float] = []  # each request's scheduled time, on the wall clock (for --track-dump)
    late: list[float] = []  # how late the sender itself was to send it (its own delay, not the server's)
    errors: list = []
    for slot in slots:
        scheduled = start_at + slot / rate
        delay = scheduled - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        late.append(max(0.0, time.monotonic() - scheduled))
        try:
            status, body = _post(conn, "/v1/track", _BODIES[slot])
        except OSError as exc:
            conn.close()
            status, body = 0, {"exception": repr(exc)}
        latencies.append(time.monotonic() - scheduled)
        sent_at.append(time.time() - latencies[-1])
        if status != 200 or body.get("accepted") != 1:
            errors.append({"slot": slot, "status": status, "body": str(body)[:300]})
    conn.close()
    return {"latencies": latencies, "sent_at": sent_at, "late": late, "errors": errors}


def _fork_pool(processes: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=processes, mp_context=multiprocessing.get_context("fork"))


def run_batches(port: int, write_key: str, bodies: list[bytes], concurrency: int) -> dict:
    global _BODIES, _HEADERS
    _BODIES, _HEADERS = bodies, auth_headers(write_key)
    start_at = time.monotonic() + 0.5 + 0.05 * concurrency  # every process forked and waiting
    with _fork_pool(concurrency) as pool:
        futures = [
            pool.submit(_batch_worker, port, list(range(k, len(bodies), concurrency)), start_at)
            for k in range(concurrency)
        ]
        results = [f.result() for f in futures]
    seconds = max(r["last"] for r in results) - min(r["first"] for r in results)
    return {
        "accepted": sum(r["accepted"] for r in results),
        "duplicates": sum(r["duplicates"] for r in results),
        "errors": [e for r in results for e in r["errors"]],
        "seconds": seconds,
        "first": min(r["first"] for r in results),
    }


def newly_seen(rows: list[tuple], since: int, holes: dict[int, float], now: float, keep: float = 60.0) -> int:
    """The lag poller's bookkeeping: ``rows`` (id, …) are the events read with ``id > since`` or an id in
    ``holes``; returns the new ``since``. An id below the highest seen that is not there yet (another
    worker's batch that took its ids first and committed later, or a gap of the sequence) becomes a
    hole, looked for again by key in every poll for ``keep`` seconds: polling by ``id > since`` alone
    missed every row that committed after a row with a higher id."""
    got = {row[0] for row in rows}
    for pk in got.intersection(holes):
        del holes[pk]
    top = max([since, *got])
    holes.update((pk, now) for pk in range(since + 1, top) if pk not in got)
    for pk in [pk for pk, at in holes.items() if now - at > keep]:
        del holes[pk]
    return top


WEB_APP_NAME, STITCH_APP_NAME = "cdp-bench-web", "cdp-bench-stitch"  # DB_APPLICATION_NAME of each side


class CpuSplit:
    """Where the CPU goes over a block: the web side (gunicorn's processes and their PostgreSQL
    backends, named ``WEB_APP_NAME``), the stitch side (the Celery worker's processes and theirs,
    ``STITCH_APP_NAME``) and the rest of the machine (load generator, lag poller, PostgreSQL's own
    processes). Backends are found by ``application_name`` in ``pg_stat_activity`` at both ends of
    the block (one born during it started at 0); their CPU is read from ``/proc``
    (``benchmarks.procstat``), so the split needs the database server on this machine (``available``
    is False otherwise). A process that starts and
    ends inside the block is not counted on its side (gunicorn's workers, Celery's pool processes and
    their pooled connections live through the lag test); the machine's total still has it."""

    SIDES = ("web", "web_pg", "stitch", "stitch_pg")

    def __init__(self, database_url: str, web_root: int, stitch_root: int) -> None:
        self.database_url, self.roots = database_url, {"web": web_root, "stitch": stitch_root}

    def _backends(self) -> dict[str, set[int]]:
        import psycopg

        names = {WEB_APP_NAME: "web", STITCH_APP_NAME: "stitch"}
        found: dict[str, set[int]] = {"web": set(), "stitch": set()}
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid, application_name FROM pg_stat_activity WHERE datname = current_database()"
            ).fetchall()
        for pid, name in rows:
            if name in names:
                found[names[name]].add(pid)
        return found

    def _read(self) -> dict:
        backends = self._backends()
        now = {"machine": machine_busy(), "wall": time.monotonic()}
        for side, root in self.roots.items():
            now[side] = {pid: process_cpu(pid) for pid in process_tree(root)}
            now[f"{side}_pg"] = {pid: process_cpu(pid) for pid in backends[side]}
        return now

    def __enter__(self) -> CpuSplit:
        self.start = self._read()
        return self

    def __exit__(self, *exc) -> None:
        end = self._read()
        self.available = bool(end["web_pg"]) and all(map(process_alive, end["web_pg"]))
        self.seconds = {"wall": end["wall"] - self.start["wall"], "machine": end["machine"] - self.start["machine"]}
        for key in self.SIDES:
            # max: a process gone between the listing and the read reads 0 (its CPU is the machine's only)
            self.seconds[key] = sum(max(0.0, cpu - self.start[key].get(pid, 0.0)) for pid, cpu in end[key].items())
        self.seconds["other"] = self.seconds["machine"] - sum(self.seconds[key] for key in self.SIDES)


def run_lag(
    port: int, write_key: str, bodies: list[bytes], rate: float, database_url: str, dump: str | None = None
) -> dict:
    """Batches at ``rate`` events/s (open loop, 4 senders) while a poller measures each event's lag
    from received_at to being seen in the events table."""
    import threading

    import psycopg

    global _BODIES, _HEADERS
    _BODIES, _HEADERS = bodies, auth_headers(write_key)
    events_per_body = len(json.loads(bodies[0])["batch"])
    per_sender = rate / events_per_body / TRACK_SENDERS
    with psycopg.connect(database_url, autocommit=True) as conn:
        since = conn.execute("SELECT coalesce(max(id), 0) FROM profiles_event").fetchone()[0]
    lags: list[float] = []
    pairs: list[tuple[float, float]] = []  # (accepted, seen) per event, for --lag-dump
    stop = threading.Event()

    def poll():
        nonlocal since
        holes: dict[int, float] = {}
        with psycopg.connect(database_url, autocommit=True) as conn:
            while not stop.is_set():
                rows = conn.execute(
                    "SELECT id, extract(epoch FROM received_at)::float8 FROM profiles_event "
                    "WHERE id > %s OR id = ANY(%s) ORDER BY id",
                    [since, list(holes)],
                ).fetchall()
                seen = time.time()
                since = newly_seen(rows, since, holes, seen)
                lags.extend(seen - received for _, received in rows)
                if dump:
                    pairs.extend((received, seen) for _, received in rows)
                time.sleep(0.1)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    start_at = time.monotonic() + 1.0
    with _fork_pool(TRACK_SENDERS) as pool:
        futures = [
            pool.submit(_paced_batch_worker, port, list(range(k, len(bodies), TRACK_SENDERS)), start_at, per_sender)
            for k in range(TRACK_SENDERS)
        ]
        results = [f.result() for f in futures]
    sent_seconds = time.monotonic() - start_at
    accepted = sum(r["accepted"] for r in results)
    deadline = time.monotonic() + 600
    while len(lags) < accepted and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.3)
    stop.set()
    poller.join(10)
    ordered = sorted(lags)
    if dump:
        with open(dump, "w") as out:
            out.write("accepted_epoch,stitched_seen_epoch\n")
            out.writelines(f"{a:.3f},{b:.3f}\n" for a, b in sorted(pairs))
    late = sorted(x for r in results for x in r["late"])
    return {
        "accepted": accepted,
        "achieved_rate": accepted / sent_seconds,
        "errors": [e for r in results for e in r["errors"]],
        "stitched": len(ordered),
        "p50": percentile(ordered, 50) if ordered else float("nan"),
        "p99": percentile(ordered, 99) if ordered else float("nan"),
        "max": ordered[-1] if ordered else float("nan"),
        "send_late_p99": percentile(late, 99) if late else 0.0,
    }


@contextmanager
def stitchers_paused(stitchers: subprocess.Popen, pause: bool):
    """The stitch workers stopped (SIGSTOP) for the block when ``pause``: a figure measured without
    stitching on the same cores; continued (SIGCONT) after, whatever happens."""
    if pause:
        os.killpg(stitchers.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        if pause:
            os.killpg(stitchers.pid, signal.SIGCONT)


def run_track(port: int, write_key: str, bodies: list[bytes], rate: float, dump: str | None = None) -> dict:
    """``/v1/track`` calls at ``rate`` requests/s (open loop); ``dump``: each request's scheduled time
    (epoch seconds) and latency (ms) as CSV, to see when a slow tail happened."""
    global _BODIES, _HEADERS
    _BODIES, _HEADERS = bodies, auth_headers(write_key)
    start_at = time.monotonic() + 1.0
    with _fork_pool(TRACK_SENDERS) as pool:
        futures = [
            pool.submit(_track_worker, port, list(range(k, len(bodies), TRACK_SENDERS)), start_at, rate)
            for k in range(TRACK_SENDERS)
        ]
        results = [f.result() for f in futures]
    elapsed = time.monotonic() - start_at
    latencies = sorted(ms for r in results for ms in r["latencies"])
    if dump:
        with open(dump, "w") as out:
            out.write("scheduled_epoch,latency_ms,sender_late_ms\n")
            timed = sorted(row for r in results for row in zip(r["sent_at"], r["latencies"], r["late"], strict=True))
            out.writelines(f"{t:.3f},{x * 1000:.2f},{w * 1000:.2f}\n" for t, x, w in timed)
    return {
        "sent": len(latencies),
        "achieved_rate": len(latencies) / elapsed,
        "errors": [e for r in results for e in r["errors"]],
        "p50": percentile(latencies, 50) * 1000,
        "p95": percentile(latencies, 95) * 1000,
        "p99": percentile(latencies, 99) * 1000,
        "max": latencies[-1] * 1000,
        "mean": statistics.fmean(latencies) * 1000,
        "send_late_p99": percentile(sorted(x for r in results for x in r["late"]), 99) * 1000,
    }


def percentile(ordered: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, -(-len(ordered) * pct // 100))
    return ordered[int(rank) - 1]


def auth_headers(write_key: str) -> dict[str, str]:
    token = base64.b64encode(f"{write_key}:".encode()).decode()
    return {"Authorization": f"Basic {token}", "Content-Type": "application/json", "User-Agent": "cdp-bench/1"}


# --- the COPY baseline ---------------------------------------------------------------------------


def stored_rows(database_url: str) -> list[tuple]:
    """The rows the API stored, JSON as text, in insertion order: the baseline writes exactly these."""
    import psycopg

    columns = ", ".join(f"{c}::text" if c in ("properties", "traits", "context") else c for c in EVENT_COLUMNS)
    with psycopg.connect(database_url) as conn:
        return conn.execute(f"SELECT {columns} FROM profiles_event ORDER BY id").fetchall()  # noqa: S608


def run_copy(database_url: str, rows: list[tuple], indexed: bool) -> dict:
    import psycopg

    table = "bench_copy_indexed" if indexed else "bench_copy_bare"
    like = "INCLUDING ALL" if indexed else "INCLUDING DEFAULTS INCLUDING IDENTITY"
    with psycopg.connect(database_url) as conn:
        conn.execute(f"CREATE TABLE {table} (LIKE profiles_event {like})")
        indexes = conn.execute("SELECT count(*) FROM pg_indexes WHERE tablename = %s", [table]).fetchone()[0]
        conn.commit()
        with conn.cursor() as cursor:
            started = time.perf_counter()
            with cursor.copy(f"COPY {table} ({', '.join(EVENT_COLUMNS)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            conn.commit()
            seconds = time.perf_counter() - started
        stored = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608
    if stored != len(rows):
        raise RuntimeError(f"COPY stored {stored} of {len(rows)} rows")
    return {"rows": stored, "seconds": seconds, "indexes": indexes}


INTAKE_COLUMNS = ("source_id", "message_id", "partition", "payload", "received_at", "user_id", "anonymous_id")


def intake_rows(rows: list[tuple]) -> list[tuple]:
    """The same calls in the intake log's shape (the call as JSON, as ``event_payload`` writes it)."""
    import zlib

    out = []
    for row in rows:
        e = dict(zip(EVENT_COLUMNS, row, strict=True))
        payload = {
            "type": e["type"],
            "message_id": e["message_id"],
            "user_id": e["user_id"],
            "anonymous_id": e["anonymous_id"],
            "name": e["name"],
            "properties": json.loads(e["properties"]),
            "traits": json.loads(e["traits"]),
            "context": json.loads(e["context"]),
            "device_type": e["device_type"],
            "local_hour": e["local_hour"],
            "previous_id": "",
            "group_id": "",
            **{k: e[k].isoformat() if e[k] else None for k in ("occurred_at", "original_timestamp", "sent_at")},
            "received_at": e["received_at"].isoformat(),
        }
        key = e["anonymous_id"] or e["user_id"] or e["message_id"]
        out.append(
            (
                e["source_id"],
                e["message_id"],
                zlib.crc32(key.encode()) % 16,
                json.dumps(payload, separators=(",", ":")),
                e["received_at"],
                e["user_id"],
                e["anonymous_id"],
            )
        )
    return out


def run_copy_intake(database_url: str, rows: list[tuple]) -> dict:
    import psycopg

    with psycopg.connect(database_url) as conn:
        conn.execute("CREATE TABLE bench_copy_intake (LIKE profiles_intakeevent INCLUDING ALL)")
        indexes = conn.execute("SELECT count(*) FROM pg_indexes WHERE tablename = 'bench_copy_intake'").fetchone()[0]
        conn.commit()
        with conn.cursor() as cursor:
            started = time.perf_counter()
            with cursor.copy(f"COPY bench_copy_intake ({', '.join(INTAKE_COLUMNS)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            conn.commit()
            seconds = time.perf_counter() - started
        stored = conn.execute("SELECT count(*) FROM bench_copy_intake").fetchone()[0]
    if stored != len(rows):
        raise RuntimeError(f"COPY stored {stored} of {len(rows)} rows")
    return {"rows": stored, "seconds": seconds, "indexes": indexes}


def integrity(database_url: str, accepted: int) -> dict:
    """Every accepted call stored once: lost = accepted - stored - set aside - still waiting."""
    import psycopg

    with psycopg.connect(database_url) as conn:
        one = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
        stored = one("SELECT count(*) FROM profiles_event")
        distinct = one("SELECT count(DISTINCT (source_id, message_id)) FROM profiles_event")
        poison = one("SELECT count(*) FROM profiles_intakepoison")
        waiting = one("SELECT count(*) FROM profiles_intakeevent")
    return {
        "stored": stored,
        "doubled": stored - distinct,
        "lost": accepted - distinct - poison - waiting,
        "poison": poison,
        "waiting": waiting,
    }


def code_version() -> str:
    """The commit measured, and whether tracked Python files had uncommitted changes."""
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "*.py"],
            cwd=REPO,
            capture_output=True,
            text=True,
        ).stdout
    except OSError:
        return "unknown"
    return sha.strip() + (" + uncommitted changes" if dirty.strip() else "")


def database_facts(database_url: str) -> dict:
    import psycopg

    with psycopg.connect(database_url) as conn:
        one = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
        return {
            "events": one("SELECT count(*) FROM profiles_event"),
            "profiles": one("SELECT count(*) FROM profiles_profile WHERE merged_into_id IS NULL"),
            "merged": one("SELECT count(*) FROM profiles_profile WHERE merged_into_id IS NOT NULL"),
            "identifiers": one("SELECT count(*) FROM profiles_identifier"),
            "deadlocks": one("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"),
            "version": one("SELECT version()"),
        }


# --- main ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000, help="events sent through /v1/batch")
    parser.add_argument("--batch-size", type=int, default=100, help="events per /v1/batch request")
    parser.add_argument("--concurrency", type=int, default=4, help="load-generator processes (connections)")
    parser.add_argument("--track-seconds", type=float, default=20, help="seconds of the /v1/track latency test")
    parser.add_argument("--track-rate", type=float, default=TRACK_RATE, help="requests/s of the latency test")
    parser.add_argument("--users", type=int, default=20_000, help="distinct customers in the traffic")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument(
        "--threads", type=int, default=1, help="threads per gunicorn worker (> 1: gthread, as the Procfile)"
    )
    parser.add_argument("--database", default="cdp_bench_ingest", help="database created and dropped")
    parser.add_argument("--redis-db", type=int, default=9, help="Redis database number used by the server")
    parser.add_argument(
        "--server-url",
        help="PostgreSQL server to measure on (postgres://user@host:port; a scratch database is created and "
        "dropped there) instead of a private one started for the run",
    )
    parser.add_argument("--redis-url", help="Redis server to use (redis://host:port) instead of a private one")
    parser.add_argument(
        "--debug", action=argparse.BooleanOptionalAction, default=True, help="run the server with DEBUG=true"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--lag-rate", type=float, default=LAG_RATE, help="events/s of the identity-lag test")
    parser.add_argument("--lag-seconds", type=float, default=10, help="seconds of the identity-lag test (0: skip)")
    parser.add_argument("--track-dump", help="write each /v1/track request's scheduled time and latency (CSV) here")
    parser.add_argument("--lag-dump", help="write each lag-test event's accept and stitched-seen times (CSV) here")
    parser.add_argument("--stitchers", type=int, default=2, help="stitch worker processes (Celery, queue intake)")
    parser.add_argument(
        "--pause-stitchers",
        action="store_true",
        help="stop the stitch workers (SIGSTOP) during the batch load: the accept path alone (not the headline row)",
    )
    parser.add_argument(
        "--pause-stitchers-track",
        action="store_true",
        help="stop the stitch workers (SIGSTOP) during the /v1/track test: its latency without stitching beside it",
    )
    args = parser.parse_args(argv)
    if args.events < 1 or not (1 <= args.batch_size <= 1000) or args.concurrency < 1:
        parser.error("--events, --concurrency must be positive and --batch-size 1..1000")
    if args.track_seconds < 0 or args.track_rate <= 0:
        parser.error("--track-seconds must be >= 0 and --track-rate positive")
    problem = given_servers_problem(postgres_url=args.server_url, redis_url=args.redis_url)
    if problem:
        parser.error(problem)

    log(f"generating {args.events} events for {args.users} customers")
    population = people(args.users, random.Random(args.seed))
    bodies = batch_bodies(population, args.events, args.batch_size, args.seed + 1)
    track = track_bodies(population, int(args.track_seconds * args.track_rate), args.seed + 2)
    warmup = batch_bodies(people(50, random.Random(-1)), 20 * args.concurrency, 10, args.seed + 3)
    lag_events = int(args.lag_rate * args.lag_seconds)
    lag_bodies = batch_bodies(population, lag_events, 100, args.seed + 4) if lag_events else []
    payload_mb = sum(map(len, bodies)) / 1e6
    load_before = os.getloadavg()[0]

    with (
        private_servers(postgres_url=args.server_url, redis_url=args.redis_url) as servers,
        fresh_database(servers.postgres_url, args.database) as database_url,
    ):
        log(f"servers: {servers.described}")
        redis_url = with_path(servers.redis_url, f"/{args.redis_db}")
        env = django_env(database_url, redis_url, args.debug)
        log("migrating")
        manage(env, "migrate", "--noinput")
        write_key = manage(env, "create_source", "bench").strip().splitlines()[-1]
        port = free_port()
        web_env = {**env, "DB_APPLICATION_NAME": WEB_APP_NAME}
        stitch_env = {**env, "DB_APPLICATION_NAME": STITCH_APP_NAME}
        with (
            gunicorn(web_env, port, args.workers, args.threads) as web,
            stitch_worker(stitch_env, args.stitchers) as stitchers,
        ):
            log("warming up")
            warm = run_batches(port, write_key, warmup, args.concurrency)
            if warm["errors"]:
                raise RuntimeError(f"warm-up failed: {warm['errors'][:3]}")
            wait_drained(database_url)
            with_warmup = database_facts(database_url)["events"]
            log(f"batch load: {len(bodies)} requests of {args.batch_size}, {args.concurrency} connections")
            with stitchers_paused(stitchers, args.pause_stitchers):
                batch = run_batches(port, write_key, bodies, args.concurrency)
            waiting = intake_depth(database_url)
            log(f"accepted; {waiting} calls still waiting; waiting for the stitch workers")
            batch["drained"] = wait_drained(database_url) - batch["first"]
            batch["waiting_at_end"] = waiting
            facts = database_facts(database_url)
            rows = stored_rows(database_url)[with_warmup:]
            if track:
                log(f"track latency: {args.track_rate:g} req/s for {args.track_seconds:g} s")
                with stitchers_paused(stitchers, args.pause_stitchers_track):
                    track_result = run_track(port, write_key, track, args.track_rate, args.track_dump)
                wait_drained(database_url)
            else:
                track_result = None
            lag = None
            if lag_bodies:
                log(f"identity lag: {args.lag_rate:g} events/s for {args.lag_seconds:g} s")
                with CpuSplit(database_url, web.pid, stitchers.pid) as split:
                    lag = run_lag(port, write_key, lag_bodies, args.lag_rate, database_url, args.lag_dump)
                lag["cpu"] = split
                wait_drained(database_url)
            accepted_total = (
                warm["accepted"]
                + batch["accepted"]
                + (track_result["sent"] - len(track_result["errors"]) if track else 0)
            )
            checks = integrity(database_url, accepted_total + (lag["accepted"] if lag else 0))
        log("COPY baseline")
        copy_intake = run_copy_intake(database_url, intake_rows(rows))
        copy_indexed = run_copy(database_url, rows, indexed=True)
        copy_bare = run_copy(database_url, rows, indexed=False)

    facts["load"] = load_before
    facts["servers"] = servers.described
    report(args, batch, facts, with_warmup, copy_indexed, copy_bare, track_result, payload_mb, copy_intake, lag, checks)
    failed = bool(batch["errors"]) or batch["accepted"] != args.events or (track_result and track_result["errors"])
    failed = failed or checks["lost"] != 0 or checks["doubled"] != 0
    if failed:
        log(f"ERRORS: batch {batch['errors'][:3]} track {(track_result or {}).get('errors', [])[:3]}")
    return 1 if failed else 0


def cpu_split_line(split: CpuSplit, accepted: int, stitched: int) -> str:
    """The lag test's CPU per event on each side, and the rate the machine's cores could accept and stitch
    at those costs if nothing else ran: how far the cores are from the rate asked, whatever the run's luck."""
    s, cores = split.seconds, os.cpu_count() or 1
    us = {key: s[key] / max(accepted if key.startswith("web") else stitched, 1) * 1e6 for key in split.SIDES}
    accept, stitch = us["web"] + us["web_pg"], us["stitch"] + us["stitch_pg"]
    return (
        f"| CPU during the identity-lag test ({s['machine'] / s['wall']:.2f} of {cores} cores busy over "
        f"{s['wall']:.1f} s), per event | accept {accept:.0f} µs (web {us['web']:.0f} + its PostgreSQL "
        f"{us['web_pg']:.0f}) · stitch {stitch:.0f} µs (workers {us['stitch']:.0f} + their PostgreSQL "
        f"{us['stitch_pg']:.0f}) · rest of the machine {s['other']:.1f} s; at these costs {cores} cores accept "
        f"and stitch at most **{cores / (accept + stitch) * 1e6:,.0f} events/s** |"
    )


def report(args, batch, facts, with_warmup, copy_indexed, copy_bare, track, payload_mb, copy_intake, lag, checks):
    api_rate = batch["accepted"] / batch["seconds"]
    intake_rate = copy_intake["rows"] / copy_intake["seconds"]
    stitch_rate = batch["accepted"] / batch["drained"]
    backlog_rate = batch["waiting_at_end"] / max(batch["drained"] - batch["seconds"], 1e-9)
    copy_rate = copy_indexed["rows"] / copy_indexed["seconds"]
    bare_rate = copy_bare["rows"] / copy_bare["seconds"]
    met = lambda ok: "met" if ok else "**missed**"  # noqa: E731
    server_kind = f"{args.workers} sync workers"
    if args.threads > 1:
        server_kind = f"{args.workers} gthread workers x {args.threads} threads"
    paused = " (stitch workers stopped during the batch load: accept only)" if args.pause_stitchers else ""
    lines = [
        f"{args.events:,} events ({payload_mb:.0f} MB of JSON) for {args.users:,} customers; "
        f"{facts['events'] - with_warmup:,} stored, {facts['profiles']:,} live profiles, "
        f"{facts['merged']:,} merged, {facts['identifiers']:,} identifiers, {facts['deadlocks']} deadlocks (retried)",
        "",
        "| measure | result |",
        "|---|---|",
        f"| `POST /v1/batch`, gunicorn {server_kind}, {args.concurrency} connections, "
        f"batches of {args.batch_size}{paused} | **{api_rate:,.0f} events/s** ({batch['accepted']:,} accepted in "
        f"{batch['seconds']:.1f} s, {batch['duplicates']} duplicates, {len(batch['errors'])} errors) |",
        f"| `COPY` of the same calls into a table like the intake log, same {copy_intake['indexes']} indexes "
        f"(logged; what the request writes) | **{intake_rate:,.0f} rows/s** ({copy_intake['seconds']:.2f} s) |",
        f"| ratio API ÷ COPY (intake shape, same indexes) | **{api_rate / intake_rate:.3f}** |",
        f"| `COPY` of the stored events, events shape + same {copy_indexed['indexes']} indexes (logged) | "
        f"{copy_rate:,.0f} events/s ({copy_indexed['seconds']:.2f} s) |",
        f"| `COPY` of the stored events, no indexes (logged) | {bare_rate:,.0f} events/s "
        f"({copy_bare['seconds']:.2f} s) |",
        f"| ratio API ÷ COPY (events shape, same indexes) | {api_rate / copy_rate:.3f} |",
        f"| stitching, {args.stitchers} worker processes (queue intake), during and after the load | "
        f"**{stitch_rate:,.0f} events/s** (log empty {batch['drained']:.1f} s after the first request; "
        f"{batch['waiting_at_end']:,} calls waiting when the last was accepted) |",
        f"| stitching alone: the calls waiting when the last was accepted, drained with the web workers idle | "
        f"{backlog_rate:,.0f} events/s ({batch['waiting_at_end']:,} in {batch['drained'] - batch['seconds']:.1f} s) |",
    ]
    if track:
        lines.append(
            f"| `POST /v1/track`, open loop {args.track_rate:g} req/s for {args.track_seconds:g} s "
            f"({track['sent']:,} sent on schedule, completed at {track['achieved_rate']:.0f}/s, "
            f"senders late p99 {track['send_late_p99']:.1f} ms, {len(track['errors'])} errors) | "
            f"p50 {track['p50']:.1f} ms · p95 {track['p95']:.1f} ms · **p99 {track['p99']:.1f} ms** · "
            f"max {track['max']:.1f} ms |"
        )
    if lag:
        lines.append(
            f"| identity lag, open loop {args.lag_rate:,.0f} events/s for {args.lag_seconds:g} s (batches of 100; "
            f"accepted at {lag['achieved_rate']:,.0f}/s, senders late p99 {lag['send_late_p99'] * 1000:.0f} ms, "
            f"{len(lag['errors'])} errors), accept → stitched | p50 {lag['p50']:.2f} s · **p99 {lag['p99']:.2f} s** · "
            f"max {lag['max']:.2f} s ({lag['stitched']:,} events) |"
        )
    if lag and lag["cpu"].available:
        lines.append(cpu_split_line(lag["cpu"], lag["accepted"], lag["stitched"]))
    lines.append(
        f"| lost / doubled (every accepted messageId counted in events, poison and intake) | "
        f"**{checks['lost']} / {checks['doubled']}** ({checks['stored']:,} stored, {checks['poison']} set aside, "
        f"{checks['waiting']} waiting) |"
    )
    lines.append(
        f"| target ≥ {TARGET_EVENTS_PER_S:,} events/s through the batch API | {met(api_rate >= TARGET_EVENTS_PER_S)} |"
    )
    lines.append(
        f"| target ≥ {TARGET_COPY_RATIO} x COPY (intake shape) | {met(api_rate / intake_rate >= TARGET_COPY_RATIO)} "
        f"(events shape: {met(api_rate / copy_rate >= TARGET_COPY_RATIO)}) |"
    )
    lines.append(f"| stitching keeps up with the accepted rate | {met(stitch_rate >= api_rate)} |")
    if lag:
        lines.append(
            f"| target identity lag p99 < {TARGET_LAG_P99_S:g} s at {args.lag_rate:,.0f} events/s | "
            f"{met(lag['p99'] < TARGET_LAG_P99_S and lag['achieved_rate'] >= 0.95 * args.lag_rate)} |"
        )
    if track and args.track_rate == TRACK_RATE:
        lines.append(
            f"| target `/v1/track` p99 < {TARGET_TRACK_P99_MS:g} ms at {TRACK_RATE} req/s | "
            f"{met(track['p99'] < TARGET_TRACK_P99_MS and not track['errors'])} |"
        )
    lines += [
        "",
        f"server DEBUG={'true' if args.debug else 'false'}; code {code_version()}; "
        f"load average before the run {facts['load']:.2f}; {facts['version'].split(' on ')[0]}",
        "",
        f"servers: {facts['servers']}",
    ]
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    sys.exit(main())
