"""The hybrid: a gradient-boosted ranker over candidates from the other recommenders.

Training uses rolling label windows inside the training data: the last ``label_days`` of it are
the labels (and, with ``windows`` = 2, the default, the ``label_days`` before them too, each with
its own past), the recommenders are fitted again on what came before, and a pointwise classifier
(scikit-learn's HistGradientBoostingClassifier) learns which candidates a person buys next from
features of each (person, item) pair: personal frequency with time decay, days since the last
purchase relative to the person's usual gap and to the item's repurchase cycle, recent and overall
popularity, item-item, ALS, content and neighbourhood scores. Nothing of the period being
predicted is ever seen by the features. At answer time the same features come from the
recommenders fitted on all the training data, so the blend weights are learned, never hand-set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from recommendations.engine.artifact import BoostedTrees, allow
from recommendations.engine.data import PURCHASE, Interactions
from recommendations.engine.recommenders import Recommender
from recommendations.engine.state import DAY, TrainState, build_state

# the recommenders whose scores are features; fitted again on the window's prefix
COMPONENTS = ("buy_again", "repeat_knn", "item_item_bm25", "item_item", "als", "content", "session", "trending")

FEATURES = (
    "orders_ui",
    "orders_ui_90d",
    "decayed_ui",
    "share_ui",
    "days_since_last_ui",
    "days_since_first_ui",
    "gap_ratio_user",
    "gap_ratio_item",
    "browsed_ui",
    "days_since_browsed_ui",
    "own_knn",
    "neighbours_knn",
    "rank_knn",
    "bm25",
    "rank_bm25",
    "cosine",
    "als",
    "rank_als",
    "content",
    "session",
    "user_orders",
    "user_items",
    "user_days_since_last",
    "user_tenure",
    "user_gap",
    "user_repeat_share",
    "item_buyers",
    "item_recent_buyers",
    "item_momentum",
    "item_trending",
    "item_repeat_rate",
    "item_cycle",
    "item_age",
    "item_price",
)


@allow
class _Stats:
    """Per-user and per-item aggregates of a state, as of its ``now_days``."""

    def __init__(self, state: TrainState, catalog, recent_days: float, data: Interactions) -> None:
        now = state.now_days
        # orders of each (person, item) in the last 90 days
        days = data.ts / DAY
        recent = (data.kind == PURCHASE) & (days >= now - 90.0) & (days < now)
        key = np.unique(
            np.stack([data.user[recent].astype(np.int64), data.item[recent], np.floor(days[recent]).astype(np.int64)]),
            axis=1,
        )
        self.recent_orders = sp.csr_matrix(
            (np.ones(key.shape[1], dtype=np.float32), (key[0], key[1])), shape=state.purchases.shape
        )
        self.recent_orders.sum_duplicates()
        P = state.purchases
        last = state.last_purchase
        first = state.first_purchase
        n_u, n_i = P.shape
        lastmax = np.zeros(n_u)
        if last.nnz:
            lastmax = np.asarray(last.max(axis=1).todense()).ravel()
        has_buy = state.user_orders > 0
        self.user_orders = state.user_orders.astype(np.float32)
        self.user_items = np.diff(P.indptr).astype(np.float32)
        self.user_days_since_last = np.where(has_buy, now - lastmax, np.nan).astype(np.float32)
        self.user_tenure = np.where(has_buy, now - state.user_first, np.nan).astype(np.float32)
        span = lastmax - state.user_first
        self.user_gap = np.where(state.user_orders > 1, span / np.maximum(state.user_orders - 1, 1), np.nan).astype(
            np.float32
        )
        lines = np.asarray(P.sum(axis=1)).ravel()
        self.user_repeat_share = np.where(lines > 0, (lines - self.user_items) / np.maximum(lines, 1), np.nan).astype(
            np.float32
        )
        coo = P.tocoo()
        buyers = np.bincount(coo.col, minlength=n_i).astype(np.float32)
        repeaters = np.bincount(coo.col, weights=(coo.data >= 2), minlength=n_i)
        self.item_buyers = buyers
        self.item_repeat_rate = np.where(buyers > 0, repeaters / np.maximum(buyers, 1), np.nan).astype(np.float32)
        # repurchase cycle: mean over repeat buyers of (last - first) / (orders - 1)
        lc, fc = last.tocoo(), first.tocsr()
        span_ui = lc.data - _pick(fc, lc.row, lc.col)
        n_ui = _pick(P, lc.row, lc.col)
        rep = n_ui >= 2
        cyc_sum = np.bincount(lc.col[rep], weights=span_ui[rep] / (n_ui[rep] - 1), minlength=n_i)
        cyc_n = np.bincount(lc.col[rep], minlength=n_i)
        self.item_cycle = np.where(cyc_n > 0, cyc_sum / np.maximum(cyc_n, 1), np.nan).astype(np.float32)
        recent = lc.data >= now - recent_days
        self.item_recent_buyers = np.bincount(lc.col[recent], minlength=n_i).astype(np.float32)
        # buyers in the three windows before the recent one (by first purchase in that span)
        before = (data.kind == PURCHASE) & (days >= now - 4 * recent_days) & (days < now - recent_days)
        pairs = np.unique(data.user[before].astype(np.int64) * n_i + data.item[before])
        previous = np.bincount(pairs % max(n_i, 1), minlength=n_i).astype(np.float32) / 3.0
        recent_any = (data.kind == PURCHASE) & (days >= now - recent_days) & (days < now)
        pairs = np.unique(data.user[recent_any].astype(np.int64) * n_i + data.item[recent_any])
        current = np.bincount(pairs % max(n_i, 1), minlength=n_i).astype(np.float32)
        self.item_momentum = ((current + 1.0) / (previous + 1.0)).astype(np.float32)
        fc_coo = first.tocoo()
        first_seen = np.full(n_i, np.inf)
        np.minimum.at(first_seen, fc_coo.col, fc_coo.data)
        self.item_age = np.where(np.isfinite(first_seen), now - first_seen, np.nan).astype(np.float32)
        # the price as the interactions before ``now`` said it (never a later catalog price);
        # the catalog's price only where the data has no prices at all (it is then of the training data)
        if data.price is not None:
            self.item_price = data.last_prices(before=now * DAY).astype(np.float32)
        elif catalog is not None and len(catalog) == n_i:
            self.item_price = catalog.price.astype(np.float32)
        else:
            self.item_price = np.full(n_i, np.nan, dtype=np.float32)

    people_fields = (
        "recent_orders",
        "user_orders",
        "user_items",
        "user_days_since_last",
        "user_tenure",
        "user_gap",
        "user_repeat_share",
    )


def _pick(M: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``M[rows[n], cols[n]]`` as a flat float array (also for no pairs at all)."""
    if len(rows) == 0:
        return np.zeros(0, dtype=np.float64)
    return np.asarray(M[rows, cols]).ravel().astype(np.float64)


