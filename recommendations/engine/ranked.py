"""Known shoppers' rankings computed for many people at once, and kept with the model.

``rank_many`` is the hybrid's serving ranking (``Hybrid.rank`` of one state row: ``_one_row`` and
the ranker's trees) for a chunk of people at once: every sparse row of the chunk is one set of flat
arrays (row, column, value) and every step of ``_one_row`` is done once for the chunk with the same
arithmetic, in the same order, so that each person's candidates, features and scores are bit for
bit what a request computes for her alone (the sums of similarity rows are ``np.add.reduceat``
over the same runs of values in the same order; every other step is element by element).

``precompute`` runs it over a trained model's people (the most recently active first, within a
time and a people bound: ranking everyone does not fit the refresh on two cores) and keeps, per
person, the head of her ranking (``Ranked``: the ``size`` best candidates, best first, with score
and generator bits, and how many candidates she had). Serving reads the head instead of ranking
(``ModelBundle.recommend``): when what the request excludes leaves at least ``k`` of it, or the
head holds every candidate, the answer is the live path's; otherwise (and for a person left out,
or a model changed since, e.g. by an erasure) the live path ranks. Decision 0058.
"""

from __future__ import annotations

import os
import time

import numpy as np
import scipy.sparse as sp

from recommendations.engine.artifact import allow
from recommendations.engine.hybrid import FEATURES, Candidates, _features, _popular_top, sum_sorted_runs

RANKED_SIZE = 32  # the candidates kept per person by default (a home answer asks the model for 2 k = 20)
CHUNK = 512  # people ranked together
PREDICT_BLOCK = 2048  # candidate rows walked down every tree together


@allow
class Ranked:
    """The head of each person's ranking (rows: the state's people, at precompute time).

    ``items`` (people x size, int32: item indexes, best first; -1 past the end), ``scores`` (the
    ranker's score, float64, as ``Hybrid.rank`` returns it), ``sources`` (generator bits, uint8),
    ``total`` (int32: how many candidates the person had, -1 when she was not ranked; the head is
    all of them when ``total <= size``); ``people``: the number of people the model had when they
    were computed (an erasure removes rows of every person's neighbourhood: the heads no longer
    hold then)."""

    def __init__(self, items, scores, sources, total, people: int) -> None:
        self.items = items
        self.scores = scores
        self.sources = sources
        self.total = total
        self.people = int(people)

    @property
    def size(self) -> int:
        return int(self.items.shape[1]) if self.items.ndim == 2 else 0


# --- flat sparse rows of a chunk: (row, column, value), by row then column ascending ---------------


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Positions ``starts[n] .. starts[n] + lengths[n]``, one range after the other."""
    lengths = lengths.astype(np.int64, copy=False)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    return np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths - starts, lengths)


def _bits(n: int) -> int:
    return max(int(n).bit_length(), 1)


def _desc32(vals: np.ndarray) -> np.ndarray:
    """float32 values as uint64 keys whose ascending order is the values' descending order."""
    raw = np.ascontiguousarray(vals, dtype=np.float32).view(np.uint32)
    ascending = np.where(raw & np.uint32(0x80000000), ~raw, raw | np.uint32(0x80000000))
    return (~ascending).astype(np.uint64)


def _by_row_desc(rid: np.ndarray, vals: np.ndarray, b: int) -> np.ndarray:
    """The positions of the entries by row, then value descending, then position (``lexsort((-vals,
    rid))``, stable): one sort of packed integer keys (several times faster than a lexsort)."""
    n = len(rid)
    rb, ib = _bits(b), _bits(n)
    if vals.dtype != np.float32 or rb + 32 + ib > 64:
        return np.lexsort((-vals, rid))
    key = (rid.astype(np.uint64) << np.uint64(32 + ib)) | (_desc32(vals) << np.uint64(ib))
    key |= np.arange(n, dtype=np.uint64)
    key.sort()
    return (key & np.uint64((1 << ib) - 1)).astype(np.int64)


def _stable_by(key: np.ndarray) -> np.ndarray:
    """``np.argsort(key, kind="stable")`` of non-negative int64 keys, by one sort of packed keys."""
    n = len(key)
    ib = _bits(n)
    top = int(key.max()) if n else 0
    if _bits(top) + ib > 63:
        return np.argsort(key, kind="stable")
    packed = (key << ib) | np.arange(n, dtype=np.int64)
    packed.sort()
    return packed & ((1 << ib) - 1)


