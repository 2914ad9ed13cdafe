"""Merging and unmerging profiles, with the data to undo a merge recorded in the same transaction.

The trait policy lives in ``trait_policy``, the guards in ``guards``, the follow-up queue in
``profiles.pending``; their names are re-exported here for callers that import them from this module.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime

from django.db import connection, transaction
from django.utils import timezone

from profiles import hooks
from profiles.locks import lock_profiles
from profiles.models import Identifier, Merge, MergeStatus, Profile
from profiles.pending import pending_mark

from .guards import candidate_file, identifier_counts, merge_guard, merge_refusal_record, older_first
from .trait_policy import contradictions, profile_snapshot, trait_value, traits_apply, traits_merge

# callers written before the split (identity/bulk.py, runs.py, tests) import these from here
_snapshot = profile_snapshot
__all__ = [
    "ProfileVanished",
    "candidate_file",
    "contradictions",
    "identifier_counts",
    "lock_profiles_present",
    "merge_guard",
    "merge_refusal_record",
    "older_first",
    "pending_mark",
    "profile_merge",
    "profile_snapshot",
    "profile_unmerge",
    "trait_value",
    "traits_apply",
    "traits_merge",
]


# merges made while ``merge_hooks_batched`` is active: their hook is fired once for all of them
_batched_merges: ContextVar[list | None] = ContextVar("batched_merges", default=None)


@contextmanager
def merge_hooks_batched() -> Iterator[None]:
    """Merges made inside fire ``on_profiles_merged`` once, as one batch (``Hook.fire_many``: one task
    or statement per subscriber), when the block ends without an error, on commit of the enclosing
    transaction. The stitch workers wrap each batch in it: a batch may merge a hundred people."""
    calls: list[dict] = []
    token = _batched_merges.set(calls)
    try:
        yield
    finally:
        _batched_merges.reset(token)
    hooks.on_profiles_merged.fire_many(calls)


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
        winner_before=profile_snapshot(winner),
        loser_before=profile_snapshot(loser),
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
    batched = _batched_merges.get()
    if batched is not None:
        batched.append({"winner_id": str(winner.pk), "loser_id": str(loser.pk), "merge_id": merge.pk})
    else:
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
