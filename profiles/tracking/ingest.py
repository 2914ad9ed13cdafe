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

import json
import logging
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, OperationalError, connection, transaction
from psycopg import errors as pg_errors

from profiles import hooks
from profiles.identity.merge import ProfileVanished, pending_mark, trait_value, traits_apply
from profiles.identity.resolve import owners_of, profile_resolve
from profiles.locks import lock_identifier_keys, lock_profile_ids, lock_profiles_more
from profiles.models import Profile, Source
from profiles.normalize import limit_for, normalize_identifier

from .validate import CleanEvent

logger = logging.getLogger("cdp.ingest")

# retries by cause since the process started (the concurrency tests and `make reliability` read it)
retry_counts: Counter = Counter()
RETRYABLE = (pg_errors.DeadlockDetected, pg_errors.SerializationFailure, pg_errors.LockNotAvailable)
MAX_ATTEMPTS = 6


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    dropped: int = 0  # refused by an ingestion filter (suppressed person, analytics denied)
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


def events_ingest(*, source: Source, events: list[CleanEvent], lock_identifiers: bool = True) -> IngestResult:
    """Store events durably and resolve their identities; retried whole on deadlock.

    ``lock_identifiers=False`` is only for callers that ingest inside one long transaction nobody
    else can see (``evaluate_identity`` rolls everything back): the per-identifier advisory locks
    guard nothing there and would pile up until PostgreSQL's lock table is full.
    """
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            with transaction.atomic():
                result = _ingest(source, events, lock_identifiers=lock_identifiers)
                transaction.on_commit(pending_schedule)
            return result
        except ProfileVanished as exc:  # erased under us: the retry sees the erasure (suppression)
            if attempt == MAX_ATTEMPTS:
                raise
            logger.info("ingest: retrying after %s (attempt %d)", exc, attempt)
            continue
        except (OperationalError, DatabaseError) as exc:
            if attempt == MAX_ATTEMPTS or not _is_retryable(exc):
                raise
            cause = type(exc.__cause__ or exc).__name__
            retry_counts[cause] += 1
            logger.info("ingest: retrying after %s (attempt %d)", cause, attempt)
            time.sleep(random.uniform(0.005, 0.05) * attempt)
    raise AssertionError("unreachable")


def _known_message_ids(source: Source, message_ids: list[str]) -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT message_id FROM profiles_event WHERE source_id = %s AND message_id = ANY(%s::text[])",
            [source.pk, message_ids],
        )
        return {row[0] for row in cursor.fetchall()}


def _alias_identifiers(event: CleanEvent) -> list[tuple[str, str]]:
    """alias(previousId → userId): previousId is whichever id kind it already is, else anonymous."""
    previous = normalize_identifier("user_id", event.previous_id)
    if not previous:
        return event.identifiers
    from profiles.models import Identifier

    kind = "user_id" if Identifier.objects.filter(kind="user_id", value=previous).exists() else "anonymous_id"
    return [*event.identifiers, (kind, previous)]


