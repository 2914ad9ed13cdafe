"""Stage 4, stitch: which profile each event of a batch belongs to, for the whole batch at once.

One query finds the owners of every identifier in the batch. An event whose identifiers all exist
on one profile takes the fast path; the rest take the batch's advisory locks (one global order),
then every profile they can touch is locked (FOR UPDATE, id order). In a stitch worker's batch
(a ``Deferral``) those locks are taken without waiting and the calls that need one held elsewhere
are left for a later batch (decision 0069); brand-new people are created
in two statements; the remainder go through ``profile_resolve`` one by one, in batch order. Every
written profile is then locked again and re-checked for merges, so a concurrent merge waits for
our events. Seen times and identify traits are written set-based.
"""

from __future__ import annotations

import json
import os
import uuid
from collections import Counter
from datetime import timedelta

from django.conf import settings

from cdp.db import binary_cursor
from profiles.identity.bulk import profiles_merge_bulk
from profiles.identity.merge import ProfileVanished
from profiles.identity.resolve import is_trusted, profile_resolve
from profiles.identity.trait_policy import trait_value, traits_apply
from profiles.locks import lock_identifier_keys, lock_profiles_more, sorted_uuids
from profiles.models import CandidateStatus, Profile
from profiles.normalize import limit_for, priority
from profiles.pending import pending_mark

from .filters import identifiers_refilter_locked
from .validate import CleanEvent

# each identifier looked up in the (kind, value) index, one probe per identifier: as a join, PostgreSQL
# hashed the whole identifier table for every batch (a batch's 1,500 identifiers against 43,664
# stored: 12.7 ms, against 4.8 ms by key), a cost that grows with the table, not the batch. ``OFFSET
# 0`` keeps the subquery a probe per identifier (decision 0070, as 0067 for the intake log).
_OWNERS_SQL = (
    "SELECT q.kind, q.value, i.profile_id FROM unnest(%b::text[], %b::text[]) AS q(kind, value) "
    "CROSS JOIN LATERAL (SELECT i.profile_id FROM profiles_identifier i "
    "WHERE i.kind = q.kind AND i.value = q.value OFFSET 0) AS i"
)


def owners_of(identifiers) -> dict[tuple[str, str], object]:
    """{(kind, value): profile id} for the identifiers that exist; one index probe each (binary arrays)."""
    pairs = sorted(set(identifiers))
    if not pairs:
        return {}
    with binary_cursor() as cursor:
        cursor.execute(_OWNERS_SQL, [[k for k, _ in pairs], [v for _, v in pairs]])
        return {(k, v): pid for k, v, pid in cursor.fetchall()}


