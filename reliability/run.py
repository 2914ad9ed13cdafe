"""``make reliability``: fault and hostile-input checks against a real running cdp.

Everything runs on private servers started here (PostgreSQL and Redis on free ports of 127.0.0.1,
in temporary directories) with gunicorn, a Celery worker and beat, and is stopped and removed at the
end, whatever happens. Each check has a time bound. Figures are printed as JSON lines and a summary;
the exit status is non-zero if any check fails.

    python -m reliability.run                 # every check
    python -m reliability.run --only hostile,redis --seconds 20

Checks (issue 12): kill -9 of web workers, the master and Celery workers under load with retrying
clients (0 lost, 0 duplicated); Redis stopped and started under load (2xx throughout, batch p99 during
the outage within 2x normal, full catch-up of follow-up work within a minute); PostgreSQL restarted
under load (never a 200 for an unstored event, recovery after); schemathesis with a secret key and a
write key (0 server errors, 0 violations, >= 1,000 cases); concurrent merges (0 deadlocks counted
by PostgreSQL); the hostile-input corpus on every endpoint (0 5xx).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psycopg
import requests

from reliability.procs import (
    PrivatePostgres,
    PrivateRedis,
    free_port,
    port_answers,
    start_celery,
    stop_process,
    wait_until,
)

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
LOG_DIR = REPO / ".cdp" / "reliability"


def say(check: str, **figures) -> None:
    print(json.dumps({"check": check, **figures}, default=str), flush=True)


class Stack:
    """Private PostgreSQL + Redis, gunicorn, a Celery worker and beat, against a fresh database."""

    def __init__(self, web_workers: int = 2) -> None:
        self.pg = PrivatePostgres(port=int(os.environ.get("RELIABILITY_PG_PORT", 0)) or None)
        self.redis = PrivateRedis(port=int(os.environ.get("RELIABILITY_REDIS_PORT", 0)) or None)
        self.web_port = int(os.environ.get("RELIABILITY_WEB_PORT", 0)) or free_port()
        self.web_workers = web_workers
        self.web: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None
        self.beat: subprocess.Popen | None = None
        self.secret_key = self.write_key = ""
        self.stopping = threading.Event()
        self.restarts: dict[str, int] = {}

    @property
    def db_url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.pg.port}/cdp"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def env(self) -> dict:
        return {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "cdp.settings",
            "DEBUG": "false",
            "SECRET_KEY": "reliability-" + "x" * 50,
            "CONSENT_HASH_SALT": "reliability-salt",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "SECURE_SSL_REDIRECT": "false",
            "DATABASE_URL": self.db_url,
            "REDIS_URL": self.redis.url,
            "API_THROTTLE_WRITE_KEY": "100000/s",
            "API_THROTTLE_SECRET_KEY": "100000/s",
            "API_KEY_CACHE_SECONDS": "10",
            "DB_POOL": "false",
            "CDP_STATE_DIR": str(LOG_DIR / "state"),
        }

    def manage(self, *args: str, timeout: float = 600) -> str:
        done = subprocess.run(
            [PY, "manage.py", *args], cwd=REPO, env=self.env(), capture_output=True, text=True, timeout=timeout
        )
        if done.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def up(self) -> Stack:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.pg.init().start()
        with psycopg.connect(self.pg.url, autocommit=True) as conn:
            conn.execute("CREATE DATABASE cdp")
        self.redis.start()
        self.manage("migrate", "-v0")
        out = self.manage(
            "shell",
            "-c",
            "from cdp.services import api_key_create; from profiles.services import source_create; "
            "print(api_key_create(name='reliability')[1], source_create(name='reliability')[1])",
        )
        self.secret_key, self.write_key = out.strip().split()[-2:]
        self.start_web()
        for _ in range(2 * self.web_workers):  # warm every worker (imports, key cache) before timing
            requests.get(
                f"{self.base}/api/v1/sources/", headers={"Authorization": f"Bearer {self.secret_key}"}, timeout=60
            )
        self.worker = start_celery("worker", self.env(), LOG_DIR / "worker.log", "--concurrency", "2")
        self.beat = start_celery("beat", self.env(), LOG_DIR / "beat.log")
        self.supervisor = threading.Thread(target=self._supervise, daemon=True)
        self.supervisor.start()
        return self

    def _supervise(self) -> None:
        """Restart a Celery worker or beat that exited, as the process manager of a deployment does
        (systemd's Restart=always, a container's restart policy); restarts are counted."""
        while not self.stopping.is_set():
            for name in ("worker", "beat"):
                proc = getattr(self, name)
                if proc is not None and proc.poll() is not None and not self.stopping.is_set():
                    self.restarts[name] = self.restarts.get(name, 0) + 1
                    extra = ("--concurrency", "2") if name == "worker" else ()
                    setattr(self, name, start_celery(name, self.env(), LOG_DIR / f"{name}.log", *extra))
            self.stopping.wait(1)

    def start_web(self) -> None:
        with open(LOG_DIR / "web.log", "a") as out:
            self.web = subprocess.Popen(
                [
                    PY,
                    "-m",
                    "gunicorn",
                    "cdp.wsgi:application",
                    "--bind",
                    f"127.0.0.1:{self.web_port}",
                    "--workers",
                    str(self.web_workers),
                    "--timeout",
                    "60",
                    "--no-control-socket",
                ],
                cwd=REPO,
                env=self.env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_until(lambda: port_answers(self.web_port), 60, "gunicorn did not answer")

    def down(self) -> None:
        self.stopping.set()
        for proc in (self.beat, self.worker, self.web):
            stop_process(proc)
        self.redis.close()
        self.pg.close()

    def sql(self, query: str, params=()) -> list:
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            return conn.execute(query, params).fetchall()


# --- load: clients that retry the same messageIds until acknowledged --------------------------------


class Load:
    """Clients posting batches of 10 tracking calls (identify + track, some merging) until stopped.

    A batch is retried with the same messageIds until it gets a 200; acknowledged ids are recorded,
    with each attempt's status and latency."""

    def __init__(self, stack: Stack, clients: int = 4, people: int = 200) -> None:
        self.stack = stack
        self.clients = clients
        self.people = people
        self.stop = threading.Event()
        self.acked: list[str] = []
        self.attempts: list[tuple[float, int, float]] = []  # (start, status or 0 for connection error, seconds)
        self.lock = threading.Lock()
        self.threads: list[threading.Thread] = []
        self.auth = "Basic " + base64.b64encode(f"{stack.write_key}:".encode()).decode()

    def batch(self, n: int) -> list[dict]:
        events = []
        for _ in range(5):
            person = f"p{int.from_bytes(os.urandom(2), 'big') % self.people}"
            device = f"{person}-d{int.from_bytes(os.urandom(1), 'big') % 3}"
            events.append(
                {"type": "identify", "userId": person, "anonymousId": device, "traits": {"email": f"{person}@x.io"}}
            )
            events.append({"type": "track", "anonymousId": device, "event": "Order Completed", "properties": {"n": n}})
        for event in events:
            event["messageId"] = str(uuid.uuid4())
        return events

    def _client(self) -> None:
        session = requests.Session()
        n = 0
        while not self.stop.is_set():
            events = self.batch(n)
            n += 1
            while True:  # retry until acknowledged, even after stop (no acknowledged-but-unsent batch)
                started = time.monotonic()
                try:
                    response = session.post(
                        f"{self.stack.base}/v1/batch",
                        json={"batch": events},
                        headers={"Authorization": self.auth},
                        timeout=30,
                    )
                    status = response.status_code
                except requests.RequestException:
                    status = 0
                with self.lock:
                    self.attempts.append((started, status, time.monotonic() - started))
                if status == 200:
                    with self.lock:
                        self.acked.extend(e["messageId"] for e in events)
                    break
                if self.stop.is_set() and time.monotonic() - started > 60:
                    break
                time.sleep(0.2)

    def __enter__(self) -> Load:
        self.threads = [threading.Thread(target=self._client, daemon=True) for _ in range(self.clients)]
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(120)

    def window(self, start: float, end: float) -> list[tuple[int, float]]:
        with self.lock:
            return [(s, d) for t, s, d in self.attempts if start <= t < end]


