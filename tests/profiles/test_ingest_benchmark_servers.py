"""The load benchmark's servers are its own: a private PostgreSQL with durable commits and a private
Redis, on 127.0.0.1 and ports of their own, gone with their files when the run ends."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
import redis

from benchmarks import ingest
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


def test_a_server_given_by_url_is_used_and_no_private_one_started_for_it(monkeypatch):
    import reliability.procs

    def not_started(*args, **kwargs):
        raise AssertionError("a private Redis was started though one was given")

    monkeypatch.setattr(reliability.procs, "PrivateRedis", not_started)
    with private_servers(redis_url="redis://127.0.0.1:6379") as servers:
        assert servers.redis_url == "redis://127.0.0.1:6379"
        assert "Redis given: redis://127.0.0.1:6379" in servers.described
        assert "PostgreSQL private on" in servers.described


SERVE_UNTIL_KILLED = (
    "import time\n"
    "from benchmarks.servers import private_servers\n"
    "with private_servers() as s:\n"
    "    print(s.postgres_url, s.redis_url, flush=True)\n"
    "    time.sleep(120)\n"
)


def test_a_run_ended_by_sigterm_stops_its_private_servers():
    # ``timeout`` and a cancelled CI job send SIGTERM: the servers must not outlive the run
    run = subprocess.Popen(
        [sys.executable, "-c", SERVE_UNTIL_KILLED], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2]
    )
    try:
        pg, rd = (urlsplit(url).port for url in run.stdout.readline().split())
        assert port_answers(pg) and port_answers(rd)
        run.send_signal(signal.SIGTERM)
        assert run.wait(60) == 128 + signal.SIGTERM
    finally:
        run.kill()
    assert not port_answers(pg) and not port_answers(rd)


@pytest.mark.parametrize(
    "flags, says",
    [
        (["--server-url", "postgres://postgres@127.0.0.1:1"], "does not answer"),
        (["--server-url", "mysql://root@127.0.0.1:3306"], "--server-url must be postgres://"),
        (["--redis-url", "redis://127.0.0.1:1"], "does not answer"),
        (["--redis-url", "127.0.0.1:6379"], "--redis-url must be redis://"),
    ],
)
def test_a_given_server_that_cannot_be_used_is_a_message_and_exit_2_before_anything_starts(flags, says, capsys):
    with pytest.raises(SystemExit) as stopped:
        ingest.main(["--events", "10", *flags])
    assert stopped.value.code == 2
    assert says in capsys.readouterr().err
