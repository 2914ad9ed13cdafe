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

import numpy as np
import scipy.sparse as sp

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
        if catalog is not None and len(catalog) == n_i:
            self.item_price = catalog.price.astype(np.float32)
        else:
            self.item_price = np.full(n_i, np.nan, dtype=np.float32)

    def drop_users(self, keep: np.ndarray) -> None:
        self.recent_orders = self.recent_orders[keep]
        for name in (
            "user_orders",
            "user_items",
            "user_days_since_last",
            "user_tenure",
            "user_gap",
            "user_repeat_share",
        ):
            setattr(self, name, getattr(self, name)[keep])


def _pick(M: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``M[rows[n], cols[n]]`` as a flat float array (also for no pairs at all)."""
    if len(rows) == 0:
        return np.zeros(0, dtype=np.float64)
    return np.asarray(M[rows, cols]).ravel().astype(np.float64)


def _ranks(scores: np.ndarray) -> np.ndarray:
    """Rank of each item within its row (1 = best)."""
    order = np.argsort(-scores, axis=1, kind="stable")
    ranks = np.empty_like(order)
    rows = np.arange(scores.shape[0])[:, None]
    ranks[rows, order] = np.arange(1, scores.shape[1] + 1)[None, :]
    return ranks.astype(np.float32)


def _top_mask(scores: np.ndarray, k: int) -> np.ndarray:
    k = min(k, scores.shape[1])
    mask = np.zeros(scores.shape, dtype=bool)
    if k <= 0:
        return mask
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    mask[np.arange(scores.shape[0])[:, None], top] = True
    return mask & (scores > 0)


def candidate_features(
    state: TrainState, comps: dict[str, Recommender], stats: _Stats, rows: np.ndarray, p: dict
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidates of state rows and their features: (row position, item index, feature matrix)."""
    now = state.now_days
    P = state.purchases[rows].toarray()
    decayed = state.interactions[rows].toarray()
    browsed = state.browsed[rows].toarray() if state.browsed is not None else np.zeros_like(P)
    own, neigh = comps["repeat_knn"].components(rows)
    knn = comps["repeat_knn"].alpha * own + (1 - comps["repeat_knn"].alpha) * neigh
    bm25 = comps["item_item_bm25"].score_users(state, rows)
    cosine = comps["item_item"].score_users(state, rows)
    als = comps["als"].score_users(state, rows)
    content = comps["content"].score_users(state, rows)
    session = comps["session"].score_users(state, rows)
    trending = comps["trending"].scores.astype(np.float32)

    cand = (P > 0) | (browsed > 0)
    cand |= _top_mask(knn, p["candidates_knn"])
    cand |= _top_mask(bm25, p["candidates_item_item"])
    cand |= _top_mask(als, p["candidates_als"])
    cand |= _top_mask(session, p["candidates_session"])
    pop_top = np.argsort(-comps["buy_again"].fill)[: p["candidates_popular"]]
    cand[:, pop_top] = True
    r, i = np.nonzero(cand)
    u = rows[r]

    last = _pick(state.last_purchase, u, i)
    first = _pick(state.first_purchase, u, i)
    bought = P[r, i] > 0
    since_last = np.where(bought, now - last, np.nan)
    since_first = np.where(bought, now - first, np.nan)
    lb = _pick(state.last_browsed, u, i) if state.last_browsed is not None else np.zeros(len(u))
    since_browsed = np.where(browsed[r, i] > 0, now - lb, np.nan)
    orders = stats.user_orders[u]

    rk_knn = _ranks(knn)[r, i]
    rk_bm25 = _ranks(bm25)[r, i]
    rk_als = _ranks(als)[r, i]
    recent_orders = stats.recent_orders[rows].toarray()
    cols = [
        P[r, i],
        recent_orders[r, i],
        decayed[r, i],
        np.where(orders > 0, P[r, i] / np.maximum(orders, 1), 0.0),
        since_last,
        since_first,
        since_last / np.maximum(stats.user_gap[u], 1.0),
        since_last / np.maximum(stats.item_cycle[i], 1.0),
        browsed[r, i],
        since_browsed,
        own[r, i],
        neigh[r, i],
        rk_knn,
        bm25[r, i],
        rk_bm25,
        cosine[r, i],
        als[r, i],
        rk_als,
        content[r, i],
        session[r, i],
        orders,
        stats.user_items[u],
        stats.user_days_since_last[u],
        stats.user_tenure[u],
        stats.user_gap[u],
        stats.user_repeat_share[u],
        stats.item_buyers[i],
        stats.item_recent_buyers[i],
        stats.item_momentum[i],
        trending[i],
        stats.item_repeat_rate[i],
        stats.item_cycle[i],
        stats.item_age[i],
        stats.item_price[i],
    ]
    X = np.column_stack([np.asarray(c, dtype=np.float32) for c in cols])
    return r, i, X


def _batch_size(n_items: int) -> int:
    return int(max(16, min(1024, 3_000_000 // max(n_items, 1))))


class Hybrid(Recommender):
    """Learned blend of the other recommenders (see the module docstring)."""

    name = "hybrid"
    requires = COMPONENTS

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
        self.model = None
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
        self.models = []
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
            self.models.append(model)
        self.model = self.models[0]
        self.report.update(
            rows=len(y),
            positives=int(y.sum()),
            bags=bags,
            iterations=[int(m.n_iter_) for m in self.models],
            validation_loss=[_last(m) for m in self.models],
        )

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
            names=COMPONENTS, data=prefix, state=sub_state, catalog=catalog, params=params, progress=None
        )
        stats = _Stats(sub_state, catalog, p["recent_days"], prefix)
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
        Xs, ys = [], []
        step = _batch_size(data.n_items)
        for s in range(0, len(users), step):
            rows = users[s : s + step]
            r, i, X = candidate_features(sub_state, comps, stats, rows, p)
            y = (_pick(truth, rows[r], i) > 0).astype(np.int8)
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

    def score_users(self, state, rows):
        rows = np.asarray(rows)
        base = self.comps["repeat_knn"].score_users(state, rows)
        out = np.empty((len(rows), state.n_items), dtype=np.float32)
        out[:] = self.fill[None, :] - 1.0  # non-candidates: popularity order, below every candidate
        if self.model is None:  # fallback blend: the repeat-aware neighbourhood, then popularity
            return np.where(base > 0, base + 1.0, out).astype(np.float32)
        step = _batch_size(state.n_items)
        for s in range(0, len(rows), step):
            chunk = rows[s : s + step]
            r, i, X = candidate_features(state, self.comps, self.stats, chunk, self.params)
            if len(r):
                models = getattr(self, "models", None) or [self.model]
                # one OpenMP thread: pools of idle threads cost more than they bring on 150 rows
                with _openmp().limit(limits=getattr(self, "threads", 1), user_api="openmp"):
                    proba = sum(m.predict_proba(X[:, self.columns])[:, 1] for m in models) / len(models)
                out[s + r, i] = proba + 1.0
        return out

    def drop_users(self, keep):
        self.stats.drop_users(keep)  # the components drop their own rows


_CONTROLLER = None


def _openmp():
    """One threadpoolctl controller per process (building one scans the loaded libraries)."""
    global _CONTROLLER
    if _CONTROLLER is None:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER


def _last(model) -> float | None:
    scores = getattr(model, "validation_score_", None)
    return float(-scores[-1]) if scores is not None and len(scores) else None
