"""Recommenders behind one interface.

Each one is fitted on the interactions (``data``), the shared ``TrainState`` matrices and the
catalog, then scores every item for known users (``score_users``), for a session of items
(``score_session``; also an item's neighbours). Higher scores rank first; ``-inf`` never.
Recommenders keep per-user state only where they must (factors, neighbourhood vectors) and name it
in ``people_fields``: rows are people in the state's order; erasure drops rows, storage keeps those
fields apart from the item part of a model (``ModelBundle.to_parts``).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recommendations.engine.artifact import allow
from recommendations.engine.data import Catalog, Interactions
from recommendations.engine.state import DAY, TrainState


class Recommender:
    name = "base"
    personal = True  # scores depend on the user (False: the same list for everyone)
    people_fields: tuple[str, ...] = ()  # attributes (dotted paths) whose rows are the state's people

    def fit(
        self,
        *,
        data: Interactions,
        state: TrainState,
        catalog: Catalog | None,
        params: dict,
        fitted: dict | None = None,
    ) -> None:
        raise NotImplementedError

    def score_users(self, state: TrainState, rows: np.ndarray) -> np.ndarray:
        """Scores, shape (len(rows), n_items), float32."""
        raise NotImplementedError

    def score_session(
        self, state: TrainState, items: np.ndarray, weights: np.ndarray | None = None
    ) -> np.ndarray | None:
        """Scores of every item for a set of item indexes, or None when this recommender cannot."""
        return None

    def drop_users(self, keep: np.ndarray) -> None:
        """Forget the per-user state of rows where ``keep`` is False (the state drops its own rows)."""
        for owner, attr in people_attributes(self):
            setattr(owner, attr, getattr(owner, attr)[keep])
        self.people_changed()

    def people_changed(self) -> None:
        """The rows of ``people_fields`` were replaced (erasure, loading): drop what was derived from them."""


def people_attributes(obj) -> list[tuple[object, str]]:
    """(owner, attribute) of each of ``obj.people_fields`` (a dotted path reaches a nested object)."""
    out = []
    for path in getattr(obj, "people_fields", ()):
        owner, _, attr = path.rpartition(".")
        target = obj
        for part in owner.split(".") if owner else ():
            target = getattr(target, part, None)
        if target is not None and getattr(target, attr, None) is not None:
            out.append((target, attr))
    return out


def id_tiebreak(items: np.ndarray) -> np.ndarray:
    """A value in [0, 0.5) that is larger for smaller item ids: ties break by item id, ascending."""
    order = np.argsort(items.astype(str), kind="stable")
    rank = np.empty(len(items), dtype=np.float64)
    rank[order] = np.arange(len(items))
    return 0.5 * (1.0 - rank / max(len(items), 1))


@allow
class Popularity(Recommender):
    """Items by distinct buyers (then distinct people who interacted at all), ties by item id."""

    name = "popularity"
    personal = False

    def fit(self, *, data, state, catalog, params, fitted=None) -> None:
        interactors = np.asarray((state.interactions > 0).sum(axis=0)).ravel().astype(np.float64)
        scale = max(interactors.max(initial=0.0), 1.0) + 1.0
        self.scores = (state.buyers.astype(np.float64) + (interactors + id_tiebreak(state.items)) / scale).astype(
            np.float64
        )

    def score_users(self, state, rows):
        return np.broadcast_to(self.scores.astype(np.float32), (len(rows), len(self.scores))).copy()

    def score_session(self, state, items, weights=None):
        return self.scores.astype(np.float32)


@allow
class Trending(Recommender):
    """Items by recent interest: each person counts once per item, decayed by the age of their last
    interaction with it (half-life ``trending_half_life_days``), purchases weighing most."""

    name = "trending"
    personal = False

    def fit(self, *, data, state, catalog, params, fitted=None) -> None:
        kinds = params["kind_weights"]
        by_kind = np.array([kinds["view"], kinds["cart"], kinds["purchase"]], dtype=np.float64)
        age = np.maximum(state.now_days - data.ts / DAY, 0.0)
        decay = np.power(0.5, age / float(params["trending_half_life_days"]))
        value = by_kind[data.kind] * decay
        # one person counts once per item: their strongest (most recent, strongest kind) interaction
        key = data.user.astype(np.int64) * max(data.n_items, 1) + data.item
        uniq, inv = np.unique(key, return_inverse=True)
        best = np.zeros(len(uniq))
        np.maximum.at(best, inv, value)
        scores = np.bincount(uniq % max(data.n_items, 1), weights=best, minlength=data.n_items)
        pop = Popularity()
        pop.fit(data=data, state=state, catalog=catalog, params=params)
        self.scores = scores + 1e-6 * pop.scores / max(pop.scores.max(initial=0.0), 1.0)

    score_users = Popularity.score_users
    score_session = Popularity.score_session


@allow
class BuyAgain(Recommender):
    """The person's own purchased items by number of orders, then popularity (the protocol's baseline)."""

    name = "buy_again"

    def fit(self, *, data, state, catalog, params, fitted=None) -> None:
        pop = Popularity()
        pop.fit(data=data, state=state, catalog=catalog, params=params)
        self.fill = (pop.scores / (pop.scores.max(initial=0.0) + 1.0)).astype(np.float32)  # in [0, 1)

    def score_users(self, state, rows):
        counts = state.purchases[rows].toarray()
        return counts + self.fill[None, :]


# --- collaborative filtering (implicit) -------------------------------------------------------------


def bm25_weight(X: sp.csr_matrix, k1: float = 1.2, b: float = 0.75) -> sp.csr_matrix:
    """BM25 weighting of a users x items matrix (items as terms, users as documents)."""
    X = sp.coo_matrix(X, dtype=np.float32)
    n_users = X.shape[0]
    df = np.bincount(X.col, minlength=X.shape[1])
    idf = np.log(n_users / (1.0 + df)).astype(np.float32)
    idf = np.maximum(idf, 0.0)
    row_sums = np.bincount(X.row, weights=X.data, minlength=n_users)
    avg = row_sums.mean() if n_users else 1.0
    length_norm = (1.0 - b) + b * row_sums / max(avg, 1e-9)
    data = X.data * (k1 + 1.0) / (k1 * length_norm[X.row] + X.data) * idf[X.col]
    return sp.csr_matrix((data.astype(np.float32), (X.row, X.col)), shape=X.shape)


def feedback_matrix(state: TrainState, weighting: str) -> sp.csr_matrix:
    X = state.interactions.astype(np.float32)
    if weighting == "bm25":
        return bm25_weight(X)
    if weighting == "log":
        X = X.copy()
        X.data = np.log1p(X.data)
        return X
    return X


def _implicit():
    # imported lazily: implicit checks the BLAS thread count at import
    import implicit.cpu.als
    import implicit.cpu.bpr
    import implicit.nearest_neighbours

    return implicit


class _Factors(Recommender):
    """Scores = user factors . item factors; sessions score by cosine of item factors."""

    people_fields = ("user_factors",)

    def score_users(self, state, rows):
        return self.user_factors[rows] @ self.item_factors.T

    def _fit_factors(self, model, X) -> None:
        """Fit an implicit factor model and keep its factors as float32 arrays."""
        model.fit(X, show_progress=False)
        self.user_factors = np.asarray(model.user_factors, dtype=np.float32)
        self.item_factors = np.asarray(model.item_factors, dtype=np.float32)

    def score_session(self, state, items, weights=None):
        if len(items) == 0:
            return None
        normed = self.item_factors / (np.linalg.norm(self.item_factors, axis=1, keepdims=True) + 1e-9)
        w = np.ones(len(items), dtype=np.float32) if weights is None else np.asarray(weights, dtype=np.float32)
        return (w @ normed[items]) @ normed.T


@allow
class ALS(_Factors):
    """implicit's alternating least squares on the (weighted, decayed) feedback matrix."""

    name = "als"

    def fit(self, *, data, state, catalog, params, fitted=None) -> None:
        p = params["als"]
        X = feedback_matrix(state, p["weighting"])
        model = _implicit().cpu.als.AlternatingLeastSquares(
            factors=p["factors"],
            regularization=p["regularization"],
            alpha=p["alpha"],
            iterations=p["iterations"],
            num_threads=params["num_threads"],
            random_state=params["seed"],
        )
        self._fit_factors(model, X)


