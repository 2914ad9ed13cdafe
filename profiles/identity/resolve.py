"""Deterministic identity resolution: which profile an event's identifiers belong to.

Runs inside the ingesting transaction. Concurrency: advisory locks on the event's identifiers (in a
fixed order) serialise everyone who creates or links those identifiers; profile rows are then locked
in id order. A deadlock that PostgreSQL still detects (two batches crossing) is retried by the
caller with the whole transaction, so no request fails and no identifier is lost or doubled.

Rules (docs/identity.md):
- the anchor is the owner of the highest-priority identifier (user_id > email > phone > … >
  anonymous_id) that does not contradict the event's own traits;
- other owners join the anchor: through a trusted kind (user_id, anonymous_id, configured kinds,
  alias) always, through email/phone only when no trait contradicts; a contradicted link files a
  MatchCandidate for review instead;
- every join passes the merge guards (identifier limits per kind, never-merge pairs); a refused
  join is recorded as a refused Merge and the identifiers stay where they are;
- identifiers nobody owns yet are attached to the anchor while its limit for that kind allows.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import connection

from profiles.locks import lock_identifier_keys
from profiles.models import Identifier, Profile
from profiles.normalize import limit_for, priority

from .guards import candidate_file, identifier_counts, merge_guard, merge_refusal_record, older_first
from .merge import lock_profiles_present, profile_merge
from .trait_policy import contradictions


def owners_of(identifiers) -> dict[tuple[str, str], object]:
    """{(kind, value): profile id} for the identifiers that exist; one indexed join."""
    pairs = sorted(set(identifiers))
    if not pairs:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT i.kind, i.value, i.profile_id FROM profiles_identifier i "
            "JOIN unnest(%s::text[], %s::text[]) AS q(kind, value) ON i.kind = q.kind AND i.value = q.value",
            [[k for k, _ in pairs], [v for _, v in pairs]],
        )
        return {(k, v): pid for k, v, pid in cursor.fetchall()}


def is_trusted(kind: str) -> bool:
    return kind in settings.CDP_TRUSTED_IDENTIFIER_KINDS


def profile_resolve(
    *,
    identifiers: list[tuple[str, str]],
    traits: dict,
    at: datetime,
    trusted_link: bool = False,
    reason_prefix: str = "identifier",
    unsaved_traits: dict | None = None,
    lock_identifiers: bool = True,
) -> Profile:
    """The live profile for these identifiers, creating, linking or merging as the rules say.

    ``trusted_link`` marks an explicit link between all the identifiers (an alias call).
    ``unsaved_traits`` maps profile ids to traits stated earlier in the same batch and not written
    yet; contradiction checks see them as part of those profiles.
    """
    pending_traits = unsaved_traits or {}

    def traits_of(profile: Profile) -> dict:
        return {**profile.traits, **pending_traits.get(profile.pk, {})}

    identifiers = sorted(set(identifiers), key=lambda kv: (priority(kv[0]), kv[1]))
    if lock_identifiers:  # see events_ingest: off only inside a private, rolled-back transaction
        lock_identifier_keys(identifiers)
    owned = owners_of(identifiers)
    # an owner erased between the read and the lock is a retry of the whole transaction
    profiles = lock_profiles_present(set(owned.values()))
    # follow merges committed by others before we got the locks
    for key, pid in list(owned.items()):
        profile = profiles.get(pid)
        if profile is not None and profile.merged_into_id:
            owned[key] = profile.merged_into_id
    missing = {pid for pid in owned.values() if pid not in profiles}
    if missing:
        profiles.update(lock_profiles_present(missing))

    anchor: Profile | None = None
    contradicted: list[tuple[Profile, str, list[str]]] = []
    seen: set = set()
    new = [kv for kv in identifiers if kv not in owned]
    # The strongest identifier is new and the owner of a weaker one is full for its kind (e.g. a
    # shared device's anonymous id on another user's profile): this event is someone else.
    if new and owned and new[0] == identifiers[0]:
        first_owner = profiles[next(owned[kv] for kv in identifiers if kv in owned)]
        if identifier_counts([first_owner.pk])[new[0][0]] >= limit_for(new[0][0]):
            anchor = Profile.objects.create(first_seen_at=at, last_seen_at=at)
            _attach_new(anchor, new, at)
            new = []
    for kind, value in identifiers:
        pid = owned.get((kind, value))
        if pid is None or pid in seen:
            continue
        seen.add(pid)
        other = profiles[pid]
        if anchor is None:
            clash = [] if (is_trusted(kind) or trusted_link) else contradictions(traits, traits_of(other))
            if clash:
                contradicted.append((other, kind, clash))
            else:
                anchor = other
            continue
        if other.pk == anchor.pk:
            continue
        link = "alias" if trusted_link else f"{reason_prefix}:{kind}"
        if not (is_trusted(kind) or trusted_link):
            clash = contradictions({**traits_of(anchor), **traits}, traits_of(other))
            if clash:
                contradicted.append((other, kind, clash))
                continue
        guard = merge_guard(anchor, other)
        evidence = {"kind": kind, "value": value}
        if guard:
            merge_refusal_record(a=anchor, b=other, reason=link, guard=guard, evidence=evidence)
            continue
        winner, loser = older_first(anchor, other)
        profile_merge(winner=winner, loser=loser, reason=link, evidence=evidence)
        anchor = winner
        profiles[winner.pk] = winner
        winner.refresh_from_db()
        for key, owner in owned.items():
            if owner == loser.pk:
                owned[key] = winner.pk

    if anchor is None:
        anchor = Profile.objects.create(first_seen_at=at, last_seen_at=at)
    for other, kind, clash in contradicted:
        candidate_file(
            a=anchor,
            b=other,
            reason=f"shared_{kind}_contradicted",
            evidence={"kind": kind, "value": next(v for k, v in identifiers if k == kind), "contradicts": clash},
        )
    _attach_new(anchor, new, at)
    return anchor


def _attach_new(profile: Profile, new: list[tuple[str, str]], at: datetime) -> None:
    if not new:
        return
    counts = identifier_counts([profile.pk])
    rows = []
    for kind, value in new:
        if counts[kind] >= limit_for(kind):
            continue  # guard: the profile holds as many of this kind as it may
        counts[kind] += 1
        rows.append(Identifier(kind=kind, value=value, profile=profile, last_seen_at=at))
    Identifier.objects.bulk_create(rows)
