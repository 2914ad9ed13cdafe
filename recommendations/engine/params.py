"""Default training parameters; ``train_bundle(params=...)`` overrides them key by key (nested dicts merge)."""

from __future__ import annotations

import copy

DEFAULT_PARAMS: dict = {
    # interaction weights by event type, and the time decay of every interaction (days)
    "kind_weights": {"view": 1.0, "cart": 3.0, "purchase": 8.0},
    "half_life_days": 180.0,
    "trending_half_life_days": 7.0,
    # the recommender that answers ``recommend`` for known users
    "primary": "buy_again",
    "recommenders": ["popularity", "trending", "buy_again"],
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