@allow
class BPR(_Factors):
    """implicit's Bayesian personalised ranking (item bias in the last factor column)."""

    name = "bpr"

    def fit(self, *, data, state, catalog, params, fitted=None) -> None:
        p = params["bpr"]
        X = (state.interactions > 0).astype(np.float32).tocsr()
        model = _implicit().cpu.bpr.BayesianPersonalizedRanking(
            factors=p["factors"],
            learning_rate=p["learning_rate"],
            regularization=p["regularization"],
            iterations=p["iterations"],
            num_threads=params["num_threads"],
            random_state=params["seed"],
        )
        self._fit_factors(model, X)


class _Neighbours(Recommender):
    """Item-item: a user's feedback row times an item x item similarity (implicit's recommend)."""

    def score_users(self, state, rows):
        return np.asarray((self.feedback(state, rows) @ self.sim).todense(), dtype=np.float32)

    def feedback(self, state, rows):
        return state.interactions[rows]

    def score_session(self, state, items, weights=None):
        if len(items) == 0:
            return None
        w = np.ones(len(items), dtype=np.float32) if weights is None else np.asarray(weights, dtype=np.float32)
        return np.asarray(self.sim[items].T @ w, dtype=np.float32).ravel()

    def similarity(self, a: int, b: int) -> float:
        return float(self.sim[a, b]) if a != b else 0.0