def _rows(M: sp.csr_matrix, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows ``rows`` of a canonical CSR matrix as (chunk row, column int64, value) (``_vec``)."""
    starts = M.indptr[rows].astype(np.int64)
    lengths = M.indptr[rows + 1].astype(np.int64) - starts
    pos = _ranges(starts, lengths)
    rid = np.repeat(np.arange(len(rows), dtype=np.int64), lengths)
    return rid, M.indices[pos].astype(np.int64), M.data[pos]


def _times(v: tuple, B: sp.csr_matrix, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row of ``v`` times B (``_vec_times`` of each row): the rows of B its entries select,
    scaled, then per (row, column) the values in the order of the row's entries, summed with
    ``np.add.reduceat`` as ``_vec_times`` sums them; no stored zeros."""
    rid, cols, vals = v
    dtype = np.result_type(vals.dtype, B.dtype)
    starts = B.indptr[cols].astype(np.int64)
    lengths = B.indptr[cols + 1].astype(np.int64) - starts
    pos = _ranges(starts, lengths)
    if len(pos) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, dtype)
    values = np.repeat(vals.astype(dtype), lengths) * B.data[pos].astype(dtype)
    key = np.repeat(rid, lengths) * width + B.indices[pos]
    order = _stable_by(key)
    key, values = sum_sorted_runs(key[order], values[order])
    keep = values != 0
    key, values = key[keep], values[keep]
    return key // width, key % width, values


def _distinct(keys: np.ndarray) -> np.ndarray:
    """The distinct values, ascending (``np.unique``, by one in-place sort)."""
    keys.sort()
    if len(keys) < 2:
        return keys
    first = np.ones(len(keys), dtype=bool)
    first[1:] = keys[1:] != keys[:-1]
    return keys[first]


def _add(a: tuple, b: tuple, width: int, wa: float = 1.0, wb: float = 1.0) -> tuple:
    """``wa * a + wb * b`` per row (``_vec_add``)."""
    ar, ac, av = a
    br, bc, bv = b
    av, bv = av * wa if wa != 1.0 else av, bv * wb if wb != 1.0 else bv
    ak, bk = ar * width + ac, br * width + bc
    keys = _distinct(np.concatenate([ak, bk]))
    out = np.zeros(len(keys), dtype=np.result_type(av.dtype, bv.dtype))
    out[np.searchsorted(keys, ak)] = av
    out[np.searchsorted(keys, bk)] += bv
    keep = out != 0
    keys, out = keys[keep], out[keep]
    return keys // width, keys % width, out


def _starts(rid: np.ndarray, b: int) -> np.ndarray:
    return np.searchsorted(rid, np.arange(b + 1))


def _top(v: tuple, k: int, b: int, order: np.ndarray | None = None) -> tuple:
    """Per row, the k largest positive entries (``_vec_top``: the cut is the row's k-th largest
    value; ties at the cut, the lower columns first), columns ascending. ``order``: the entries'
    ``_by_row_desc`` when the caller has it already (``_rank`` of the same rows sorts the same way)."""
    rid, cols, vals = v
    keep = vals > 0
    bounds = _starts(rid, b)
    lengths = np.diff(bounds)
    long = lengths > k
    if long.any():
        if order is None:
            order = _by_row_desc(rid, vals, b)  # by row, largest first
        cut = np.full(b, -np.inf, dtype=vals.dtype)
        cut[long] = vals[order[bounds[:-1][long] + k - 1]]
        in_long = long[rid]
        row_keep = ~in_long | (vals >= cut[rid])
        counted = np.cumsum(row_keep & in_long)
        before = np.concatenate([[0], counted])[bounds[:-1]]
        kept = np.diff(np.concatenate([[0], counted])[bounds])
        over = long & (kept > k)
        if over.any():
            over_entry = over[rid]
            rank_in_row = counted - before[rid]
            row_keep &= ~over_entry | (rank_in_row <= k)
        keep &= row_keep
    return rid[keep], cols[keep], vals[keep]