def _ingest(source: Source, events: list[CleanEvent], *, lock_identifiers: bool = True) -> IngestResult:
    result = IngestResult(event_profiles=[None] * len(events))
    # a batch skips events it already has before any identity work; a single call relies on the
    # INSERT's ON CONFLICT (one statement less on the hottest path)
    known = _known_message_ids(source, [e.message_id for e in events]) if len(events) > 1 else set()
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
    if fresh and hooks.ingest_filter_identifiers.subscribers:  # e.g. erased people's identifiers
        kept = hooks.ingest_filter_identifiers.apply(events=events, indexes=fresh)
        result.dropped += len(fresh) - len(kept)
        fresh = kept
    if not fresh:
        return result

    # 1. who owns what (unlocked read); events whose identifiers are all on one profile need no lock
    owners = owners_of({kv for i in fresh for kv in events[i].identifiers})
    to_resolve = [i for i in fresh if not _settled(events[i], owners)]
    # 2. identifiers about to be created or linked: advisory locks in one global order, then re-read
    if to_resolve:
        linking = {kv for i in to_resolve for kv in events[i].identifiers}
        if lock_identifiers:
            lock_identifier_keys(linking)
            to_resolve, fresh = _refilter_locked(events, to_resolve, fresh, result)
        owners.update(owners_of(linking))
        # then every profile the batch can touch, in id order, before any per-event work (one lock
        # order, profiles/locks.py): resolving event by event would lock them in batch order
        _lock_owners(owners)
    assigned: dict[int, object] = {}
    # 3. brand-new people (no identifier known anywhere) are created in bulk
    _create_new_people(events, [i for i in to_resolve if not _settled(events[i], owners)], owners, assigned)
    # 4. the rest in batch order; traits stated earlier in the batch are seen by contradiction checks
    unsaved: dict[object, dict] = {}
    for index in fresh:
        event = events[index]
        person_traits = event.traits if event.type == "identify" else {}
        if index not in assigned:
            if _settled(event, owners):
                assigned[index] = owners[event.identifiers[0]]
            else:
                pid = profile_resolve(
                    identifiers=event.identifiers,
                    traits=person_traits,
                    at=event.occurred_at,
                    trusted_link=event.type == "alias",
                    unsaved_traits=unsaved,
                    lock_identifiers=lock_identifiers,
                ).pk
                _follow_resolution(owners, unsaved, event.identifiers, pid)
                assigned[index] = pid
        if person_traits:
            unsaved.setdefault(assigned[index], {}).update(person_traits)

    # 5. lock what we write, re-point merged-away profiles, update profiles, insert events
    seen = _lock_live(assigned)
    if hooks.ingest_filter_profiles.subscribers:  # e.g. consent in context, analytics denied
        kept = hooks.ingest_filter_profiles.apply(events=events, indexes=fresh, profiles=assigned)
        result.dropped += len(fresh) - len(kept)
        fresh = kept
    # filters decide before any write: a refused event moves no seen time and writes no trait
    kept_set = set(fresh)
    _update_profiles(events, {i: pid for i, pid in assigned.items() if i in kept_set}, seen)
    inserted = _insert_events(source, [(events[i], assigned[i]) for i in fresh])
    for index, pid in assigned.items():
        result.event_profiles[index] = str(pid)
    result.accepted = inserted
    result.duplicates += len(fresh) - inserted
    result.profile_ids = {str(p) for p in assigned.values()}
    pending_mark(result.profile_ids)
    return result


def _refilter_locked(events: list[CleanEvent], to_resolve: list[int], fresh: list[int], result) -> tuple[list, list]:
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


def _lock_owners(owners: dict) -> None:
    """Lock the owners of the batch's identifiers in id order, then read the owners again: an
    identifier a merge moved before our lock points at a profile we do not hold yet, which is locked
    with ``lock_profiles_more`` (never out of order). Afterwards no owner can change under us."""
    held = set(lock_profile_ids(set(owners.values())))
    for _ in range(10):
        current = owners_of(list(owners))
        owners.update(current)
        missing = set(current.values()) - held
        if not missing:
            return
        held.update(lock_profiles_more(missing, held=held))
    raise RuntimeError("identifiers kept moving while ingesting; retry")


def _settled(event: CleanEvent, owners: dict) -> bool:
    """Every identifier of the event already belongs to one and the same profile."""
    if event.type == "alias":
        return False
    first = owners.get(event.identifiers[0])
    return first is not None and all(owners.get(kv) == first for kv in event.identifiers[1:])


def _create_new_people(events: list[CleanEvent], candidates: list[int], owners: dict, assigned: dict) -> None:
    """Events whose identifiers nobody owns, grouped by shared identifiers, become new profiles in
    two statements. A group that would break an identifier limit, contains an alias, or states
    contradicting traits is left to ``profile_resolve``, which records why."""
    parent: dict = {}

    def find(x):
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    pool = [
        i for i in candidates if events[i].type != "alias" and all(kv not in owners for kv in events[i].identifiers)
    ]
    for i in pool:
        first = find(events[i].identifiers[0])
        for kv in events[i].identifiers[1:]:
            parent[find(kv)] = first
    groups: dict = {}
    for i in pool:
        groups.setdefault(find(events[i].identifiers[0]), []).append(i)
    touched_elsewhere = {kv for i in candidates if i not in set(pool) for kv in events[i].identifiers}
    profile_rows, identifier_rows = [], []
    for members in groups.values():
        identifiers = sorted({kv for i in members for kv in events[i].identifiers})
        if touched_elsewhere.intersection(identifiers) or not _group_is_one_person(events, members, identifiers):
            continue
        pid = uuid.uuid4()
        times = [events[i].occurred_at for i in members]
        profile_rows.append((pid, min(times), max(times)))
        identifier_rows.extend((kind, value, pid, min(times)) for kind, value in identifiers)
        for i in members:
            assigned[i] = pid
        for kv in identifiers:
            owners[kv] = pid
    if not profile_rows:
        return
    ids, firsts, lasts = zip(*profile_rows, strict=True)
    kinds, values, owner_ids, seen = zip(*identifier_rows, strict=True)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO profiles_profile (id, traits, trait_meta, computed, first_seen_at, last_seen_at, "
            "created_at, updated_at) SELECT p.id, '{}', '{}', '{}', p.f, p.l, now(), now() "
            "FROM unnest(%s::uuid[], %s::timestamptz[], %s::timestamptz[]) AS p(id, f, l)",
            [list(ids), list(firsts), list(lasts)],
        )
        cursor.execute(
            "INSERT INTO profiles_identifier (kind, value, profile_id, created_at, last_seen_at) "
            "SELECT i.k, i.v, i.p, now(), i.s FROM unnest(%s::text[], %s::text[], %s::uuid[], %s::timestamptz[]) "
            "AS i(k, v, p, s)",
            [list(kinds), list(values), list(owner_ids), list(seen)],
        )


