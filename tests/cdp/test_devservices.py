"""The embedded fallback: with nothing on the probe ports, real servers start and stop cleanly."""

import json
import os
import shutil
import subprocess
import sys
import uuid

import psycopg
import pytest
import redis

from tests.conftest import REPO

pytestmark = pytest.mark.slow


@pytest.fixture
def state_dir():
    path = REPO / ".cdp" / f"test-{uuid.uuid4().hex[:8]}"
    path.parent.mkdir(exist_ok=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def devservices(state_dir, *args: str, **env) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    clean.update({"CDP_STATE_DIR": str(state_dir), "CDP_PG_PROBE_PORT": "1", "CDP_REDIS_PROBE_PORT": "1", **env})
    return subprocess.run(
        [sys.executable, "-m", "cdp.devservices", *args],
        cwd=REPO,
        env=clean,
        capture_output=True,
        text=True,
        timeout=180,
    )


def recorded(state_dir) -> dict:
    return {s["name"]: s for s in json.loads((state_dir / "services.json").read_text())["services"]}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_up_starts_embedded_servers_when_nothing_answers_and_down_stops_them(state_dir):
    done = devservices(state_dir, "up")
    assert done.returncode == 0, done.stderr
    services = recorded(state_dir)
    try:
        assert {s["mode"] for s in services.values()} == {"embedded"}
        env_file = (state_dir / "env").read_text()
        assert f"DATABASE_URL={services['postgres']['url']}" in env_file
        assert f"REDIS_URL={services['redis']['url']}" in env_file
        with psycopg.connect(services["postgres"]["url"]) as conn:
            assert conn.execute("SELECT current_database()").fetchone()[0] == "cdp"
        assert redis.Redis.from_url(services["redis"]["url"]).ping() is True
        assert devservices(state_dir, "status").returncode == 0
    finally:
        assert devservices(state_dir, "down").returncode == 0
    assert not alive(services["postgres"]["pid"])
    assert not alive(services["redis"]["pid"])
    assert not (state_dir / "env").exists()


def test_run_stops_what_it_started_even_when_the_command_fails(state_dir):
    done = devservices(
        state_dir, "run", "--", sys.executable, "-c", "import os, sys; print(os.environ['DATABASE_URL']); sys.exit(7)"
    )
    assert done.returncode == 7
    url = done.stdout.strip().splitlines()[-1]
    assert url.startswith("postgres://postgres@127.0.0.1:")
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2)
    assert not (state_dir / "env").exists()


def test_an_explicit_url_is_used_as_it_is(state_dir):
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    done = devservices(
        state_dir,
        "run",
        "--",
        sys.executable,
        "-c",
        "import os; print(os.environ['REDIS_URL'])",
        REDIS_URL=url,
        DATABASE_URL=os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1/cdp"),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == url
    assert "starting embedded" not in done.stderr


def _ensure_user_in_child(name: str, barrier) -> str:
    from cdp import devservices

    barrier.wait(timeout=30)
    return devservices._ensure_system_user(name).pw_name


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="creating system users needs root")
def test_start_ups_at_once_do_not_race_on_creating_the_system_user(tmp_path, monkeypatch):
    # given a system user nobody has created yet, a useradd as slow as on a busy machine (so that every
    # start-up looks the user up before the first one has created it), and six start-ups at once
    import multiprocessing
    import pwd

    real = shutil.which("useradd")
    slow = tmp_path / "useradd"
    slow.write_text(f'#!/bin/sh\nsleep 0.5\nexec {real} "$@"\n')
    slow.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    name = f"cdprace{uuid.uuid4().hex[:8]}"
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Manager().Barrier(6)
    try:
        with ctx.Pool(6) as pool:
            # when they all make sure the user exists
            results = pool.starmap(_ensure_user_in_child, [(name, barrier)] * 6)
        # then every one of them gets it and exactly one user exists
        assert results == [name] * 6
        assert pwd.getpwnam(name).pw_name == name
    finally:
        subprocess.run(["userdel", name], capture_output=True)