def identities_resolve(
    events: list[CleanEvent], fresh: list[int], result, *, lock_identifiers: bool = True, deferral=None
) -> tuple[dict[int, object], list[int]]:
    """({event index: profile id}, the indexes still kept) for the events at ``fresh``.

    ``result.dropped`` counts events the identifier filters refuse once the locks are held. With a
    ``Deferral`` (the stitch workers) no profile or identifier lock another transaction holds is
    waited for: the events that need one, and the later ones of the same person, are left out and
    listed in ``result.deferred`` (decision 0069)."""
    # 1. who owns what (unlocked read); events whose identifiers are all on one profile need no lock
    owners = owners_of({kv for i in fresh for kv in events[i].identifiers})
    defer = deferral is not None and lock_identifiers
    if defer:
        # the profiles another transaction holds (another stitch worker's batch with the same person's
        # calls from another browser): their events wait for a later batch instead of this one
        # waiting for that whole transaction. Taken without waiting, so ahead of level 1 (below,
        # also without waiting) without breaking the one lock order: nothing here waits while holding
        first = set(owners.values())
        busy = _profiles_try_lock(first) if owners else set()
        deferral.locked |= first - busy
        fresh, _, owners = _held_back(deferral, events, fresh, [], owners, result, profiles=busy)
        if not fresh:
            return {}, []
    to_resolve = [i for i in fresh if not _settled(events[i], owners)]
    # 2. identifiers about to be created or linked: advisory locks in one global order, then re-read
    if to_resolve:
        linking = {kv for i in to_resolve for kv in events[i].identifiers}
        if lock_identifiers:
            contended = lock_identifier_keys(linking, wait=not defer)
            if contended:
                fresh, to_resolve, owners = _held_back(
                    deferral, events, fresh, to_resolve, owners, result, identifiers=contended
                )
                if not fresh:
                    return {}, []
                linking = {kv for i in to_resolve for kv in events[i].identifiers}
            to_resolve, fresh = identifiers_refilter_locked(events, to_resolve, fresh, result)
        # when deferring, every owner read so far is locked (above, or by an earlier source group)
        held = deferral.locked if defer else set()
        owners.update(owners_of(linking))
        if defer and (appeared := set(owners.values()) - held):
            # owners that appeared since the first read (another batch made or merged them and
            # committed): locked without waiting too, or their events are left out
            busy = _profiles_try_lock(appeared)
            held |= appeared - busy
            if busy:
                fresh, to_resolve, owners = _held_back(
                    deferral, events, fresh, to_resolve, owners, result, profiles=busy
                )
                if not fresh:
                    return {}, []
        # then every profile the batch can touch, in id order, before any per-event work (one lock
        # order, profiles/locks.py): resolving event by event would lock them in batch order
        _lock_owners(owners, held)
    assigned: dict[int, object] = {}
    known = {owners[kv] for i in to_resolve for kv in events[i].identifiers if kv in owners}
    # 3. brand-new people (no identifier known anywhere) are created in bulk
    _create_new_people(events, [i for i in to_resolve if not _settled(events[i], owners)], owners, assigned)
    # 4. the rest in batch order; traits stated earlier in the batch are seen by contradiction checks.
    # Known people with new identifiers (a returning customer's new device, a new email) are given
    # them in memory and written in one statement; what may merge, contradict or refuse goes through
    # ``profile_resolve`` (the pending identifiers are written first, so it sees them)
    unsaved: dict[object, dict] = {}
    counts = _Counts(known)
    attached: list[tuple] = []
    merges = _Merges(counts)
    for index in fresh:
        event = events[index]
        person_traits = event.traits if event.type == "identify" else {}
        if index not in assigned:
            if _settled(event, owners):
                assigned[index] = owners[event.identifiers[0]]
            else:
                pid = _attach_to_known(event, person_traits, owners, counts, attached)
                if pid is None:
                    pid = merges.link(event, owners, attached, unsaved)
                if pid is None:
                    merges.flush(attached)
                    before = {owners.get(kv) for kv in event.identifiers} - {None}
                    pid = profile_resolve(
                        identifiers=event.identifiers,
                        traits=person_traits,
                        at=event.occurred_at,
                        trusted_link=event.type == "alias",
                        unsaved_traits=unsaved,
                        lock_identifiers=lock_identifiers,
                    ).pk
                    counts.forget(before | {pid})
                    merges.forget(before | {pid})
                    _follow_resolution(owners, unsaved, event.identifiers, pid)
                assigned[index] = pid
        if person_traits:
            unsaved.setdefault(assigned[index], {}).update(person_traits)
    merges.flush(attached)
    return assigned, fresh


class AllContended(RuntimeError):
    """Every call of a stitch batch needs a lock another transaction holds: take the batch again,
    waiting for the locks in order."""


class Deferral:
    """The calls of one stitch batch left for a later batch because they need a lock another
    transaction holds (decision 0069), and what they hold back, across the batch's source groups: a
    later call that shares an identifier with one left out, or whose identifier belongs to the same
    profile, is left out too. So what one browser or one person did is still stitched in order: a
    call waits only for calls before it."""

    def __init__(self) -> None:
        self.identifiers: set = set()
        self.profiles: set = set()
        # every profile the batch's transaction holds, across source groups: taken without waiting
        # (its calls kept or left out), or afterwards by ``_lock_owners`` and ``lock_live``. It is
        # the "held" of every later lock (``lock_profiles_more`` waits only above the highest of
        # them), so the one lock order holds for what the batch really holds. A source group whose
        # savepoint rolls back gives its locks back: the worker restores the set as it was before
        self.locked: set = set()

    def mark(self) -> tuple[set, set, set]:
        """What the batch holds and holds back now, for ``rolled_back`` after a savepoint."""
        return set(self.locked), set(self.identifiers), set(self.profiles)

    def rolled_back(self, mark: tuple[set, set, set]) -> None:
        """A savepoint taken at ``mark`` rolled back: the locks taken in it were given back, and what
        it left out is decided again (call by call, in order) rather than held back by calls it no
        longer stands for."""
        locked, identifiers, profiles = mark
        self.locked.intersection_update(locked)
        self.identifiers, self.profiles = identifiers, profiles

    def leave_out(
        self, events: list[CleanEvent], fresh: list[int], owners: dict, result, *, identifiers=(), profiles=()
    ) -> list[int]:
        """``fresh`` without the calls held back (``identifiers`` whose locks were not taken,
        ``profiles`` whose rows were not, and whatever earlier calls left out hold back); the ones
        left out go to ``result.deferred``."""
        self.identifiers.update(identifiers)
        self.profiles.update(profiles)
        if not self.identifiers and not self.profiles:
            return fresh
        kept = []
        for index in fresh:
            mine = events[index].identifiers
            theirs = {owners[kv] for kv in mine if kv in owners}
            if self.identifiers.isdisjoint(mine) and self.profiles.isdisjoint(theirs):
                kept.append(index)
            else:
                result.deferred.append(index)
                self.identifiers.update(mine)
                self.profiles.update(theirs)
        return kept


