"""Scratch databases for benchmarks: created on the same PostgreSQL server as the dev database,
dropped afterwards, so a benchmark never touches the data a developer works with."""

from __future__ import annotations

import os

import psycopg


def server_url() -> str:
    """The dev database's URL (process env, .env, then .cdp/env written by the dev services)."""
    from cdp.envfiles import load_env_files

    load_env_files()
    return os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/cdp")


def with_db(url: str, name: str) -> str:
    head, _, _ = url.rpartition("/")
    return f"{head}/{name}"


def scratch_database_create(name: str) -> str:
    """Drop ``name`` if a previous run left it, create it empty, and return its URL."""
    url = server_url()
    with psycopg.connect(with_db(url, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return with_db(url, name)


def scratch_database_drop(name: str) -> None:
    with psycopg.connect(with_db(server_url(), "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def django_on_scratch(name: str, redis_db: int) -> str:
    """Create the scratch database ``name``, point this process's Django at it (with the ingest
    benchmark's settings and Redis database ``redis_db``) and set Django up; returns its URL. For
    the in-process harnesses (accept_cpu.py, stitch_cpu.py); the caller migrates and drops it."""
    from benchmarks import ingest as traffic

    url = scratch_database_create(name)
    os.environ["DATABASE_URL"] = url
    redis = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0").rsplit("/", 1)[0]
    os.environ["REDIS_URL"] = f"{redis}/{redis_db}"
    os.environ.update(traffic.django_env(url, os.environ["REDIS_URL"], debug=False))
    import django

    django.setup()
    return url


def spy_start(path: str | None):
    """py-spy recording this process (raw format) into ``path``, started and given a second to attach;
    None without a path. The caller sends it SIGINT to stop it."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    if not path:
        return None
    spy = subprocess.Popen(
        [str(Path(sys.executable).parent / "py-spy"), "record", "-r", "250", "-f", "raw", "-o", path,
         "--pid", str(os.getpid())],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(1.0)
    return spy
