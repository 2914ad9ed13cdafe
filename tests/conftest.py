"""Shared fixtures. Every test runs on the real PostgreSQL and Redis that `make test` provides."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from rest_framework.test import APIClient

REPO = Path(__file__).resolve().parent.parent


def pytest_configure(config):
    # worker and server logs go to .cdp/, which `make` creates; pytest may run first on a fresh clone
    (REPO / ".cdp").mkdir(exist_ok=True)


@pytest.fixture(autouse=True)
def _clean_redis():
    """Each test starts with an empty test Redis database (cache, throttles, queues)."""
    cache.clear()
    import redis

    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    from cdp.queueing import throttles_forget

    throttles_forget()  # the process's memory of throttle slots taken in Redis goes with it
    from cdp.api.throttling import leases_forget

    leases_forget()  # and the rate limit's leases
    yield


@pytest.fixture(autouse=True)
def _celery_quiet_before_flush(request):
    """Tests on committed data (``transaction=True``, the live server) end with a TRUNCATE of every
    table. The session's Celery worker, if an earlier test started it, may still be running a task
    this test queued (a follow-up, a stitch drain), and its locks and the TRUNCATE's then deadlock:
    seen in CI, where PostgreSQL ended the TRUNCATE, and the next test found this test's rows. This
    waits for the worker to go quiet first (``celery_quiesce``): ``transactional_db`` is set up before
    this fixture's teardown runs, so it is torn down (flushed) after it."""
    marker = request.node.get_closest_marker("django_db")
    transactional = bool(marker and marker.kwargs.get("transaction")) or any(
        name in request.fixturenames for name in ("transactional_db", "live_server")
    )
    if not transactional:
        yield
        return
    from cdp.celery import app

    request.getfixturevalue("transactional_db")
    broker = app.conf.broker_url
    yield
    # a test that pointed the app at a broker of its own (the Redis outage tests) sent the session's
    # worker nothing, and its broker may be gone by now
    if app.conf.broker_url == broker:
        celery_quiesce()


@pytest.fixture(autouse=True)
def _intake_stitched_in_requests(request):
    """Tests read their writes: a tracking request's calls, once accepted (committed) into the intake
    log, are stitched before its response is returned, by ``intake_drain`` (the function the
    ``intake`` workers run), and the request waits until the log is empty (a session Celery worker
    may be stitching the same rows: its batch commits in well under a second). Tests of the
    asynchronous behaviour itself (lag, workers, leases) are marked ``intake_async`` and stitch when
    they choose."""
    if "intake_async" in request.keywords:
        # a drain the session's Celery worker runs for an earlier test's wake lingers for a few
        # seconds and would take this test's calls: the test counts what its own drains take
        celery_quiesce()
        yield
        return
    from profiles.api import tracking

    real_accept = tracking.events_accept

    def accept_then_stitch(**kwargs):
        result = real_accept(**kwargs)
        if result.accepted:
            intake_stitched()
        return result

    tracking.events_accept = accept_then_stitch
    try:
        yield
    finally:
        tracking.events_accept = real_accept


def intake_stitched(*, timeout: float = 30.0) -> None:
    """Stitch the intake log here until it is empty (partitions a worker holds are waited for)."""
    from profiles.models import IntakeEvent
    from profiles.tracking.worker import intake_drain

    deadline = time.monotonic() + timeout
    intake_drain()
    while IntakeEvent.objects.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"the intake log still has {IntakeEvent.objects.count()} calls after {timeout}s")
        time.sleep(0.02)
        intake_drain()


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture
def secret_key(db) -> str:
    from cdp.services import api_key_create

    _, raw = api_key_create(name="tests")
    return raw


@pytest.fixture
def write_key(db) -> str:
    from profiles.services import source_create

    _, raw = source_create(name="storefront")
    return raw


@pytest.fixture
def secret_client(secret_key) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret_key}")
    return client


def worker_env() -> dict[str, str]:
    """Environment for worker processes: same settings, pointed at the test database."""
    url = urlsplit(settings.DATABASE_URL)
    test_db_url = urlunsplit(url._replace(path=f"/{connection.settings_dict['NAME']}"))
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "cdp.settings_test",
        "DATABASE_URL": test_db_url,
        "REDIS_URL": os.environ.get("REDIS_URL", settings.REDIS_URL),
        "DEBUG": "true",
    }


_session_worker: list[subprocess.Popen] = []  # the session's Celery worker, once started


def _session_worker_name() -> str:
    """The session's Celery worker's node name (control commands are sent to it alone)."""
    return f"test-{os.getpid()}@{socket.gethostname()}"


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, django_db_blocker):
    """A real Celery worker process on every queue (quick, ml, intake), against the test database."""
    with django_db_blocker.unblock():
        env = worker_env()
    log = REPO / ".cdp" / "test-celery-worker.log"
    log.parent.mkdir(exist_ok=True)
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "cdp",
                "worker",
                "--queues",
                "quick,ml,intake",
                "--pool",
                "solo",
                "--loglevel",
                "INFO",
                "--without-gossip",
                "--without-mingle",
                "--hostname",
                _session_worker_name(),
            ],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    from cdp.celery import app

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"celery worker exited with {proc.returncode}:\n{log.read_text()}")
        replies = app.control.ping(timeout=0.5)
        if replies:
            break
    else:
        proc.terminate()
        raise RuntimeError(f"celery worker did not answer:\n{log.read_text()}")
    _session_worker.append(proc)
    yield proc
    _session_worker.clear()
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


def celery_quiesce(*, timeout: float = 60.0) -> None:
    """If the session's Celery worker is up (``celery_worker``, started by an earlier test of the
    run), drop the tasks the test's requests queued (delayed ones too) and wait until it runs none: its writes would
    hold row locks (foreign-key checks) while the teardown's TRUNCATE waits for exclusive locks,
    which PostgreSQL ends as a deadlock, and a stitch drain lingering from an earlier test would
    take the next test's calls. The worker runs the solo pool: it answers no control command while
    it runs a task, so a ping that times out means busy, not gone."""
    from cdp.celery import app

    if not _session_worker or _session_worker[0].poll() is not None:
        return
    # the session's worker only (a test may run its own), and an answer as soon as it replies
    ask = {"destination": [_session_worker_name()], "limit": 1, "timeout": 0.5}
    deadline = time.monotonic() + timeout
    active: dict = {}
    while time.monotonic() < deadline:
        app.control.purge()
        if not app.control.ping(**ask):
            continue  # running a task
        inspect = app.control.inspect(**ask)
        # tasks sent with a countdown wait in the worker's memory, out of purge's reach, and so do the
        # ones it has already fetched from the queue (prefetched) but not started: either would start
        # after this returns (a drain that then takes the test's calls)
        for task in (t for tasks in (inspect.scheduled() or {}).values() for t in tasks):
            app.control.revoke(task["request"]["id"])
        for task in (t for tasks in (inspect.reserved() or {}).values() for t in tasks):
            app.control.revoke(task["id"])
        active = inspect.active() or {}
        if active and not any(active.values()) and not any((inspect.reserved() or {}).values()):
            app.control.purge()  # a task that just finished may have queued a follow-up
            return
        time.sleep(0.1)
    raise RuntimeError(f"the Celery worker is still running tasks after {timeout}s: {active}")
