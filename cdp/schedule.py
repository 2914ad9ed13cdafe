"""Every periodic job, as crontab entries, reviewed like code.

Crontab rather than intervals: interval schedules restart their count whenever beat restarts.
Task names that start with ``ml_`` are routed to the ``ml`` queue (see cdp/celery.py).
"""

from __future__ import annotations

from celery.schedules import crontab


def beat_schedule() -> dict[str, dict]:
    import consent.schedule
    import recommendations.schedule
    import segments.schedule

    return {
        **consent.schedule.ENTRIES,
        **segments.schedule.ENTRIES,
        **recommendations.schedule.ENTRIES,
        "heartbeat": {
            "task": "cdp.tasks.heartbeat",
            "schedule": crontab(minute="*"),
            "options": {"expires": 55},
        },
        "jobs-sweep": {
            # long runs (matching, clustering, model refresh, privacy requests) whose worker died
            "task": "cdp.tasks.jobs_sweep",
            "schedule": crontab(minute="*"),
            "options": {"expires": 55},
        },
        "profiles-pending-sweep": {
            # catches follow-up work whose task was lost (broker down at ingest time, worker crash)
            "task": "profiles.tasks.pending_process",
            "schedule": crontab(minute="*"),
            "options": {"expires": 55},
        },
        "profiles-intake-sweep": {
            # drains the intake log when no wake reached the workers (broker down at accept time)
            "task": "profiles.tasks.intake_stitch",
            "schedule": crontab(minute="*"),
            "options": {"expires": 55},
        },
        "profiles-identity-match-nightly": {
            "task": "profiles.tasks.ml_identity_match_nightly",
            "schedule": crontab(hour=1, minute=30),
        },
        "profiles-schema-nightly": {
            # recounts the schema registry the segment builder offers (ingestion keeps it current between)
            "task": "profiles.tasks.heavy_schema_rebuild",
            "schedule": crontab(hour=3, minute=45),
        },
        "profiles-traits-nightly": {
            "task": "profiles.tasks.heavy_traits_recompute",
            "schedule": crontab(hour=2, minute=15),
        },
    }
