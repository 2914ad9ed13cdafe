"""Ingestion: validated tracking calls become stored events on the right profile, in one transaction.

Accepted means durable: the events, identity changes and a PendingWork mark per touched profile
commit together before the HTTP response. Follow-up work (computed traits, segment refresh) is
queued on commit; if Redis or the workers are down, the scheduled sweep picks it up later.

Speed: one query finds the batch's known message ids (duplicates are skipped), one query finds
the owners of every identifier in the batch, after the batch's advisory locks. An event whose
identifiers all exist on one profile takes the fast path; the rest go through ``profile_resolve``
one by one, in batch order. Every written profile is then locked (FOR UPDATE, id order) and
re-checked for merges, so a concurrent merge waits for our events. Events are inserted with one
multi-row INSERT.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, OperationalError, transaction
from django.utils import timezone
from psycopg import errors as pg_errors

from profiles.identity.merge import lock_profiles, pending_mark, traits_apply
from profiles.identity.resolve import lock_identifier_keys, owners_of, profile_resolve
from profiles.models import Event, Profile, Source
from profiles.normalize import normalize_identifier

from .validate import CleanEvent

logger = logging.getLogger("cdp.ingest")

RETRYABLE = (pg_errors.DeadlockDetected, pg_errors.SerializationFailure, pg_errors.LockNotAvailable)
MAX_ATTEMPTS = 6


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    profile_ids: set = field(default_factory=set)
    event_profiles: list = field(default_factory=list)  # profile id per input event (None for duplicates)


def event_identifiers(event: CleanEvent) -> list[tuple[str, str]]:
    """Normalised identifiers an event carries: ids, and identifying traits of the person."""
    found: list[tuple[str, str]] = []
    for kind, raw in (("user_id", event.user_id), ("anonymous_id", event.anonymous_id)):
        value = normalize_identifier(kind, raw) if raw else None
        if value:
            found.append((kind, value))
    person_traits = dict(event.context.get("traits") or {}) if isinstance(event.context.get("traits"), dict) else {}
    if event.type == "identify":
        person_traits.update(event.traits)
    for kind in ("email", "phone", *settings.CDP_EXTRA_IDENTIFIER_KINDS):
        raw = person_traits.get(kind)
        value = normalize_identifier(kind, raw) if raw not in (None, "") else None
        if value:
            found.append((kind, value))
    return found


def _is_retryable(exc: Exception) -> bool:
    cause = exc.__cause__ or exc.__context__
    return isinstance(cause, RETRYABLE) or isinstance(exc, RETRYABLE)


def events_ingest(*, source: Source, events: list[CleanEvent]) -> IngestResult:
    """Store events durably and resolve their identities; retried whole on deadlock."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            with transaction.atomic():
                result = _ingest(source, events)
                transaction.on_commit(pending_schedule)
            return result
        except (OperationalError, DatabaseError) as exc:
            if attempt == MAX_ATTEMPTS or not _is_retryable(exc):
                raise
            logger.info("ingest: retrying after %s (attempt %d)", type(exc.__cause__).__name__, attempt)
            time.sleep(random.uniform(0.005, 0.05) * attempt)
    raise AssertionError("unreachable")


def _known_message_ids(source: Source, message_ids: list[str]) -> set[str]:
    return set(Event.objects.filter(source=source, message_id__in=message_ids).values_list("message_id", flat=True))


def _alias_identifiers(event: CleanEvent) -> list[tuple[str, str]]:
    """alias(previousId → userId): previousId is whichever id kind it already is, else anonymous."""
    previous = normalize_identifier("user_id", event.previous_id)
    if not previous:
        return event.identifiers
    from profiles.models import Identifier

    kind = "user_id" if Identifier.objects.filter(kind="user_id", value=previous).exists() else "anonymous_id"
    return [*event.identifiers, (kind, previous)]


