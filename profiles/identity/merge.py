"""Merging and unmerging profiles, the trait merge policy, merge guards and contradictions.

Trait merge policy (docs/identity.md): for each trait the value updated most recently wins (ties:
the winner's); the earliest first-seen time of either side is kept, as are first_seen_at (min) and
last_seen_at (max) of the profiles. The older profile survives.
"""

from __future__ import annotations

import copy
from collections import Counter
from datetime import datetime

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from profiles import hooks
from profiles.locks import lock_profiles
from profiles.models import CandidateStatus, Identifier, MatchCandidate, Merge, MergeStatus, Profile
from profiles.normalize import limit_for

# --- traits --------------------------------------------------------------------------------------


def trait_value(traits: dict, key: str):
    """A trait by its snake_case name, also accepting Segment's camelCase spelling."""
    if key in traits:
        return traits[key]
    head, *rest = key.split("_")
    camel = head + "".join(part.title() for part in rest)
    if camel in traits:
        return traits[camel]
    if key == "first_name" and isinstance(traits.get("name"), str) and traits["name"].strip():
        return traits["name"].split()[0]
    if key == "birthday":
        return traits.get("birth_date") or traits.get("birthDate")
    return None


def _comparable(value) -> str:
    return str(value).strip().casefold() if value not in (None, "") else ""


def contradictions(a: dict, b: dict) -> list[str]:
    """Traits on which two profiles (or an event and a profile) disagree, both having a value."""
    found = []
    for key in settings.CDP_CONTRADICTION_TRAITS:
        va, vb = _comparable(trait_value(a, key)), _comparable(trait_value(b, key))
        if va and vb and va != vb:
            found.append(key)
    return found


def traits_apply(profile: Profile, traits: dict, at: datetime) -> bool:
    """Apply incoming traits observed at ``at``; an older observation never overwrites a newer one."""
    changed = False
    stamp = at.isoformat()
    for key, value in traits.items():
        meta = profile.trait_meta.get(key)
        if meta is None:
            profile.traits[key] = value
            profile.trait_meta[key] = {"first": stamp, "at": stamp}
            changed = True
            continue
        if stamp < meta["first"]:
            meta["first"] = stamp
            changed = True
        if stamp >= meta["at"] and profile.traits.get(key) != value:
            profile.traits[key] = value
            meta["at"] = stamp
            changed = True
    return changed


def traits_merge(winner: Profile, loser: Profile) -> None:
    for key, value in loser.traits.items():
        lmeta = loser.trait_meta.get(key) or {"first": "", "at": ""}
        wmeta = winner.trait_meta.get(key)
        if wmeta is None or key not in winner.traits:
            winner.traits[key] = value
            winner.trait_meta[key] = dict(lmeta)
            continue
        if lmeta["at"] > wmeta["at"]:
            winner.traits[key] = value
            wmeta["at"] = lmeta["at"]
        if lmeta["first"] and lmeta["first"] < wmeta["first"]:
            wmeta["first"] = lmeta["first"]


def _snapshot(profile: Profile) -> dict:
    """A copy (not references: the merge then changes the winner's dicts in place)."""
    return {
        "traits": copy.deepcopy(profile.traits),
        "trait_meta": copy.deepcopy(profile.trait_meta),
        "computed": copy.deepcopy(profile.computed),
        "first_seen_at": profile.first_seen_at.isoformat(),
        "last_seen_at": profile.last_seen_at.isoformat(),
    }


# --- guards --------------------------------------------------------------------------------------


def identifier_counts(profile_ids: list) -> Counter:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT kind, count(*) FROM profiles_identifier WHERE profile_id = ANY(%s::uuid[]) GROUP BY kind",
            [[str(p) for p in profile_ids]],
        )
        return Counter(dict(cursor.fetchall()))


def merge_guard(a: Profile, b: Profile) -> dict | None:
    """Why two profiles may not be merged, or None. Checks never-merge pairs and identifier limits."""
    low, high = sorted([a.pk, b.pk])
    if MatchCandidate.objects.filter(profile_a=low, profile_b=high, status=CandidateStatus.REJECTED).exists():
        return {"guard": "never_merge", "detail": "a reviewer decided these are different people"}
    for kind, n in identifier_counts([a.pk, b.pk]).items():
        if n > limit_for(kind):
            return {"guard": "identifier_limit", "kind": kind, "count": n, "limit": limit_for(kind)}
    return None


