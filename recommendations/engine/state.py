"""The matrices every recommender reads, built once per training from ``Interactions``.

Users are rows, items are columns, both in the order of the training data's vocabularies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from recommendations.engine.artifact import allow
from recommendations.engine.data import CART, PURCHASE, VIEW, Interactions

DAY = 86400.0


def event_weights(data: Interactions, *, params: dict, now: float) -> np.ndarray:
    """Weight of each row: its event type's weight times an exponential time decay (half-life in days)."""
    kinds = params["kind_weights"]
    by_kind = np.array([kinds["view"], kinds["cart"], kinds["purchase"]], dtype=np.float32)
    weights = by_kind[data.kind]
    half_life = params.get("half_life_days")
    if half_life:
        age_days = np.maximum(now - data.ts, 0.0) / DAY
        weights = weights * np.power(0.5, age_days / float(half_life)).astype(np.float32)
    return weights.astype(np.float32)


@allow
@dataclass
class TrainState:
    """Per-user matrices (rows can be dropped for erasure) and per-item aggregates.

    - ``interactions``: users x items, sum of event weights (all kinds, decayed): the implicit feedback.
    - ``purchases``: users x items, number of purchase lines (orders) of the item.
    - ``last_purchase``: users x items, epoch days of the last purchase (0 where none).
    - ``first_purchase``: users x items, epoch days of the first purchase.
    - ``user_orders``: per user, number of distinct purchase days; ``user_last``: last activity (epoch days);
      ``user_first``: first purchase (epoch days).
    - ``buyers``: per item, distinct buyers.
    - ``browsed``/``last_browsed``: users x items, views and cart additions (count, last epoch day).
    """

    users: np.ndarray
    items: np.ndarray
    interactions: sp.csr_matrix
    purchases: sp.csr_matrix
    last_purchase: sp.csr_matrix
    first_purchase: sp.csr_matrix
    user_orders: np.ndarray
    user_first: np.ndarray
    user_last: np.ndarray
    buyers: np.ndarray
    now_days: float
    browsed: sp.csr_matrix | None = None
    last_browsed: sp.csr_matrix | None = None

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    # rows are people: erasure drops them, storage keeps them apart from the item part
    people_fields = (
        "users",
        "interactions",
        "purchases",
        "last_purchase",
        "first_purchase",
        "user_orders",
        "user_first",
        "user_last",
        "browsed",
        "last_browsed",
    )

    def drop_users(self, keep: np.ndarray) -> None:
        for name in self.people_fields:
            if getattr(self, name) is not None:
                setattr(self, name, getattr(self, name)[keep])


def build_state(data: Interactions, *, params: dict, now: float) -> TrainState:
    n_u, n_i = data.n_users, data.n_items
    weights = event_weights(data, params=params, now=now)
    interactions = sp.csr_matrix((weights, (data.user, data.item)), shape=(n_u, n_i), dtype=np.float32)
    interactions.sum_duplicates()
    bought = data.kind == PURCHASE
    pu, pi = data.user[bought], data.item[bought]
    days = (data.ts[bought] / DAY).astype(np.float64)
    purchases = _count_lines(pu, pi, data.order[bought] if data.order is not None else None, days, (n_u, n_i))
    last = _reduce(pu, pi, days, (n_u, n_i), np.maximum)
    first = _reduce(pu, pi, days, (n_u, n_i), np.minimum)
    # purchase occasions: distinct (user, day) -- a basket may lack an order id
    occasions = np.unique(np.stack([pu.astype(np.int64), np.floor(days).astype(np.int64)]), axis=1) if len(pu) else None
    user_orders = (
        np.bincount(occasions[0], minlength=n_u).astype(np.float32)
        if occasions is not None
        else np.zeros(n_u, np.float32)
    )
    user_first = np.full(n_u, np.inf)
    np.minimum.at(user_first, pu, days)
    user_first[~np.isfinite(user_first)] = 0.0
    user_last = np.zeros(n_u)
    np.maximum.at(user_last, data.user, data.ts / DAY)
    buyers = np.asarray((purchases > 0).sum(axis=0)).ravel().astype(np.float32)
    looked = ~bought
    browsed = sp.csr_matrix(
        (np.ones(int(looked.sum()), dtype=np.float32), (data.user[looked], data.item[looked])),
        shape=(n_u, n_i),
        dtype=np.float32,
    )
    browsed.sum_duplicates()
    last_browsed = _reduce(data.user[looked], data.item[looked], data.ts[looked] / DAY, (n_u, n_i), np.maximum)
    return TrainState(
        # fixed-width strings, not Python objects: a loaded model maps them from its file
        users=np.asarray(data.users, dtype=str),
        items=np.asarray(data.items, dtype=str),
        interactions=interactions,
        purchases=purchases,
        last_purchase=last,
        first_purchase=first,
        user_orders=user_orders,
        user_first=user_first,
        user_last=user_last,
        buyers=buyers,
        now_days=now / DAY,
        browsed=browsed,
        last_browsed=last_browsed,
    )


def _count_lines(u, i, orders, days, shape) -> sp.csr_matrix:
    """Number of distinct orders (or purchase days, without order ids) in which a user bought an item."""
    if len(u) == 0:
        return sp.csr_matrix(shape, dtype=np.float32)
    if orders is not None and np.issubdtype(np.asarray(orders).dtype, np.integer):
        okey = np.asarray(orders, dtype=np.int64)
    elif orders is not None:
        _, okey = np.unique(orders.astype(str), return_inverse=True)
    else:
        okey = np.floor(days).astype(np.int64)
    triples = np.unique(np.stack([u.astype(np.int64), i.astype(np.int64), okey.astype(np.int64)]), axis=1)
    m = sp.csr_matrix(
        (np.ones(triples.shape[1], dtype=np.float32), (triples[0], triples[1])), shape=shape, dtype=np.float32
    )
    m.sum_duplicates()
    return m


def _reduce(u, i, values, shape, op) -> sp.csr_matrix:
    if len(u) == 0:
        return sp.csr_matrix(shape, dtype=np.float64)
    key = u.astype(np.int64) * shape[1] + i.astype(np.int64)
    uniq, inv = np.unique(key, return_inverse=True)
    out = np.full(len(uniq), -np.inf if op is np.maximum else np.inf)
    op.at(out, inv, values)
    return sp.csr_matrix((out, (uniq // shape[1], uniq % shape[1])), shape=shape, dtype=np.float64)


__all__ = ["CART", "PURCHASE", "VIEW", "TrainState", "build_state", "event_weights"]
