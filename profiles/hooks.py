"""The explicit hook registry of the profiles layer (ARCHITECTURE.md: no hidden signal chains).

Upper apps subscribe in their ``AppConfig.ready()``::

    from profiles import hooks
    hooks.on_profile_activity.subscribe(my_handler)

Hooks fire after the transaction that caused them commits. A failing subscriber is logged and
never breaks ingestion or the other subscribers.

A bulk path that fires one hook thousands of times at once (the fuzzy job's bulk merges) uses
``fire_many``; a subscriber may give a batch form when it subscribes
(``subscribe(fn, many=fn_many)``, called as ``fn_many(calls=[kwargs, ...])``) and then does its work
once per batch (one task, one statement) instead of once per call; without one it is called per call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import transaction

logger = logging.getLogger("cdp.hooks")


class Hook:
    def __init__(self, name: str, doc: str) -> None:
        self.name = name
        self.__doc__ = doc
        self._subscribers: list[Callable[..., None]] = []
        self._many: dict[Callable[..., None], Callable[..., None]] = {}

    def subscribe(self, fn: Callable[..., None], *, many: Callable[..., None] | None = None) -> Callable[..., None]:
        """``many``: the subscriber's batch form, ``many(calls=[kwargs, ...])`` (see ``fire_many``)."""
        if fn not in self._subscribers:
            self._subscribers.append(fn)
        if many is not None:
            self._many[fn] = many
        return fn

    def unsubscribe(self, fn: Callable[..., None]) -> None:
        if fn in self._subscribers:
            self._subscribers.remove(fn)
        self._many.pop(fn, None)

    @property
    def subscribers(self) -> tuple[Callable[..., None], ...]:
        return tuple(self._subscribers)

    def fire_now(self, **kwargs) -> None:
        for fn in self._subscribers:
            try:
                fn(**kwargs)
            except Exception:
                logger.exception("hook %s: subscriber %s failed", self.name, getattr(fn, "__qualname__", fn))

    def deliver(self, **kwargs) -> bool:
        """Call every subscriber now and say whether all of them handed the work on: a subscriber
        that raises or returns ``False`` (e.g. could not queue its task) makes this ``False``, so
        the caller keeps its durable mark and tries again later. Call it after commit."""
        delivered = True
        for fn in self._subscribers:
            try:
                if fn(**kwargs) is False:
                    delivered = False
            except Exception:
                delivered = False
                logger.exception("hook %s: subscriber %s failed", self.name, getattr(fn, "__qualname__", fn))
        return delivered

    def fire(self, **kwargs) -> None:
        """Fire once the current transaction commits (at once outside a transaction)."""
        transaction.on_commit(lambda: self.fire_now(**kwargs))

    def fire_many_now(self, calls: list[dict]) -> None:
        """Every call of a batch: a subscriber's batch form once, else the subscriber per call."""
        for fn in self._subscribers:
            many = self._many.get(fn)
            targets = [(many, {"calls": calls})] if many is not None else [(fn, kwargs) for kwargs in calls]
            for target, kwargs in targets:
                try:
                    target(**kwargs)
                except Exception:
                    logger.exception("hook %s: subscriber %s failed", self.name, getattr(fn, "__qualname__", fn))

    def fire_many(self, calls: list[dict]) -> None:
        """``fire`` for a batch of calls (each a kwargs dict), once the current transaction commits."""
        if calls:
            batch = list(calls)
            transaction.on_commit(lambda: self.fire_many_now(batch))


on_profile_activity = Hook(
    "on_profile_activity",
    "Profiles had new events and fresh computed traits. kwargs: profile_ids (list[str]). Subscribers must "
    "accept an optional event_names (list[str]); profiles does not send it yet, so None means anything changed.",
)
on_profiles_merged = Hook("on_profiles_merged", "Two profiles became one. kwargs: winner_id, loser_id, merge_id.")
on_profiles_unmerged = Hook("on_profiles_unmerged", "A merge was undone. kwargs: winner_id, loser_id, merge_id.")
on_events_stored = Hook(
    "on_events_stored",
    "Events were stored by the tracking path (not by bulk imports). kwargs: events (list of dicts with "
    "profile_id, type, name, properties, context, occurred_at, device_type, local_hour). Built only when "
    "someone subscribes; keep subscribers cheap (queue work, do not compute inline).",
)


@dataclass(frozen=True)
class SqlGuard:
    """An identifier filter's decision as SQL, so the accept path can make it inside its INSERT
    (one statement per request instead of a look-up and an insert; decision 0053).

    A call is dropped when one of ``keys(event)`` (``event.identifiers`` is set) is in ``table``'s
    ``column``, exactly as the filter function it is attached to (``sql_guard``) would decide.
    """

    table: str
    column: str
    keys: Callable[[Any], list[str]]


def sql_guard(guard: SqlGuard) -> Callable:
    """Attach ``guard`` to an identifier filter function (it travels with the function, so
    unsubscribing and subscribing again keeps it)."""

    def attach(fn: Callable) -> Callable:
        fn.sql_guard = guard
        return fn

    return attach


class Filter:
    """An ingestion filter: subscribers decide which events of a batch are kept (consent, suppression).

    Unlike hooks, filters run inside the ingesting transaction and their errors propagate (a filter
    that cannot decide must not let data through). Each subscriber gets ``events`` (the batch's
    ``CleanEvent`` list), ``indexes`` (the positions still kept) and, for the profile stage,
    ``profiles`` (position → live profile id); it returns the positions to keep.
    """

    def __init__(self, name: str, doc: str) -> None:
        self.name = name
        self.__doc__ = doc
        self._subscribers: list[Callable[..., list[int]]] = []

    def subscribe(self, fn: Callable[..., list[int]]) -> Callable[..., list[int]]:
        if fn not in self._subscribers:
            self._subscribers.append(fn)
        return fn

    def unsubscribe(self, fn: Callable[..., list[int]]) -> None:
        if fn in self._subscribers:
            self._subscribers.remove(fn)

    @property
    def subscribers(self) -> tuple[Callable[..., list[int]], ...]:
        return tuple(self._subscribers)

    def sql_guards(self) -> tuple[SqlGuard, ...] | None:
        """Every subscriber's ``SqlGuard``, or None when one of them has none (then only the
        functions decide)."""
        guards = tuple(getattr(fn, "sql_guard", None) for fn in self._subscribers)
        return None if None in guards else guards

    def apply(self, *, indexes: list[int], **kwargs) -> list[int]:
        for fn in self._subscribers:
            if not indexes:
                break
            indexes = fn(indexes=indexes, **kwargs)
        return indexes


ingest_filter_identifiers = Filter(
    "ingest_filter_identifiers",
    "Before identity work: drop events by the identifiers they carry (event.identifiers, normalised). "
    "kwargs: events, indexes. Used by consent's suppression list (erased people).",
)
ingest_filter_profiles = Filter(
    "ingest_filter_profiles",
    "After identity work, before the events are inserted: drop events by their live profile (e.g. analytics "
    "denied) and record what they say (consent in context). kwargs: events, indexes, profiles.",
)