@allow
class ItemItemCosine(_Neighbours):
    name = "item_item"

    def fit(self, *, data, state, catalog, params, fitted=None) -> None:
        p = params["item_item"]
        model = _implicit().nearest_neighbours.CosineRecommender(K=p["neighbours"], num_threads=params["num_threads"])
        model.fit(state.interactions.astype(np.float32), show_progress=False)
        self.sim = sp.csr_matrix(model.similarity, dtype=np.float32)


@allow
class ItemItemBM25(_Neighbours):
    name = "item_item_bm25"

    def fit(self, *, data, state, catalog, params, fitted=None) -> None:
        p = params["item_item"]
        model = _implicit().nearest_neighbours.BM25Recommender(
            K=p["neighbours"], K1=p["bm25_k1"], B=p["bm25_b"], num_threads=params["num_threads"]
        )
        model.fit(state.interactions.astype(np.float32), show_progress=False)
        self.sim = sp.csr_matrix(model.similarity, dtype=np.float32)


# --- content -------------------------------------------------------------------------------------


def price_bands(price: np.ndarray, bands: int = 5) -> np.ndarray:
    """Band index of each price by quantiles of the known prices (-1 when unknown)."""
    out = np.full(len(price), -1, dtype=np.int64)
    known = np.isfinite(price) & (price > 0)
    if known.sum() >= bands:
        edges = np.quantile(price[known], np.linspace(0, 1, bands + 1)[1:-1])
        out[known] = np.searchsorted(edges, price[known], side="right")
    return out