def _rank(v: tuple, b: int | None = None, order: np.ndarray | None = None) -> tuple:
    """Ranks (1 = best, ties: the lower column) of each row's positive entries (``_vec_rank``).
    With ``order``, the ``_by_row_desc`` of every entry of the ``b`` rows (``_top`` sorted them
    already): a positive entry's rank is how many positive entries of its row come before it there,
    plus one (no second sort)."""
    rid, cols, vals = v
    pos = vals > 0
    if order is not None:
        counted = np.cumsum(pos[order])  # positives up to each place of the order
        before = np.concatenate([[0], counted])[_starts(rid, b)[rid[order]]]  # ... before its row
        ranks = np.empty(len(order), dtype=np.float32)
        ranks[order] = (counted - before).astype(np.float32)
        return rid[pos], cols[pos], ranks[pos]
    rid, cols, vals = rid[pos], cols[pos], vals[pos]
    b = int(rid[-1]) + 1 if len(rid) else 0
    order = _by_row_desc(rid, vals, b)
    bounds = _starts(rid, b)
    ranks = np.empty(len(cols), dtype=np.float32)
    within = np.arange(len(order), dtype=np.int64) - bounds[rid[order]]
    ranks[order] = (within + 1).astype(np.float32)
    return rid, cols, ranks


def _get(v: tuple, r: np.ndarray, i: np.ndarray, width: int, missing: float = 0.0) -> np.ndarray:
    """The rows' values at the pairs (r[n], i[n]) (``_vec_get``), ``missing`` where nothing is stored."""
    rid, cols, vals = v
    out = np.full(len(i), missing, dtype=np.float64)
    if len(cols) == 0 or len(i) == 0:
        return out
    keys = rid * width + cols
    q = r * width + i
    at = np.minimum(np.searchsorted(keys, q), len(keys) - 1)
    hit = keys[at] == q
    out[hit] = vals[at[hit]]
    return out


def _als_items(als, rows: np.ndarray, n: int, index) -> tuple[np.ndarray, np.ndarray]:
    """``als_top(als, [row], n, index)[0]`` of each row, flat: (chunk row, item), each row's items
    best first. The index answers the chunk in one query (each query's answer is its own); a row it
    cannot answer, and every row without an index, goes through ``als_top`` alone, as a request
    does (a product of one row and of many rows may differ in the last bit)."""
    from recommendations.engine.hybrid import als_top

    per_row: list[np.ndarray | None] = [None] * len(rows)
    alone = range(len(rows))
    if index is not None and len(rows):
        found = index.query(als.user_factors[rows], min(n, als.item_factors.shape[0]))
        if found is not None:
            items = found[0]
            answered = items[:, 0] >= 0 if items.shape[1] else np.ones(len(rows), dtype=bool)
            for r in np.flatnonzero(answered):
                per_row[r] = items[r]
            alone = np.flatnonzero(~answered)
    for r in alone:
        per_row[r] = als_top(als, rows[r : r + 1], n, index)[0][0]
    lengths = np.array([len(x) for x in per_row], dtype=np.int64)
    rid = np.repeat(np.arange(len(rows), dtype=np.int64), lengths)
    flat = np.concatenate(per_row).astype(np.int64) if len(rows) else np.zeros(0, np.int64)
    return rid, flat


