"""Periodic jobs of the recommendations app (merged into cdp/schedule.py's beat schedule)."""

from __future__ import annotations

from celery.schedules import crontab
from django.conf import settings

ENTRIES: dict[str, dict] = {
    "recommendations-model-refresh-nightly": {
        "task": "recommendations.tasks.ml_model_refresh",
        "schedule": crontab(hour=settings.RECS_REFRESH_HOUR, minute=0),
    },
}
