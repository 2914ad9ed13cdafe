"""Periodic jobs of the segments app (merged into cdp/schedule.py's beat schedule)."""

from __future__ import annotations

ENTRIES: dict[str, dict] = {}
