"""Stage 4, stitch, fast path: calls of returning customers stitched set-based (decision 0061).

Most calls of a busy shop are page views and tracks of people already known: every identifier the
call carries (its user id, its anonymous id) already belongs to one live profile, so there is no
identity to resolve, no identifier to create, no trait to write. For those calls the stitch workers
skip the per-call stages (``CleanEvent``, identifiers, filters by call, ``profile_resolve``'s checks,
``lock_live``, ``profiles_update``) and do in a few set-based statements what those stages would do:

1. ``candidates``: in Python, from each intake row's decoded JSON only (no ``CleanEvent``): a track,
   page, screen or group call whose only identifiers are its user id and/or anonymous id (no email,
   phone or configured identifier kind in ``context.traits``; identify and alias calls never) and
   whose context the profile filters keep as it is (``hooks.SqlKeep.call``: consent stated in the
   context is recorded by consent's function, so such calls keep the present path); then one owners
   query for the batch: a candidate whose identifiers all belong to one and the same profile stays.
   Everything else takes the present path (``ingest._ingest``), first, in batch order.
2. ``stitch_known``, after the present path has stitched the rest of the batch (its merges done,
   consent it recorded visible): the identifier filters on the candidates' distinct identifiers
   (suppression); the candidates' profiles locked (``lock_profiles_more`` beside what the present
   path holds: the one lock order); then one statement that, for every candidate whose identifiers
   still all belong to one locked live profile that the profile filters keep (``SqlKeep.profile``:
   consent's analytics answer), inserts its event from the intake row, moves the profile's seen
   times (the ``profiles_update`` rule) and upserts its ``PendingWork`` mark; ``on_events_stored``
   hears about the events inserted.
3. A candidate the statement did not take (a merge moved its identifiers, its person was erased or
   said no meanwhile) goes through the present path after all, so the outcome is the present path's.

No merge, identifier or trait is written here, so no audit or undo data is involved: a later merge
moves these events like any other. An erasure that commits before our profile locks has deleted the
identifiers (step 3 then drops the call by the suppression filter); one that comes after waits for
our commit and erases these events with the rest of the person.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache

import orjson
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from cdp.db import binary_cursor
from profiles import hooks
from profiles.locks import lock_profiles_more
from profiles.pending import pending_schedule

from . import stitch
from .stitch import SEEN_RESOLUTION

FAST_TYPES = frozenset({"track", "page", "screen", "group"})


class _Ids:
    """What an identifier filter reads of a call (``event.identifiers``): one per distinct set."""

    __slots__ = ("identifiers",)

    def __init__(self, identifiers: list[tuple[str, str]]) -> None:
        self.identifiers = identifiers


def enabled() -> bool:
    """The fast path runs when switched on and every filter has a form it can apply."""
    return (
        settings.CDP_INTAKE_FAST_PATH
        and hooks.ingest_filter_identifiers.sql_guards() is not None
        and hooks.ingest_filter_profiles.sql_keeps() is not None
    )


def _identifiers_of(data: dict, keeps: tuple, kinds: tuple, blocked: frozenset) -> list[tuple[str, str]] | None:
    """The call's identifiers when it may take the fast path (as ``parse.event_identifiers`` finds
    them: ``normalize_id`` with the blocklist read once per batch), else None."""
    if data.get("type") not in FAST_TYPES:
        return None
    context = data.get("context")
    if not isinstance(context, dict):
        return None
    traits = context.get("traits")
    if isinstance(traits, dict) and traits:
        for kind in kinds:
            if traits.get(kind) not in (None, ""):
                return None  # an identifying trait: contradiction checks, new identifiers
    for keep in keeps:
        if not keep.call(context):
            return None
    found = []
    for kind, key in (("user_id", "user_id"), ("anonymous_id", "anonymous_id")):
        raw = data.get(key)
        if raw:
            if not isinstance(raw, str):
                return None  # as validated calls never have it: the present path decides
            value = raw.strip()
            if value and value.lower() not in blocked:
                found.append((kind, value))
    return found or None


def candidates(rows: list) -> tuple[list, list, dict]:
    """(fast rows as (row, decoded call, identifiers, profile id), the other rows in batch order,
    {intake id: decoded call} of the other rows that were decoded here, for the present path)."""
    keeps = hooks.ingest_filter_profiles.sql_keeps() or ()
    kinds = ("email", "phone", *settings.CDP_EXTRA_IDENTIFIER_KINDS)
    blocked = frozenset(v.strip().lower() for v in settings.CDP_IDENTIFIER_BLOCKLIST)
    fast, slow, decoded, calls = [], [], [], {}
    for row in rows:
        try:
            data = orjson.loads(row[2])
        except orjson.JSONDecodeError:
            slow.append(row)
            continue
        identifiers = _identifiers_of(data, keeps, kinds, blocked)
        if identifiers is None:
            slow.append(row)
            calls[row[0]] = data
        else:
            decoded.append((row, data, identifiers))
    if not decoded:
        return [], slow, calls
    owners = stitch.owners_of({kv for _, _, ids in decoded for kv in ids})
    for row, data, identifiers in decoded:
        pid = owners.get(identifiers[0])
        if pid is not None and all(owners.get(kv) == pid for kv in identifiers[1:]):
            fast.append((row, data, identifiers, pid))
        else:
            slow.append(row)
            calls[row[0]] = data
    slow.sort(key=lambda r: r[0])  # the present path sees its calls in batch order
    return fast, slow, calls


def _suppressed(fast: list) -> set:
    """Intake ids of candidates an identifier filter drops (suppression), decided once per distinct
    set of identifiers."""
    if not hooks.ingest_filter_identifiers.subscribers:
        return set()
    groups: dict[tuple, list[int]] = {}
    for row, _, identifiers, _ in fast:
        groups.setdefault(tuple(identifiers), []).append(row[0])
    keys = list(groups)
    probe = [_Ids(list(k)) for k in keys]
    kept = set(hooks.ingest_filter_identifiers.apply(events=probe, indexes=list(range(len(probe)))))
    return {iid for n, k in enumerate(keys) if n not in kept for iid in groups[k]}


# Candidates whose identifiers still all belong to one locked live profile that the profile
# filters keep: their events inserted from the intake rows (as ``store._EVENT_FROM_INTAKE``), the
# profiles' seen times moved (``stitch.profiles_update``'s rule) and their PendingWork marked, in one
# statement. Each candidate brings its user id and anonymous id ('' for none) and the profile the
# unlocked read found them on; the identifiers are read again here, under the profile locks.
_FAST_SQL = (
    "WITH c AS ("
    "SELECT v.id, v.n, v.pid FROM unnest(%b::bigint[], %b::text[], %b::text[], %b::uuid[]) "
    "WITH ORDINALITY AS v(id, uid, aid, pid, n) "
    "WHERE (v.uid = '' OR (SELECT u.profile_id FROM profiles_identifier u "
    "WHERE u.kind = 'user_id' AND u.value = v.uid) = v.pid) "
    "AND (v.aid = '' OR (SELECT a.profile_id FROM profiles_identifier a "
    "WHERE a.kind = 'anonymous_id' AND a.value = v.aid) = v.pid)), "
    "ins AS ("
    "INSERT INTO profiles_event (source_id, message_id, profile_id, type, name, user_id, anonymous_id, "
    "properties, traits, context, occurred_at, original_timestamp, sent_at, received_at, device_type, local_hour) "
    "SELECT i.source_id, i.message_id, c.pid, j.p->>'type', j.p->>'name', j.p->>'user_id', j.p->>'anonymous_id', "
    "j.p->'properties', j.p->'traits', j.p->'context', (j.p->>'occurred_at')::timestamptz, "
    "(j.p->>'original_timestamp')::timestamptz, (j.p->>'sent_at')::timestamptz, (j.p->>'received_at')::timestamptz, "
    "j.p->>'device_type', (j.p->>'local_hour')::smallint "
    "FROM c JOIN profiles_profile k ON k.id = c.pid AND k.merged_into_id IS NULL{keep} "
    "JOIN profiles_intakeevent i ON i.id = c.id "
    "CROSS JOIN LATERAL (SELECT i.payload::jsonb OFFSET 0) AS j(p) "
    "ORDER BY c.n ON CONFLICT (source_id, message_id) DO NOTHING RETURNING message_id, profile_id, occurred_at), "
    "seen AS ("
    "UPDATE profiles_profile p SET first_seen_at = LEAST(p.first_seen_at, s.lo), "
    "last_seen_at = GREATEST(p.last_seen_at, s.hi) "
    "FROM (SELECT profile_id, min(occurred_at) AS lo, max(occurred_at) AS hi FROM ins GROUP BY profile_id) AS s "
    "WHERE p.id = s.profile_id AND (s.lo < p.first_seen_at OR s.hi > p.last_seen_at + %b::interval)), "
    "pend AS ("
    "INSERT INTO profiles_pendingwork (profile_id, queued_at) "
    "SELECT DISTINCT profile_id, now() FROM ins ORDER BY 1 "
    "ON CONFLICT (profile_id) DO UPDATE SET queued_at = EXCLUDED.queued_at) "
    "SELECT message_id, profile_id FROM ins"
)


@lru_cache(maxsize=8)
def _fast_sql(keeps: tuple[str, ...]) -> str:
    keep = "".join(f" AND ({sql.format(profile='k.id')})" for sql in keeps)
    return _FAST_SQL.replace("{keep}", keep)


def stitch_known(fast: list, *, held, scheduled: bool = False) -> list:
    """Stitch the fast candidates (after the present path stitched the batch's other calls, whose
    profile locks are ``held``; ``scheduled``: it asked for the pending work on commit already);
    returns the rows left for the present path."""
    dropped = _suppressed(fast)
    if dropped:
        fast = [f for f in fast if f[0][0] not in dropped]
    if not fast:
        return []
    held = {str(p) for p in held}
    wanted = {str(pid) for _, _, _, pid in fast}
    locked = {str(p) for p in lock_profiles_more(wanted - held, held=held)} | (wanted & held)
    left = [f[0] for f in fast if str(f[3]) not in locked]  # erased meanwhile: the present path decides
    fast = [f for f in fast if str(f[3]) in locked]
    if not fast:
        return left
    conditions, params = [], []
    for keep in hooks.ingest_filter_profiles.sql_keeps() or ():
        sql, keep_params = keep.profile(timezone.now())
        conditions.append(sql)
        params += keep_params
    ids, uids, aids, pids = [], [], [], []
    for row, _, identifiers, pid in fast:
        found = dict(identifiers)
        ids.append(row[0])
        uids.append(found.get("user_id", ""))
        aids.append(found.get("anonymous_id", ""))
        pids.append(pid)
    with binary_cursor() as cursor:
        cursor.execute(
            _fast_sql(tuple(conditions)),
            [ids, uids, aids, pids, *params, SEEN_RESOLUTION],
        )
        stored = dict(cursor.fetchall())
    if stored:
        _events_stored(fast, stored)
        if not scheduled:
            transaction.on_commit(pending_schedule)
    return sorted(left + [row for row, _, _, _ in fast if row[3] not in stored], key=lambda r: r[0])


def _events_stored(fast: list, stored: dict) -> None:
    """``followup.events_stored`` for the fast path: the subscribers' dicts from the decoded calls."""
    if not hooks.on_events_stored.subscribers:
        return
    events = []
    for row, data, _, _ in fast:
        pid = stored.get(row[3])
        if pid is None:
            continue
        events.append(
            {
                "profile_id": str(pid),
                "type": data["type"],
                "name": data["name"],
                "properties": data["properties"],
                "context": data["context"],
                "occurred_at": datetime.fromisoformat(data["occurred_at"]),
                "device_type": data["device_type"],
                "local_hour": data["local_hour"],
            }
        )
    if events:
        hooks.on_events_stored.fire(events=events)
