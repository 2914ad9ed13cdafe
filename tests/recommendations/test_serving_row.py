"""The serving path of a known shopper (``_one_row_serving``, the tree walk's running sum, the
reasons' look-ups) answers bit for bit what the path before it answered (``_one_row``, a Python
step per tree, ``np.isin``): the same candidates, sources, features, scores, order and reasons."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recommendations.engine import bundle as bundle_module
from recommendations.engine import hybrid
from recommendations.engine.artifact import BoostedTrees
from recommendations.engine.bundle import ModelBundle, train_bundle
from tests.recommendations.test_engine import NOW, SMALL, catalog_of
from tests.recommendations.test_serving_fast_paths import browsing_shop


def _reference_predict(trees: BoostedTrees, X: np.ndarray) -> np.ndarray:
    """``BoostedTrees.predict_proba`` as it was: the leaves added onto the baseline one tree per step."""
    X = np.asarray(X, dtype=np.float64)
    roots, column, threshold, child, value, leaf, depth = trees._flat()
    n = len(X)
    raw = np.full(n, trees.baseline)
    if n and len(roots):
        missing = np.isnan(X)
        clipped = np.clip(X, -1.7976931348623157e308, 1.7976931348623157e308)
        both = np.concatenate([np.where(missing, np.inf, clipped), np.where(missing, -np.inf, clipped)], axis=1)
        flat = both.ravel()
        position = np.repeat(roots, n)
        start = np.tile(np.arange(n, dtype=np.int64) * both.shape[1], len(roots))
        for _ in range(depth):  # no early stop: every row walks to its leaf (a leaf is its own child)
            goes_left = flat.take(start + column.take(position)) <= threshold.take(position)
            position = child.take(position + goes_left)
        for leaves in value.take(position).reshape(len(roots), n):
            raw += leaves
    return 1.0 / (1.0 + np.exp(-raw))


def test_tree_walk_sums_like_one_tree_per_step():
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(3)
    X = rng.normal(size=(3000, 12))
    X[rng.random(X.shape) < 0.1] = np.nan
    y = (np.nan_to_num(X[:, 0]) - np.nan_to_num(X[:, 3]) + rng.normal(0, 0.7, 3000) > 0).astype(int)
    model = HistGradientBoostingClassifier(max_iter=150, max_leaf_nodes=31, early_stopping=False, random_state=0)
    trees = BoostedTrees.from_sklearn(model.fit(X, y))
    Q = rng.normal(size=(400, 12)) * 2
    Q[rng.random(Q.shape) < 0.2] = np.nan
    for n in (0, 1, 2, 57, 400):
        assert np.array_equal(trees.predict_proba(Q[:n]), _reference_predict(trees, Q[:n]))


@pytest.mark.parametrize("seed", range(6))
def test_products_in_one_pass_equal_one_by_one(seed):
    rng = np.random.default_rng(seed)
    width = 70
    matrices = [
        sp.random(40, width, density=0.2, format="csr", dtype=np.float32, random_state=seed + n) for n in range(4)
    ]
    for m in matrices:
        m.sum_duplicates()
    matrices[1][5] = 0.0  # an empty row
    matrices[1].eliminate_zeros()
    terms = []
    for m in matrices:
        cols = np.sort(rng.choice(40, size=int(rng.integers(0, 6)), replace=False)).astype(np.int64)
        vals = rng.normal(size=len(cols)).astype(np.float32)
        terms.append((cols, vals, m))
    terms.append((np.array([5], dtype=np.int64), np.ones(1, np.float32), matrices[1]))  # nothing stored
    terms.append((np.array([7], dtype=np.int64), np.array([2.0], np.float32), matrices[0]))  # one row
    many = hybrid._vec_times_many(terms)
    one = [hybrid._vec_times(c, v, m) for c, v, m in terms]
    for (mc, mv), (oc, ov) in zip(many, one, strict=True):
        assert mc.dtype == oc.dtype and mv.dtype == ov.dtype
        assert np.array_equal(mc, oc) and np.array_equal(mv, ov)
    # values of another dtype (a float64 row): computed one by one, still the same
    mixed = [*terms[:2], (terms[2][0], terms[2][1].astype(np.float64), terms[2][2])]
    for (mc, mv), (oc, ov) in zip(hybrid._vec_times_many(mixed), [hybrid._vec_times(*t) for t in mixed], strict=True):
        assert mv.dtype == ov.dtype and np.array_equal(mc, oc) and np.array_equal(mv, ov)


@pytest.mark.parametrize("seed", range(6))
def test_lookups_in_one_search_equal_one_by_one(seed):
    rng = np.random.default_rng(seed)
    width = 50
    vecs, missing = [], []
    for n in range(7):
        cols = np.sort(rng.choice(width, size=int(rng.integers(0, 20)), replace=False)).astype(np.int64)
        dtype = np.float32 if n % 2 else np.float64
        vecs.append((cols, rng.normal(size=len(cols)).astype(dtype)))
        missing.append(np.nan if n % 3 == 0 else 0.0)
    items = np.unique(rng.integers(0, width, size=25)).astype(np.int64)
    got = hybrid._vec_get_many(vecs, items, np.array(missing), width + 1)
    for n, vec in enumerate(vecs):
        assert np.array_equal(got[n], hybrid._vec_get(vec, items, missing[n]), equal_nan=True)
    assert hybrid._vec_get_many(vecs, items[:0], np.array(missing), width + 1).shape == (7, 0)


@pytest.fixture(scope="module")
def trained():
    data = browsing_shop(seed=11, people=160)
    fitted = train_bundle(data=data, catalog=catalog_of(list(data.items)), params=SMALL, now=NOW)
    return ModelBundle.from_bytes(fitted.to_bytes())  # as served: read back from its stored form


def test_one_row_for_serving_equals_one_row_for_every_shopper(trained):
    ranker = trained.recommenders["hybrid"]
    assert ranker.trained  # the learned ranker, not the fallback blend
    state = trained.state
    assert state.browsed is not None and state.last_browsed is not None
    for row in range(len(state.users)):
        for extra in (None, np.array([0, 3], dtype=np.int64)):
            old = hybrid._one_row(state, ranker.comps, ranker.stats, row, ranker.params, index=trained.ann, extra=extra)
            new = hybrid._one_row_serving(
                state, ranker.comps, ranker.stats, row, ranker.params, index=trained.ann, extra=extra
            )
            for a, b in ((old.row, new.row), (old.item, new.item), (old.source, new.source), (old.X, new.X)):
                assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True)


def _old_membership(monkeypatch):
    """The bundle as it was: ``_one_row`` for a request, np.isin in the reasons, a step per tree."""
    monkeypatch.setattr(hybrid, "_one_row_serving", hybrid._one_row)
    monkeypatch.setattr(bundle_module, "_member", lambda items, cols, ascending: np.isin(items, cols))
    monkeypatch.setattr(BoostedTrees, "predict_proba", _reference_predict)


def test_recommendations_of_known_shoppers_are_unchanged(trained, monkeypatch):
    state = trained.state
    cases = []
    for n, user in enumerate(state.users):
        exclude = {str(state.items[n % state.n_items])} if n % 3 == 0 else set()
        session = [str(state.items[(n * 7) % state.n_items])] if n % 4 == 0 else []
        cases.append((str(user), session, 4 + n % 9, exclude))
    new = [
        trained.recommend(user_id=u, session_items=s, k=k, exclude=e, context={"segments": []})
        for u, s, k, e in cases
    ]
    _old_membership(monkeypatch)
    old = [
        trained.recommend(user_id=u, session_items=s, k=k, exclude=e, context={"segments": []})
        for u, s, k, e in cases
    ]
    assert sum(len(r) for r in new) > 3 * len(cases)
    assert any(rec.reason.get("type") in ("bought", "viewed") for recs in new for rec in recs)
    assert any(rec.reason.get("type", "").startswith("because_") for recs in new for rec in recs)
    for a, b in zip(old, new, strict=True):
        assert [(r.item_id, r.score, r.recommender, r.reason) for r in a] == [
            (r.item_id, r.score, r.recommender, r.reason) for r in b
        ]