# --- sparse helpers: every per-request quantity is a sparse row, never a dense row of every item ---


def _canonical(M) -> sp.csr_matrix:
    M = M.tocsr() if not sp.isspmatrix_csr(M) else M
    if not M.has_canonical_format:
        M = M.copy()
        M.sum_duplicates()
    return M


FEW_ROWS = 8  # products of at most this many rows are computed from the rows touched (serving: one row)


def _times(A: sp.csr_matrix, B: sp.csr_matrix) -> sp.csr_matrix:
    """``A @ B``. For a few rows of A (a request), from the rows of B that A's entries select:
    scipy's product sets up work arrays as long as B is wide (every person, or every item) on each
    call, which a request cannot afford; for training batches, scipy's."""
    if A.shape[0] > FEW_ROWS:
        return A @ B
    A = _canonical(A)
    starts, ends = B.indptr[A.indices], B.indptr[A.indices + 1]
    lengths = (ends - starts).astype(np.int64)
    total = int(lengths.sum())
    dtype = np.result_type(A.dtype, B.dtype)
    if total == 0:
        return sp.csr_matrix((A.shape[0], B.shape[1]), dtype=dtype)
    offsets = np.cumsum(lengths) - lengths
    pos = np.arange(total, dtype=np.int64) - np.repeat(offsets - starts, lengths)
    rows = np.repeat(_row_of(A), lengths)
    vals = np.repeat(A.data.astype(dtype), lengths) * B.data[pos].astype(dtype)
    out = sp.csr_matrix((vals, (rows, B.indices[pos])), shape=(A.shape[0], B.shape[1]), dtype=dtype)
    out.sum_duplicates()
    out.eliminate_zeros()  # as scipy's product: no stored zeros
    return out


def _row_of(M: sp.csr_matrix) -> np.ndarray:
    return np.repeat(np.arange(M.shape[0], dtype=np.int64), np.diff(M.indptr))


def _gather(M: sp.csr_matrix, r: np.ndarray, c: np.ndarray, missing: float = 0.0) -> np.ndarray:
    """``M[r[n], c[n]]`` for a canonical CSR matrix, ``missing`` where nothing is stored."""
    out = np.full(len(r), missing, dtype=np.float64)
    if M.nnz == 0 or len(r) == 0:
        return out
    keys = _row_of(M) * M.shape[1] + M.indices
    q = np.asarray(r, dtype=np.int64) * M.shape[1] + np.asarray(c, dtype=np.int64)
    pos = np.minimum(np.searchsorted(keys, q), len(keys) - 1)
    hit = keys[pos] == q
    out[hit] = M.data[pos[hit]]
    return out