def p99(latencies: list[float]) -> float:
    if not latencies:
        return 0.0
    return statistics.quantiles(latencies, n=100)[98] if len(latencies) >= 2 else latencies[0]


def drained(stack: Stack, timeout: float = 120) -> int:
    """Wait until the stitch workers emptied the intake log (accepted calls become events behind the
    200, decision 0039); returns the calls still waiting when ``timeout`` ran out (0 when drained)."""
    deadline = time.monotonic() + timeout
    while True:
        waiting = stack.sql("SELECT count(*) FROM profiles_intakeevent")[0][0]
        if not waiting or time.monotonic() > deadline:
            return waiting
        time.sleep(1)


def lost_and_duplicated(stack: Stack, acked: list[str]) -> tuple[int, int, int]:
    """(lost, duplicated, waiting) once the intake log is drained (or given up on): an acknowledged
    call is lost when it is neither an event, nor set aside as poison, nor still waiting in the log."""
    waiting = drained(stack)
    stored = stack.sql("SELECT message_id, count(*) FROM profiles_event GROUP BY message_id")
    counts = dict(stored)
    kept = {
        m
        for (m,) in stack.sql(
            "SELECT message_id FROM profiles_intakeevent UNION ALL SELECT message_id FROM profiles_intakepoison"
        )
    }
    lost = sum(1 for m in acked if m not in counts and m not in kept)
    duplicated = sum(c - 1 for c in counts.values() if c > 1)
    return lost, duplicated, waiting