def _held_back(deferral: Deferral, events: list[CleanEvent], fresh, to_resolve, owners: dict, result, **blocked):
    """(fresh, to_resolve, owners) without the calls ``deferral`` leaves out now: what is left out is
    not looked at again (its identifiers' owners are not locked later in the batch)."""
    fresh = deferral.leave_out(events, fresh, owners, result, **blocked)
    kept = set(fresh)
    owners = {kv: owners[kv] for i in fresh for kv in events[i].identifiers if kv in owners}
    return fresh, [i for i in to_resolve if i in kept], owners


_TRY_LOCK_IDS_SQL = "SELECT id FROM profiles_profile WHERE id = ANY(%b::uuid[]) ORDER BY id FOR UPDATE SKIP LOCKED"


def _profiles_try_lock(ids: set) -> set:
    """Level 2 without waiting: lock the profiles free now; returns the ids not locked (held by
    another transaction, or gone: either way their events are better taken by a later batch)."""
    with binary_cursor() as cursor:
        cursor.execute(_TRY_LOCK_IDS_SQL, [sorted_uuids(ids)])
        return ids - {row[0] for row in cursor.fetchall()}


class _Counts:
    """Identifiers per kind of known profiles, read in one statement for the batch, kept up to date
    in memory as identifiers are attached; a profile ``profile_resolve`` touched is read again."""

    def __init__(self, profile_ids) -> None:
        self._counts: dict = {}
        self._load(set(profile_ids))

    def _load(self, ids: set) -> None:
        if not ids:
            return
        for pid in ids:
            self._counts[pid] = Counter()
        with binary_cursor() as cursor:
            cursor.execute(
                "SELECT profile_id, kind, count(*) FROM profiles_identifier WHERE profile_id = ANY(%b::uuid[]) "
                "GROUP BY profile_id, kind",
                [list(ids)],
            )
            for pid, kind, n in cursor.fetchall():
                self._counts[pid][kind] = n

    def of(self, pid) -> Counter:
        if pid not in self._counts:
            self._load({pid})
        return self._counts[pid]

    def forget(self, ids) -> None:
        for pid in ids:
            self._counts.pop(pid, None)

    def merged(self, winner, loser) -> None:
        """``loser``'s identifiers now count for ``winner``."""
        self._counts[winner] = self.of(winner) + self.of(loser)
        self._counts.pop(loser, None)