def _ranked(M: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The positive entries of M as (row, column, rank within the row: 1 = best), by row then rank
    (ties: the lower column first)."""
    M = _canonical(M)
    rows = _row_of(M)
    pos = M.data > 0
    rows, cols, vals = rows[pos], M.indices[pos], M.data[pos]
    order = np.lexsort((-vals, rows))  # stable: within a row, columns ascending among ties
    rows, cols = rows[order], cols[order]
    starts = np.searchsorted(rows, np.arange(M.shape[0]))
    ranks = np.arange(len(rows)) - starts[rows] + 1
    return rows, cols.astype(np.int64), ranks


def _top_rows(M: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """M with only the k largest positive entries of each row kept (linear time per row: rows of a
    person-to-person similarity can hold tens of thousands of entries)."""
    M = _canonical(M)
    keep = M.data > 0
    lengths = np.diff(M.indptr)
    for r in np.flatnonzero(lengths > k):
        start, end = M.indptr[r], M.indptr[r + 1]
        values = M.data[start:end]
        cut = np.partition(values, len(values) - k)[len(values) - k]
        row_keep = values >= cut
        if row_keep.sum() > k:  # ties at the cut: the lower columns first
            row_keep &= np.cumsum(row_keep) <= k
        keep[start:end] &= row_keep
    rows = _row_of(M)[keep]
    out = sp.csr_matrix((M.data[keep], (rows, M.indices[keep])), shape=M.shape)
    out.sum_duplicates()
    return out


def _rank_matrix(M: sp.csr_matrix) -> sp.csr_matrix:
    rows, cols, ranks = _ranked(M)
    out = sp.csr_matrix((ranks.astype(np.float32), (rows, cols)), shape=M.shape)
    out.sum_duplicates()
    return out


def _top_pairs(M: sp.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) of the k best positive entries of each row."""
    top = _top_rows(M, k)
    return _row_of(top), top.indices.astype(np.int64)


def knn_components(knn, rows: np.ndarray) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """The repeat-aware neighbourhood's (own vector, mean vector of the k most similar people) of
    state rows, sparse: the people sharing an item with the person, the k most similar kept."""
    V = knn.vectors
    VT = knn.vectors_t()
    own = V[rows]
    sims = _canonical(_times(own, VT)).tocoo()
    self_hit = sims.col == np.asarray(rows)[sims.row]
    sims = sp.csr_matrix(
        (sims.data[~self_hit], (sims.row[~self_hit], sims.col[~self_hit])), shape=(len(rows), V.shape[0])
    )
    top = _top_rows(sims, knn.k)
    total = np.asarray(top.sum(axis=1)).ravel()
    top = sp.diags((1.0 / np.maximum(total, 1e-12)).astype(np.float32)) @ top
    return _canonical(own), _canonical(_times(top, V))


def als_top(als, rows: np.ndarray, n: int, index=None) -> tuple[np.ndarray, np.ndarray]:
    """The n items of largest ALS score per state row: (items, scores), best first. Exact (one
    matrix product) without an index; with the model's hnswlib index, approximate (rows the graph
    cannot answer are computed exactly)."""
    uf = als.user_factors[rows]
    n = min(n, als.item_factors.shape[0])
    if index is not None:
        found = index.query(uf, n)
        if found is not None:
            items, scores = found
            missed = np.flatnonzero(items[:, 0] < 0) if items.shape[1] else np.zeros(0, np.int64)
            if len(missed) == 0:
                return items, scores
            exact = _exact_top(uf[missed], als.item_factors, items.shape[1])
            items[missed], scores[missed] = exact
            return items, scores
    return _exact_top(uf, als.item_factors, n)


def _exact_top(uf: np.ndarray, item_factors: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    if n <= 0:
        return np.empty((len(uf), 0), np.int64), np.empty((len(uf), 0), np.float32)
    scores = uf @ item_factors.T
    part = np.argpartition(-scores, n - 1, axis=1)[:, :n]
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1).astype(np.int64), np.take_along_axis(vals, order, axis=1)


def _popular_top(buy_again, n: int) -> np.ndarray:
    """The n most popular items (sorted once per fitted model, not per request: 50,000 items)."""
    cached = getattr(buy_again, "_cache_top", None)
    if cached is None or len(cached) < n:
        cached = buy_again._cache_top = np.argsort(-buy_again.fill, kind="stable")[: max(n, 100)]
    return cached[:n]


@dataclass
class Candidates:
    """Candidates of a batch of state rows: pair ``n`` is (``rows[row[n]]``, ``item[n]``); ``source``
    has one bit per generator that proposed it (``SOURCES``); ``X`` the ranker's features."""

    row: np.ndarray
    item: np.ndarray
    source: np.ndarray
    X: np.ndarray


SOURCES = ("history", "repeat_knn", "item_item", "als", "session", "popular", "extra")


def candidate_features(
    state: TrainState,
    comps: dict[str, Recommender],
    stats: _Stats,
    rows: np.ndarray,
    p: dict,
    *,
    index=None,
    extra: np.ndarray | None = None,
) -> Candidates:
    """Stage one and the ranker's input: a bounded candidate set per state row from the generators
    (the person's own items, the tops of the repeat-aware neighbourhood, BM25 item-item, ALS, session
    similarity, popularity, and ``extra`` item indexes given by the caller, e.g. trending or segment
    popularity), and each candidate's features, read from sparse rows and precomputed arrays.
    One row (a request) is computed on the stored CSR arrays directly (``_one_row``): the same
    candidates and features, without building a few dozen small scipy matrices."""
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) == 1:
        return _one_row(state, comps, stats, int(rows[0]), p, index=index, extra=extra)
    b, n_items = len(rows), state.n_items
    P = _canonical(state.purchases[rows])
    D = _canonical(state.interactions[rows])
    B = _canonical(state.browsed[rows]) if state.browsed is not None else sp.csr_matrix((b, n_items), dtype=np.float32)
    knn_rec = comps["repeat_knn"]
    own, neigh = knn_components(knn_rec, rows)
    knn = _canonical(knn_rec.alpha * own + (1 - knn_rec.alpha) * neigh)
    bm25 = _canonical(_times(D, comps["item_item_bm25"].sim))
    cosine = _canonical(_times(D, comps["item_item"].sim))
    content = _canonical(_times(D, comps["content"].sim))
    session = _canonical(_times(comps["session"].feedback(state, rows), comps["session"].sim))
    n_als = int(p.get("als_rank_depth", 100))
    als_items, _ = als_top(comps["als"], rows, max(n_als, p["candidates_als"]), index)

    parts_r, parts_i, parts_s = [], [], []

    def add(r, i, bit):
        parts_r.append(np.asarray(r, dtype=np.int64))
        parts_i.append(np.asarray(i, dtype=np.int64))
        parts_s.append(np.full(len(r), 1 << bit, dtype=np.int64))

    hist = _canonical(P + B)
    add(_row_of(hist), hist.indices, 0)
    add(*_top_pairs(knn, p["candidates_knn"]), 1)
    add(*_top_pairs(bm25, p["candidates_item_item"]), 2)
    k_als = min(p["candidates_als"], als_items.shape[1])
    add(np.repeat(np.arange(b), k_als), als_items[:, :k_als].ravel(), 3)
    add(*_top_pairs(session, p["candidates_session"]), 4)
    pop_top = _popular_top(comps["buy_again"], p["candidates_popular"])
    add(np.repeat(np.arange(b), len(pop_top)), np.tile(pop_top, b), 5)
    if extra is not None and len(extra):
        add(np.repeat(np.arange(b), len(extra)), np.tile(np.asarray(extra), b), 6)
    keys = np.concatenate(parts_r) * n_items + np.concatenate(parts_i)
    uniq, inverse = np.unique(keys, return_inverse=True)
    source = np.zeros(len(uniq), dtype=np.int64)
    np.bitwise_or.at(source, inverse, np.concatenate(parts_s))
    r, i = uniq // n_items, uniq % n_items

    rank_keys = np.repeat(np.arange(b, dtype=np.int64), als_items.shape[1]) * n_items + als_items.ravel()
    rank_vals = np.tile(np.arange(1, als_items.shape[1] + 1, dtype=np.float64), b)
    rank_order = np.argsort(rank_keys, kind="stable")
    rank_keys, rank_vals = rank_keys[rank_order], rank_vals[rank_order]
    at = np.minimum(np.searchsorted(rank_keys, uniq), max(len(rank_keys) - 1, 0))
    rk_als = (
        np.where((len(rank_keys) > 0) & (rank_keys[at] == uniq), rank_vals[at], np.nan)
        if len(rank_keys)
        else np.full(len(uniq), np.nan)
    )
    last_browsed = None
    if state.last_browsed is not None:
        last_browsed = _gather(_canonical(state.last_browsed[rows]), r, i)
    found = {
        "purchases": _gather(P, r, i),
        "last_purchase": _gather(_canonical(state.last_purchase[rows]), r, i),
        "first_purchase": _gather(_canonical(state.first_purchase[rows]), r, i),
        "browsed": _gather(B, r, i),
        "last_browsed": last_browsed,
        "recent_orders": _gather(_canonical(stats.recent_orders[rows]), r, i),
        "interactions": _gather(D, r, i),
        "own_knn": _gather(own, r, i),
        "neighbours_knn": _gather(neigh, r, i),
        "rank_knn": _gather(_rank_matrix(knn), r, i, np.nan),
        "bm25": _gather(bm25, r, i),
        "rank_bm25": _gather(_rank_matrix(bm25), r, i, np.nan),
        "cosine": _gather(cosine, r, i),
        "rank_als": rk_als,
        "content": _gather(content, r, i),
        "session": _gather(session, r, i),
    }
    X = _features(state, comps, stats, rows[r], i, found)
    return Candidates(row=r, item=i, source=source, X=X)