@allow
class Content(_Neighbours):
    """TF-IDF of title and description, plus category path, brand and price band tokens (scikit-learn);
    items similar by cosine, the k nearest kept."""

    name = "content"

    def fit(self, *, data, state, catalog, params, fitted=None) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.preprocessing import normalize

        p = params["content"]
        n = state.n_items
        if catalog is None:
            self.sim = sp.csr_matrix((n, n), dtype=np.float32)
            return
        text = [f"{t} {d}".strip() for t, d in zip(catalog.title, catalog.description, strict=True)]
        bands = price_bands(catalog.price, p["price_bands"])
        meta = []
        for c, b, band in zip(catalog.category, catalog.brand, bands, strict=True):
            tokens = []
            parts = [x.strip() for x in str(c).replace(">", "/").split("/") if x.strip()]
            tokens += ["cat_" + "_".join("/".join(parts[: d + 1]).split()) for d in range(len(parts))]
            if b:
                tokens.append("brand_" + "_".join(str(b).split()))
            if band >= 0:
                tokens.append(f"priceband_{band}")
            meta.append(" ".join(tokens))
        blocks = []
        if any(text):
            vec = TfidfVectorizer(
                min_df=1,
                max_df=0.5,
                sublinear_tf=True,
                token_pattern=r"(?u)\b[^\W\d_]{2,}\b",  # noqa: S106
            )
            try:
                blocks.append(normalize(vec.fit_transform(text)))
            except ValueError:  # no usable words
                pass
        if any(meta):
            mvec = TfidfVectorizer(token_pattern=r"\S+", lowercase=False)  # noqa: S106
            try:
                blocks.append(p["meta_weight"] * normalize(mvec.fit_transform(meta)))
            except ValueError:
                pass
        if not blocks:
            self.sim = sp.csr_matrix((n, n), dtype=np.float32)
            return
        X = normalize(sp.hstack(blocks).tocsr()).astype(np.float32)
        self.sim = content_neighbours(X, top_categories(catalog.category), int(p["neighbours"]))


def top_categories(categories) -> np.ndarray:
    """The top level of each category path ("Shoes > Running" -> "Shoes"; "" when none)."""
    return np.array([str(c).replace("/", ">").split(">")[0].strip().lower() for c in categories], dtype=object)