def candidates_many(state, comps, stats, rows: np.ndarray, p: dict, *, index=None) -> Candidates:
    """``_one_row`` of every row of ``rows`` (state rows), as one ``Candidates`` whose ``row`` is the
    position in ``rows``: per person the same candidates (items ascending), sources and features."""
    rows = np.asarray(rows, dtype=np.int64)
    b, n_items, n_users = len(rows), state.n_items, state.n_users
    P = _rows(state.purchases, rows)
    D = _rows(state.interactions, rows)
    if state.browsed is not None:
        B = _rows(state.browsed, rows)
    else:
        B = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
    knn_rec = comps["repeat_knn"]
    own = _rows(knn_rec.vectors, rows)
    sims = _times(own, knn_rec.vectors_t(), n_users)
    others = sims[1] != rows[sims[0]]
    top = _top(tuple(a[others] for a in sims), knn_rec.k, b)
    bounds = _starts(top[0], b)
    nonempty = np.flatnonzero(np.diff(bounds) > 0)
    total = np.zeros(b, dtype=top[2].dtype)
    if len(nonempty):
        total[nonempty] = np.add.reduceat(top[2], bounds[:-1][nonempty])
    scale = (1.0 / np.maximum(total, 1e-12)).astype(np.float32)
    neigh = _times((top[0], top[1], top[2] * scale[top[0]]), knn_rec.vectors, n_items)
    knn = _add(own, neigh, n_items, knn_rec.alpha, 1 - knn_rec.alpha)
    bm25 = _times(D, comps["item_item_bm25"].sim, n_items)
    cosine = _times(D, comps["item_item"].sim, n_items)
    content = _times(D, comps["content"].sim, n_items)
    session_rec = comps["session"]
    last = _rows(state.last_purchase, rows)
    decay = np.power(0.5, np.maximum(state.now_days - last[2], 0.0) / session_rec.half_life).astype(np.float32)
    session = _times((last[0], last[1], decay), session_rec.sim, n_items)
    n_als = int(p.get("als_rank_depth", 100))
    als_rid, als_items = _als_items(comps["als"], rows, max(n_als, p["candidates_als"]), index)
    als_bounds = _starts(als_rid, b)
    als_at = np.arange(len(als_rid), dtype=np.int64) - als_bounds[als_rid]  # 0 = the best

    pop = _popular_top(comps["buy_again"], p["candidates_popular"]).astype(np.int64)
    hist = _add(P, B, n_items)
    first_als = als_at < p["candidates_als"]
    # the knn and bm25 rows are cut to their heads and ranked: one sort of each serves both
    knn_order, bm25_order = _by_row_desc(knn[0], knn[2], b), _by_row_desc(bm25[0], bm25[2], b)
    parts = [
        (hist[0], hist[1]),
        _top(knn, p["candidates_knn"], b, knn_order)[:2],
        _top(bm25, p["candidates_item_item"], b, bm25_order)[:2],
        (als_rid[first_als], als_items[first_als]),
        _top(session, p["candidates_session"], b)[:2],
        (np.repeat(np.arange(b, dtype=np.int64), len(pop)), np.tile(pop, b)),
    ]
    # each (row, item) once, with one bit per generator that proposed it: one sort of keys that
    # carry the generator's number in their low bits
    packed = np.concatenate([((r * n_items + i) << 3) | n for n, (r, i) in enumerate(parts)])
    packed.sort()
    first = np.ones(len(packed), dtype=bool)
    first[1:] = (packed[1:] >> 3) != (packed[:-1] >> 3)
    heads = np.flatnonzero(first)
    source = np.bitwise_or.reduceat(np.left_shift(1, packed & 7), heads) if len(packed) else np.zeros(0, np.int64)
    uniq = packed[heads] >> 3
    r, i = uniq // n_items, uniq % n_items

    als_keys = als_rid * n_items + als_items
    order = np.argsort(als_keys, kind="stable")
    als_ranks = (als_rid[order], als_items[order], (als_at[order] + 1).astype(np.float64))

    def get(v, missing=0.0):
        return _get(v, r, i, n_items, missing)

    found = {
        "purchases": get(P),
        "last_purchase": get(last),
        "first_purchase": get(_rows(state.first_purchase, rows)),
        "browsed": get(B),
        "last_browsed": get(_rows(state.last_browsed, rows)) if state.last_browsed is not None else None,
        "recent_orders": get(_rows(stats.recent_orders, rows)),
        "interactions": get(D),
        "own_knn": get(own),
        "neighbours_knn": get(neigh),
        "rank_knn": get(_rank(knn, b, knn_order), np.nan),
        "bm25": get(bm25),
        "rank_bm25": get(_rank(bm25, b, bm25_order), np.nan),
        "cosine": get(cosine),
        "rank_als": get(als_ranks, np.nan),
        "content": get(content),
        "session": get(session),
    }
    X = _features(state, comps, stats, rows[r], i, found)
    return Candidates(row=r, item=i, source=source, X=X)


