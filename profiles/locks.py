"""The one lock order of cdp, and the ordered lock helpers everyone takes it with.

Every transaction that writes people's data takes its locks in this order, each level sorted, and
never goes back up a level (docs/decisions/0027-one-lock-order.md, docs/architecture.md):

1. **identifier advisory locks** (``lock_identifier_keys``): the identifiers a transaction creates
   or links, all in one statement, sorted by key;
2. **profile rows** (``lock_profiles`` / ``lock_profile_ids``): ``FOR UPDATE`` in id order, live and
   merged-away alike, re-checking ``merged_into`` after the lock; a profile found only after that
   (a concurrent merge moved an identifier to it) is taken with ``lock_profiles_more``: waited for
   only if its id is above every held one, else ``NOWAIT`` (a retry, never a deadlock);
3. **rows that hang off those profiles**: identifiers, events, ``PendingWork`` (``pending_mark`` upserts
   in id order; ``lock_pending`` takes them in id order), consent records, segment memberships,
   recommendation state: written only while the profiles they belong to are locked, or without
   holding any profile lock at all.

Who takes what:

- ingestion: 1 for the batch's new or linking identifiers, 2 for every profile written, then 3; the
  stitch workers take the owners' rows of 2 and then 1 without waiting (neither step waits, so the
  order between them cannot deadlock) and leave a call whose lock another transaction holds, with
  the batch's later calls of the same person, in the intake log for a later batch (decision 0069);
- merges and unmerges: 2 for both profiles (the caller may already hold 1), then 3;
- computed-traits refresh and ``pending_process``: 2 (``skip_locked``: a profile being ingested is left
  for the next round) then 3; it never holds a ``PendingWork`` row while waiting for a profile, and
  when it deletes the rows it finished (no profile lock held) it skips rows another transaction holds:
  a batch upserts its rows in several statements (each merge's pair, then the batch), not in one
  id order overall;
- erasure: 2 for the person's profiles, then 3;
- segment refreshes: only level 3 (memberships), never a profile lock.

Job and control rows (a ``DataSubjectRequest``, a ``Segment`` being refreshed, a ``MatchingRun``, a
``ModelVersion``) are locked before any of the above, one at a time.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from operator import attrgetter

from django.db import connection

from cdp.db import binary_cursor

_uuid_int = attrgetter("int")

_LOCK_PROFILES = "SELECT id FROM profiles_profile WHERE id = ANY(%s::uuid[]) ORDER BY id FOR UPDATE"
_LOCK_PROFILES_SKIP = _LOCK_PROFILES + " SKIP LOCKED"
_LOCK_PROFILES_NOWAIT = _LOCK_PROFILES + " NOWAIT"
_LOCK_PENDING = (
    "SELECT profile_id, queued_at FROM profiles_pendingwork WHERE profile_id = ANY(%s::uuid[]) "
    "ORDER BY profile_id FOR UPDATE"
)
_LOCK_PENDING_SKIP = _LOCK_PENDING + " SKIP LOCKED"


def sorted_uuids(ids: Iterable) -> list[uuid.UUID]:
    """The distinct ids (``uuid.UUID``s or their text) as ``uuid.UUID``s in the one lock order
    (PostgreSQL's uuid order: the ids' integers, as their canonical text sorts), for binding in
    binary: the server then parses no uuid text (about 0.5 µs an id on each side)."""
    return sorted({_as_uuid(i) for i in ids if i is not None}, key=_uuid_int)


def _sorted_ids(ids: Iterable) -> list[str]:
    """``sorted_uuids`` as canonical text, for the statements that bind ``%s::uuid[]``."""
    return [str(i) for i in sorted_uuids(ids)]


def _as_uuid(value) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def lock_identifier_keys(identifiers: Iterable[tuple[str, str]], *, wait: bool = True) -> set[tuple[str, str]]:
    """Level 1: transaction-level advisory locks on (kind, value) identifiers, sorted, one statement.

    Re-taking a lock the transaction already holds does not wait. With ``wait=False`` a lock another
    transaction holds is not waited for (``pg_try_advisory_xact_lock``): the identifiers whose locks
    were not taken are returned, and the caller leaves the work that needs them for later (the stitch
    workers, decision 0069). Never waiting, it cannot deadlock, whatever the order."""
    wanted = {f"{kind}:{value}": (kind, value) for kind, value in identifiers}
    if not wanted:
        return set()
    keys = sorted(wanted)
    with binary_cursor() as cursor:  # thousands of keys a batch: bound by the server (decision 0066)
        if wait:
            cursor.execute(
                "SELECT count(pg_advisory_xact_lock(hashtextextended(k, 0))) "
                "FROM unnest(%b::text[]) WITH ORDINALITY AS t(k, n)",
                [keys],
            )
            return set()
        cursor.execute(
            "SELECT t.k FROM unnest(%b::text[]) WITH ORDINALITY AS t(k, n) "
            "WHERE NOT pg_try_advisory_xact_lock(hashtextextended(t.k, 0))",
            [keys],
        )
        return {wanted[row[0]] for row in cursor.fetchall()}


def lock_profiles(ids: Iterable, *, skip_locked: bool = False) -> dict:
    """Level 2: profile rows ``FOR UPDATE`` in id order; {pk: Profile} of the rows locked."""
    from profiles.models import Profile

    query = Profile.objects.select_for_update(skip_locked=skip_locked).filter(pk__in=_sorted_ids(ids)).order_by("pk")
    return {p.pk: p for p in query}


def lock_profile_ids(ids: Iterable, *, skip_locked: bool = False) -> list:
    """Level 2 without loading the rows: the ids locked (all of them unless ``skip_locked``)."""
    ordered = _sorted_ids(ids)
    if not ordered:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            _LOCK_PROFILES_SKIP if skip_locked else _LOCK_PROFILES,
            [ordered],
        )
        return [row[0] for row in cursor.fetchall()]


def lock_profiles_more(ids: Iterable, *, held: Iterable) -> list:
    """Level 2 again while already holding ``held`` (e.g. a merge moved an identifier to a profile we
    did not lock yet). Ids above every held one are waited for: that is still the one order. Ids
    below are taken ``NOWAIT``: if another transaction holds one, PostgreSQL raises LockNotAvailable
    (the caller retries its transaction) instead of a deadlock forming. Returns the ids locked."""
    held_max = max(map(_as_uuid, held), key=_uuid_int, default=None)
    wanted = sorted_uuids(ids)
    above = [str(i) for i in wanted if held_max is None or i > held_max]
    below = [str(i) for i in wanted if held_max is not None and i <= held_max]
    locked = []
    with connection.cursor() as cursor:
        if below:
            cursor.execute(_LOCK_PROFILES_NOWAIT, [below])
            locked += [row[0] for row in cursor.fetchall()]
        if above:
            cursor.execute(_LOCK_PROFILES, [above])
            locked += [row[0] for row in cursor.fetchall()]
    return locked


def lock_pending(profile_ids: Iterable, *, skip_locked: bool = True) -> list[tuple]:
    """Level 3: the ``PendingWork`` rows of these profiles, in id order: [(profile_id, queued_at)].

    Take the profiles' level-2 locks first (``pending_process`` does)."""
    ordered = _sorted_ids(profile_ids)
    if not ordered:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            _LOCK_PENDING_SKIP if skip_locked else _LOCK_PENDING,
            [ordered],
        )
        return list(cursor.fetchall())
