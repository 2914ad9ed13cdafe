"""rq jobs of the project package (django-rq). App jobs live in each app's jobs.py."""

from __future__ import annotations

from . import services


def ping_job(value: str) -> dict:
    return services.ping(value=value)