class _Merges:
    """Known people linked by an event through trusted identifiers (a visitor who logs in: their
    anonymous profile and their account), merged as ``profile_resolve`` would merge them, decided in
    memory and written with ``profiles_merge_bulk`` in a few statements for all of them (was about
    fifteen statements and ORM round trips per merge).

    Only what needs no contradiction check is decided here: every profile the event reaches it
    reaches through a trusted kind (user id, anonymous id, configured kinds), it is no alias, and no
    merge guard (never-merge pair, identifier limit) would refuse; the anchor, the order of the
    merges, who survives (``older_first``) and the new identifiers attached afterwards follow
    ``profile_resolve`` step by step. Anything else goes through ``profile_resolve``, after the
    merges decided so far are written (``flush``), so it sees what it saw before. A merge that
    touches a profile of a merge not yet written is preceded by a flush too, so each written batch
    holds disjoint pairs and every ``Merge`` row records the same winner, loser and snapshots as the
    merges one by one."""

    def __init__(self, counts: _Counts) -> None:
        self._counts = counts
        self._facts: dict = {}  # profile id -> (first_seen_at, created_at): what older_first compares
        self._rejected: set = set()  # (low id, high id) of never-merge pairs
        self._rejected_read: set = set()  # profile ids whose never-merge pairs are read
        self._pending: list[tuple] = []  # (winner, loser, kind, value) in batch order
        self._in_pending: set = set()

    def forget(self, ids) -> None:
        """Profiles ``profile_resolve`` touched: their facts are read again when needed."""
        for pid in ids:
            self._facts.pop(pid, None)

    def _read(self, ids: set) -> None:
        facts = ids - set(self._facts)
        rejected = ids - self._rejected_read
        with binary_cursor(binary_results=True) as cursor:
            if facts:
                cursor.execute(
                    "SELECT id, first_seen_at, created_at FROM profiles_profile WHERE id = ANY(%b::uuid[])",
                    [sorted(facts)],
                )
                self._facts.update((pid, (first, created)) for pid, first, created in cursor.fetchall())
            if rejected:
                cursor.execute(
                    "SELECT profile_a_id, profile_b_id FROM profiles_matchcandidate WHERE status = %b "
                    "AND (profile_a_id = ANY(%b::uuid[]) OR profile_b_id = ANY(%b::uuid[]))",
                    [str(CandidateStatus.REJECTED), sorted(rejected), sorted(rejected)],
                )
                self._rejected.update((a, b) for a, b in cursor.fetchall())
                self._rejected_read |= rejected
        if facts - set(self._facts):
            raise ProfileVanished("a profile of the batch was deleted (erased) before it was merged")

    def link(self, event: CleanEvent, owners: dict, attached: list, unsaved: dict):
        """The profile the event ends on, with its merges queued and new identifiers attached; None
        when ``profile_resolve`` must decide (nothing is changed then)."""
        if event.type == "alias":
            return None
        identifiers = sorted(set(event.identifiers), key=lambda kv: (priority(kv[0]), kv[1]))
        reached: list[tuple] = []  # ((kind, value), profile) in the order profile_resolve meets them
        for kv in identifiers:
            pid = owners.get(kv)
            if pid is None or any(pid == p for _, p in reached):
                continue
            if not is_trusted(kv[0]):
                return None  # a link through email or phone: the contradiction checks decide
            reached.append((kv, pid))
        if len(reached) < 2:
            return None
        new = [kv for kv in identifiers if kv not in owners]
        counts = self._counts
        if new and new[0] == identifiers[0] and counts.of(reached[0][1])[new[0][0]] >= limit_for(new[0][0]):
            return None  # the shared-device rule: profile_resolve makes someone new
        if any(pid in self._in_pending for _, pid in reached):
            self.flush(attached)  # merges of one written batch never share a profile
        self._read({pid for _, pid in reached})
        # plan every merge first (the guards as merge_guard checks them), change nothing on a refusal
        anchor = reached[0][1]
        held = Counter(counts.of(anchor))
        facts = {pid: self._facts[pid] for _, pid in reached}
        plan = []
        for (kind, value), other in reached[1:]:
            if tuple(sorted((anchor, other))) in self._rejected:
                return None
            together = held + counts.of(other)
            if any(n > limit_for(k) for k, n in together.items()):
                return None
            (fa, ca), (fo, co) = facts[anchor], facts[other]
            winner, loser = (anchor, other) if (fa, ca, str(anchor)) <= (fo, co, str(other)) else (other, anchor)
            plan.append((winner, loser, kind, value))
            facts[winner] = (min(fa, fo), facts[winner][1])  # as profile_merge leaves the winner
            held = together
            anchor = winner
        self._facts.update(facts)
        for winner, loser, kind, value in plan:
            self._pending.append((winner, loser, kind, value))
            self._in_pending.update((winner, loser))
            counts.merged(winner, loser)
            # the batch's identifiers re-pointed: compared as the ids' integers (``UUID.__eq__`` is
            # a Python call per identifier of the batch, per merge)
            lost = loser.int
            for kv in [kv for kv, owner in owners.items() if owner.int == lost]:
                owners[kv] = winner
            if loser in unsaved:
                unsaved.setdefault(winner, {}).update(unsaved.pop(loser))
        _attach_new(new, counts.of(anchor), anchor, event.occurred_at, owners, attached)
        return anchor

    def flush(self, attached: list) -> None:
        """Write the identifiers attached so far, then the merges decided so far (set-based, per
        reason), and mark the losers' follow-up work (``profile_merge`` marks both sides)."""
        _identifiers_insert(attached)
        if not self._pending:
            return
        by_reason: dict[str, list[tuple]] = {}
        for merge in self._pending:
            by_reason.setdefault(f"identifier:{merge[2]}", []).append(merge)
        for reason, merges in by_reason.items():
            outcome = profiles_merge_bulk(
                clusters=[[((i, 0), w), ((i, 1), lo)] for i, (w, lo, _, _) in enumerate(merges)],
                reason=reason,
                evidence=lambda key, _ids, merges=merges: {"kind": merges[key[0]][2], "value": merges[key[0]][3]},
                score=lambda _key: None,
            )
            if outcome.merged != len(merges) or any(
                outcome.ended_in[(i, 1)] != w for i, (w, _, _, _) in enumerate(merges)
            ):
                raise RuntimeError("profiles changed while merging a batch; retry")
        pending_mark([loser for _, loser, _, _ in self._pending])
        self._pending.clear()
        self._in_pending.clear()


