"""Subscribers to the profiles hooks: queue the real-time segment refresh (no work inline)."""

from __future__ import annotations

import logging

logger = logging.getLogger("cdp.segments")


def _queue(profile_ids: list[str], event_names: list[str] | None, every_segment: bool = False) -> None:
    from segments import tasks

    try:
        tasks.segments_profiles_refresh.delay([str(p) for p in profile_ids], event_names, every_segment)
    except Exception:  # broker down: the scheduled refresh catches up
        logger.exception("could not queue the segment refresh of %d profiles", len(profile_ids))


def on_profile_activity(*, profile_ids, event_names=None, **_) -> None:
    """Hooks fire after commit, so the task sees the events and fresh computed traits."""
    if profile_ids:
        _queue(list(profile_ids), list(event_names) if event_names is not None else None)


def on_profiles_merged(*, winner_id, loser_id, merge_id=None, **_) -> None:
    _queue([winner_id, loser_id], None, every_segment=True)


def on_profiles_unmerged(*, winner_id, loser_id, merge_id=None, **_) -> None:
    _queue([winner_id, loser_id], None, every_segment=True)


def on_consent_changed(*, profile_ids, purposes=None, **_) -> None:
    """A consent answer can move a profile in or out of consent-based segments at once."""
    if profile_ids:
        _queue(list(profile_ids), None, every_segment=True)
