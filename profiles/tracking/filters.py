"""Stage 3, filters: calls the platform must not keep, decided before any identity or trait work.

Subscribers (consent, in its ``AppConfig.ready()``) register with ``profiles.hooks``:
``ingest_filter_identifiers`` (e.g. erased people's identifiers, suppression) runs on the
identifiers alone, and again once their advisory locks are held; ``ingest_filter_profiles`` (consent
in the call's context, analytics denied) runs once the profiles are known and locked, before any
write. Each returns the indexes it keeps; the caller counts the rest as dropped.
"""

from __future__ import annotations

from profiles import hooks

from .validate import CleanEvent


def has_identifier_filters() -> bool:
    return bool(hooks.ingest_filter_identifiers.subscribers)


def identifier_sql_guards() -> tuple[hooks.SqlGuard, ...] | None:
    """The identifier filters as SQL for the accept path's INSERT, or None if one has no SQL form."""
    return hooks.ingest_filter_identifiers.sql_guards()


def identifiers_filter(events: list[CleanEvent], indexes: list[int]) -> list[int]:
    if not indexes or not hooks.ingest_filter_identifiers.subscribers:
        return indexes
    return hooks.ingest_filter_identifiers.apply(events=events, indexes=indexes)


def identifiers_refilter_locked(
    events: list[CleanEvent], to_resolve: list[int], fresh: list[int], result
) -> tuple[list, list]:
    """The identifier filters again, for the events that create or link identifiers, now that their
    advisory locks are held: an erasure holds the same locks while it writes its suppression entries,
    so one that committed after the first filter is seen here (or waits for us). Without this an
    erased person's identifiers would be created again by a batch that started before the erasure."""
    if not hooks.ingest_filter_identifiers.subscribers:
        return to_resolve, fresh
    kept = set(hooks.ingest_filter_identifiers.apply(events=events, indexes=to_resolve))
    if len(kept) == len(to_resolve):
        return to_resolve, fresh
    result.dropped += len(to_resolve) - len(kept)
    dropped = set(to_resolve) - kept
    return [i for i in to_resolve if i in kept], [i for i in fresh if i not in dropped]


def profiles_filter(events: list[CleanEvent], indexes: list[int], assigned: dict) -> list[int]:
    if not hooks.ingest_filter_profiles.subscribers:
        return indexes
    return hooks.ingest_filter_profiles.apply(events=events, indexes=indexes, profiles=assigned)
