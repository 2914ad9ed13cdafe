"""The review queue: what a person can finish, most instructive first, answers that travel.

- **One question per pair of profiles**: every record pair between two live profiles (after the
  run's merges) is one candidate, carrying its strongest pair's evidence and how many record pairs
  it stands for. Approving merges the two profiles whole (every record pair between them is
  answered), rejecting makes them a never-merge pair (likewise).
- **Ordered by uncertainty**: a candidate's priority is the binary entropy of its match probability
  (1 bit at p = 0.5, 0 at p = 0 or 1): the answer the model is least able to give itself teaches it
  most. A pair the model would merge but a conflict rule refused (twins, a family mailbox) is as
  uncertain as can be (1 bit): model and rules disagree. Ties go to the candidate that stands for
  more record pairs.
- **Bounded**: at most ``CDP_REVIEW_QUEUE_MAX_SHARE`` (default 0.02) of the run's records are put
  in front of people; candidates below that line are not filed this run (they stay pairs the
  matcher did not merge, and are considered again by the next run, after the answers taught it).
- **Answers travel** (active learning, as Zingg does): every decision is a label that refines the
  model's m and u (``labelled_levels``); and a decision on one candidate is applied to pending
  candidates with the same comparison pattern when reviewers agreed on that pattern often enough
  without exception (``PROPAGATE_AFTER`` rejections: rejected automatically; approvals only teach
  the model and the queue order, because a pattern that is 95 % one person would merge the other
  5 % unseen).
"""

from __future__ import annotations

import math

import numpy as np
from django.conf import settings

MAX_SHARE_DEFAULT = 0.02
PROPAGATE_AFTER = 2


def max_share() -> float:
    return float(getattr(settings, "CDP_REVIEW_QUEUE_MAX_SHARE", MAX_SHARE_DEFAULT))


def uncertainty(p: np.ndarray | float) -> np.ndarray | float:
    """Binary entropy in bits."""
    q = np.clip(np.asarray(p, dtype=np.float64), 1e-12, 1 - 1e-12)
    out = -(q * np.log2(q) + (1 - q) * np.log2(1 - q))
    return float(out) if np.ndim(out) == 0 else out


def pattern(levels_row) -> str:
    """A comparison pattern as text (stored on candidates): one level per comparison, '-' missing."""
    return ".".join("-" if int(x) < 0 else str(int(x)) for x in levels_row)


def select(groups: list[tuple], *, records: int, share: float | None = None, weight: dict | None = None) -> list[tuple]:
    """Groups ``(x, y, p, pairs, uncertainty, ...)`` (x, y: live profiles) in queue order, cut where
    the records in review would exceed ``share`` of ``records`` (``weight``: records behind each
    profile, the profile itself and those merged into it; 1 when not given)."""
    share = max_share() if share is None else share
    budget = max(math.floor(share * records), 2)  # one question is always allowed
    ordered = sorted(groups, key=lambda g: (-g[4], -g[3], -g[2]))
    chosen, seen, used = [], set(), 0
    for group in ordered:
        new = {group[0], group[1]} - seen
        cost = sum((weight or {}).get(p, 1) for p in new)
        if used + cost > budget:
            continue
        seen |= new
        used += cost
        chosen.append(group)
    return chosen


def decision_propagate(*, candidate, actor: str) -> int:
    """Apply a reviewer's decision beyond the pair decided (called inside the decision's transaction).

    1. Pending candidates it settles: after an approval, pairs whose two profiles are now one; after
       a rejection, other pending pairs between the same two live profiles (rejected with it).
    2. Pending fuzzy candidates with the same comparison pattern, when reviewers rejected that
       pattern at least ``PROPAGATE_AFTER`` times and never approved it: rejected too.

    Returns how many pending candidates were decided along with it; each records
    ``decided_by = "<actor> (propagated from #<id>)"``."""
    from django.db.models import Q
    from django.utils import timezone

    from profiles.models import CandidateStatus, MatchCandidate, Profile

    def live_of(ids) -> dict:
        rows = dict(Profile.objects.filter(pk__in=list(ids)).values_list("pk", "merged_into_id"))
        return {pid: rows.get(pid) or pid for pid in ids}

    approved = candidate.status == CandidateStatus.APPROVED
    pair_live = live_of([candidate.profile_a_id, candidate.profile_b_id])
    x, y = pair_live[candidate.profile_a_id], pair_live[candidate.profile_b_id]
    family = set(Profile.objects.filter(Q(pk__in=[x, y]) | Q(merged_into__in=[x, y])).values_list("pk", flat=True))
    pending = MatchCandidate.objects.filter(status=CandidateStatus.PENDING).exclude(pk=candidate.pk)
    near = list(
        pending.filter(profile_a__in=family, profile_b__in=family).values_list("pk", "profile_a_id", "profile_b_id")
    )
    live = live_of({pid for _, a, b in near for pid in (a, b)})
    settled = [pk for pk, a, b in near if (live[a] == live[b]) == approved]
    by = f"{actor} (propagated from #{candidate.pk})"[:150]
    status = CandidateStatus.APPROVED if approved else CandidateStatus.REJECTED
    now = timezone.now()
    count = pending.filter(pk__in=settled).update(status=status, decided_at=now, decided_by=by)
    pat = (candidate.evidence or {}).get("pattern")
    if not approved and pat:
        decided = MatchCandidate.objects.filter(evidence__pattern=pat).exclude(decided_by__contains="(propagated")
        rejected = decided.filter(status=CandidateStatus.REJECTED).count()
        if rejected >= PROPAGATE_AFTER and not decided.filter(status=CandidateStatus.APPROVED).exists():
            count += pending.filter(reason="fuzzy", evidence__pattern=pat).update(
                status=CandidateStatus.REJECTED, decided_at=now, decided_by=by
            )
    return count


