"""Merge guards: whether two profiles may be merged, and what is recorded when they may not.

Guards: never-merge pairs (a reviewer rejected the candidate) and identifier limits per kind. A
refused merge is recorded once per pair and reason; a contradicted link files a ``MatchCandidate``.
The older profile survives a merge (``older_first``).
"""

from __future__ import annotations

from collections import Counter

from django.db import connection

from profiles.models import CandidateStatus, MatchCandidate, Merge, MergeStatus, Profile
from profiles.normalize import limit_for


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
