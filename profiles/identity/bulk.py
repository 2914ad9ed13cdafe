"""Bulk merges and review candidates: the fuzzy job's writes, set-based, with a single merge's guarantees.

``profile_merge`` (merge.py) costs about ten statements per merge; the fuzzy job on 100,000
profiles writes tens of thousands of them. ``profiles_merge_bulk`` writes a batch of clusters in a
constant number of statements and leaves exactly what the same merges one by one would leave:

- **locks and order**: every profile of the batch is locked ``FOR UPDATE`` in id order (the order
  ``lock_profiles`` uses, decision 0004) before anything moves; a member merged away meanwhile
  stands for its survivor, a member that is gone is left out;
- **guards**: never-merge pairs (one query for the batch) and identifier limits (one count per
  profile and kind), checked as the merges happen one after another inside each cluster (the
  winner's counts grow with every loser it takes). A refused merge is recorded as a ``Merge`` with
  status ``refused``, once per pair and reason, as ``merge_refusal_record`` does;
- **audit and undo**: one ``Merge`` row per loser with the same snapshots (the winner's as it was
  just before taking that loser: the trait merge is replayed in memory in the cluster's order),
  the ids of the identifiers and events that moved and the profiles re-pointed, so
  ``profile_unmerge`` undoes any of them as it undoes a single merge (newest first, as always);
- **moves**: identifiers, events and previously merged profiles move in one ``UPDATE … FROM
  unnest(…)`` each, winners' traits and losers' ``merged_into`` in one each;
- **after commit**: ``pending_mark`` for the winners and ``on_profiles_merged`` for every merge, as
  one batch (``Hook.fire_many``: segments, consent and experiments handle it in one task / statement).

``candidates_file_bulk`` files review candidates with one ``INSERT … ON CONFLICT DO NOTHING`` and
refreshes the pending (or deferred) ones it finds in one ``UPDATE``; decided pairs are never touched.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.utils import timezone

from profiles import hooks
from profiles.models import CandidateStatus, Merge, MergeStatus, Profile
from profiles.normalize import limit_for

from .merge import _batched_merges, older_first, pending_mark, traits_merge


@dataclass
class BulkOutcome:
    merged: int = 0
    refused: Counter = field(default_factory=Counter)
    ended_in: dict = field(default_factory=dict)  # member key -> the live profile id it ended in
    merge_ids: list[int] = field(default_factory=list)


def _rows(sql: str, params: list) -> list[tuple]:
    """Run a set-based statement with its arrays bound on the server (psycopg's own cursor, on
    Django's connection and transaction): Django's client-side binding would quote every id and
    document of a batch into the SQL text in Python (most of a batch's time at 100,000 profiles)."""
    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


MERGE_COLUMNS = (
    "id", "status", "reason", "evidence", "score", "actor", "winner_before", "loser_before",
    "moved_event_ids", "moved_identifier_ids", "created_at", "undone_by", "loser_id", "winner_id",
)  # fmt: skip


def _merges_copy(rows: list[dict]) -> list[int]:
    """Write ``Merge`` rows (column -> value; JSON columns as JSON text) with ``COPY``, ids taken
    from the table's own sequence first (the hooks name each merge). Returns the ids in order."""
    if not rows:
        return []
    ids = [
        r[0]
        for r in _rows(
            "SELECT nextval(pg_get_serial_sequence('profiles_merge', 'id')) FROM generate_series(1, %s)", [len(rows)]
        )
    ]
    statement = f"COPY profiles_merge ({', '.join(MERGE_COLUMNS)}) FROM STDIN"
    with psycopg.Cursor(connection.connection) as cursor, cursor.copy(statement) as copy:
        for pk, row in zip(ids, rows, strict=True):
            copy.write_row([pk, *(row[c] for c in MERGE_COLUMNS[1:])])
    return ids


def _json(value) -> str:
    return json.dumps(value, cls=DjangoJSONEncoder)


def _snapshot_json(profile: Profile) -> str:
    """``merge._snapshot`` as JSON text: taken before the winner changes, without copying dicts."""
    return _json(
        {
            "traits": profile.traits,
            "trait_meta": profile.trait_meta,
            "computed": profile.computed,
            "first_seen_at": profile.first_seen_at.isoformat(),
            "last_seen_at": profile.last_seen_at.isoformat(),
        }
    )


def _grouped(rows: list[tuple]) -> dict:
    out: dict = {}
    for value, key in rows:
        out.setdefault(key, []).append(value)
    return out


@transaction.atomic
def profiles_merge_bulk(
    *,
    clusters: list[list[tuple]],
    reason: str,
    evidence: Callable[[object, list[str]], dict],
    score: Callable[[object], float | None],
    actor: str = "system",
) -> BulkOutcome:
    """Merge each cluster into its oldest live profile, in one transaction.

    ``clusters``: lists of ``(key, profile_id)``; losers are taken in the order given (strongest
    link first). ``evidence(key, cluster_profile_ids)`` and ``score(key)`` describe the link that
    brought a member in (stored on its ``Merge``)."""
    outcome = BulkOutcome()
    ids = {pid for members in clusters for _, pid in members}
    if not ids:
        return outcome
    # lock the members and their survivors, in id order (decision 0004)
    found = {p.pk: p for p in Profile.objects.select_for_update().filter(pk__in=list(ids)).order_by("pk")}
    survivor_ids = {p.merged_into_id for p in found.values() if p.merged_into_id} - set(found)
    if survivor_ids:
        extra = Profile.objects.select_for_update().filter(pk__in=list(survivor_ids)).order_by("pk")
        found.update({p.pk: p for p in extra})
    plans = []  # (winner, [(key, loser)]) per cluster
    for members in clusters:
        live: dict = {}  # profile id -> (key, profile): one member per live profile
        keys_of: dict = {}
        for key, pid in members:
            profile = found.get(pid)
            if profile is not None and profile.merged_into_id:
                profile = found.get(profile.merged_into_id)
            if profile is None or profile.merged_into_id is not None:
                continue
            keys_of[key] = profile.pk
            live.setdefault(profile.pk, (key, profile))
        for key, pid in keys_of.items():
            outcome.ended_in[key] = pid
        if len(live) < 2:
            continue
        winner = None
        for _, profile in live.values():
            winner = profile if winner is None else older_first(winner, profile)[0]
        losers = [(key, p) for key, p in live.values() if p.pk != winner.pk]
        plans.append((winner, losers, keys_of))
    if not plans:
        return outcome
    everyone = [str(p.pk) for winner, losers, _ in plans for p in (winner, *(x for _, x in losers))]
    counts: dict = {}
    for pid, kind, n in _rows(
        "SELECT profile_id, kind, count(*) FROM profiles_identifier WHERE profile_id = ANY(%s::uuid[]) "
        "GROUP BY profile_id, kind",
        [everyone],
    ):
        counts.setdefault(pid, Counter())[kind] = n
    never = {
        (a, b)
        for a, b in _rows(
            "SELECT profile_a_id, profile_b_id FROM profiles_matchcandidate WHERE status = %s "
            "AND profile_a_id = ANY(%s::uuid[]) AND profile_b_id = ANY(%s::uuid[])",
            [str(CandidateStatus.REJECTED), everyone, everyone],
        )
    }
    merges: list[dict] = []  # Merge rows, written with COPY
    refusals: list[Merge] = []
    pairs: list[tuple] = []  # (loser id, winner id) of the merges that happen
    winners: dict = {}
    for winner, losers, keys_of in plans:
        held = Counter(counts.get(winner.pk, Counter()))
        cluster_ids = [str(winner.pk), *(str(p.pk) for _, p in losers)]
        gone = set()
        for key, loser in losers:
            guard = None
            if tuple(sorted((winner.pk, loser.pk))) in never:
                guard = {"guard": "never_merge", "detail": "a reviewer decided these are different people"}
            else:
                together = held + counts.get(loser.pk, Counter())
                for kind, n in together.items():
                    if n > limit_for(kind):
                        guard = {"guard": "identifier_limit", "kind": kind, "count": n, "limit": limit_for(kind)}
                        break
            if guard:
                refusals.append(
                    Merge(
                        winner=winner,
                        loser=loser,
                        status=MergeStatus.REFUSED,
                        reason=reason,
                        evidence={**evidence(key, cluster_ids), **guard},
                    )
                )
                outcome.refused[guard["guard"]] += 1
                continue
            held += counts.get(loser.pk, Counter())
            merges.append(
                {
                    "winner_id": winner.pk,
                    "loser_id": loser.pk,
                    "status": MergeStatus.MERGED.value,
                    "reason": reason,
                    "evidence": evidence(key, cluster_ids),
                    "actor": actor,
                    "score": score(key),
                    "winner_before": _snapshot_json(winner),
                    "loser_before": _snapshot_json(loser),
                    "undone_by": "",
                }
            )
            traits_merge(winner, loser)  # the winner as the next merge of this cluster sees it
            winner.first_seen_at = min(winner.first_seen_at, loser.first_seen_at)
            winner.last_seen_at = max(winner.last_seen_at, loser.last_seen_at)
            pairs.append((str(loser.pk), str(winner.pk)))
            gone.add(loser.pk)
        if gone:
            winners[winner.pk] = winner
        for key, pid in keys_of.items():
            outcome.ended_in[key] = winner.pk if pid in gone else pid
    _record_refusals(refusals)
    if not pairs:
        return outcome
    losers_, winners_ = [x for x, _ in pairs], [y for _, y in pairs]
    # identifiers first (they wait for ingesting transactions holding them), then events (0004)
    moved_identifiers = _grouped(
        _rows(
            "UPDATE profiles_identifier AS t SET profile_id = m.winner "
            "FROM unnest(%s::uuid[], %s::uuid[]) AS m(loser, winner) "
            "WHERE t.profile_id = m.loser RETURNING t.id, m.loser",
            [losers_, winners_],
        )
    )
    moved_events = _grouped(
        _rows(
            "UPDATE profiles_event AS t SET profile_id = m.winner "
            "FROM unnest(%s::uuid[], %s::uuid[]) AS m(loser, winner) "
            "WHERE t.profile_id = m.loser RETURNING t.id, m.loser",
            [losers_, winners_],
        )
    )
    repointed = _grouped(
        _rows(
            "UPDATE profiles_profile AS t SET merged_into_id = m.winner, updated_at = now() "
            "FROM unnest(%s::uuid[], %s::uuid[]) AS m(loser, winner) "
            "WHERE t.merged_into_id = m.loser RETURNING t.id, m.loser",
            [losers_, winners_],
        )
    )
    now = timezone.now()
    _rows(
        "UPDATE profiles_profile AS t SET merged_into_id = m.winner, updated_at = %s "
        "FROM unnest(%s::uuid[], %s::uuid[]) AS m(loser, winner) "
        "WHERE t.id = m.loser RETURNING t.id",
        [now, losers_, winners_],
    )
    changed = list(winners.values())
    _rows(
        "UPDATE profiles_profile AS t SET traits = v.traits, trait_meta = v.trait_meta, "
        "first_seen_at = v.first_seen_at, last_seen_at = v.last_seen_at, updated_at = %s "
        "FROM unnest(%s::uuid[], %s::jsonb[], %s::jsonb[], %s::timestamptz[], %s::timestamptz[]) "
        "AS v(id, traits, trait_meta, first_seen_at, last_seen_at) WHERE t.id = v.id RETURNING t.id",
        [
            now,
            [str(w.pk) for w in changed],
            [json.dumps(w.traits) for w in changed],
            [json.dumps(w.trait_meta) for w in changed],
            [w.first_seen_at for w in changed],
            [w.last_seen_at for w in changed],
        ],
    )
    for merge in merges:
        loser = merge["loser_id"]
        merge["moved_identifier_ids"] = moved_identifiers.get(loser, [])
        merge["moved_event_ids"] = moved_events.get(loser, [])
        merge["evidence"] = _json(
            {**merge["evidence"], "repointed_profile_ids": [str(p) for p in repointed.get(loser, [])]}
        )
        merge["created_at"] = now
    merge_ids = _merges_copy(merges)
    pending_mark(list(winners))
    # one batch after commit: subscribers with a batch form do their work once for all these merges
    # (inside ``merge_hooks_batched``, with the other merges of the caller's batch)
    calls = [
        {"winner_id": str(m["winner_id"]), "loser_id": str(m["loser_id"]), "merge_id": pk}
        for m, pk in zip(merges, merge_ids, strict=True)
    ]
    batched = _batched_merges.get()
    if batched is not None:
        batched.extend(calls)
    else:
        hooks.on_profiles_merged.fire_many(calls)
    outcome.merged = len(merges)
    outcome.merge_ids = merge_ids
    return outcome


def _record_refusals(refusals: list[Merge]) -> None:
    """Refused merges, once per (winner, loser, reason) that is not recorded yet."""
    if not refusals:
        return
    ids = list({str(m.winner_id) for m in refusals} | {str(m.loser_id) for m in refusals})
    existing = {
        (w, lo, r)
        for w, lo, r in _rows(
            "SELECT winner_id, loser_id, reason FROM profiles_merge WHERE status = %s AND undone_at IS NULL "
            "AND winner_id = ANY(%s::uuid[]) AND loser_id = ANY(%s::uuid[])",
            [str(MergeStatus.REFUSED), ids, ids],
        )
    }
    new, seen = [], set()
    for merge in refusals:
        key = (merge.winner_id, merge.loser_id, merge.reason)
        if key not in existing and key not in seen:
            seen.add(key)
            new.append(merge)
    Merge.objects.bulk_create(new, batch_size=1000)


@transaction.atomic
def candidates_file_bulk(*, pairs: list[tuple], reason: str) -> int:
    """File review candidates ``(profile_x, profile_y, score, evidence)``; returns how many pending
    candidates now carry them. New pairs are inserted, pending ones of this ``reason`` refreshed,
    pending ones filed for another reason (a contradicted email at ingestion) get the evidence
    under ``reason``; decided pairs (approved, rejected) are left alone."""
    if not pairs:
        return 0
    best: dict = {}
    for x, y, score, evidence in pairs:
        key = (min(str(x), str(y)), max(str(x), str(y)))
        if key[0] != key[1] and (key not in best or score > best[key][0]):
            best[key] = (score, evidence)
    lows, highs = [k[0] for k in best], [k[1] for k in best]
    scores = [v[0] for v in best.values()]
    evidences = [json.dumps(v[1]) for v in best.values()]
    inserted = _rows(
        "INSERT INTO profiles_matchcandidate (profile_a_id, profile_b_id, reason, score, evidence, status, "
        "created_at, decided_by) "
        "SELECT v.a, v.b, %s::text, v.score, v.evidence, %s::text, now(), '' "
        "FROM unnest(%s::uuid[], %s::uuid[], %s::float8[], %s::jsonb[]) AS v(a, b, score, evidence) "
        "JOIN profiles_profile pa ON pa.id = v.a JOIN profiles_profile pb ON pb.id = v.b "
        "ON CONFLICT (profile_a_id, profile_b_id) DO NOTHING RETURNING id",
        [reason, str(CandidateStatus.PENDING), lows, highs, scores, evidences],
    )
    refreshed = _rows(
        "UPDATE profiles_matchcandidate AS c SET score = v.score, "
        "evidence = CASE WHEN c.reason = %s::text THEN v.evidence "
        "ELSE c.evidence || jsonb_build_object(%s::text, v.evidence) END "
        "FROM unnest(%s::uuid[], %s::uuid[], %s::float8[], %s::jsonb[]) AS v(a, b, score, evidence) "
        "WHERE c.profile_a_id = v.a AND c.profile_b_id = v.b AND c.status = ANY(%s::text[]) "
        "AND NOT (c.id = ANY(%s::bigint[])) RETURNING c.id",
        [
            reason,
            reason,
            lows,
            highs,
            scores,
            evidences,
            [str(CandidateStatus.PENDING), str(CandidateStatus.DEFERRED)],
            [r[0] for r in inserted],
        ],
    )
    return len(inserted) + len(refreshed)