def content_neighbours(X: sp.csr_matrix, groups: np.ndarray, k: int) -> sp.csr_matrix:
    """The k most similar items of each item by cosine of its (normalised) rows of ``X``, among the
    items of its own top category (a watch's neighbours are watches); exact, in dense blocks of at
    most a few million similarities, so a large catalog never builds an n x n matrix."""
    n = X.shape[0]
    rows, cols, vals = [], [], []
    _, group_of = np.unique(groups.astype(str), return_inverse=True)
    for g in range(group_of.max() + 1 if n else 0):
        idx = np.flatnonzero(group_of == g)
        kk = min(k, len(idx) - 1)
        if kk <= 0:
            continue
        Xg = X[idx]
        XgT = Xg.T.tocsc()
        step = max(1, 4_000_000 // len(idx))
        for start in range(0, len(idx), step):
            block = (Xg[start : start + step] @ XgT).toarray()
            span = np.arange(block.shape[0])
            block[span, start + span] = 0.0
            top = np.argpartition(-block, kk - 1, axis=1)[:, :kk]
            v = np.take_along_axis(block, top, axis=1)
            keep = v > 0
            rows.append(idx[start + np.repeat(span, kk).reshape(-1, kk)[keep]])
            cols.append(idx[top[keep]])
            vals.append(v[keep])
    if not rows:
        return sp.csr_matrix((n, n), dtype=np.float32)
    out = sp.csr_matrix(
        (np.concatenate(vals).astype(np.float32), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n, n),
        dtype=np.float32,
    )
    out.sum_duplicates()
    return out


@allow
class Session(_Neighbours):
    """Similar items for a session (or a person's recent items): co-purchase (item-item cosine)
    blended with content similarity; falls back to whichever exists."""

    name = "session"
    requires = ("item_item", "content")

    def fit(self, *, data, state, catalog, params, fitted=None) -> None:
        fitted = fitted or {}
        weight = params["session"]["content_weight"]
        # the blend is computed when first used (training) and stored with the model, so that a
        # serving process maps it from the artifact instead of building its own copy
        self.parts = [(1.0 - weight, fitted.get("item_item")), (weight, fitted.get("content"))]
        self.n_items = state.n_items
        self.blend = None
        self.half_life = float(params["session"]["recent_half_life_days"])

    @property
    def sim(self) -> sp.csr_matrix:
        blend = getattr(self, "blend", None)
        if blend is None:
            n = self.n_items
            blend = sp.csr_matrix((n, n), dtype=np.float32)
            for w, rec in self.parts:
                if rec is None or not rec.sim.nnz:
                    continue
                s = rec.sim.tocsr().copy()
                s.setdiag(0)
                s.eliminate_zeros()
                top = np.asarray(s.max(axis=1).todense()).ravel()
                scale = np.where(top > 0, 1.0 / np.maximum(top, 1e-9), 0.0).astype(np.float32)
                blend = blend + w * sp.diags(scale) @ s
            blend = blend.tocsr().astype(np.float32)
            blend.sum_duplicates()
            self.blend = blend
        return blend

    def feedback(self, state, rows):
        X = state.last_purchase[rows]
        X.data = np.power(0.5, np.maximum(state.now_days - X.data, 0.0) / self.half_life).astype(np.float32)
        return X


# --- repeat-aware neighbourhood (TIFU-KNN style) ---------------------------------------------------


@allow
class RepeatKNN(Recommender):
    """Recency-weighted personal frequency blended with the same vectors of the most similar people
    (in the spirit of TIFU-KNN): ``alpha * own + (1 - alpha) * mean of k neighbours``."""

    name = "repeat_knn"
    people_fields = ("vectors",)

    def fit(self, *, data, state, catalog, params, fitted=None) -> None:
        from sklearn.preprocessing import normalize

        p = params["repeat_knn"]
        self.alpha = float(p["alpha"])
        self.k = int(p["neighbours"])
        self.max_item_people = int(p.get("max_item_people", 0) or 0)
        kinds = params["kind_weights"]
        by_kind = np.array([kinds["view"], kinds["cart"], kinds["purchase"]], dtype=np.float64)
        age = np.maximum(state.now_days - data.ts / DAY, 0.0)
        w = by_kind[data.kind] * np.power(0.5, age / float(p["half_life_days"]))
        V = sp.csr_matrix((w.astype(np.float32), (data.user, data.item)), shape=(data.n_users, data.n_items))
        V.sum_duplicates()
        self.vectors = normalize(V).astype(np.float32).tocsr()

    def vectors_t(self) -> sp.csr_matrix:
        """items x people (the people who have each item; of a very popular item only the
        ``max_item_people`` with the largest weight), built once per process: a person's
        neighbours are looked for among the people sharing an item with them, and a best seller
        shared with a large part of the shop says little about who is similar."""
        cached = getattr(self, "_cache_vt", None)
        if cached is None or cached.shape[1] != self.vectors.shape[0]:
            vt = self.vectors.T.tocsr()
            vt.sum_duplicates()
            cap = int(getattr(self, "max_item_people", 0) or 0)
            lengths = np.diff(vt.indptr)
            if cap and (lengths > cap).any():
                keep = np.ones(vt.nnz, dtype=bool)
                for item in np.flatnonzero(lengths > cap):
                    start, end = vt.indptr[item], vt.indptr[item + 1]
                    order = np.argsort(-vt.data[start:end], kind="stable")
                    keep[start + order[cap:]] = False
                rows = np.repeat(np.arange(vt.shape[0]), lengths)[keep]
                vt = sp.csr_matrix((vt.data[keep], (rows, vt.indices[keep])), shape=vt.shape)
                vt.sum_duplicates()
            cached = self._cache_vt = vt
        return cached

    def components(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(own vector, mean vector of the k most similar people) for state rows, dense."""
        own = self.vectors[rows]
        sims = (own @ self.vectors.T).toarray()
        sims[np.arange(len(rows)), rows] = 0.0
        k = min(self.k, sims.shape[1] - 1)
        if k > 0:
            cut = np.partition(sims, -k, axis=1)[:, -k][:, None]
            sims = np.where((sims >= cut) & (sims > 0), sims, 0.0)
        total = sims.sum(axis=1, keepdims=True)
        sims = np.divide(sims, total, out=np.zeros_like(sims), where=total > 0)
        neighbours = (sp.csr_matrix(sims.astype(np.float32)) @ self.vectors).toarray()
        return own.toarray(), neighbours

    def score_users(self, state, rows):
        own, neighbours = self.components(rows)
        return np.asarray(self.alpha * own + (1.0 - self.alpha) * neighbours, dtype=np.float32)

    def people_changed(self) -> None:
        self._cache_vt = None
