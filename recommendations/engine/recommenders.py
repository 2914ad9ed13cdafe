"""Recommenders behind one interface.

Each one is fitted on the interactions (``data``), the shared ``TrainState`` matrices and the
catalog, then scores every item for known users (``score_users``), for a session of items
(``score_session``; also an item's neighbours). Higher scores rank first; ``-inf`` never.
Recommenders keep per-user state only where they must (factors), and drop it in ``drop_users``.
"""

from __future__ import annotations

import numpy as np

from recommendations.engine.data import PURCHASE, Catalog, Interactions
from recommendations.engine.state import DAY, TrainState


class Recommender:
    name = "base"
    personal = True  # scores depend on the user (False: the same list for everyone)

    def fit(self, *, data: Interactions, state: TrainState, catalog: Catalog | None, params: dict) -> None:
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


def id_tiebreak(items: np.ndarray) -> np.ndarray:
    """A value in [0, 0.5) that is larger for smaller item ids: ties break by item id, ascending."""
    order = np.argsort(items.astype(str), kind="stable")
    rank = np.empty(len(items), dtype=np.float64)
    rank[order] = np.arange(len(items))
    return 0.5 * (1.0 - rank / max(len(items), 1))


class Popularity(Recommender):
    """Items by distinct buyers (then distinct people who interacted at all), ties by item id."""

    name = "popularity"
    personal = False

    def fit(self, *, data, state, catalog, params) -> None:
        interactors = np.asarray((state.interactions > 0).sum(axis=0)).ravel().astype(np.float64)
        scale = max(interactors.max(initial=0.0), 1.0) + 1.0
        self.scores = (state.buyers.astype(np.float64) + (interactors + id_tiebreak(state.items)) / scale).astype(
            np.float64
        )

    def score_users(self, state, rows):
        return np.broadcast_to(self.scores.astype(np.float32), (len(rows), len(self.scores))).copy()

    def score_session(self, state, items, weights=None):
        return self.scores.astype(np.float32)


class Trending(Recommender):
    """Items by recent interest: each person counts once per item, decayed by the age of their last
    interaction with it (half-life ``trending_half_life_days``), purchases weighing most."""

    name = "trending"
    personal = False

    def fit(self, *, data, state, catalog, params) -> None:
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


class BuyAgain(Recommender):
    """The person's own purchased items by number of orders, then popularity (the protocol's baseline)."""

    name = "buy_again"

    def fit(self, *, data, state, catalog, params) -> None:
        pop = Popularity()
        pop.fit(data=data, state=state, catalog=catalog, params=params)
        self.fill = (pop.scores / (pop.scores.max(initial=0.0) + 1.0)).astype(np.float32)  # in [0, 1)

    def score_users(self, state, rows):
        counts = state.purchases[rows].toarray()
        return counts + self.fill[None, :]


def purchased_rows(data: Interactions) -> np.ndarray:
    return data.kind == PURCHASE
