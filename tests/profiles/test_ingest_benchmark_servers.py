"""The load benchmark's servers are its own: a private PostgreSQL with durable commits and a private
Redis, on 127.0.0.1 and ports of their own, gone with their files when the run ends."""

from __future__ import annotations

import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import redis

from benchmarks.servers import installed_postgres, private_servers
from reliability.procs import port_answers


def test_the_benchmark_runs_on_private_durable_servers_that_are_gone_afterwards():
    with private_servers() as servers:
        pg, rd = urlsplit(servers.postgres_url), urlsplit(servers.redis_url)
        assert (pg.hostname, rd.hostname) == ("127.0.0.1", "127.0.0.1")
        assert pg.port not in (5432, 6379) and rd.port not in (5432, 6379)
        with psycopg.connect(f"{servers.postgres_url}/postgres") as conn:
            settings = dict(conn.execute("SELECT name, setting FROM pg_settings").fetchall())
            data_dir = Path(conn.execute("SHOW data_directory").fetchone()[0])
        # a 200 is measured as it costs in production: commits reach the disk
        assert settings["fsync"] == "on" and settings["synchronous_commit"] == "on"
        assert settings["listen_addresses"] == "127.0.0.1"
        assert int(settings["max_connections"]) >= 200
        # the machine's own PostgreSQL build when it has one (the one earlier figures were measured on)
        if installed_postgres():
            version = subprocess.run(
                [f"{installed_postgres()}/postgres", "--version"], capture_output=True, text=True, check=True
            ).stdout
            assert version.split()[-1].split(".")[0] == settings["server_version"].split(".")[0]
        client = redis.Redis.from_url(servers.redis_url)
        assert client.ping()
        client.close()
        assert data_dir.exists()
        assert f"127.0.0.1:{pg.port}" in servers.described and f"127.0.0.1:{rd.port}" in servers.described
    assert not port_answers(pg.port) and not port_answers(rd.port)
    assert not data_dir.exists()


def test_a_server_given_by_url_is_used_and_no_private_one_started_for_it():
    with private_servers(redis_url="redis://127.0.0.1:6379") as servers:
        assert servers.redis_url == "redis://127.0.0.1:6379"
        assert "Redis given: redis://127.0.0.1:6379" in servers.described
        assert "PostgreSQL private on" in servers.described
