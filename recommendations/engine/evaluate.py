"""Protocol R (``../shared/benchmarks/PROTOCOL.md``): the temporal split and the top-k metrics.

The same code serves ``evaluate_recommendations`` and the refresh's temporal holdout.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from recommendations.engine.data import PURCHASE, Interactions
from recommendations.engine.state import DAY


@dataclass
class Truth:
    """What the evaluated customers bought in the test window, restricted to candidate items."""

    users: list[str]  # evaluated customers
    relevant: list[set[str]]  # distinct candidate items each bought in the test window (may be empty)
    cutoff: float  # epoch seconds
    candidates: int  # items in train

    def __len__(self) -> int:
        return len(self.users)


def holdout_split(data: Interactions, test_days: float = 30) -> tuple[Interactions, Truth]:
    """``cutoff = max(ts) - test_days``; train = rows before it (compacted), truth = the test window's
    purchases of customers who also have train rows, restricted to items that occur in train."""
    if len(data) == 0:
        raise ValueError("No interactions to split.")
    cutoff = float(data.ts.max()) - float(test_days) * DAY
    in_train = data.ts < cutoff
    train = data.subset(in_train, compact=True)
    test = ~in_train
    train_users = np.zeros(data.n_users, dtype=bool)
    train_users[data.user[in_train]] = True
    train_items = np.zeros(data.n_items, dtype=bool)
    train_items[data.item[in_train]] = True
    test_users = np.zeros(data.n_users, dtype=bool)
    test_buy = test & (data.kind == PURCHASE)
    test_users[data.user[test_buy]] = True
    evaluated = np.flatnonzero(train_users & test_users)
    relevant: dict[int, set[str]] = {int(u): set() for u in evaluated}
    rel_rows = test_buy & train_users[data.user] & train_items[data.item]
    for u, i in zip(data.user[rel_rows], data.item[rel_rows], strict=True):
        relevant[int(u)].add(str(data.items[i]))
    truth = Truth(
        users=[str(data.users[u]) for u in evaluated],
        relevant=[relevant[int(u)] for u in evaluated],
        cutoff=cutoff,
        candidates=int(train_items.sum()),
    )
    return train, truth


def ranking_metrics(ranked: list[list[str]], relevant: list[set[str]], k: int, n_candidates: int) -> dict:
    """Protocol R metrics averaged over customers (a customer with no relevant item scores 0)."""
    n = len(ranked)
    if n == 0:
        return {
            f"precision@{k}": 0.0,
            f"recall@{k}": 0.0,
            f"ndcg@{k}": 0.0,
            f"map@{k}": 0.0,
            f"hit_rate@{k}": 0.0,
            "coverage": 0.0,
        }
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    prec = rec = ndcg = ap = hit = 0.0
    shown: set[str] = set()
    for top, rel in zip(ranked, relevant, strict=True):
        top = top[:k]
        shown.update(top)
        if not rel:
            continue
        hits = np.array([item in rel for item in top], dtype=bool)
        h = int(hits.sum())
        prec += h / k
        rec += h / len(rel)
        hit += 1.0 if h else 0.0
        ideal = discounts[: min(len(rel), k)].sum()
        ndcg += float(discounts[: len(top)][hits].sum() / ideal)
        if h:
            positions = np.flatnonzero(hits) + 1
            ap += float((np.arange(1, h + 1) / positions).sum() / min(len(rel), k))
    return {
        f"precision@{k}": prec / n,
        f"recall@{k}": rec / n,
        f"ndcg@{k}": ndcg / n,
        f"map@{k}": ap / n,
        f"hit_rate@{k}": hit / n,
        "coverage": len(shown) / n_candidates if n_candidates else 0.0,
    }


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indexes of the k best scores per row, best first (ties: lower index first)."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    rows = np.arange(scores.shape[0])[:, None]
    vals = scores[rows, part]
    order = np.lexsort((part, -vals), axis=1)
    return part[rows, order]


def rank_users(bundle, users: list[str], k: int, recommender: str | None = None, batch: int = 1024) -> list[list[str]]:
    """Top-k item ids for known users, in batches (unknown users get global popularity)."""
    rows = np.array([bundle.user_index.get(u, -1) for u in users], dtype=np.int64)
    out: list[list[str]] = [[] for _ in users]
    known = np.flatnonzero(rows >= 0)
    items = bundle.state.items
    for start in range(0, len(known), batch):
        chunk = known[start : start + batch]
        tops = bundle.top_users(rows[chunk], k, recommender)  # the hybrid ranks its candidates only
        if tops is None:
            tops = top_k(np.asarray(bundle.score_users(rows[chunk], recommender), dtype=np.float64), k)
        for pos, best in zip(chunk, tops, strict=True):
            out[pos] = [str(items[i]) for i in best]
    if len(known) < len(users):
        fallback = [rec.item_id for rec in bundle.popular(k=k)]
        for pos in np.flatnonzero(rows < 0):
            out[pos] = fallback
    return out


def evaluate_bundle(
    bundle,
    truth: Truth,
    k: int = 10,
    *,
    recommender: str | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> dict:
    """Protocol R metrics of one recommender of the bundle (its primary by default) on the truth."""
    started = time.monotonic()
    ranked = rank_users(bundle, truth.users, k, recommender)
    metrics = ranking_metrics(ranked, truth.relevant, k, truth.candidates)
    metrics["users_evaluated"] = len(truth)
    metrics["eval_seconds"] = round(time.monotonic() - started, 3)
    if progress:
        progress(1.0, "evaluated")
    return metrics