def merge_refusal_record(*, a: Profile, b: Profile, reason: str, guard: dict, evidence: dict) -> Merge:
    """Record a refused merge once per pair and reason (a shared device must not flood the log)."""
    winner, loser = older_first(a, b)
    existing = Merge.objects.filter(
        winner=winner, loser=loser, status=MergeStatus.REFUSED, reason=reason, undone_at__isnull=True
    ).first()
    if existing:
        return existing
    return Merge.objects.create(
        winner=winner, loser=loser, status=MergeStatus.REFUSED, reason=reason, evidence={**evidence, **guard}
    )


def candidate_file(*, a: Profile, b: Profile, reason: str, evidence: dict, score: float | None = None):
    low, high = sorted([a.pk, b.pk])
    candidate, _ = MatchCandidate.objects.get_or_create(
        profile_a_id=low, profile_b_id=high, defaults={"reason": reason, "evidence": evidence, "score": score}
    )
    return candidate


def older_first(a: Profile, b: Profile) -> tuple[Profile, Profile]:
    """(winner, loser): the profile seen first survives; creation time then id break ties."""
    return (
        (a, b) if (a.first_seen_at, a.created_at, str(a.pk)) <= (b.first_seen_at, b.created_at, str(b.pk)) else (b, a)
    )


# --- pending follow-up work ----------------------------------------------------------------------


def pending_mark(profile_ids) -> None:
    ids = sorted({str(p) for p in profile_ids})
    if not ids:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO profiles_pendingwork (profile_id, queued_at) SELECT unnest(%s::uuid[]), now() "
            "ON CONFLICT (profile_id) DO UPDATE SET queued_at = EXCLUDED.queued_at",
            [ids],
        )


# --- merge / unmerge -----------------------------------------------------------------------------


class ProfileVanished(Exception):
    """A profile read a moment ago was deleted (erased) before it could be locked. Not an error of
    the input: the caller retries its whole transaction, which then sees the erasure (and its
    suppression entries)."""


def lock_profiles_present(ids) -> dict:
    """``profiles.locks.lock_profiles`` (level 2), raising ``ProfileVanished`` when one of ``ids`` no
    longer exists (erased between the caller's read and the lock)."""
    wanted = {i for i in ids if i is not None}
    found = lock_profiles(wanted)
    if len(found) < len(wanted):
        raise ProfileVanished(f"{len(wanted) - len(found)} profile(s) deleted while being resolved")
    return found


def _returning_ids(sql: str, params: list) -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [row[0] for row in cursor.fetchall()]


@transaction.atomic
def profile_merge(
    *,
    winner: Profile,
    loser: Profile,
    reason: str,
    evidence: dict | None = None,
    actor: str = "system",
    score: float | None = None,
) -> Merge:
    """Move everything of ``loser`` to ``winner`` and record how to undo it."""
    if winner.pk == loser.pk:
        raise ValueError("A profile cannot be merged with itself.")
    locked = lock_profiles_present([winner.pk, loser.pk])
    winner, loser = locked[winner.pk], locked[loser.pk]
    if winner.merged_into_id or loser.merged_into_id:
        raise ValueError("Both profiles must be live (not merged away) to merge them.")
    merge = Merge(
        winner=winner,
        loser=loser,
        reason=reason,
        evidence=evidence or {},
        actor=actor,
        score=score,
        winner_before=_snapshot(winner),
        loser_before=_snapshot(loser),
    )
    # identifiers first: this waits for ingesting transactions that hold them FOR SHARE, so the event
    # move below sees every event they attributed to the loser
    merge.moved_identifier_ids = _returning_ids(
        "UPDATE profiles_identifier SET profile_id = %s WHERE profile_id = %s RETURNING id", [winner.pk, loser.pk]
    )
    merge.moved_event_ids = _returning_ids(
        "UPDATE profiles_event SET profile_id = %s WHERE profile_id = %s RETURNING id", [winner.pk, loser.pk]
    )
    repointed = Profile.objects.filter(merged_into=loser)
    merge.evidence["repointed_profile_ids"] = [str(p) for p in repointed.values_list("pk", flat=True)]
    repointed.update(merged_into=winner)
    traits_merge(winner, loser)
    winner.first_seen_at = min(winner.first_seen_at, loser.first_seen_at)
    winner.last_seen_at = max(winner.last_seen_at, loser.last_seen_at)
    winner.save(update_fields=["traits", "trait_meta", "first_seen_at", "last_seen_at", "updated_at"])
    loser.merged_into = winner
    loser.save(update_fields=["merged_into", "updated_at"])
    merge.save()
    # both: the loser's segment memberships must close even if the merge hook's task is lost
    pending_mark([winner.pk, loser.pk])
    hooks.on_profiles_merged.fire(winner_id=str(winner.pk), loser_id=str(loser.pk), merge_id=merge.pk)
    return merge


