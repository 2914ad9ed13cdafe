"""The serving path of a known shopper (the tree walk's running sum, the reasons' membership by
binary search) answers bit for bit what the path before it answered (a Python step per tree,
``np.isin``): the same items, scores, order and reasons."""

from __future__ import annotations

import numpy as np
import pytest

from recommendations.engine import bundle as bundle_module
from recommendations.engine.artifact import BoostedTrees
from recommendations.engine.bundle import ModelBundle, train_bundle
from tests.recommendations.test_engine import NOW, SMALL, catalog_of
from tests.recommendations.test_serving_fast_paths import browsing_shop


def _reference_predict(trees: BoostedTrees, X: np.ndarray) -> np.ndarray:
    """``BoostedTrees.predict_proba`` as it was (without its early stop, which changes no leaf): the
    leaves added onto the baseline one tree per step."""
    X = np.asarray(X, dtype=np.float64)
    roots, column, threshold, child, value, _leaf, depth = trees._flat()
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


@pytest.fixture(scope="module")
def trained():
    data = browsing_shop(seed=11, people=160)
    fitted = train_bundle(data=data, catalog=catalog_of(list(data.items)), params=SMALL, now=NOW)
    return ModelBundle.from_bytes(fitted.to_bytes())  # as served: read back from its stored form


def _old_membership(monkeypatch):
    """The bundle as it was: np.isin in the reasons, a Python step per tree."""
    monkeypatch.setattr(bundle_module, "_member", lambda items, cols, ascending: np.isin(items, cols))
    monkeypatch.setattr(BoostedTrees, "predict_proba", _reference_predict)


@pytest.mark.parametrize("seed", range(4))
def test_membership_by_binary_search_equals_isin(seed):
    rng = np.random.default_rng(seed)
    cols = np.unique(rng.integers(0, 60, size=int(rng.integers(0, 25)))).astype(np.int32)
    items = rng.integers(0, 70, size=30).astype(np.int64)
    assert np.array_equal(bundle_module._member(items, cols, True), np.isin(items, cols))
    shuffled = rng.permutation(cols)  # a row of a matrix that is not canonical: np.isin itself
    assert np.array_equal(bundle_module._member(items, shuffled, False), np.isin(items, cols))
    assert bundle_module._member(items[:0], cols, True).shape == (0,)


def test_recommendations_of_known_shoppers_are_unchanged(trained, monkeypatch):
    state = trained.state
    assert trained.primary == "hybrid" and trained.recommenders["hybrid"].trained  # the learned ranker
    cases = []
    for n, user in enumerate(state.users):
        exclude = {str(state.items[n % state.n_items])} if n % 3 == 0 else set()
        session = [str(state.items[(n * 7) % state.n_items])] if n % 4 == 0 else []
        cases.append((str(user), session, 4 + n % 9, exclude))
    new = [
        trained.recommend(user_id=u, session_items=s, k=k, exclude=e, context={"segments": []}) for u, s, k, e in cases
    ]
    _old_membership(monkeypatch)
    old = [
        trained.recommend(user_id=u, session_items=s, k=k, exclude=e, context={"segments": []}) for u, s, k, e in cases
    ]
    assert sum(len(r) for r in new) > 3 * len(cases)
    assert any(rec.reason.get("type") in ("bought", "viewed") for recs in new for rec in recs)
    assert any(rec.reason.get("type", "").startswith("because_") for recs in new for rec in recs)
    for a, b in zip(old, new, strict=True):
        assert [(r.item_id, r.score, r.recommender, r.reason) for r in a] == [
            (r.item_id, r.score, r.recommender, r.reason) for r in b
        ]