def _features(state: TrainState, comps, stats: _Stats, u: np.ndarray, i: np.ndarray, found: dict) -> np.ndarray:
    """The ranker's input (``FEATURES``, in order) of the pairs (``u[n]``, ``i[n]``), from the values
    of the per-request sparse rows at those pairs (``found``) and the precomputed arrays."""
    now = state.now_days
    p_ui = found["purchases"]
    bought = p_ui > 0
    since_last = np.where(bought, now - found["last_purchase"], np.nan)
    since_first = np.where(bought, now - found["first_purchase"], np.nan)
    b_ui = found["browsed"]
    if found["last_browsed"] is not None:
        since_browsed = np.where(b_ui > 0, now - found["last_browsed"], np.nan)
    else:
        since_browsed = np.full(len(i), np.nan)
    orders = stats.user_orders[u]
    als = comps["als"]
    als_score = np.einsum("ij,ij->i", als.user_factors[u], als.item_factors[i])
    cols = [
        p_ui,
        found["recent_orders"],
        found["interactions"],
        np.where(orders > 0, p_ui / np.maximum(orders, 1), 0.0),
        since_last,
        since_first,
        since_last / np.maximum(stats.user_gap[u], 1.0),
        since_last / np.maximum(stats.item_cycle[i], 1.0),
        b_ui,
        since_browsed,
        found["own_knn"],
        found["neighbours_knn"],
        found["rank_knn"],
        found["bm25"],
        found["rank_bm25"],
        found["cosine"],
        als_score,
        found["rank_als"],
        found["content"],
        found["session"],
        orders,
        stats.user_items[u],
        stats.user_days_since_last[u],
        stats.user_tenure[u],
        stats.user_gap[u],
        stats.user_repeat_share[u],
        stats.item_buyers[i],
        stats.item_recent_buyers[i],
        stats.item_momentum[i],
        comps["trending"].scores[i],
        stats.item_repeat_rate[i],
        stats.item_cycle[i],
        stats.item_age[i],
        stats.item_price[i],
    ]
    X = np.empty((len(i), len(cols)), dtype=np.float32)
    for n, c in enumerate(cols):
        X[:, n] = c
    return X


