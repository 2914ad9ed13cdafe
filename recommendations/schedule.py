"""Periodic jobs of the recommendations app (merged into cdp/schedule.py's beat schedule)."""

from __future__ import annotations

from celery.schedules import crontab
from django.conf import settings

ENTRIES: dict[str, dict] = {
    "recommendations-model-refresh-nightly": {
        "task": "recommendations.tasks.ml_model_refresh",
        "schedule": crontab(hour=settings.RECS_REFRESH_HOUR, minute=0),
    },
    # experiments: bandit shares from the logged answers every 5 minutes; results (the chart's
    # series of looks) every hour
    "recommendations-bandits-update": {
        "task": "recommendations.tasks.experiments_bandits_update",
        "schedule": crontab(minute="*/5"),
        "options": {"expires": 280},
    },
    # experiments: first exposures and the units they touch from the served log, every minute; every
    # unit of the running experiments again at night (bulk imports fire no hook)
    "recommendations-experiments-exposures": {
        "task": "recommendations.experiments.tasks.experiments_exposures_refresh",
        "schedule": crontab(minute="*"),
        "options": {"expires": 55},
    },
    "recommendations-experiments-units-nightly": {
        "task": "recommendations.experiments.tasks.heavy_experiment_units_rebuild",
        "schedule": crontab(hour=4, minute=20),
    },
    "recommendations-experiments-results": {
        "task": "recommendations.tasks.experiments_results_snapshot",
        "schedule": crontab(minute=7),
        "options": {"expires": 3000},
    },
}