def _canonical_inputs(state, comps) -> bool:
    """Whether every matrix the chunked path reads is canonical CSR (what a trained model stores;
    ``_vec`` would ask scipy for the row otherwise)."""
    matrices = [
        state.purchases,
        state.interactions,
        state.first_purchase,
        state.last_purchase,
        state.browsed,
        state.last_browsed,
        comps["repeat_knn"].vectors,
        comps["repeat_knn"].vectors_t(),
        comps["item_item_bm25"].sim,
        comps["item_item"].sim,
        comps["content"].sim,
        comps["session"].sim,
    ]
    return all(M is None or (sp.isspmatrix_csr(M) and M.has_canonical_format) for M in matrices)


def _tree_predictors(trees):
    """scikit-learn's compiled predictors of a stored ranker's trees (the refresh process has
    scikit-learn; a web worker never imports it), or None when this scikit-learn has no such API."""
    try:
        from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor

        empty = np.zeros((0, 8), dtype=np.uint32)
        return [TreePredictor(np.ascontiguousarray(nodes), empty, empty) for nodes in trees.nodes]
    except Exception:  # a private API: the numpy walk answers instead
        return None


def _proba(trees, predictors, X: np.ndarray) -> np.ndarray:
    """``BoostedTrees.predict_proba(X)``, bit for bit, with scikit-learn's compiled tree walk: the
    same comparisons (``x <= threshold``, missing values where the node says), each tree's leaf
    value added onto the baseline in the same order, the same logistic function."""
    X = np.ascontiguousarray(X, dtype=np.float64)
    raw = np.full(len(X), trees.baseline)
    if len(X) and predictors:
        cats, f_idx = np.zeros((0, 8), dtype=np.uint32), np.zeros(X.shape[1], dtype=np.uint32)
        for start in range(0, len(X), PREDICT_BLOCK):  # a block of rows stays in the cache for every tree
            block, out = X[start : start + PREDICT_BLOCK], raw[start : start + PREDICT_BLOCK]
            for predictor in predictors:
                out += predictor.predict(block, cats, f_idx, 1)
    return 1.0 / (1.0 + np.exp(-raw))


def _predict(hybrid, X: np.ndarray) -> np.ndarray:
    """``Hybrid.predict(X)`` (the mean of the bags' probabilities, summed as it sums them)."""
    predictors = [_tree_predictors(m) for m in hybrid.models]
    if any(p is None for p in predictors):
        return hybrid.predict(X)
    X = X[:, hybrid.columns]
    return sum(_proba(m, p, X) for m, p in zip(hybrid.models, predictors, strict=True)) / len(hybrid.models)


def rank_many(hybrid, state, rows: np.ndarray, *, index=None) -> tuple[Candidates, np.ndarray]:
    """``Hybrid.rank(state, [row])`` of each row, for many rows at once: (candidates with ``row``
    the position in ``rows``, their scores), each person's values those of her own request."""
    c = candidates_many(state, hybrid.comps, hybrid.stats, rows, hybrid.params, index=index)
    if len(c.row) == 0:
        return c, np.zeros(0)
    if hybrid.trained:
        # the ranker's arithmetic is per candidate row: many people's rows in one call are the same
        return c, _predict(hybrid, c.X)
    knn = hybrid.comps["repeat_knn"]
    own, neigh = c.X[:, FEATURES.index("own_knn")], c.X[:, FEATURES.index("neighbours_knn")]
    return c, (knn.alpha * own + (1 - knn.alpha) * neigh).astype(np.float64)


def _head_of_chunk(hybrid, state, rows: np.ndarray, size: int, index):
    """(rows, items, scores, sources, total) of the heads of a chunk of people."""
    c, proba = rank_many(hybrid, state, rows, index=index)
    order = np.lexsort((c.item, -proba, c.row))  # as a request orders them: score, then the lower item
    row_of = c.row[order]
    bounds = _starts(row_of, len(rows))
    at = np.arange(len(order), dtype=np.int64) - bounds[row_of]
    head = at < size
    picked = order[head]
    return rows, (row_of[head], at[head]), c.item[picked], proba[picked], c.source[picked], np.diff(bounds)


def prepare(bundle) -> bool:
    """Build, in the calling thread, what the chunked path and the evaluation both cache on first use
    (the transposed neighbourhood vectors, the popular items), so that ``precompute`` on another
    thread and the evaluation only read it. Whether the bundle's people can be ranked in chunks."""
    from recommendations.engine.hybrid import Hybrid

    hybrid = bundle.recommenders.get(bundle.primary)
    if not isinstance(hybrid, Hybrid) or not hasattr(hybrid, "comps"):
        return False
    if not _canonical_inputs(bundle.state, hybrid.comps):
        return False
    _popular_top(hybrid.comps["buy_again"], hybrid.params["candidates_popular"])
    return True


