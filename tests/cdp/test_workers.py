"""Celery and rq run real jobs in real worker processes, against the test database."""

import subprocess
import sys

import django_rq
import pytest
from django.db import connection

from cdp import tasks
from cdp.celery import ML_QUEUE, QUICK_QUEUE, app
from cdp.jobs import ping_job
from tests.conftest import REPO, worker_env

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_celery_task_runs_in_a_worker_process_against_the_test_database(celery_worker):
    # given a real worker on both queues / when a task is sent through the Redis broker
    result = tasks.ping.delay("hello")
    # then the worker ran it and reached the same PostgreSQL database as the test
    assert result.get(timeout=30) == {"pong": "hello", "database": connection.settings_dict["NAME"]}


def test_heavy_tasks_are_routed_to_the_ml_queue_and_others_to_quick():
    router = app.amqp.router
    assert router.route({}, "recommendations.tasks.ml_model_refresh")["queue"].name == ML_QUEUE
    assert router.route({}, "cdp.tasks.ping")["queue"].name == QUICK_QUEUE


def test_celery_is_configured_for_safe_redelivery():
    conf = app.conf
    assert conf.task_serializer == "json"
    assert conf.accept_content == ["json"]
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.task_time_limit == 3600
    assert conf.task_soft_time_limit == 3300
    assert conf.broker_url.startswith("redis://")


def test_beat_schedule_is_crontab_entries_from_code():
    from celery.schedules import crontab

    app.loader.import_default_modules()
    schedule = app.conf.beat_schedule
    assert "heartbeat" in schedule
    assert all(isinstance(entry["schedule"], crontab) for entry in schedule.values())


def test_rq_job_runs_in_a_burst_worker():
    # given a job on the default queue
    queue = django_rq.get_queue("default")
    job = queue.enqueue(ping_job, "from-rq")
    # when an rq worker runs in burst mode as its own process
    done = subprocess.run(
        [sys.executable, "manage.py", "rqworker", "default", "--burst"],
        cwd=REPO,
        env=worker_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    # then the job finished with its result
    job.refresh()
    assert job.get_status() == "finished"
    assert job.return_value() == {"pong": "from-rq", "database": connection.settings_dict["NAME"]}