def _states_identity_traits(traits: dict) -> bool:
    return any(trait_value(traits, key) not in (None, "") for key in settings.CDP_CONTRADICTION_TRAITS)


def _attach_to_known(event: CleanEvent, traits: dict, owners: dict, counts: _Counts, attached: list):
    """The profile of an event whose known identifiers all belong to one profile and whose other
    identifiers are new, with the new ones attached to it (in ``attached``, written later), as
    ``profile_resolve`` would do it; None when the event may merge, contradict, split off a shared
    device or is an alias: ``profile_resolve`` decides those."""
    if event.type == "alias":
        return None
    identifiers = sorted(set(event.identifiers), key=lambda kv: (priority(kv[0]), kv[1]))
    owned = [kv for kv in identifiers if kv in owners]
    if not owned:
        return None
    pid = owners[owned[0]]
    if any(owners[kv] != pid for kv in owned[1:]):
        return None
    # the anchor is found through a kind that contradicting traits would refuse: the rules decide
    if not is_trusted(owned[0][0]) and _states_identity_traits(traits):
        return None
    new = [kv for kv in identifiers if kv not in owners]
    have = counts.of(pid)
    # the strongest identifier is new and the profile is full for its kind: someone else (a shared device)
    if new and new[0] == identifiers[0] and have[new[0][0]] >= limit_for(new[0][0]):
        return None
    _attach_new(new, have, pid, event.occurred_at, owners, attached)
    return pid


def _attach_new(new: list, have: Counter, pid, at, owners: dict, attached: list) -> None:
    """New identifiers given to ``pid`` (written later from ``attached``), within its limits."""
    for kind, value in new:
        if have[kind] >= limit_for(kind):
            continue  # guard: the profile holds as many of this kind as it may
        have[kind] += 1
        attached.append((kind, value, pid, at))
        owners[(kind, value)] = pid


def _identifiers_insert(rows: list[tuple]) -> None:
    """Identifiers attached in memory, written in one statement (their advisory locks are held)."""
    if not rows:
        return
    kinds, values, owner_ids, seen = zip(*rows, strict=True)
    rows.clear()
    with binary_cursor() as cursor:
        cursor.execute(
            "INSERT INTO profiles_identifier (kind, value, profile_id, created_at, last_seen_at) "
            "SELECT i.k, i.v, i.p, now(), i.s FROM unnest(%b::text[], %b::text[], %b::uuid[], %b::timestamptz[]) "
            "AS i(k, v, p, s)",
            [list(kinds), list(values), list(owner_ids), list(seen)],
        )


_LOCK_IDS_SQL = "SELECT id FROM profiles_profile WHERE id = ANY(%b::uuid[]) ORDER BY id FOR UPDATE"


