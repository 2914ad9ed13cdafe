"""Celery tasks of the segments app: thin wrappers over services, safe to run twice."""

from __future__ import annotations

from celery import shared_task  # noqa: F401  (tasks arrive below)
