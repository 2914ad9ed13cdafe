"""Subscribers to the profiles hooks: queue the real-time segment refresh (no work inline)."""

from __future__ import annotations

BATCH_PROFILES = 1000  # profiles per refresh task when merges come in a batch


def _queue(profile_ids: list[str], event_names: list[str] | None, every_segment: bool = False) -> bool:
    """Fire-and-forget (never waits on Redis); False when the broker did not take the task, so that
    ``pending_process`` keeps its PendingWork rows and asks again (decision 0003)."""
    from cdp.queueing import task_send
    from segments import tasks

    return task_send(tasks.segments_profiles_refresh, args=[[str(p) for p in profile_ids], event_names, every_segment])


def on_profile_activity(*, profile_ids, event_names=None, **_) -> bool:
    """Hooks fire after commit, so the task sees the events and fresh computed traits."""
    if not profile_ids:
        return True
    return _queue(list(profile_ids), list(event_names) if event_names is not None else None)


def on_profiles_merged(*, winner_id, loser_id, merge_id=None, **_) -> bool:
    # the fast path; the merge also marked both profiles pending, so a lost task is caught up
    return _queue([winner_id, loser_id], None, every_segment=True)


def on_profiles_merged_many(*, calls: list[dict]) -> bool:
    """A batch of merges (the fuzzy job's bulk path): one task per ``BATCH_PROFILES`` profiles."""
    ids = list(dict.fromkeys(str(p) for c in calls for p in (c["winner_id"], c["loser_id"])))
    delivered = True
    for start in range(0, len(ids), BATCH_PROFILES):
        delivered = _queue(ids[start : start + BATCH_PROFILES], None, every_segment=True) and delivered
    return delivered


def on_profiles_unmerged(*, winner_id, loser_id, merge_id=None, **_) -> bool:
    return _queue([winner_id, loser_id], None, every_segment=True)


def on_consent_changed(*, profile_ids, purposes=None, **_) -> None:
    """A consent answer can move a profile in or out of consent-based segments at once."""
    if profile_ids:
        _queue(list(profile_ids), None, every_segment=True)  # the scheduled refresh catches up