# --- checks ------------------------------------------------------------------------------------------


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return sorted(found)


def check_kill9(stack: Stack, seconds: float) -> bool:
    """kill -9 of a web worker, the master, and a Celery worker, under load with retrying clients."""
    with Load(stack) as load:
        time.sleep(seconds / 4)
        kids = children(stack.web.pid)
        if kids:
            os.kill(kids[0], signal.SIGKILL)  # a web worker mid-load; the master replaces it
        time.sleep(seconds / 4)
        os.killpg(stack.web.pid, signal.SIGKILL)  # the master and its workers
        stack.web.wait(10)
        stack.start_web()
        time.sleep(seconds / 4)
        os.killpg(stack.worker.pid, signal.SIGKILL)  # Celery worker and its pool; the supervisor restarts it
        time.sleep(seconds / 4)
    lost, duplicated, waiting = lost_and_duplicated(stack, load.acked)
    say(
        "kill9",
        acknowledged=len(load.acked),
        lost=lost,
        duplicated=duplicated,
        still_in_intake=waiting,
        attempts=len(load.attempts),
        restarts=dict(stack.restarts),
    )
    return lost == 0 and duplicated == 0 and waiting == 0 and len(load.acked) > 0


def check_redis(stack: Stack, seconds: float) -> bool:
    """Redis stopped and started under load: 2xx throughout, p99 within 2x normal, full catch-up."""
    with Load(stack) as load:
        time.sleep(seconds / 3)
        down_at = time.monotonic()
        stack.redis.stop()
        time.sleep(seconds / 3)
        up_at = time.monotonic()
        stack.redis.start()
        time.sleep(5)
    normal = load.window(0, down_at)
    outage = load.window(down_at, up_at)
    non_2xx = sum(1 for s, _ in normal + outage if s != 200)
    p99_normal, p99_outage = p99([d for _, d in normal]), p99([d for _, d in outage])
    caught_up = None
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if stack.sql("SELECT count(*) FROM profiles_pendingwork")[0][0] == 0:
            caught_up = time.monotonic() - up_at
            break
        time.sleep(1)
    say(
        "redis",
        batches_normal=len(normal),
        batches_outage=len(outage),
        non_2xx=non_2xx,
        p99_normal_s=round(p99_normal, 3),
        p99_outage_s=round(p99_outage, 3),
        ratio=round(p99_outage / p99_normal, 2) if p99_normal else None,
        pending_caught_up_after_s=round(caught_up, 1) if caught_up is not None else None,
        restarts=dict(stack.restarts),
    )
    return non_2xx == 0 and len(outage) > 0 and p99_outage <= 2 * p99_normal and caught_up is not None


def check_postgres(stack: Stack, seconds: float) -> bool:
    """PostgreSQL restarted under load: errors while down, never a 200 for an unstored event, recovery."""
    with Load(stack) as load:
        time.sleep(seconds / 3)
        down_at = time.monotonic()
        stack.pg.stop("immediate")
        time.sleep(seconds / 3)
        up_at = time.monotonic()
        stack.pg.start()
        time.sleep(seconds / 3)
    outage = load.window(down_at, up_at)
    after = load.window(up_at + 5, time.monotonic())
    lost, duplicated, waiting = lost_and_duplicated(stack, load.acked)
    errors_while_down = sum(1 for s, _ in outage if s != 200)
    say(
        "postgres",
        acknowledged=len(load.acked),
        lost=lost,
        duplicated=duplicated,
        still_in_intake=waiting,
        errors_while_down=errors_while_down,
        ok_after=sum(1 for s, _ in after if s == 200),
    )
    return lost == 0 and duplicated == 0 and waiting == 0 and errors_while_down > 0 and any(s == 200 for s, _ in after)


def check_merges(stack: Stack, seconds: float) -> bool:
    """Concurrent overlapping merges through the API: deadlocks counted by PostgreSQL stay at 0."""
    before = stack.sql("SELECT deadlocks FROM pg_stat_database WHERE datname = 'cdp'")[0][0]
    with Load(stack, clients=6, people=20) as load:
        time.sleep(seconds)
    time.sleep(1)
    after = stack.sql("SELECT deadlocks FROM pg_stat_database WHERE datname = 'cdp'")[0][0]
    latencies = sorted(d for _, _, d in load.attempts)
    say(
        "merges",
        batches=len(load.attempts),
        ok=sum(1 for _, s, _ in load.attempts if s == 200),
        p50_s=round(statistics.median(latencies), 3) if latencies else None,
        deadlocks=after - before,
    )
    return after - before == 0 and len(load.attempts) > 0


