"""The served ranker (``Forest``: scikit-learn's compiled tree predictor called directly, on trees
grafted in pairs) predicts what scikit-learn's fitted classifiers predict, up to float rounding."""

from __future__ import annotations

import numpy as np
import pytest

from recommendations.engine.artifact import BoostedTrees
from recommendations.engine.hybrid import Forest


def fitted(seed: int, rows: int = 3000, features: int = 8, **options):
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, features))
    X[:, 3] = np.round(X[:, 3])  # ties at thresholds: values equal to a split's threshold
    X[rng.random(X.shape) < 0.15] = np.nan
    X[:, 5] = rng.normal(size=rows)  # never missing in training (missing later: the default side)
    signal = np.nan_to_num(X[:, 0]) - 0.7 * np.nan_to_num(X[:, 1]) + 0.4 * np.isnan(X[:, 2])
    y = (signal + rng.normal(0, 0.7, rows) > 0.3).astype(int)
    model = HistGradientBoostingClassifier(random_state=seed, **options).fit(X, y)
    return model, X


@pytest.mark.parametrize("seed", range(4))
def test_forest_predicts_like_scikit_learn_on_random_data(seed):
    model, X = fitted(seed, max_iter=60, max_leaf_nodes=31, min_samples_leaf=20, early_stopping=False)
    rng = np.random.default_rng(100 + seed)
    Z = rng.normal(size=(500, X.shape[1]))
    Z[rng.random(Z.shape) < 0.2] = np.nan
    Z[:50] = X[:50]  # training rows too (values at the bin edges)
    trees = BoostedTrees.from_sklearn(model)
    for nodes in trees.nodes:  # as a serving process maps them from the model file
        nodes.setflags(write=False)
    forest = Forest([trees])
    assert len(forest.bags[0][1]) == (model.n_iter_ + 1) // 2 and model.n_iter_ > 1
    for data in (X, Z, Z.astype(np.float32)):
        got = forest.predict_proba(data)
        assert np.allclose(got, trees.predict_proba(data), rtol=1e-14, atol=0)  # the stored trees' predictions
        assert np.allclose(got, model.predict_proba(data)[:, 1], rtol=0, atol=1e-12)


def test_forest_averages_bags_like_the_sum_of_their_predictions():
    models = [fitted(seed, max_iter=20 + 10 * seed)[0] for seed in range(3)]
    X = fitted(9)[1][:400]
    trees = [BoostedTrees.from_sklearn(m) for m in models]
    got = Forest(trees).predict_proba(X)
    assert np.allclose(got, sum(t.predict_proba(X) for t in trees) / len(trees), rtol=1e-14, atol=0)
    assert np.allclose(got, sum(m.predict_proba(X)[:, 1] for m in models) / 3, rtol=0, atol=1e-12)


def test_forest_of_stumps_and_no_rows():
    model, X = fitted(1, max_iter=5, max_depth=1)  # one split per tree
    forest = Forest([BoostedTrees.from_sklearn(model)])
    assert np.allclose(forest.predict_proba(X), model.predict_proba(X)[:, 1], rtol=0, atol=1e-12)
    assert forest.predict_proba(X[:0]).shape == (0,)
