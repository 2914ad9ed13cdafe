"""A trained set of recommenders, as one object the serving side stores, loads and asks.

``train_bundle`` fits every configured recommender on the interactions and catalog;
``ModelBundle.recommend`` answers for a known person (the ``primary`` recommender, the hybrid by
default) and, for an unknown one, falls back in this order: similar items of the current session,
popularity in the person's segments (``context["segments"]``), global popularity.
"""

from __future__ import annotations

import bisect
import time
import warnings
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from recommendations.engine import artifact
from recommendations.engine.ann import ItemIndex
from recommendations.engine.data import Catalog, Interactions
from recommendations.engine.hybrid import Hybrid
from recommendations.engine.params import merge_params
from recommendations.engine.ranked import head, ranked_of
from recommendations.engine.recommenders import (
    ALS,
    BPR,
    BuyAgain,
    Content,
    ItemItemBM25,
    ItemItemCosine,
    Popularity,
    Recommender,
    RepeatKNN,
    Session,
    Trending,
    people_attributes,
)
from recommendations.engine.state import TrainState, build_state

FORMAT_VERSION = 2  # artifacts are npz + JSON (engine/artifact.py); version 1 was a pickle
MAX_EXPLAIN_HISTORY = 200  # the most recent history items considered when explaining a suggestion
PEOPLE_PER_SHARD = 4000  # the per-person part of a stored model is kept in shards of about this many
MAX_SHARDS = 1024