def _group_is_one_person(events: list[CleanEvent], members: list[int], identifiers: list) -> bool:
    counts = Counter(kind for kind, _ in identifiers)
    if any(n > limit_for(kind) for kind, n in counts.items()):
        return False
    stated: dict = {}
    for i in members:
        if events[i].type == "identify":
            for key in settings.CDP_CONTRADICTION_TRAITS:
                value = trait_value(events[i].traits, key)
                if value not in (None, ""):
                    stated.setdefault(key, set()).add(str(value).strip().casefold())
    return all(len(values) <= 1 for values in stated.values())


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


# last_seen_at moves only when it is this much behind: a profile row (and its indexes) is not
# rewritten for every page view of a session
SEEN_RESOLUTION = timedelta(minutes=1)

_LOCK_SQL = (
    "SELECT id, merged_into_id, first_seen_at, last_seen_at FROM profiles_profile "
    "WHERE id = ANY(%s::uuid[]) ORDER BY id FOR UPDATE"
)


def _lock_live(assigned: dict[int, object]) -> dict:
    """Lock every profile the batch writes to (id order), then re-point events whose profile was
    merged away (by an earlier event of this batch, or by another transaction that committed before
    our lock). Holding the lock until commit makes a concurrent merge of these profiles wait for our
    events. Returns {profile id: (first_seen_at, last_seen_at)} of the live profiles."""
    held: set = set()
    for _ in range(10):
        wanted = {str(p) for p in assigned.values()}
        if held:  # profiles a merge moved us to: never waited for out of order (profiles/locks.py)
            held.update(lock_profiles_more({w for w in wanted if uuid.UUID(w) not in held}, held=held))
        with connection.cursor() as cursor:
            cursor.execute(_LOCK_SQL, [sorted(wanted)])
            rows = cursor.fetchall()
        held.update(pid for pid, _, _, _ in rows)
        if len(rows) < len(wanted):
            raise ProfileVanished("a profile of the batch was deleted (erased) before it was locked")
        moved = {pid: into for pid, into, _, _ in rows if into}
        if not moved:
            return {pid: (first, last) for pid, _, first, last in rows}
        for index, pid in assigned.items():
            assigned[index] = moved.get(pid, pid)
    raise RuntimeError("profiles kept moving while ingesting; retry")


def _update_profiles(events: list[CleanEvent], assigned: dict[int, object], seen: dict) -> None:
    """Seen times for every touched profile (one set-based UPDATE), traits from identify calls
    (oldest first) for the profiles that got any."""
    span: dict = {}
    with_traits: dict = {}
    for index, pid in assigned.items():
        event = events[index]
        first, last = span.get(pid, (event.occurred_at, event.occurred_at))
        span[pid] = (min(first, event.occurred_at), max(last, event.occurred_at))
        if event.type == "identify" and event.traits:
            with_traits.setdefault(pid, []).append(event)
    moved = [
        (pid, lo, hi) for pid, (lo, hi) in span.items() if lo < seen[pid][0] or hi > seen[pid][1] + SEEN_RESOLUTION
    ]
    with connection.cursor() as cursor:
        if moved:
            ids, firsts, lasts = zip(*moved, strict=True)
            cursor.execute(
                "UPDATE profiles_profile p SET first_seen_at = LEAST(p.first_seen_at, v.f), "
                "last_seen_at = GREATEST(p.last_seen_at, v.l) "
                "FROM unnest(%s::uuid[], %s::timestamptz[], %s::timestamptz[]) AS v(id, f, l) WHERE p.id = v.id",
                [[str(i) for i in ids], list(firsts), list(lasts)],
            )
        if not with_traits:
            return
        changed = []
        for profile in Profile.objects.filter(pk__in=list(with_traits)).only("id", "traits", "trait_meta"):
            dirty = False
            for event in sorted(with_traits[profile.pk], key=lambda e: e.occurred_at):
                dirty |= traits_apply(profile, event.traits, event.occurred_at)
            if dirty:
                changed.append((str(profile.pk), json.dumps(profile.traits), json.dumps(profile.trait_meta)))
        if changed:  # updated_at marks identity-relevant change (incremental matching reads it)
            ids, traits, metas = zip(*changed, strict=True)
            cursor.execute(
                "UPDATE profiles_profile p SET traits = v.t::jsonb, trait_meta = v.m::jsonb, updated_at = now() "
                "FROM unnest(%s::uuid[], %s::text[], %s::text[]) AS v(id, t, m) WHERE p.id = v.id",
                [list(ids), list(traits), list(metas)],
            )


