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


def test_one_row_candidates_and_features_are_those_of_the_batch_path(bundle):
    """A request's stage one (``_one_row``, on the CSR arrays) proposes the candidates the batch path
    of training and evaluation proposes (scipy's products), from the same generators, with the same
    features up to float32 rounding (sums may add in another order)."""
    from recommendations.engine.hybrid import _one_row, candidate_features

    hybrid = bundle.recommenders["hybrid"]
    state = bundle.state
    rows = np.arange(state.n_users)
    assert len(rows) > 8  # the batch really is scipy's product (FEW_ROWS)
    extra = np.array([0, 3, state.n_items - 1])
    batch = candidate_features(state, hybrid.comps, hybrid.stats, rows, hybrid.params, extra=extra)
    sources = 0
    for row in rows:
        one = _one_row(state, hybrid.comps, hybrid.stats, int(row), hybrid.params, extra=extra)
        mine = batch.row == row
        assert np.array_equal(one.item, batch.item[mine])
        assert np.array_equal(one.source, batch.source[mine])
        assert np.array_equal(np.isnan(one.X), np.isnan(batch.X[mine]))
        assert np.allclose(one.X, batch.X[mine], rtol=1e-6, atol=1e-7, equal_nan=True)
        sources |= int(np.bitwise_or.reduce(one.source))
        # and a request's own call (one row) takes this path
        single = candidate_features(state, hybrid.comps, hybrid.stats, np.array([row]), hybrid.params, extra=extra)
        assert np.array_equal(single.X, one.X, equal_nan=True) and np.array_equal(single.item, one.item)
    assert sources == (1 << 7) - 1  # every generator proposed something somewhere


def test_one_row_reads_rows_of_matrices_that_are_not_canonical(bundle):
    from recommendations.engine.hybrid import _one_row

    reference = scipy_only(bundle)
    hybrid, other = bundle.recommenders["hybrid"], reference.recommenders["hybrid"]
    for row in range(bundle.state.n_users):
        want = _one_row(bundle.state, hybrid.comps, hybrid.stats, row, hybrid.params)
        got = _one_row(reference.state, other.comps, other.stats, row, other.params)
        assert np.array_equal(got.item, want.item) and np.array_equal(got.source, want.source)
        assert np.array_equal(got.X, want.X, equal_nan=True)


def test_session_entries_are_the_dense_session_scores(bundle):
    """The anonymous visitor's sparse session row holds exactly the positive entries of the dense
    ``score_session`` (the session blend's rows summed), and its answer is the dense answer."""
    rec = bundle.recommenders["session"]
    for items in ([0], [1, 4], [2, 3, 7], list(range(0, bundle.state.n_items, 3))):
        cols, vals = bundle._session_entries(items)
        dense = rec.score_session(bundle.state, np.asarray(items))
        assert np.array_equal(cols, np.flatnonzero(dense))
        assert np.allclose(vals, dense[cols], rtol=1e-6, atol=0)
    reference = scipy_only(bundle)  # not canonical: the dense score_session path answers
    for sku in [str(s) for s in bundle.state.items[:8]]:
        fast = bundle.recommend(user_id=None, session_items=[sku], k=6)
        slow = reference.recommend(user_id=None, session_items=[sku], k=6)
        assert [(r.item_id, round(r.score, 5), r.reason) for r in fast] == [
            (r.item_id, round(r.score, 5), r.reason) for r in slow
        ]
