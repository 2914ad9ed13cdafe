"""Periodic jobs of the consent app (merged into cdp/schedule.py's beat schedule)."""

from __future__ import annotations

from celery.schedules import crontab

ENTRIES: dict[str, dict] = {
    # expired export archives go; data-subject requests whose rq job was lost are queued again
    "consent-privacy-housekeeping": {
        "task": "consent.tasks.privacy_housekeeping",
        "schedule": crontab(minute="*/10"),
        "options": {"expires": 9 * 60},
    },
}
