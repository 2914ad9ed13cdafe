"""Default training parameters; ``train_bundle(params=...)`` overrides them key by key (nested dicts merge)."""

from __future__ import annotations

import copy

DEFAULT_PARAMS: dict = {
    # interaction weights by event type, and the time decay of every interaction (days)
    "kind_weights": {"view": 1.0, "cart": 3.0, "purchase": 8.0},
    "half_life_days": 180.0,
    "trending_half_life_days": 7.0,
    # the recommender that answers ``recommend`` for known users; "bpr" is left out of the default
    # list (a protocol baseline only, nothing else uses it): evaluate_recommendations adds it
    "primary": "hybrid",
    "recommenders": [
        "popularity",
        "trending",
        "buy_again",
        "als",
        "item_item",
        "item_item_bm25",
        "content",
        "session",
        "repeat_knn",
        "hybrid",
    ],
    "als": {"factors": 32, "regularization": 0.05, "alpha": 2.0, "iterations": 15, "weighting": "bm25"},
    "bpr": {"factors": 64, "learning_rate": 0.05, "regularization": 0.01, "iterations": 100},
    "item_item": {"neighbours": 100, "bm25_k1": 1.2, "bm25_b": 0.75},
    "content": {"neighbours": 50, "price_bands": 5, "meta_weight": 0.5},
    "session": {"content_weight": 0.3, "recent_half_life_days": 30.0},
    # neighbours are looked for among the people sharing an item; of an item more than
    # ``max_item_people`` people have, only that many (the largest weights) are looked at
    "repeat_knn": {"alpha": 0.7, "neighbours": 100, "half_life_days": 90.0, "max_item_people": 2000},
    # the learned blend: a gradient-boosted classifier on candidates, labels from the last
    # ``label_days`` of the training data (``windows`` consecutive windows), features from before
    "hybrid": {
        "label_days": 30.0,
        "windows": 2,
        "recent_days": 30.0,
        "candidates_knn": 50,
        "candidates_item_item": 30,
        "candidates_als": 30,
        "candidates_session": 20,
        "candidates_popular": 20,
        "als_rank_depth": 100,  # the ALS rank feature: rank within the ALS top 100, else missing
        "negatives_per_user": 50,  # per model; 0: every candidate
        "bags": 1,
        "max_users": 10000,  # people per label window whose candidates are training rows
        "min_positives": 50,
        "learning_rate": 0.1,
        "max_iter": 150,
        "max_leaf_nodes": 31,
        "min_samples_leaf": 40,
        "l2_regularization": 1.0,
        "early_stopping": True,
        "validation_fraction": 0.15,
        "n_iter_no_change": 20,
    },
    # the heads of known people's rankings, computed by the refresh and kept with the model
    # (``engine/ranked.py``, decision 0058): ``size`` candidates a person (0: none kept), the most
    # recently active first, at most ``people`` of them and for at most ``seconds`` (0: no bound),
    # on ``threads`` threads (0: one per CPU); the others are ranked live. The refresh ranks them while
    # it evaluates the candidate (decision 0062): the first ~15 s of the bound cost the refresh nothing
    "ranked": {"size": 32, "people": 0, "seconds": 30.0, "threads": 0},
    # an approximate nearest-neighbour index (hnswlib) answers the ALS stage from this many items on
    "ann_min_items": 10_000,
    "num_threads": 1,
    "seed": 7,
}


def merge_params(params: dict | None) -> dict:
    """Defaults updated with ``params`` (nested dicts merged one level down)."""
    out = copy.deepcopy(DEFAULT_PARAMS)
    for key, value in (params or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = copy.deepcopy(value)
    return out
