"""The serving-time shortcuts of ModelBundle (reading CSR arrays instead of scipy's fancy indexing)
answer exactly what scipy's indexing answers, and the bundle falls back to scipy when they cannot."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recommendations.engine.bundle import ModelBundle, _block, train_bundle
from recommendations.engine.data import PURCHASE, VIEW, Interactions
from tests.recommendations.test_engine import GROUPS, NOW, SMALL, catalog_of

DAY = 86400.0


def browsing_shop(seed: int = 5, people: int = 48) -> Interactions:
    """Purchases and product views, some of the same items, at earlier and later days (and ties)."""
    rng = np.random.default_rng(seed)
    rows = []
    for n in range(people):
        group = list(GROUPS)[n % len(GROUPS)]
        user = f"{group}-u{n}"
        for order in range(int(rng.integers(1, 4))):
            day = float(rng.integers(1, 120))
            for item in sorted({f"{group}-{rng.integers(0, 5)}" for _ in range(2)}):
                rows.append((user, item, PURCHASE, 1.0, NOW - day * DAY, f"{user}-o{order}"))
        for _ in range(int(rng.integers(0, 6))):
            other = group if rng.random() < 0.7 else list(GROUPS)[int(rng.integers(0, len(GROUPS)))]
            day = float(rng.integers(1, 120))
            rows.append((user, f"{other}-{rng.integers(0, 5)}", VIEW, 1.0, NOW - day * DAY))
    return Interactions.from_rows(rows)


@pytest.fixture(scope="module")
def bundle():
    data = browsing_shop()
    return train_bundle(data=data, catalog=catalog_of(list(data.items)), params=SMALL, now=NOW)


def scipy_only(bundle: ModelBundle) -> ModelBundle:
    """A copy whose matrices say they are not canonical: every shortcut steps aside for scipy."""
    copy = ModelBundle.from_bytes(bundle.to_bytes())
    matrices = [copy.state.purchases, copy.state.last_purchase, copy.state.last_browsed]
    matrices += [copy.recommenders[name].sim for name in ("item_item", "content")]
    for matrix in matrices:
        matrix.has_canonical_format = False
    return copy


@pytest.mark.parametrize("seed", range(5))
def test_block_equals_scipy_fancy_indexing(seed):
    rng = np.random.default_rng(seed)
    m = sp.random(60, 40, density=0.15, format="csr", dtype=np.float32, random_state=seed)
    m.data[:3] = 0.0  # explicit zeros stay zeros
    rows = rng.integers(0, 60, size=25)  # repeated rows and empty rows included
    cols = rng.permutation(40)[:12]
    assert np.array_equal(_block(m, rows, cols), m[rows][:, cols].toarray())
    assert _block(m, rows, cols[:0]).shape == (25, 0)
    assert _block(m, np.array([], dtype=np.int64), cols).shape == (0, 12)
    assert _block(m, rows, np.array([cols[0], cols[0]])) is None  # a repeated column: scipy answers
    unsorted = m.copy()
    unsorted.has_canonical_format = False
    assert _block(unsorted, rows, cols) is None


def test_last_seen_equals_scipy_maximum(bundle):
    state = bundle.state
    assert state.last_browsed.nnz and state.last_purchase.nnz
    for row in range(state.n_users):
        expected = state.last_purchase[row].maximum(state.last_browsed[row]).tocsr()
        cols, days = bundle._last_seen(row)
        assert np.array_equal(cols, expected.indices) and cols.dtype == expected.indices.dtype
        assert np.array_equal(days, expected.data) and days.dtype == expected.data.dtype


def test_recommendations_and_reasons_are_those_of_scipy_indexing(bundle):
    reference = scipy_only(bundle)
    assert _block(reference.state.purchases, np.array([0]), np.array([0, 1])) is None  # really the fallback
    users = [str(u) for u in bundle.state.users]
    explained = set()
    for user in users:
        for k in (5, 20):
            got = bundle.recommend(user_id=user, k=k, exclude={"coffee-0"})
            assert got == reference.recommend(user_id=user, k=k, exclude={"coffee-0"})
            explained |= {r.reason["type"] for r in got}
    assert {"bought", "because_bought"} <= explained  # both shortcuts were exercised
    for item in [str(i) for i in bundle.items]:
        got = bundle.recommend(user_id=None, session_items=[item], k=8)
        assert got == reference.recommend(user_id=None, session_items=[item], k=8)
