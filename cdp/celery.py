"""The Celery app: Redis broker, JSON only, late acks, time limits, three queues.

Queues: ``quick`` for small per-event work (segment refresh for one profile, trait updates) and
``ml`` for heavy jobs (identity matching, clustering, model training), so a long training run
never delays real-time work. Task names starting ``ml_`` or ``heavy_`` go to ``ml``; ``intake_``
tasks (the stitch workers behind the tracking API's intake log) go to ``intake``, so stitching
never waits behind follow-up work and its workers can be scaled on their own.
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cdp.settings")

QUICK_QUEUE = "quick"
INTAKE_QUEUE = "intake"
ML_QUEUE = "ml"

app = Celery("cdp")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_default_queue=QUICK_QUEUE,
    task_routes={
        "*.tasks.ml_*": {"queue": ML_QUEUE},
        "*.tasks.heavy_*": {"queue": ML_QUEUE},
        "*.tasks.intake_*": {"queue": INTAKE_QUEUE},
    },
    result_expires=3600,
    broker_connection_retry_on_startup=True,
    broker_transport_options={"visibility_timeout": 4 * 3600},
    timezone="UTC",
    enable_utc=True,
    worker_hijack_root_logger=False,
)


@app.on_after_finalize.connect
def _install_schedule(sender: Celery, **kwargs) -> None:
    from .schedule import beat_schedule

    sender.conf.beat_schedule = beat_schedule()


app.autodiscover_tasks()