def records_behind(lives: list) -> dict:
    """Per live profile, how many records a reviewer answers for by deciding it: the profile and
    those merged into it, or, when more, the anonymous ids it holds (each identify call of a new
    visitor is a record; ingestion joins records that share an email into one profile without a
    merge, and they count too). Profiles not in the result stand for one record."""
    from django.db.models import Count

    from profiles.models import Identifier, Profile

    behind = Profile.objects.filter(merged_into__in=lives).values("merged_into").annotate(n=Count("id"))
    weight = {row["merged_into"]: row["n"] + 1 for row in behind}
    visitors = (
        Identifier.objects.filter(profile__in=lives, kind="anonymous_id").values("profile").annotate(n=Count("id"))
    )
    for row in visitors:
        weight[row["profile"]] = max(weight.get(row["profile"], 1), row["n"])
    return weight


def queue_line(*, records: int, population: set | None = None, share: float | None = None) -> dict:
    """Draw the queue's line over every open pair (``records``: the records, i.e. profiles including
    merged-away ones, the share is taken of) (pending or deferred, whoever filed it: the fuzzy
    job or ingestion's contradicted email or phone): ranked as ``select`` does, the pairs above the
    line are pending, the rest deferred (so are pairs that became one profile since they were
    filed: nothing is left to ask about them). ``population`` limits it to pairs of those profiles (an
    evaluation's own). Returns how many are pending and deferred."""
    from profiles.models import CandidateStatus, MatchCandidate, Profile

    open_ = MatchCandidate.objects.filter(status__in=[CandidateStatus.PENDING, CandidateStatus.DEFERRED])
    if population is not None:
        ids = list(population)
        open_ = open_.filter(profile_a__in=ids, profile_b__in=ids)
    rows = list(open_.values_list("pk", "profile_a_id", "profile_b_id", "score", "evidence", "status"))
    ids = {pid for _, a, b, *_ in rows for pid in (a, b)}
    survivor = dict(
        Profile.objects.filter(pk__in=list(ids), merged_into__isnull=False).values_list("pk", "merged_into_id")
    )
    groups, moot = [], set()
    for pk, a, b, score, evidence, _ in rows:
        x, y = survivor.get(a, a), survivor.get(b, b)
        if x == y:  # one profile by now (merged since it was filed): nothing left to ask
            moot.add(pk)
            continue
        evidence = evidence or {}
        fuzzy = evidence.get("fuzzy") if isinstance(evidence.get("fuzzy"), dict) else evidence
        doubt = fuzzy.get("uncertainty")
        if doubt is None:  # filed at ingestion: an identifier says one person, other traits say two
            doubt = 1.0
        p = float(score) if score is not None else 0.5
        groups.append((x, y, p, int(fuzzy.get("record_pairs") or 1), float(doubt), pk))
    weight = records_behind(list({p for g in groups for p in g[:2]}))
    above = {g[5] for g in select(groups, records=records, share=share, weight=weight)}
    below = ({g[5] for g in groups} - above) | moot
    MatchCandidate.objects.filter(pk__in=above).exclude(status=CandidateStatus.PENDING).update(
        status=CandidateStatus.PENDING
    )
    MatchCandidate.objects.filter(pk__in=below).exclude(status=CandidateStatus.DEFERRED).update(
        status=CandidateStatus.DEFERRED
    )
    return {"pending": len(above), "deferred": len(below)}