# --- one row (a request): sparse rows as (columns ascending, values) pairs of arrays -----------------


def _vec(M, row: int) -> tuple[np.ndarray, np.ndarray]:
    """Row ``row`` of M as (columns ascending, values): a view of the CSR arrays of a canonical matrix
    (what the model stores), scipy's row otherwise."""
    if not (sp.isspmatrix_csr(M) and M.has_canonical_format):
        M = _canonical(M[[row]])
        row = 0
    start, end = M.indptr[row], M.indptr[row + 1]
    return M.indices[start:end].astype(np.int64), M.data[start:end]


_NO_VEC = (np.zeros(0, np.int64), np.zeros(0, np.float32))


def _vec_times(cols: np.ndarray, vals: np.ndarray, B: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """A sparse row times B (``_times`` of one row): the rows of B its entries select, scaled and
    summed per column; no stored zeros."""
    if not (sp.isspmatrix_csr(B) and B.has_canonical_format):
        B = _canonical(B)
    dtype = np.result_type(vals.dtype, B.dtype)
    starts, ends = B.indptr[cols], B.indptr[cols + 1]
    lengths = (ends - starts).astype(np.int64)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, np.int64), np.zeros(0, dtype)
    pos = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths - starts, lengths)
    values = np.repeat(vals.astype(dtype), lengths) * B.data[pos].astype(dtype)
    columns = B.indices[pos]
    if len(cols) > 1:  # entries of several rows: sum those of the same column
        order = np.argsort(columns, kind="stable")
        columns, values = sum_sorted_runs(columns[order], values[order])
    keep = values != 0
    return columns[keep].astype(np.int64), values[keep]