def shard_count(people: int) -> int:
    """Shards of the per-person part for this many people (erasure rewrites only the shards it needs)."""
    return int(min(MAX_SHARDS, max(1, -(-people // PEOPLE_PER_SHARD))))


def shard_of(ids: Iterable, shards: int) -> np.ndarray:
    """The shard of each person id (CRC-32 of the id's UTF-8 bytes, modulo ``shards``): stable
    across processes and releases, so erasure finds a person's shard from the id alone."""
    return np.fromiter((zlib.crc32(str(i).encode()) % shards for i in ids), dtype=np.int64)


class Vocab:
    """Ids to their positions in an id array, without a Python object per id: a binary search over
    the array in sorted order (``order``: the positions sorted by id)."""

    def __init__(self, ids: np.ndarray) -> None:
        self.ids = ids
        self.order = np.argsort(ids, kind="stable").astype(np.int32) if len(ids) else np.zeros(0, np.int32)

    def __len__(self) -> int:
        return len(self.ids)

    def get(self, key, default=None):
        key = str(key)
        ids, order = self.ids, self.order
        at = bisect.bisect_left(range(len(order)), key, key=lambda n: ids[order[n]])
        if at < len(order) and ids[order[at]] == key:
            return int(order[at])
        return default

    def __contains__(self, key) -> bool:
        return self.get(key) is not None

    def __getitem__(self, key) -> int:
        found = self.get(key)
        if found is None:
            raise KeyError(key)
        return found


@dataclass
class Rec:
    item_id: str
    score: float
    recommender: str
    reason: dict = field(default_factory=dict)


RECOMMENDERS = (
    Popularity,
    Trending,
    BuyAgain,
    ALS,
    BPR,
    ItemItemCosine,
    ItemItemBM25,
    Content,
    Session,
    RepeatKNN,
    Hybrid,
)


def _canonical(matrix) -> bool:
    """A CSR matrix with sorted column indexes and no duplicate entries (scipy caches the check)."""
    return matrix.format == "csr" and bool(matrix.has_canonical_format)


def _row(matrix, row: int) -> tuple[np.ndarray, np.ndarray]:
    """(column indexes, values) of one row of a CSR matrix, in stored order (what ``matrix[row]`` holds)."""
    start, end = matrix.indptr[row], matrix.indptr[row + 1]
    return matrix.indices[start:end], matrix.data[start:end]


def _block(matrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray | None:
    """``matrix[rows][:, cols].toarray()`` read straight from the CSR arrays of a canonical matrix
    (scipy's two fancy-indexing steps cost more than the request's arithmetic); None when the matrix
    is not canonical CSR or ``cols`` repeats a column (the caller then asks scipy)."""
    if not _canonical(matrix) or len(np.unique(cols)) != len(cols):
        return None
    out = np.zeros((len(rows), len(cols)), dtype=matrix.dtype)
    starts = matrix.indptr[rows]
    lengths = matrix.indptr[rows + 1] - starts
    total = int(lengths.sum())
    if total == 0 or len(cols) == 0:
        return out
    which = np.repeat(np.arange(len(rows)), lengths)
    pos = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths) + np.repeat(starts, lengths)
    found_cols = matrix.indices[pos]
    order = np.argsort(cols, kind="stable")
    sorted_cols = cols[order]
    at = np.minimum(np.searchsorted(sorted_cols, found_cols), len(cols) - 1)
    hit = sorted_cols[at] == found_cols
    out[which[hit], order[at[hit]]] = matrix.data[pos[hit]]  # canonical: one entry per (row, column)
    return out


def _member(items: np.ndarray, cols: np.ndarray, ascending: bool) -> np.ndarray:
    """``np.isin(items, cols)``; for the ascending columns of a canonical CSR row, one binary search
    (np.isin sorts both sides on every call)."""
    if not ascending:
        return np.isin(items, cols)
    if len(cols) == 0:
        return np.zeros(len(items), dtype=bool)
    at = np.minimum(np.searchsorted(cols, items), len(cols) - 1)
    return cols[at] == items


def _registry() -> dict[str, type[Recommender]]:
    return {cls.name: cls for cls in RECOMMENDERS}


class ModelBundle:
    """Fitted recommenders plus what they need at answer time (item/user vocabularies, history)."""

    def __init__(
        self,
        *,
        state: TrainState,
        recommenders: dict[str, Recommender],
        catalog: Catalog | None,
        params: dict,
        metrics: dict | None = None,
    ) -> None:
        self.state = state
        self.recommenders = recommenders
        self.catalog = catalog
        self.params = params
        self.metrics: dict = metrics or {}
        self.segments: dict[str, tuple[str, np.ndarray]] = {}
        self.ann: ItemIndex | None = None  # approximate top-N of the ALS stage (large catalogs)
        self.format_version = FORMAT_VERSION
        self._reindex()

    # --- vocabularies -----------------------------------------------------------------------------

    def _reindex(self) -> None:
        self.user_index = Vocab(self.state.users)
        self.item_index = Vocab(self.state.items)

    @property
    def items(self) -> np.ndarray:
        return self.state.items

    def known_user(self, user_id) -> bool:
        return user_id is not None and str(user_id) in self.user_index

    def known_item(self, item_id) -> bool:
        return str(item_id) in self.item_index

    # --- scoring ----------------------------------------------------------------------------------

    @property
    def primary(self) -> str:
        name = self.params.get("primary", "buy_again")
        return name if name in self.recommenders else "buy_again"

    def score_users(self, rows: np.ndarray, recommender: str | None = None) -> np.ndarray:
        """Scores of every item for state rows (batch; used by evaluation)."""
        return self.recommenders[recommender or self.primary].score_users(self.state, np.asarray(rows))

    def top_users(self, rows: np.ndarray, k: int, recommender: str | None = None) -> np.ndarray | None:
        """The k best item indexes per state row, from a recommender that ranks without scoring every
        item (the hybrid: its candidates); None when the recommender has no such path."""
        rec = self.recommenders[recommender or self.primary]
        if not hasattr(rec, "top_k"):
            return None
        return rec.top_k(self.state, np.asarray(rows), k)

    def _index_ready(self) -> None:
        """The hybrid's ALS stage answers from the model's index (training, evaluation and serving alike)."""
        for rec in self.recommenders.values():
            if isinstance(rec, Hybrid):
                rec._cache_index = self.ann

    def _session_entries(self, items: list[int]) -> tuple[np.ndarray, np.ndarray] | None:
        """The session's scores from the first of the session, item-item and content similarities the
        model has (``score_session``: the similarity rows of the session's items summed), as a sparse
        row: item indexes ascending and their scores, items without a score left out. Summed on the
        stored CSR arrays instead of a dense score for each of the catalog's items (at 50,000 items
        the dense vector, its mask and its partition were most of an anonymous visitor's request)."""
        from recommendations.engine.hybrid import _vec_times

        for name in ("session", "item_item", "content"):
            rec = self.recommenders.get(name)
            if rec is None:
                continue
            sim = getattr(rec, "sim", None)
            if sim is not None and _canonical(sim):
                weights = np.ones(len(items), dtype=np.float32)
                cols, vals = _vec_times(np.asarray(items, dtype=np.int64), weights, sim)
                return cols, vals.astype(np.float32, copy=False)
            scores = rec.score_session(self.state, np.asarray(items, dtype=np.int64))
            if scores is not None:
                cols = np.flatnonzero(scores)
                return cols, np.asarray(scores[cols], dtype=np.float32)
        return None

    def _top(self, scores: np.ndarray, k: int, banned: np.ndarray) -> np.ndarray:
        scores = np.where(banned, -np.inf, scores.astype(np.float64))
        k = min(k, int(np.isfinite(scores).sum()))
        if k <= 0:
            return np.empty(0, dtype=np.int64)
        top = np.argpartition(-scores, k - 1)[:k]
        return top[np.argsort(-scores[top], kind="stable")]

    def _banned(self, exclude: set[str] | None) -> np.ndarray:
        base = getattr(self, "_cache_out_of_stock", None)
        if base is None or len(base) != self.state.n_items:
            base = np.zeros(self.state.n_items, dtype=bool)
            if self.catalog is not None and len(self.catalog) == self.state.n_items:
                base = ~np.asarray(self.catalog.in_stock, dtype=bool)
            self._cache_out_of_stock = base
        banned = base.copy()
        for sku in exclude or ():
            n = self.item_index.get(str(sku))
            if n is not None:
                banned[n] = True
        return banned

    def _in_order(self, order: np.ndarray, k: int, banned: np.ndarray) -> np.ndarray:
        """The first k items of ``order`` that are not banned (read in growing slices: a request
        looks at the head of a list of every item, not at all of it)."""
        size = max(4 * k, 256)
        while True:
            head = order[:size]
            kept = head[~banned[head]]
            if len(kept) >= k or size >= len(order):
                return kept[:k]
            size *= 4

    def _order_of(self, name: str, scores: np.ndarray) -> np.ndarray:
        """Every item by ``scores`` descending (ties: the lower index), sorted once per model. The
        popularity scores break ties by item id already, so the head of this order is ``_top``'s
        answer without a pass over every item per request."""
        cache = self.__dict__.setdefault("_cache_orders", {})
        order = cache.get(name)
        if order is None or len(order) != len(scores):
            order = cache[name] = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
        return order

    def _reasons(
        self, row: int | None, items: np.ndarray, recommender: str, history: np.ndarray, sources=None
    ) -> list[dict]:
        """Why each item, naming its real driver: the person bought it before, or viewed it (it is
        re-surfaced); else the item of her history most similar to it (by co-purchase, then content:
        "because you bought/viewed X"); else the generator that proposed it (people like her,
        trending, popular)."""
        items = np.asarray(items, dtype=np.int64)
        bought = np.zeros(len(items), dtype=bool)
        viewed = np.zeros(len(items), dtype=bool)
        bought_items: set[int] = set()
        if row is not None and len(items):
            cols, _ = _row(self.state.purchases, row)
            bought_items = set(cols.tolist())
            bought = _member(items, cols, _canonical(self.state.purchases))
            if self.state.browsed is not None:
                browsed = self.state.browsed
                viewed = _member(items, _row(browsed, row)[0], _canonical(browsed)) & ~bought
        anchors = self._nearest(history, items)
        out = []
        for n, (item, was_bought, was_viewed, anchor) in enumerate(zip(items, bought, viewed, anchors, strict=True)):
            if was_bought:
                out.append({"type": "bought", "item_id": str(self.state.items[item])})
            elif was_viewed:
                out.append({"type": "viewed", "item_id": str(self.state.items[item])})
            elif anchor >= 0:
                if row is None:
                    out.append({"type": "similar_to", "item_id": str(self.state.items[anchor])})
                else:
                    kind = "because_bought" if int(anchor) in bought_items else "because_viewed"
                    out.append({"type": kind, "item_id": str(self.state.items[anchor])})
            elif sources is not None and sources[n] & 2:  # the repeat-aware neighbourhood proposed it
                out.append({"type": "similar_shoppers"})
            elif recommender == "trending":
                out.append({"type": "trending"})
            else:
                out.append({"type": "popular"})
        return out

    def _nearest(self, history: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Per item, the history item most similar to it (co-purchase, then content), or -1."""
        nearest = np.full(len(items), -1, dtype=np.int64)
        history = np.asarray(history, dtype=np.int64)[-MAX_EXPLAIN_HISTORY:]
        if len(history) == 0 or len(items) == 0:
            return nearest
        for name in ("item_item_bm25", "item_item", "content"):
            rec = self.recommenders.get(name)
            sim = getattr(rec, "sim", None)
            if sim is None:
                continue
            if (nearest >= 0).all():  # the later similarities only fill what is still missing
                break
            block = _block(sim, history, items)  # history x items
            if block is None:
                block = sim[history][:, items].toarray()
            block[history[:, None] == items[None, :]] = 0.0  # an item does not explain itself
            best = block.argmax(axis=0)
            found = (block.max(axis=0) > 0) & (nearest < 0)
            nearest[found] = history[best[found]]
        return nearest

    def heads_off(self) -> None:
        """Forget the precomputed heads of the rankings: every known shopper is ranked live."""
        for rec in self.recommenders.values():
            if getattr(rec, "ranked", None) is not None:
                rec.ranked = None

    # --- related items: similar (same kind of product) and complementary (bought together) -------

    def top_categories(self) -> np.ndarray:
        cached = getattr(self, "_cache_top", None)
        if cached is None:
            from recommendations.engine.recommenders import top_categories

            if self.catalog is not None and len(self.catalog) == self.state.n_items:
                cached = top_categories(self.catalog.category)
            else:
                cached = np.array([""] * self.state.n_items, dtype=object)
            self._cache_top = cached
        return cached

    def _sim_rows(self, name: str, items: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(item, summed similarity, the anchor contributing most) over the rows of ``items``."""
        rec = self.recommenders.get(name)
        sim = getattr(rec, "sim", None)
        if sim is None or len(items) == 0:
            return np.empty(0, np.int64), np.empty(0), np.empty(0, np.int64)
        cols, vals, anchors = [], [], []
        for a in items:
            c, v = _row(sim, int(a))
            cols.append(c)
            vals.append(v)
            anchors.append(np.full(len(c), a, dtype=np.int64))
        cols, vals, anchors = np.concatenate(cols), np.concatenate(vals).astype(np.float64), np.concatenate(anchors)
        keep = vals > 0
        cols, vals, anchors = cols[keep], vals[keep], anchors[keep]
        if len(cols) == 0:
            return np.empty(0, np.int64), np.empty(0), np.empty(0, np.int64)
        uniq, inverse = np.unique(cols, return_inverse=True)
        total = np.bincount(inverse, weights=vals, minlength=len(uniq))
        order = np.lexsort((-vals, inverse))  # per item, its strongest anchor first
        first = np.ones(len(order), dtype=bool)
        first[1:] = inverse[order][1:] != inverse[order][:-1]
        driver = np.empty(len(uniq), dtype=np.int64)
        driver[inverse[order][first]] = anchors[order][first]
        return uniq.astype(np.int64), total, driver

    def _ordered(self, items, scores, drivers, k, banned, recommender, reason_type) -> list[Rec]:
        ok = ~banned[items]
        items, scores, drivers = items[ok], scores[ok], drivers[ok]
        order = np.lexsort((items, -scores))[:k]
        top = scores[order[0]] if len(order) else 1.0
        return [
            Rec(
                str(self.state.items[items[j]]),
                float(scores[j] / top) if top > 0 else 0.0,
                recommender,
                {"type": reason_type, "item_id": str(self.state.items[drivers[j]])},
            )
            for j in order
        ]

    def similar(self, *, item_id: str, k: int = 10, exclude: set[str] | None = None) -> list[Rec]:
        """The same kind of product: co-purchase and content neighbours (the session blend) within the
        item's top category, content alone where co-purchases are thin (a watch's neighbours are
        watches). Scores are similarities scaled to the best one (1.0)."""
        n = self.item_index.get(str(item_id))
        if n is None:
            return []
        banned = self._banned(exclude)
        banned[n] = True
        tops = self.top_categories()
        if tops[n]:
            banned |= tops != tops[n]
        for name in ("session", "content", "item_item"):
            items, scores, drivers = self._sim_rows(name, np.array([n]))
            if len(items) and (~banned[items]).sum() >= min(k, 3):
                break
        recs = self._ordered(items, scores, drivers, k, banned, "similar", "similar_product")
        if len(recs) < k and name != "content":  # thin co-purchases: content fills the rest
            taken = banned.copy()
            taken[[self.item_index[r.item_id] for r in recs]] = True
            items, scores, drivers = self._sim_rows("content", np.array([n]))
            recs += self._ordered(items, scores, drivers, k - len(recs), taken, "similar", "similar_product")
        return recs

    def complements(
        self, *, items: list[str], k: int = 10, exclude: set[str] | None = None, reason: str = "bought_with"
    ) -> list[Rec]:
        """Items often bought together with ``items`` (co-purchase neighbours, any category), each
        with the anchor item that led to it; the anchors themselves are never suggested."""
        anchors = np.array([self.item_index[s] for s in items if s in self.item_index], dtype=np.int64)
        if len(anchors) == 0:
            return []
        banned = self._banned(exclude)
        banned[anchors] = True
        found, scores, drivers = self._sim_rows("item_item", anchors)
        return self._ordered(found, scores, drivers, k, banned, "complements", reason)

    def for_product(self, *, item_id: str, k: int = 10, exclude: set[str] | None = None) -> list[Rec]:
        """A product page: similar products and complementary ones, alternating."""
        similar = self.similar(item_id=item_id, k=k, exclude=exclude)
        taken = set(exclude or ()) | {r.item_id for r in similar}
        complements = self.complements(items=[item_id], k=k, exclude=taken, reason="bought_with")
        out: list[Rec] = []
        for pair in zip(similar, complements, strict=False):
            out.extend(pair)
        out.extend(similar[len(complements) :] or complements[len(similar) :])
        return out[:k]

    def recommend(
        self,
        *,
        user_id: str | None,
        session_items: list[str] | None = None,
        k: int = 10,
        exclude: set[str] | None = None,
        context: dict | None = None,
    ) -> list[Rec]:
        context = context or {}
        banned = self._banned(exclude)
        out: list[Rec] = []
        session = [self.item_index[s] for s in (session_items or []) if s in self.item_index]
        row = self.user_index.get(str(user_id)) if user_id is not None else None
        if row is not None:
            name = self.primary
            # the person's items by their last purchase or view, oldest first
            cols, days = self._last_seen(row)
            order = np.argsort(-days, kind="stable")
            history = cols[order][::-1]  # the newest are the ones kept for explaining
            ranker = self.recommenders[name]
            ranked = ranked_of(ranker, self.state.n_users) if isinstance(ranker, Hybrid) else None
            found = head(ranked, row, k, banned) if ranked is not None else None
            if found is not None:  # her ranking's head, precomputed by the refresh (decision 0058)
                top, top_scores, sources = found
            elif isinstance(ranker, Hybrid):
                # two stages: bounded candidates from the generators, the learned ranker scores them
                cands, proba = ranker.rank(self.state, np.array([row]), index=self.ann)
                ok = ~banned[cands.item]
                items, proba, sources = cands.item[ok], proba[ok], cands.source[ok]
                order = np.lexsort((items, -proba))[:k]
                top, sources, top_scores = items[order], sources[order], proba[order]
            else:
                scores = self.score_users(np.array([row]), name)[0]
                top, sources = self._top(scores, k, banned), None
                top_scores = scores[top]
            reasons = self._reasons(row, top, name, history, sources)
            for item, score, reason in zip(top, top_scores, reasons, strict=True):
                out.append(Rec(str(self.state.items[item]), float(score), name, reason))
        else:
            banned[session] = True  # what the session already holds is not suggested back
            found = self._session_entries(session) if session else None
            if found is not None:
                cols, vals = found
                ok = (vals > 0) & ~banned[cols]
                cols, vals = cols[ok], vals[ok]
                order = np.lexsort((cols, -vals.astype(np.float64)))[:k]  # best first, ties: lower index
                top, top_scores = cols[order], vals[order]
                reasons = self._reasons(None, top, "session", np.array(session))
                for item, score, reason in zip(top, top_scores, reasons, strict=True):
                    out.append(Rec(str(self.state.items[item]), float(score), "session", reason))
        self._fill(out, k, banned, context)
        return out[:k]

    def _last_seen(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """(items, epoch day) of the person's last purchase or view of each item: the entries of
        ``last_purchase[row].maximum(last_browsed[row])``, columns ascending, read from the CSR arrays."""
        purchased, browsed = self.state.last_purchase, self.state.last_browsed
        if browsed is None:
            return _row(purchased, row)
        if not (_canonical(purchased) and _canonical(browsed)):
            last = purchased[row].maximum(browsed[row]).tocsr()
            return last.indices, last.data
        pc, pd = _row(purchased, row)
        bc, bd = _row(browsed, row)
        cols = np.union1d(pc, bc)
        a = np.zeros(len(cols), dtype=np.result_type(pd.dtype, bd.dtype))
        b = np.zeros(len(cols), dtype=a.dtype)
        a[np.searchsorted(cols, pc)] = pd
        b[np.searchsorted(cols, bc)] = bd
        days = np.maximum(a, b)
        keep = days != 0  # scipy's sparse maximum stores no zeros
        return cols[keep].astype(pc.dtype, copy=False), days[keep]

    def _fill(self, out: list[Rec], k: int, banned: np.ndarray, context: dict) -> None:
        """Segment popularity (context["segments"], in order), then global popularity."""
        if len(out) >= k:
            return
        taken = banned.copy()
        for rec in out:
            taken[self.item_index[rec.item_id]] = True
        for slug in context.get("segments") or []:
            if slug not in self.segments or len(out) >= k:
                continue
            for rec in self.popular(k=k - len(out), segment=slug, _banned=taken):
                out.append(rec)
                taken[self.item_index[rec.item_id]] = True
        if len(out) < k:
            out.extend(self.popular(k=k - len(out), _banned=taken))

    def popular(self, *, k: int = 10, segment: str | None = None, _banned: np.ndarray | None = None) -> list[Rec]:
        banned = self._banned(None) if _banned is None else _banned
        if segment is not None:
            if segment not in self.segments:
                return []
            name, scores = self.segments[segment]
            reason = {"type": "popular_in_segment", "segment": segment, "name": name}
            return [
                Rec(str(self.state.items[i]), float(scores[i]), "segment_popularity", dict(reason))
                for i in self._top(scores, k, banned | ~(scores > 0))
            ]
        scores = self.recommenders["popularity"].scores
        top = self._in_order(self._order_of("popularity", scores), k, banned)
        return [Rec(str(self.state.items[i]), float(scores[i]), "popularity", {"type": "popular"}) for i in top]

    def trending(self, *, k: int = 10) -> list[Rec]:
        rec = self.recommenders.get("trending")
        if rec is None:
            return self.popular(k=k)
        scores = rec.scores
        return [
            Rec(str(self.state.items[i]), float(scores[i]), "trending", {"type": "trending"})
            for i in self._top(scores, k, self._banned(None))
        ]

    def segment_popularity_set(self, *, slug: str, name: str, user_ids: list[str]) -> None:
        """Popularity among a segment's members (distinct buyers, then distinct interactors)."""
        rows = np.array(
            sorted({self.user_index[u] for u in map(str, user_ids) if u in self.user_index}), dtype=np.int64
        )
        if len(rows) == 0:
            self.segments.pop(slug, None)
            return
        buyers = np.asarray((self.state.purchases[rows] > 0).sum(axis=0)).ravel().astype(np.float64)
        touched = np.asarray((self.state.interactions[rows] > 0).sum(axis=0)).ravel().astype(np.float64)
        scores = buyers + touched / (touched.max(initial=0.0) + 1.0)
        self.segments[slug] = (name, scores)

    # --- erasure and storage ----------------------------------------------------------------------

    def _people(self) -> list[tuple[str, object, str]]:
        """(key, owner, attribute) of every per-person array of the model: rows are the state's people."""
        out = [(f"state.{attr}", owner, attr) for owner, attr in people_attributes(self.state)]
        for name, rec in self.recommenders.items():
            for owner, attr in people_attributes(rec):
                path = attr if owner is rec else f"{_path_to(rec, owner)}.{attr}"
                out.append((f"{name}.{path}", owner, attr))
        return out

    def _people_set(self, values: dict[str, object]) -> None:
        for key, owner, attr in self._people():
            setattr(owner, attr, values[key])
        for rec in self.recommenders.values():
            rec.people_changed()
        self._reindex()

    def forget_users(self, user_ids: list[str]) -> None:
        """Erase people: their rows of every per-person array (matrices, factors, aggregates) go."""
        gone = {str(u) for u in user_ids if str(u) in self.user_index}
        if not gone:
            return
        keep = np.array([str(u) not in gone for u in self.state.users], dtype=bool)
        self._people_set({key: getattr(owner, attr)[keep] for key, owner, attr in self._people()})

    # --- storage: the item part and the per-person part apart ---------------------------------------

    def _tree(self) -> dict:
        return {
            "state": self.state,
            "catalog": _serving_catalog(self.catalog),
            "params": self.params,
            "metrics": self.metrics,
            "segments": {slug: [name, scores] for slug, (name, scores) in self.segments.items()},
            "ann": getattr(self, "ann", None),
        }

    def to_parts(self) -> tuple[bytes, int, list[tuple[int, int, bytes]]]:
        """(the item part, shards, [(shard, people, bytes)]): the model without its per-person rows, and
        those rows in shards by ``shard_of`` (people sorted by id within a shard). Erasure rewrites
        the shards of the people it erases and nothing else; ``from_parts`` puts them together."""
        for rec in self.recommenders.values():
            getattr(rec, "sim", None)  # derived item matrices (the session blend) are stored, not rebuilt
        fields = self._people()
        users = np.asarray(self.state.users).astype(str)
        shards = shard_count(len(users))
        shard = shard_of(users, shards)
        order = np.lexsort((users, shard)) if len(users) else np.zeros(0, np.int64)
        bounds = np.concatenate([[0], np.cumsum(np.bincount(shard, minlength=shards))])
        saved = {key: getattr(owner, attr) for key, owner, attr in fields}
        try:
            for key, owner, attr in fields:
                setattr(owner, attr, saved[key][:0])
            tree = {**self._tree(), "people": {"shards": shards, "fields": sorted(saved)}}
            item = artifact.dump(tree, self.recommenders)
        finally:
            for key, owner, attr in fields:
                setattr(owner, attr, saved[key])
        parts = []
        for n in range(shards):
            rows = order[bounds[n] : bounds[n + 1]]
            if len(rows):
                parts.append((n, len(rows), artifact.dump({"people": {k: v[rows] for k, v in saved.items()}}, {})))
        return item, shards, parts

    @staticmethod
    def people_concat(shards: list[bytes]) -> bytes:
        """The shards of a per-person part as one archive (rows in the order of ``shards``)."""
        parts = [artifact.load(blob)[0]["people"] for blob in shards]
        return artifact.dump({"people": _concat(parts)}, {})

    @staticmethod
    def people_of(shard: bytes) -> np.ndarray:
        """The person ids a shard holds (``state.users``)."""
        return np.asarray(artifact.load(shard)[0]["people"]["state.users"])

    @staticmethod
    def shard_forget(shard: bytes, user_ids: set[str]) -> tuple[bytes, int, int]:
        """A shard without ``user_ids``: (bytes, people left, people removed)."""
        people = artifact.load(shard)[0]["people"]
        keep = np.array([str(u) not in user_ids for u in people["state.users"]], dtype=bool)
        kept = {key: value[keep] for key, value in people.items()}
        return artifact.dump({"people": kept}, {}), int(keep.sum()), int((~keep).sum())

    @classmethod
    def from_parts(cls, item: bytes | str, people: bytes | str | list[bytes]) -> ModelBundle:
        """A bundle from its item part and its per-person part: bytes, a list of shards' bytes, or
        paths of files (then their arrays are memory-mapped: read-only, shared between processes)."""
        tree, recommenders = artifact.load_path(item) if isinstance(item, str) else artifact.load(item)
        bundle = cls._from_tree(tree, recommenders)
        if isinstance(people, list) and not people:  # nobody: the item part's empty rows
            values = {key: getattr(owner, attr) for key, owner, attr in bundle._people()}
        elif isinstance(people, list):
            values = _concat([artifact.load(blob)[0]["people"] for blob in people])
        else:
            values = (artifact.load_path(people) if isinstance(people, str) else artifact.load(people))[0]["people"]
        meta = tree.get("people") or {}
        missing = set(meta.get("fields") or ()) - set(values)
        if missing:
            raise ValueError(f"The per-person part lacks {sorted(missing)[:3]}.")
        bundle._people_set({key: values[key] for key, _, _ in bundle._people()})
        return bundle

    def to_bytes(self) -> bytes:
        """The whole bundle as arrays and JSON (one npz archive; ``engine/artifact.py``), never a pickle."""
        for rec in self.recommenders.values():
            getattr(rec, "sim", None)
        return artifact.dump(self._tree(), self.recommenders)

    @staticmethod
    def users_of(blob: bytes) -> set[str]:
        """The user ids of a stored bundle, read from its archive without loading the rest."""
        return {str(u) for u in artifact.load_field(blob, "state", "users")}

    @classmethod
    def from_bytes(cls, blob: bytes) -> ModelBundle:
        """Read an artifact: only arrays, JSON and the engine's own classes; ValueError otherwise."""
        tree, recommenders = artifact.load(blob)
        if tree.get("people"):
            raise ValueError("This is the item part of a model: read it with its people (from_parts).")
        return cls._from_tree(tree, recommenders)

    @classmethod
    def _from_tree(cls, tree: dict, recommenders: dict) -> ModelBundle:
        if not isinstance(tree.get("state"), TrainState):
            raise ValueError("Not a recommendations model bundle.")
        bundle = cls(
            state=tree["state"],
            recommenders=recommenders,
            catalog=tree.get("catalog"),
            params=tree.get("params") or {},
            metrics=tree.get("metrics") or {},
        )
        bundle.segments = {slug: (name, scores) for slug, (name, scores) in (tree.get("segments") or {}).items()}
        bundle.ann = tree.get("ann")
        bundle._index_ready()
        return bundle


def _path_to(rec, owner) -> str:
    """The attribute path from a recommender to the nested object holding some of its people's rows."""
    for path in getattr(rec, "people_fields", ()):
        head = path.rpartition(".")[0]
        target = rec
        for part in head.split(".") if head else ():
            target = getattr(target, part)
        if target is owner:
            return head
    raise ValueError("not a holder of people rows")


def _concat(parts: list[dict]) -> dict:
    """Per-person fields of several shards, rows one after the other."""
    out = {}
    for key in parts[0] if parts else ():
        values = [p[key] for p in parts]
        if sp.issparse(values[0]):
            out[key] = sp.vstack(values, format="csr")
        else:
            out[key] = np.concatenate(values)
    return out


def _serving_catalog(catalog: Catalog | None) -> Catalog | None:
    """What answers read of the catalog (stock, categories, prices): texts were for fitting content."""
    if catalog is None:
        return None
    return Catalog(items=catalog.items, category=catalog.category, price=catalog.price, in_stock=catalog.in_stock)


def fit_recommenders(
    *,
    names,
    data: Interactions,
    state: TrainState,
    catalog: Catalog | None,
    params: dict,
    progress: Callable[[float, str], None] | None,
    seconds: dict | None = None,
    reuse: dict[str, Recommender] | None = None,
) -> dict[str, Recommender]:
    """Fit the named recommenders, and those they need first, in dependency order."""
    registry = _registry()
    order: list[str] = []

    def visit(name: str) -> None:
        if name in order:
            return
        if name not in registry:
            raise ValueError(f"Unknown recommender {name!r}; known: {', '.join(sorted(registry))}.")
        for dep in getattr(registry[name], "requires", ()):
            visit(dep)
        order.append(name)

    for name in names:
        visit(name)
    fitted: dict[str, Recommender] = {}
    for n, name in enumerate(order):
        if progress:
            progress(n / len(order), f"fitting {name}")
        t0 = time.monotonic()
        if reuse and name in reuse:  # fitted already on what it depends on (the catalog)
            fitted[name] = reuse[name]
            continue
        rec = registry[name]()
        with threadpool_limits(limits=params["num_threads"]), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Method expects CSR input")  # implicit, harmless
            rec.fit(data=data, state=state, catalog=catalog, params=params, fitted=fitted)
        fitted[name] = rec
        if seconds is not None:
            seconds[name] = round(time.monotonic() - t0, 3)
    return fitted


def train_bundle(
    *,
    data: Interactions,
    catalog: Catalog | None,
    params: dict,
    now: float,
    progress: Callable[[float, str], None] | None = None,
) -> ModelBundle:
    """Fit every configured recommender; ``metrics`` carries the training seconds of each."""
    params = merge_params(params)
    report = progress or (lambda fraction, message: None)
    started = time.monotonic()
    report(0.0, "building matrices")
    state = build_state(data, params=params, now=now)
    if catalog is not None:
        catalog = catalog.aligned(state.items)
        if data.price is not None:  # prices of the training data only (the catalog's are today's)
            catalog = catalog.with_prices(data.last_prices(before=now + 1.0))
    names = list(params["recommenders"])
    for required in ("popularity", "buy_again"):
        if required not in names:
            names.insert(0, required)
    seconds: dict[str, float] = {}

    def step(fraction: float, message: str) -> None:
        report(0.05 + 0.9 * fraction, message)

    recommenders = fit_recommenders(
        names=names, data=data, state=state, catalog=catalog, params=params, progress=step, seconds=seconds
    )
    bundle = ModelBundle(state=state, recommenders=recommenders, catalog=catalog, params=params)
    als = recommenders.get("als")
    if als is not None and state.n_items >= params.get("ann_min_items", 10_000):
        t0 = time.monotonic()
        report(0.96, "building the ALS index")
        bundle.ann = ItemIndex.build(als.item_factors, threads=params["num_threads"], seed=params["seed"])
        bundle._index_ready()
        seconds["ann_index"] = round(time.monotonic() - t0, 3)
    bundle.metrics = {
        "train_seconds": round(time.monotonic() - started, 3),
        "fit_seconds": seconds,
        "users": int(state.n_users),
        "items": int(state.n_items),
        "interactions": len(data),
    }
    report(1.0, "trained")
    return bundle