def _lock_owners(owners: dict, held: set) -> None:
    """Lock the owners of the batch's identifiers in id order (but those in ``held``, locked
    already; what is locked here is added to it), then read the owners again: an identifier a merge
    moved before our lock points at a profile we do not hold yet, which is locked with
    ``lock_profiles_more`` (never out of order). Afterwards no owner can change under us. Every
    identifier of the batch is read again, not only those about to be linked: an event whose
    identifiers were all on one profile at the first read and are on two now (another batch merged
    one of them away) would otherwise plan a merge of a profile already merged."""
    # level 2 of the one lock order (profiles/locks.py: ``lock_profile_ids``' statement), the ids
    # bound on the server: quoted into the SQL text in Python they were 3 % of a batch
    wanted = set(owners.values()) - held
    if wanted and held:  # never waited for out of order
        held.update(lock_profiles_more(wanted, held=held))
    elif wanted:
        with binary_cursor() as cursor:
            cursor.execute(_LOCK_IDS_SQL, [list(wanted)])
            held.update(row[0] for row in cursor.fetchall())
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
    in_pool = set(pool)
    touched_elsewhere = {kv for i in candidates if i not in in_pool for kv in events[i].identifiers}
    profile_rows, identifier_rows = [], []
    # the new profiles' ids as ``uuid.uuid4`` makes them, from one read of the system's random
    # source for the batch instead of one per person
    random_bytes = os.urandom(16 * len(groups))
    for number, members in enumerate(groups.values()):
        identifiers = sorted({kv for i in members for kv in events[i].identifiers})
        if touched_elsewhere.intersection(identifiers) or not _group_is_one_person(events, members, identifiers):
            continue
        pid = uuid.UUID(bytes=random_bytes[16 * number : 16 * number + 16], version=4)
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
    with binary_cursor() as cursor:
        cursor.execute(
            "INSERT INTO profiles_profile (id, traits, trait_meta, computed, first_seen_at, last_seen_at, "
            "created_at, updated_at) SELECT p.id, '{}', '{}', '{}', p.f, p.l, now(), now() "
            "FROM unnest(%b::uuid[], %b::timestamptz[], %b::timestamptz[]) AS p(id, f, l)",
            [list(ids), list(firsts), list(lasts)],
        )
        cursor.execute(
            "INSERT INTO profiles_identifier (kind, value, profile_id, created_at, last_seen_at) "
            "SELECT i.k, i.v, i.p, now(), i.s FROM unnest(%b::text[], %b::text[], %b::uuid[], %b::timestamptz[]) "
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
    "WHERE id = ANY(%b::uuid[]) ORDER BY id FOR UPDATE"
)


def lock_live(assigned: dict[int, object], held: set | None = None) -> dict:
    """Lock every profile the batch writes to (id order), then re-point events whose profile was
    merged away (by an earlier event of this batch, or by another transaction that committed before
    our lock). Holding the lock until commit makes a concurrent merge of these profiles wait for our
    events. Returns {profile id: (first_seen_at, last_seen_at)} of the live profiles.

    ``held``: profiles the transaction has locked already (a stitch worker's batch, ``Deferral.locked``),
    added to as profiles are locked here: a profile a merge moved us to is then never waited for below
    them (in a stitch worker's batch the first statement waits for nothing: every profile an event was
    assigned to is locked by then)."""
    held = set() if held is None else held
    for attempt in range(10):
        wanted = set(assigned.values())
        if attempt:  # profiles a merge moved us to: never waited for out of order (profiles/locks.py)
            held.update(lock_profiles_more({w for w in wanted if w not in held}, held=held))
        # rows in binary: 2,000 profiles' seen times parsed from text in Python were 4 % of a batch
        with binary_cursor(binary_results=True) as cursor:
            cursor.execute(_LOCK_SQL, [list(wanted)])
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


def profiles_update(events: list[CleanEvent], assigned: dict[int, object], seen: dict) -> None:
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
    with binary_cursor() as cursor:
        if moved:
            ids, firsts, lasts = zip(*moved, strict=True)
            cursor.execute(
                "UPDATE profiles_profile p SET first_seen_at = LEAST(p.first_seen_at, v.f), "
                "last_seen_at = GREATEST(p.last_seen_at, v.l) "
                "FROM unnest(%b::uuid[], %b::timestamptz[], %b::timestamptz[]) AS v(id, f, l) WHERE p.id = v.id",
                [list(ids), list(firsts), list(lasts)],
            )
        if not with_traits:
            return
        changed = []
        for profile in Profile.objects.filter(pk__in=list(with_traits)).only("id", "traits", "trait_meta"):
            dirty = False
            for event in sorted(with_traits[profile.pk], key=lambda e: e.occurred_at):
                dirty |= traits_apply(profile, event.traits, event.occurred_at)
            if dirty:
                changed.append((profile.pk, json.dumps(profile.traits), json.dumps(profile.trait_meta)))
        if changed:  # updated_at marks identity-relevant change (incremental matching reads it)
            ids, traits, metas = zip(*changed, strict=True)
            cursor.execute(
                "UPDATE profiles_profile p SET traits = v.t::jsonb, trait_meta = v.m::jsonb, updated_at = now() "
                "FROM unnest(%b::uuid[], %b::text[], %b::text[]) AS v(id, t, m) WHERE p.id = v.id",
                [list(ids), list(traits), list(metas)],
            )
