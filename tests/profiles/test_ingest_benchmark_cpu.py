"""The ingest benchmark's CPU split puts a process tree's CPU on its side, and its backends' by name."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psycopg
import pytest
from django.db import connection

from benchmarks.ingest import STITCH_APP_NAME, WEB_APP_NAME, CpuSplit, cpu_split_line
from benchmarks.procstat import process_alive, process_cpu, process_tree

# a parent whose child burns 0.4 s of CPU and then stays (as gunicorn's workers and Celery's pool
# processes stay for the whole lag test)
BUSY_CHILD = (
    "import subprocess, sys; "
    "child = subprocess.Popen([sys.executable, '-c', "
    "'import time\\nt = time.process_time()\\nwhile time.process_time() - t < 0.4: pass\\ntime.sleep(60)']); "
    "child.wait()"
)


def _until_burnt(root: int, seconds: float) -> None:
    """Wait (up to 30 s) until ``root``'s tree has used ``seconds`` of CPU."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if sum(map(process_cpu, process_tree(root))) >= seconds:
            return
        time.sleep(0.05)


def _database_url() -> str:
    db = connection.settings_dict
    return f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.mark.django_db(transaction=True)
def test_the_split_counts_a_side_s_children_and_its_named_backends_not_the_other_side():
    url = _database_url()
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with psycopg.connect(url, application_name=WEB_APP_NAME, autocommit=True) as web_backend:
            # given a "web" parent whose child burns 0.4 s of CPU, a "stitch" side that sleeps, and
            # a backend named as the web side's that works meanwhile
            parent = subprocess.Popen([sys.executable, "-c", BUSY_CHILD])
            try:
                with CpuSplit(url, parent.pid, idle.pid) as split:
                    web_backend.execute("SELECT count(*) FROM generate_series(1, 3000000)")
                    _until_burnt(parent.pid, 0.35)
            finally:
                for pid in process_tree(parent.pid) - {parent.pid}:
                    os.kill(pid, signal.SIGKILL)
                parent.wait(30)
            # then the child's CPU is the web side's, the backend's is its PostgreSQL's, none is the stitch's
            assert split.available
            assert split.seconds["web"] >= 0.3
            assert split.seconds["web_pg"] > 0
            assert split.seconds["stitch"] + split.seconds["stitch_pg"] < 0.1
            assert split.seconds["machine"] >= split.seconds["web"]
    finally:
        idle.kill()
        idle.wait()
    line = cpu_split_line(split, accepted=1000, stitched=1000)
    assert "accept" in line and "stitch" in line and "events/s" in line
    assert STITCH_APP_NAME != WEB_APP_NAME


def test_a_gone_process_counts_nothing():
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    time.sleep(0.05)
    assert not process_alive(gone.pid)
    assert process_cpu(gone.pid) == 0.0
    assert process_tree(gone.pid) == {gone.pid}