def _ingest(source: Source, events: list[CleanEvent]) -> IngestResult:
    result = IngestResult(event_profiles=[None] * len(events))
    known = _known_message_ids(source, [e.message_id for e in events])
    fresh: list[int] = []
    seen_ids: set[str] = set()
    for index, event in enumerate(events):
        if event.message_id in known or event.message_id in seen_ids:
            result.duplicates += 1
            continue
        seen_ids.add(event.message_id)
        event.identifiers = event_identifiers(event)
        if event.type == "alias":
            event.identifiers = _alias_identifiers(event)
        if not event.identifiers:  # every id was junk (blocklisted): the event still needs a home
            event.identifiers = [("anonymous_id", f"cdp-unidentified-{event.message_id}")]
        fresh.append(index)
    if not fresh:
        return result

    batch_identifiers = {kv for i in fresh for kv in events[i].identifiers}
    lock_identifier_keys(batch_identifiers)  # before any row lock: one lock order for everyone
    owners = owners_of(list(batch_identifiers))
    assigned: dict[int, object] = {}
    # traits stated by identify calls earlier in this batch are written at the end; contradiction
    # checks of later calls must see them (a family mailbox shared within one batch)
    unsaved: dict[object, dict] = {}
    for index in fresh:
        event = events[index]
        identifiers = event.identifiers
        person_traits = event.traits if event.type == "identify" else {}
        event_owners = {owners.get(kv) for kv in identifiers}
        if event.type != "alias" and None not in event_owners and len(event_owners) == 1:
            pid = event_owners.pop()
        else:
            pid = profile_resolve(
                identifiers=identifiers,
                traits=person_traits,
                at=event.occurred_at,
                trusted_link=event.type == "alias",
                unsaved_traits=unsaved,
            ).pk
            _follow_resolution(owners, unsaved, identifiers, pid)
        assigned[index] = pid
        if person_traits:
            unsaved.setdefault(pid, {}).update(person_traits)

    _lock_live(assigned)
    _update_profiles(events, assigned)
    rows = [
        Event(
            source=source,
            message_id=e.message_id,
            profile_id=assigned[i],
            type=e.type,
            name=e.name,
            user_id=e.user_id,
            anonymous_id=e.anonymous_id,
            properties=e.properties,
            traits=e.traits,
            context=e.context,
            occurred_at=e.occurred_at,
            original_timestamp=e.original_timestamp,
            sent_at=e.sent_at,
            received_at=e.received_at,
            device_type=e.device_type,
            local_hour=e.local_hour,
        )
        for i, e in ((i, events[i]) for i in fresh)
    ]
    Event.objects.bulk_create(rows, ignore_conflicts=True)
    for index, pid in assigned.items():
        result.event_profiles[index] = str(pid)
    result.accepted = len(rows)
    result.profile_ids = {str(p) for p in assigned.values()}
    pending_mark(result.profile_ids)
    return result


def _follow_resolution(owners: dict, unsaved: dict, identifiers: list, anchor) -> None:
    """After a slow-path resolution: who owns the event's identifiers now (some may have stayed with
    a contradicted profile), and unsaved traits of profiles merged into the anchor move with them."""
    before = {owners.get(kv) for kv in identifiers} - {None, anchor}
    owners.update(owners_of(identifiers))
    if not before:
        return
    merged = Profile.objects.filter(pk__in=before, merged_into__isnull=False).values_list("pk", "merged_into_id")
    for loser, winner in merged:
        if loser in unsaved:
            unsaved.setdefault(winner, {}).update(unsaved.pop(loser))
        for kv, owner in list(owners.items()):
            if owner == loser:
                owners[kv] = winner


def _lock_live(assigned: dict[int, object]) -> None:
    """Lock every profile the batch writes to, then re-point events whose profile was merged away
    (by an earlier event of this batch, or by another transaction that committed before our lock).
    Holding the lock until commit makes a concurrent merge of these profiles wait for our events."""
    for _ in range(10):
        locked = lock_profiles(set(assigned.values()))
        moved = {pid: p.merged_into_id for pid, p in locked.items() if p.merged_into_id}
        if not moved:
            return
        for index, pid in assigned.items():
            assigned[index] = moved.get(pid, pid)
    raise RuntimeError("profiles kept moving while ingesting; retry")


def _update_profiles(events: list[CleanEvent], assigned: dict[int, object]) -> None:
    """Seen times for every touched profile, traits from identify calls (oldest first)."""
    by_profile: dict[object, list[CleanEvent]] = {}
    for index, pid in assigned.items():
        by_profile.setdefault(pid, []).append(events[index])
    profiles = lock_profiles(by_profile)
    changed = []
    now = timezone.now()
    for pid, evs in by_profile.items():
        profile = profiles[pid]
        first = min(e.occurred_at for e in evs)
        last = max(e.occurred_at for e in evs)
        dirty = first < profile.first_seen_at or last > profile.last_seen_at
        profile.first_seen_at = min(profile.first_seen_at, first)
        profile.last_seen_at = max(profile.last_seen_at, last)
        traits_changed = False
        for event in sorted((e for e in evs if e.type == "identify" and e.traits), key=lambda e: e.occurred_at):
            traits_changed |= traits_apply(profile, event.traits, event.occurred_at)
        if traits_changed:  # updated_at marks identity-relevant change (incremental matching reads it)
            profile.updated_at = now
        if dirty or traits_changed:
            changed.append(profile)
    if changed:
        Profile.objects.bulk_update(changed, ["first_seen_at", "last_seen_at", "traits", "trait_meta", "updated_at"])


PENDING_SCHEDULE_KEY = "cdp:pending:scheduled"


def pending_schedule() -> None:
    """Ask a worker to process pending follow-up work soon; never fails ingestion.

    Debounced to one task per second across web processes; the beat sweep covers a lost task.
    """
    try:
        if cache.add(PENDING_SCHEDULE_KEY, 1, timeout=1):
            from profiles.tasks import pending_process

            pending_process.apply_async(retry=False)
    except Exception as exc:  # broker or cache down: the scheduled sweep catches up
        logger.warning("could not queue follow-up work (%s); the sweep will pick it up", exc)
