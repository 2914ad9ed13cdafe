"""Plain data the recommenders train on: interactions and a catalog, as aligned numpy arrays.

No Django here: ``recommendations.selectors.interactions_extract`` builds these from PostgreSQL,
``evaluate_recommendations`` from the same path, tests from synthetic rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from recommendations.engine.artifact import allow

VIEW, CART, PURCHASE = 0, 1, 2
KIND_NAMES = {VIEW: "view", CART: "cart", PURCHASE: "purchase"}


@dataclass
class Interactions:
    """One row per interaction: ``users[user[r]]`` did ``kind[r]`` with ``items[item[r]]`` at ``ts[r]``.

    ``users``/``items`` are the id vocabularies (str); ``user``/``item`` index into them. ``order``
    holds the order id of a purchase row (``""`` for views and carts; or integer codes of the ids),
    or is ``None``. ``price``: the unit price the event said (NaN when it said none), or ``None``.
    """

    users: np.ndarray
    items: np.ndarray
    user: np.ndarray
    item: np.ndarray
    kind: np.ndarray
    quantity: np.ndarray
    ts: np.ndarray
    order: np.ndarray | None = None
    price: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.users = np.asarray(self.users, dtype=object)
        self.items = np.asarray(self.items, dtype=object)
        self.user = np.asarray(self.user, dtype=np.int32)
        self.item = np.asarray(self.item, dtype=np.int32)
        self.kind = np.asarray(self.kind, dtype=np.int8)
        self.quantity = np.asarray(self.quantity, dtype=np.float32)
        self.ts = np.asarray(self.ts, dtype=np.float64)
        if self.order is not None:
            order = np.asarray(self.order)
            self.order = order if np.issubdtype(order.dtype, np.integer) else np.asarray(self.order, dtype=object)
        if self.price is not None:
            self.price = np.asarray(self.price, dtype=np.float32)
        n = len(self.user)
        for name in ("item", "kind", "quantity", "ts"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"Interactions.{name} has {len(getattr(self, name))} rows, user has {n}")
        for name in ("order", "price"):
            if getattr(self, name) is not None and len(getattr(self, name)) != n:
                raise ValueError(f"Interactions.{name} has {len(getattr(self, name))} rows, user has {n}")

    def __len__(self) -> int:
        return len(self.user)

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @classmethod
    def from_rows(
        cls,
        rows: Iterable[tuple],
    ) -> Interactions:
        """From ``(user_id, item_id, kind, quantity, ts[, order_id[, price]])`` tuples (kind 0/1/2 or a name)."""
        names = {v: k for k, v in KIND_NAMES.items()}
        user_ix: dict[str, int] = {}
        item_ix: dict[str, int] = {}
        u, i, k, q, t, o, pr = [], [], [], [], [], [], []
        with_order = with_price = False
        for row in rows:
            user_id, item_id, kind, quantity, ts = row[:5]
            u.append(user_ix.setdefault(str(user_id), len(user_ix)))
            i.append(item_ix.setdefault(str(item_id), len(item_ix)))
            k.append(names[kind] if isinstance(kind, str) else int(kind))
            q.append(quantity)
            t.append(ts)
            if len(row) > 5:
                with_order = True
                o.append("" if row[5] is None else str(row[5]))
            else:
                o.append("")
            if len(row) > 6:
                with_price = True
                pr.append(np.nan if row[6] is None else float(row[6]))
            else:
                pr.append(np.nan)
        return cls(
            users=np.array(list(user_ix), dtype=object),
            items=np.array(list(item_ix), dtype=object),
            user=np.array(u, dtype=np.int32),
            item=np.array(i, dtype=np.int32),
            kind=np.array(k, dtype=np.int8),
            quantity=np.array(q, dtype=np.float32),
            ts=np.array(t, dtype=np.float64),
            order=np.array(o, dtype=object) if with_order else None,
            price=np.array(pr, dtype=np.float32) if with_price else None,
        )

    def last_prices(self, before: float | None = None) -> np.ndarray:
        """Per item, the last price the interactions said before ``before`` (epoch seconds; all rows
        when None); NaN where none. Catalog prices of the training data, never later ones."""
        out = np.full(self.n_items, np.nan)
        if self.price is None or len(self) == 0:
            return out
        ok = np.isfinite(self.price) & (self.price > 0)
        if before is not None:
            ok &= self.ts < before
        rows = np.flatnonzero(ok)
        order = rows[np.argsort(self.ts[rows], kind="stable")]
        out[self.item[order]] = self.price[order]  # the latest write wins
        return out

    def subset(self, mask: np.ndarray, *, compact: bool = False) -> Interactions:
        """The rows where ``mask`` holds; ``compact`` drops users/items left without rows."""
        out = Interactions(
            users=self.users,
            items=self.items,
            user=self.user[mask],
            item=self.item[mask],
            kind=self.kind[mask],
            quantity=self.quantity[mask],
            ts=self.ts[mask],
            order=None if self.order is None else self.order[mask],
            price=None if self.price is None else self.price[mask],
        )
        return out.compact() if compact else out

    def compact(self) -> Interactions:
        """Same rows, vocabularies reduced to the users and items that have rows (order kept)."""
        used_u = np.unique(self.user)
        used_i = np.unique(self.item)
        map_u = np.full(len(self.users), -1, dtype=np.int32)
        map_u[used_u] = np.arange(len(used_u), dtype=np.int32)
        map_i = np.full(len(self.items), -1, dtype=np.int32)
        map_i[used_i] = np.arange(len(used_i), dtype=np.int32)
        return Interactions(
            users=self.users[used_u],
            items=self.items[used_i],
            user=map_u[self.user],
            item=map_i[self.item],
            kind=self.kind,
            quantity=self.quantity,
            ts=self.ts,
            order=self.order,
            price=self.price,
        )


def _strings(values, n: int) -> np.ndarray:
    if values is None:
        return np.array([""] * n, dtype=object)
    return np.array(["" if v is None else str(v) for v in values], dtype=object)


@allow
@dataclass
class Catalog:
    """Product attributes aligned on ``items`` (skus). ``price`` is NaN when unknown."""

    items: np.ndarray
    title: np.ndarray = field(default=None)  # type: ignore[assignment]
    description: np.ndarray = field(default=None)  # type: ignore[assignment]
    category: np.ndarray = field(default=None)  # type: ignore[assignment]
    brand: np.ndarray = field(default=None)  # type: ignore[assignment]
    price: np.ndarray = field(default=None)  # type: ignore[assignment]
    in_stock: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.items = np.asarray([str(s) for s in self.items], dtype=object)
        n = len(self.items)
        self.title = _strings(self.title, n)
        self.description = _strings(self.description, n)
        self.category = _strings(self.category, n)
        self.brand = _strings(self.brand, n)
        if self.price is None:
            self.price = np.full(n, np.nan)
        self.price = np.array([np.nan if p is None else float(p) for p in self.price], dtype=np.float64)
        if self.in_stock is None:
            self.in_stock = np.ones(n, dtype=bool)
        self.in_stock = np.asarray(self.in_stock, dtype=bool)
        for name in ("title", "description", "category", "brand", "price", "in_stock"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"Catalog.{name} has {len(getattr(self, name))} rows, items has {n}")

    def __len__(self) -> int:
        return len(self.items)

    def with_prices(self, prices: np.ndarray) -> Catalog:
        """This catalog with ``prices`` (aligned on its items) instead of its own: the prices of the
        training period, so no price from after the cutoff reaches training or evaluation."""
        return Catalog(
            items=self.items,
            title=self.title,
            description=self.description,
            category=self.category,
            brand=self.brand,
            price=np.asarray(prices, dtype=np.float64),
            in_stock=self.in_stock,
        )

    def aligned(self, items: np.ndarray) -> Catalog:
        """This catalog's attributes for ``items`` (unknown skus get empty text, NaN price, in stock)."""
        index = {sku: n for n, sku in enumerate(self.items)}
        pos = np.array([index.get(str(s), -1) for s in items], dtype=np.int64)
        known = pos >= 0

        def pick(arr: np.ndarray, empty):
            out = np.empty(len(items), dtype=arr.dtype)
            out[:] = empty
            out[known] = arr[pos[known]]
            return out

        return Catalog(
            items=np.asarray(items, dtype=object),
            title=pick(self.title, ""),
            description=pick(self.description, ""),
            category=pick(self.category, ""),
            brand=pick(self.brand, ""),
            price=pick(self.price, np.nan),
            in_stock=pick(self.in_stock, True),
        )