def check_hostile(stack: Stack, seconds: float) -> bool:
    """The hostile corpus on every operation of the schema: 0 5xx, the server keeps serving."""
    import yaml

    from reliability.corpus import HOSTILE_BODIES

    schema = yaml.safe_load(stack.manage("spectacular", timeout=300))
    sk = {"Authorization": f"Bearer {stack.secret_key}"}
    wk = {"Authorization": "Basic " + base64.b64encode(f"{stack.write_key}:".encode()).decode()}
    sent = server_errors = 0
    deadline = time.monotonic() + max(seconds, 120)
    for path, item in schema["paths"].items():
        url = stack.base + re.sub(r"\{[^}]+\}", "nope", path)
        headers = wk if path.startswith("/v1/") else sk
        for method in item:
            if method not in ("post", "put", "patch") or time.monotonic() > deadline:
                continue
            for body in HOSTILE_BODIES.values():
                response = requests.request(
                    method, url, data=body, headers={**headers, "Content-Type": "application/json"}, timeout=30
                )
                sent += 1
                server_errors += response.status_code >= 500
        response = requests.options(url, headers=headers, timeout=30)
        sent += 1
        server_errors += response.status_code >= 500
    serving = requests.get(stack.base + "/api/v1/sources/", headers=sk, timeout=30).status_code == 200
    say("hostile", requests=sent, server_errors=server_errors, still_serving=serving)
    return server_errors == 0 and serving


def check_schemathesis(stack: Stack, seconds: float) -> bool:
    """schemathesis with a secret key (read/admin API) and a write key (tracking)."""
    schema_file = LOG_DIR / "openapi.yaml"
    schema_file.write_text(stack.manage("spectacular", timeout=300))
    checks = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
    runs = [
        # the key in use must not revoke itself mid-run
        ("secret", stack.secret_key, "^/api/", "/revoke/$", checks, 25),
        ("write", stack.write_key, "^/v1/", "settings$|consent$", checks + ",positive_data_acceptance", 70),
    ]
    ok = True
    for name, key, include, exclude, run_checks, examples in runs:
        done = subprocess.run(
            [
                str(Path(PY).parent / "schemathesis"),
                "run",
                str(schema_file),
                "--url",
                stack.base,
                "-H",
                f"Authorization: Bearer {key}",
                "--include-path-regex",
                include,
                "--exclude-path-regex",
                exclude,
                "--max-examples",
                str(examples),
                "--workers",
                "2",
                "--generation-allow-x00",
                "false",
                "--checks",
                run_checks,
                "--phases",
                "examples,fuzzing",
                "--seed",
                "12",
            ],
            cwd=LOG_DIR,
            capture_output=True,
            text=True,
            timeout=1200,
        )
        (LOG_DIR / f"schemathesis-{name}.txt").write_text(done.stdout + done.stderr)
        cases = re.search(r"(\d+) generated", done.stdout)
        failures = re.search(r"(\d+) found (\d+) unique failures", done.stdout)
        say(
            "schemathesis",
            key=name,
            cases=int(cases.group(1)) if cases else 0,
            failures=int(failures.group(2)) if failures else 0,
            exit=done.returncode,
        )
        ok = ok and done.returncode == 0 and cases is not None and int(cases.group(1)) >= 500
    return ok


CHECKS = {
    "hostile": check_hostile,
    "merges": check_merges,
    "redis": check_redis,
    "kill9": check_kill9,
    "postgres": check_postgres,
    "schemathesis": check_schemathesis,
}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(CHECKS), help="comma-separated checks")
    parser.add_argument("--seconds", type=float, default=30, help="load time per check")
    args = parser.parse_args(argv)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("DEBUG", "true")  # this process only imports helpers; the stack runs DEBUG=false
    results: dict[str, bool] = {}
    stack = Stack()
    try:
        stack.up()
        say("setup", web=stack.base, pg_port=stack.pg.port, redis_port=stack.redis.port, load=os.getloadavg())
        for name in args.only.split(","):
            started = time.monotonic()
            try:
                results[name] = CHECKS[name](stack, args.seconds)
            except Exception as exc:  # a check that crashes fails, the others still run
                say(name, error=f"{type(exc).__name__}: {exc}")
                results[name] = False
            say(name, passed=results[name], seconds=round(time.monotonic() - started, 1))
    finally:
        stack.down()
    say("summary", passed=all(results.values()), results=results, load=os.getloadavg())
    return 0 if results and all(results.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