def sum_sorted_runs(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each run of equal ``keys`` (sorted, not empty) once, with its ``values`` summed in order: the
    one summation the live and the batch rankings share, so that their scores agree bit for bit."""
    first = np.ones(len(keys), dtype=bool)
    first[1:] = keys[1:] != keys[:-1]
    heads = np.flatnonzero(first)
    return keys[heads], np.add.reduceat(values, heads)


def _vec_add(a: tuple, b: tuple, wa: float = 1.0, wb: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """``wa * a + wb * b`` of two sparse rows (scipy's: each side scaled, then added; no stored zeros)."""
    (ac, av), (bc, bv) = a, b
    av, bv = av * wa if wa != 1.0 else av, bv * wb if wb != 1.0 else bv
    cols = np.union1d(ac, bc)
    out = np.zeros(len(cols), dtype=np.result_type(av.dtype, bv.dtype))
    out[np.searchsorted(cols, ac)] = av
    out[np.searchsorted(cols, bc)] += bv
    keep = out != 0
    return cols[keep], out[keep]


def _vec_top(vec: tuple, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k largest positive entries of a sparse row (``_top_rows`` of one row: ties at the cut,
    the lower columns first), columns ascending."""
    cols, vals = vec
    keep = vals > 0
    if len(vals) > k:
        cut = np.partition(vals, len(vals) - k)[len(vals) - k]
        row_keep = vals >= cut
        if row_keep.sum() > k:
            row_keep &= np.cumsum(row_keep) <= k
        keep &= row_keep
    return cols[keep], vals[keep]


def _vec_rank(vec: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Ranks (1 = best) of a sparse row's positive entries (``_rank_matrix`` of one row)."""
    cols, vals = vec
    pos = vals > 0
    cols, vals = cols[pos], vals[pos]
    ranks = np.empty(len(cols), dtype=np.float32)
    ranks[np.argsort(-vals, kind="stable")] = np.arange(1, len(cols) + 1, dtype=np.float32)
    return cols, ranks


def _vec_get(vec: tuple, items: np.ndarray, missing: float = 0.0) -> np.ndarray:
    """The row's values at ``items`` (``_gather`` of one row), ``missing`` where nothing is stored."""
    cols, vals = vec
    out = np.full(len(items), missing, dtype=np.float64)
    if len(cols) == 0 or len(items) == 0:
        return out
    at = np.minimum(np.searchsorted(cols, items), len(cols) - 1)
    hit = cols[at] == items
    out[hit] = vals[at[hit]]
    return out


def _one_row(state: TrainState, comps, stats: _Stats, row: int, p: dict, *, index=None, extra=None) -> Candidates:
    """``candidate_features`` of one state row, computed on the stored CSR arrays (see there)."""
    P = _vec(state.purchases, row)
    D = _vec(state.interactions, row)
    B = _vec(state.browsed, row) if state.browsed is not None else _NO_VEC
    # the repeat-aware neighbourhood (``knn_components``): people sharing an item, the k most similar
    knn_rec = comps["repeat_knn"]
    own = _vec(knn_rec.vectors, row)
    sims = _vec_times(*own, knn_rec.vectors_t())
    others = sims[0] != row
    top = _vec_top((sims[0][others], sims[1][others]), knn_rec.k)
    total = np.add.reduceat(top[1], [0]) if len(top[1]) else np.zeros(1, dtype=top[1].dtype)
    scale = (1.0 / np.maximum(total, 1e-12)).astype(np.float32)
    neigh = _vec_times(top[0], top[1] * scale[0], knn_rec.vectors)
    knn = _vec_add(own, neigh, knn_rec.alpha, 1 - knn_rec.alpha)
    bm25 = _vec_times(*D, comps["item_item_bm25"].sim)
    cosine = _vec_times(*D, comps["item_item"].sim)
    content = _vec_times(*D, comps["content"].sim)
    session_rec = comps["session"]
    last_cols, last_days = _vec(state.last_purchase, row)
    decay = np.power(0.5, np.maximum(state.now_days - last_days, 0.0) / session_rec.half_life).astype(np.float32)
    session = _vec_times(last_cols, decay, session_rec.sim)
    n_als = int(p.get("als_rank_depth", 100))
    als_items, _ = als_top(comps["als"], np.array([row]), max(n_als, p["candidates_als"]), index)
    als_items = als_items[0]

    k_als = min(p["candidates_als"], len(als_items))
    parts = [
        _vec_add(P, B)[0],
        _vec_top(knn, p["candidates_knn"])[0],
        _vec_top(bm25, p["candidates_item_item"])[0],
        als_items[:k_als].astype(np.int64),
        _vec_top(session, p["candidates_session"])[0],
        _popular_top(comps["buy_again"], p["candidates_popular"]).astype(np.int64),
    ]
    if extra is not None and len(extra):
        parts.append(np.asarray(extra, dtype=np.int64))
    i, inverse = np.unique(np.concatenate(parts), return_inverse=True)
    source = np.zeros(len(i), dtype=np.int64)
    bits = np.repeat(1 << np.arange(len(parts), dtype=np.int64), [len(part) for part in parts])
    np.bitwise_or.at(source, inverse, bits)

    als_order = np.argsort(als_items, kind="stable")
    als_ranks = (np.arange(1, len(als_items) + 1, dtype=np.float64)[als_order], als_items[als_order])
    found = {
        "purchases": _vec_get(P, i),
        "last_purchase": _vec_get((last_cols, last_days), i),
        "first_purchase": _vec_get(_vec(state.first_purchase, row), i),
        "browsed": _vec_get(B, i),
        "last_browsed": _vec_get(_vec(state.last_browsed, row), i) if state.last_browsed is not None else None,
        "recent_orders": _vec_get(_vec(stats.recent_orders, row), i),
        "interactions": _vec_get(D, i),
        "own_knn": _vec_get(own, i),
        "neighbours_knn": _vec_get(neigh, i),
        "rank_knn": _vec_get(_vec_rank(knn), i, np.nan),
        "bm25": _vec_get(bm25, i),
        "rank_bm25": _vec_get(_vec_rank(bm25), i, np.nan),
        "cosine": _vec_get(cosine, i),
        "rank_als": _vec_get((als_ranks[1], als_ranks[0]), i, np.nan),
        "content": _vec_get(content, i),
        "session": _vec_get(session, i),
    }
    u = np.full(len(i), row, dtype=np.int64)
    X = _features(state, comps, stats, u, i, found)
    return Candidates(row=np.zeros(len(i), dtype=np.int64), item=i, source=source, X=X)


def _batch_size(n_items: int) -> int:
    return int(max(16, min(512, 20_000_000 // max(n_items, 1))))


@allow
class Hybrid(Recommender):
    """Learned blend of the other recommenders (see the module docstring)."""

    name = "hybrid"
    requires = COMPONENTS
    # the per-person aggregates (the components hold and drop their own rows), and the heads of the
    # people's rankings when they were precomputed (``engine/ranked.py``; ``ranked`` None otherwise)
    people_fields = (
        *(f"stats.{f}" for f in _Stats.people_fields),
        "ranked.items",
        "ranked.scores",
        "ranked.sources",
        "ranked.total",
    )

    def fit(self, *, data, state, catalog, params, fitted=None) -> None:
        from sklearn.ensemble import HistGradientBoostingClassifier

        fitted = fitted or {}
        p = params["hybrid"]
        missing = [c for c in COMPONENTS if c not in fitted]
        if missing:
            raise ValueError(f"The hybrid needs the recommenders {', '.join(missing)}.")
        self.params = p
        self.threads = int(params["num_threads"])
        self.comps = {c: fitted[c] for c in COMPONENTS}
        self.stats = _Stats(state, catalog, p["recent_days"], data)
        self.fill = fitted["buy_again"].fill
        self.models: list[BoostedTrees] = []
        self.columns = np.ones(len(FEATURES), dtype=bool)
        self.report: dict = {"windows": []}
        X_parts, y_parts = [], []
        rng = np.random.default_rng(params["seed"])
        end = float(data.ts.max()) if len(data) else 0.0
        span_days = (end - float(data.ts.min())) / DAY if len(data) else 0.0
        label_days = min(float(p["label_days"]), span_days / 3.0)
        for w in range(int(p["windows"])):
            stop = end + 1.0 - w * label_days * DAY
            start = stop - label_days * DAY
            X, y = self._window(data, catalog, params, start, stop, rng)
            self.report["windows"].append(
                {"label_days": round(label_days, 2), "rows": len(y), "positives": int(y.sum())}
            )
            if len(y):
                X_parts.append(X)
                y_parts.append(y)
        if not y_parts:
            return
        X, y = np.vstack(X_parts), np.concatenate(y_parts)
        if y.sum() < p["min_positives"] or y.sum() == len(y):
            return  # too little to learn from: the fallback blend answers
        # constant columns (no views in an order history, no prices) carry nothing: left out
        self.columns = np.array([len(np.unique(c[~np.isnan(c)])) > 1 for c in X.T], dtype=bool)
        # ``bags`` models, each on every positive and its own share of the sampled negatives;
        # their probabilities are averaged (steadier than one model on the same rows)
        bags = max(1, int(p["bags"]))
        positives = np.flatnonzero(y == 1)
        shares = np.array_split(rng.permutation(np.flatnonzero(y == 0)), bags)
        fitted_models = []
        for b in range(bags):
            rows = np.sort(np.concatenate([positives, shares[b]]))
            model = HistGradientBoostingClassifier(
                learning_rate=p["learning_rate"],
                max_iter=p["max_iter"],
                max_leaf_nodes=p["max_leaf_nodes"],
                min_samples_leaf=p["min_samples_leaf"],
                l2_regularization=p["l2_regularization"],
                early_stopping=bool(p["early_stopping"]),
                validation_fraction=p["validation_fraction"] if p["early_stopping"] else None,
                n_iter_no_change=p["n_iter_no_change"],
                random_state=params["seed"] + b,
            )
            model.fit(X[rows][:, self.columns], y[rows])
            fitted_models.append(model)
        # stored as their tree arrays (no pickle); predictions are scikit-learn's own
        self.models = [BoostedTrees.from_sklearn(m) for m in fitted_models]
        self.report.update(
            rows=len(y),
            positives=int(y.sum()),
            bags=bags,
            iterations=[int(m.n_iter_) for m in fitted_models],
            validation_loss=[_last(m) for m in fitted_models],
        )

    @property
    def trained(self) -> bool:
        return bool(getattr(self, "models", None))

    def _window(self, data: Interactions, catalog, params, start: float, stop: float, rng):
        """Training rows of one label window [start, stop): features from data before ``start``."""
        from recommendations.engine.bundle import fit_recommenders

        p = params["hybrid"]
        before = data.ts < start
        label = (data.ts >= start) & (data.ts < stop) & (data.kind == PURCHASE)
        if not before.any() or not label.any():
            return np.empty((0, len(FEATURES)), np.float32), np.empty(0, np.int8)
        prefix = data.subset(before)
        # keep the full vocabularies so indexes agree; rows of users/items without history stay empty
        sub_state = build_state(prefix, params=params, now=start)
        comps = fit_recommenders(
            names=COMPONENTS,
            data=prefix,
            state=sub_state,
            catalog=catalog,
            params=params,
            progress=None,
            reuse=self._reusable(),
        )
        stats = _Stats(sub_state, catalog, p["recent_days"], prefix)
        # the ALS stage as it is served: from an index over the window's item factors on large catalogs
        index = None
        if data.n_items >= params.get("ann_min_items", 10_000):
            from recommendations.engine.ann import ItemIndex

            seen = np.flatnonzero(np.bincount(prefix.item, minlength=data.n_items) > 0)
            # a lighter graph than the served one (a training feature, rebuilt for every window)
            index = ItemIndex.build(
                comps["als"].item_factors,
                items=seen,
                ef_construction=40,
                threads=params["num_threads"],
                seed=params["seed"],
            )
        has_history = np.diff(sub_state.interactions.indptr) > 0
        buyers = np.zeros(data.n_users, dtype=bool)
        buyers[data.user[label]] = True
        users = np.flatnonzero(has_history & buyers)
        if len(users) == 0:
            return np.empty((0, len(FEATURES)), np.float32), np.empty(0, np.int8)
        if len(users) > p["max_users"]:
            users = np.sort(rng.choice(users, p["max_users"], replace=False))
        truth = sp.csr_matrix(
            (np.ones(int(label.sum()), dtype=np.float32), (data.user[label], data.item[label])),
            shape=(data.n_users, data.n_items),
        )
        truth.sum_duplicates()
        Xs, ys = [], []
        step = _batch_size(data.n_items)
        for s in range(0, len(users), step):
            rows = users[s : s + step]
            c = candidate_features(sub_state, comps, stats, rows, p, index=index)
            X = c.X
            y = (_gather(_canonical(truth[rows]), c.row, c.item) > 0).astype(np.int8)
            neg = np.flatnonzero(y == 0)
            keep_neg = int(p["negatives_per_user"] * max(1, int(p["bags"])) * len(rows))
            if p["negatives_per_user"] and len(neg) > keep_neg:
                drop = np.setdiff1d(neg, rng.choice(neg, keep_neg, replace=False))
                keep = np.ones(len(y), dtype=bool)
                keep[drop] = False
                X, y = X[keep], y[keep]
            Xs.append(X)
            ys.append(y)
        return np.vstack(Xs), np.concatenate(ys)

    def _reusable(self) -> dict:
        """Fitted components that depend on the catalog only (content): the same in every window."""
        content = self.comps.get("content") if hasattr(self, "comps") else None
        return {"content": content} if content is not None else {}

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The ranker's probability that each candidate is bought next (mean over the bags). Each bag's
        trees are walked in numpy (``BoostedTrees.predict_proba``: scikit-learn's comparisons and sums,
        bit for bit), so a serving worker never imports scikit-learn (decision 0041)."""
        X = X[:, self.columns]
        return sum(m.predict_proba(X) for m in self.models) / len(self.models)

    def rank(self, state, rows: np.ndarray, *, index=None, extra=None) -> tuple[Candidates, np.ndarray]:
        """Candidates of state rows and their scores (the ranker's probability in [0, 1]; the
        fallback blend's score when no ranker could be trained)."""
        c = candidate_features(state, self.comps, self.stats, rows, self.params, index=index, extra=extra)
        if len(c.row) == 0:
            return c, np.zeros(0)
        if self.trained:
            return c, self.predict(c.X)
        knn = self.comps["repeat_knn"]
        own, neigh = c.X[:, FEATURES.index("own_knn")], c.X[:, FEATURES.index("neighbours_knn")]
        return c, (knn.alpha * own + (1 - knn.alpha) * neigh).astype(np.float64)

    def score_users(self, state, rows):
        rows = np.asarray(rows)
        out = np.empty((len(rows), state.n_items), dtype=np.float32)
        out[:] = self.fill[None, :] - 1.0  # non-candidates: popularity order, below every candidate
        step = _batch_size(state.n_items)
        for s in range(0, len(rows), step):
            c, score = self.rank(state, rows[s : s + step], index=getattr(self, "_cache_index", None))
            if not self.trained:
                keep = score > 0
                c.row, c.item, score = c.row[keep], c.item[keep], score[keep]
            out[s + c.row, c.item] = score + 1.0
        return out

    def top_k(self, state, rows, k: int) -> np.ndarray:
        """The k best items per state row, best first: the order of ``score_users`` (candidates by
        score, then everything else by popularity; ties by lower index) without a dense row of
        every item per person. Evaluation ranks thousands of people this way."""
        rows = np.asarray(rows)
        k = min(k, state.n_items)
        out = np.empty((len(rows), k), dtype=np.int64)
        fill = (self.fill - 1.0).astype(np.float32)
        by_fill = np.lexsort((np.arange(state.n_items), -fill))
        step = _batch_size(state.n_items)
        for s in range(0, len(rows), step):
            c, score = self.rank(state, rows[s : s + step], index=getattr(self, "_cache_index", None))
            if not self.trained:
                keep = score > 0
                c.row, c.item, score = c.row[keep], c.item[keep], score[keep]
            value = (score + 1.0).astype(np.float32)  # the values score_users stores
            order = np.lexsort((c.item, -value, c.row))
            row_of, items = c.row[order], c.item[order]
            starts = np.searchsorted(row_of, np.arange(len(rows[s : s + step]) + 1))
            for r in range(len(rows[s : s + step])):
                mine = items[starts[r] : starts[r + 1]][:k]
                if len(mine) < k:
                    others = by_fill[: k + starts[r + 1] - starts[r]]
                    others = others[~np.isin(others, items[starts[r] : starts[r + 1]])]
                    mine = np.concatenate([mine, others[: k - len(mine)]])
                out[s + r] = mine
        return out


def _last(model) -> float | None:
    scores = getattr(model, "validation_score_", None)
    return float(-scores[-1]) if scores is not None and len(scores) else None
