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