def precompute(
    bundle,
    *,
    size: int | None = None,
    people: int | None = None,
    seconds: float | None = None,
    chunk: int = CHUNK,
    threads: int | None = None,
) -> Ranked | None:
    """The heads of known people's rankings by the bundle's hybrid, kept on the hybrid
    (``hybrid.ranked``). People are ranked most recently active first, at most ``people`` of them
    and for at most ``seconds`` (0: no bound; by default the model's ``params["ranked"]``); a person
    left out has ``total`` -1 and is ranked live. Chunks are ranked on ``threads`` threads (numpy,
    hnswlib and scikit-learn's tree walk release the GIL), each writing its own rows. None, and
    nothing kept, when the primary is not a hybrid, its inputs are not what the chunked path reads,
    or ``size`` is 0."""
    from concurrent.futures import ThreadPoolExecutor

    from recommendations.engine.hybrid import Hybrid

    hybrid = bundle.recommenders.get(bundle.primary)
    if not isinstance(hybrid, Hybrid) or not hasattr(hybrid, "comps"):
        return None
    hybrid.ranked = None
    wanted = bundle.params.get("ranked") or {}
    size = int(wanted.get("size", RANKED_SIZE) if size is None else size)
    people = int(wanted.get("people", 0) if people is None else people)
    seconds = float(wanted.get("seconds", 0) if seconds is None else seconds)
    threads = int(wanted.get("threads", 0) if threads is None else threads) or (os.cpu_count() or 1)
    state = bundle.state
    if size <= 0 or not _canonical_inputs(state, hybrid.comps):  # (also builds what is cached on first use)
        return None
    _popular_top(hybrid.comps["buy_again"], hybrid.params["candidates_popular"])
    n = state.n_users
    items = np.full((n, size), -1, dtype=np.int32)
    scores = np.zeros((n, size), dtype=np.float64)
    sources = np.zeros((n, size), dtype=np.uint8)
    total = np.full(n, -1, dtype=np.int32)
    order = np.argsort(-np.asarray(state.user_last, dtype=np.float64), kind="stable")  # the latest first
    if people > 0:
        order = order[:people]
    deadline = time.monotonic() + seconds if seconds > 0 else None

    def one(start: int) -> None:
        if deadline is not None and time.monotonic() > deadline:
            return
        rows = np.sort(order[start : start + chunk]).astype(np.int64)
        rows, (r, at), found, proba, source, counts = _head_of_chunk(hybrid, state, rows, size, bundle.ann)
        items[rows[r], at] = found
        scores[rows[r], at] = proba
        sources[rows[r], at] = source
        total[rows] = counts

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for _ in pool.map(one, range(0, len(order), chunk)):
            pass
    ranked = Ranked(items, scores, sources, total, people=n)
    hybrid.ranked = ranked
    return ranked


def ranked_of(hybrid, n_users: int) -> Ranked | None:
    """The hybrid's precomputed heads when they still describe the model's people (an erasure since
    the refresh removed rows, and with them part of everyone's neighbourhood: then None)."""
    ranked = getattr(hybrid, "ranked", None)
    if ranked is None or ranked.people != n_users or len(ranked.total) != n_users or ranked.size == 0:
        return None
    return ranked


def head(ranked: Ranked, row: int, k: int, banned: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The first k candidates of a person's ranking that ``banned`` allows, as a request ranks them
    (items, scores, sources), from her precomputed head; None when the head cannot say (fewer than k
    allowed in it while she has more candidates than it holds): the live path ranks then."""
    total = int(ranked.total[row])
    if total < 0:  # not ranked by the refresh (its time or people bound)
        return None
    n = min(total, ranked.size)
    items = ranked.items[row, :n].astype(np.int64)
    allowed = np.flatnonzero(~banned[items])
    if len(allowed) < k and total > ranked.size:
        return None
    take = allowed[:k]
    return items[take], ranked.scores[row, take], ranked.sources[row, take].astype(np.int64)