@transaction.atomic
def profile_unmerge(*, merge: Merge, actor: str = "system") -> Merge:
    """Undo a merge: events, identifiers and traits go back where they were before it."""
    merge = Merge.objects.select_for_update().get(pk=merge.pk)
    if merge.status != MergeStatus.MERGED:
        raise ValueError("Only a merge that happened can be undone (this one was refused).")
    if merge.undone_at is not None:
        raise ValueError("This merge was already undone.")
    locked = lock_profiles([merge.winner_id, merge.loser_id])
    winner, loser = locked[merge.winner_id], locked[merge.loser_id]
    if merge.moved_identifier_ids:
        Identifier.objects.filter(pk__in=merge.moved_identifier_ids).update(profile=loser)
    if merge.moved_event_ids:
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE profiles_event SET profile_id = %s WHERE id = ANY(%s)", [loser.pk, merge.moved_event_ids]
            )
    repointed = merge.evidence.get("repointed_profile_ids") or []
    if repointed:
        Profile.objects.filter(pk__in=repointed).update(merged_into=loser)
    before_w, before_l = merge.winner_before, merge.loser_before
    for key in set(winner.traits) | set(before_w.get("traits", {})):
        came_from_loser = (
            key in before_l.get("traits", {})
            and winner.traits.get(key) == before_l["traits"][key]
            and (winner.trait_meta.get(key) or {}).get("at") == (before_l["trait_meta"].get(key) or {}).get("at")
        )
        unchanged_since = winner.trait_meta.get(key) == _merged_meta(before_w, before_l, key)
        if came_from_loser or unchanged_since:
            if key in before_w.get("traits", {}):
                winner.traits[key] = before_w["traits"][key]
                winner.trait_meta[key] = before_w["trait_meta"].get(key)
            else:
                winner.traits.pop(key, None)
                winner.trait_meta.pop(key, None)
    winner.first_seen_at = datetime.fromisoformat(before_w["first_seen_at"])
    winner.last_seen_at = max(
        datetime.fromisoformat(before_w["last_seen_at"]), _latest_event(winner) or winner.first_seen_at
    )
    winner.save(update_fields=["traits", "trait_meta", "first_seen_at", "last_seen_at", "updated_at"])
    loser.traits = before_l["traits"]
    loser.trait_meta = before_l["trait_meta"]
    loser.computed = before_l.get("computed", {})
    loser.first_seen_at = datetime.fromisoformat(before_l["first_seen_at"])
    loser.last_seen_at = datetime.fromisoformat(before_l["last_seen_at"])
    loser.merged_into = None
    loser.save()
    merge.undone_at = timezone.now()
    merge.undone_by = actor
    merge.save(update_fields=["undone_at", "undone_by"])
    pending_mark([winner.pk, loser.pk])
    hooks.on_profiles_unmerged.fire(winner_id=str(winner.pk), loser_id=str(loser.pk), merge_id=merge.pk)
    return merge


def _merged_meta(before_w: dict, before_l: dict, key: str):
    """What the winner's meta for ``key`` was right after the merge (to see if it changed since)."""
    w, loser_meta = (before_w.get("trait_meta") or {}).get(key), (before_l.get("trait_meta") or {}).get(key)
    if w is None:
        return loser_meta
    if loser_meta is None:
        return w
    merged = dict(w)
    if loser_meta["at"] > w["at"]:
        merged["at"] = loser_meta["at"]
    if loser_meta["first"] and loser_meta["first"] < w["first"]:
        merged["first"] = loser_meta["first"]
    return merged


def _latest_event(profile: Profile):
    return profile.events.order_by("-occurred_at").values_list("occurred_at", flat=True).first()