_EVENT_INSERT = (
    "INSERT INTO profiles_event (source_id, message_id, profile_id, type, name, user_id, anonymous_id, "
    "properties, traits, context, occurred_at, original_timestamp, sent_at, received_at, device_type, local_hour) "
    "SELECT %s, e.mid, e.pid, e.t, e.n, e.u, e.a, e.p::jsonb, e.tr::jsonb, e.c::jsonb, e.o, e.ot, e.s, e.r, e.d, e.h "
    "FROM unnest(%s::text[], %s::uuid[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], "
    "%s::text[], %s::timestamptz[], %s::timestamptz[], %s::timestamptz[], %s::timestamptz[], %s::text[], "
    "%s::smallint[]) AS e(mid, pid, t, n, u, a, p, tr, c, o, ot, s, r, d, h) "
    "ON CONFLICT (source_id, message_id) DO NOTHING RETURNING message_id"
)


def _insert_events(source: Source, rows: list[tuple[CleanEvent, object]]) -> int:
    """All events of the batch in one INSERT from arrays (several times faster than bulk_create).

    Fires ``hooks.on_events_stored`` (after commit) with the events actually inserted.
    """
    dumps = json.dumps
    columns: list[list] = [[] for _ in range(15)]
    for e, pid in rows:
        for column, value in zip(
            columns,
            (
                e.message_id,
                str(pid),
                e.type,
                e.name,
                e.user_id,
                e.anonymous_id,
                dumps(e.properties),
                dumps(e.traits),
                dumps(e.context),
                e.occurred_at,
                e.original_timestamp,
                e.sent_at,
                e.received_at,
                e.device_type,
                e.local_hour,
            ),
            strict=True,
        ):
            column.append(value)
    with connection.cursor() as cursor:
        cursor.execute(_EVENT_INSERT, [source.pk, *columns])
        inserted = {row[0] for row in cursor.fetchall()}
    if hooks.on_events_stored.subscribers and inserted:
        hooks.on_events_stored.fire(
            events=[
                {
                    "profile_id": str(pid),
                    "type": e.type,
                    "name": e.name,
                    "properties": e.properties,
                    "context": e.context,
                    "occurred_at": e.occurred_at,
                    "device_type": e.device_type,
                    "local_hour": e.local_hour,
                }
                for e, pid in rows
                if e.message_id in inserted
            ]
        )
    return len(inserted)


PENDING_SCHEDULE_KEY = "cdp:pending:scheduled"
PENDING_FOLLOWUP_KEY = "cdp:pending:followup"


def pending_schedule() -> None:
    """Ask a worker to process pending follow-up work soon; never fails or slows ingestion.

    At most one task now and one a second later per second across web processes: work that arrives
    while a task is already running is picked up by the delayed one (within about a second), not
    left for the minute sweep. Queueing is fire-and-forget (``cdp.queueing.task_send``): with Redis
    gone it fails within its short timeout, then at once for a few seconds, and the PendingWork
    rows this transaction committed wait for the next task or the beat sweep.
    """
    from cdp.queueing import broker_mark_down, broker_marked_down, task_send
    from profiles.tasks import pending_process

    if broker_marked_down():  # failed a moment ago: do not add latency to every call
        return
    try:
        now = cache.add(PENDING_SCHEDULE_KEY, 1, timeout=1)
        later = not now and cache.add(PENDING_FOLLOWUP_KEY, 1, timeout=1)
    except Exception as exc:  # the cache is the same Redis as the broker: the sweep catches up
        broker_mark_down()
        logger.warning("could not queue follow-up work (%s); the sweep will pick it up", type(exc).__name__)
        return
    if now:
        task_send(pending_process)
    elif later:
        # the key lives exactly until the delayed task is due, so anything later asks again
        task_send(pending_process, countdown=1)
