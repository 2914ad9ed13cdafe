"""Each cluster in words, from its centre relative to the population.

The centre is read in z-scores (standardised features, before block weights): for the behavioural
features, |z| >= ``NOTABLE_Z`` (0.5 standard deviations) is worth a word, the largest first, at most
``MAX_WORDS`` of them ("high spend, frequent, recent"). A category is named when the cluster's
mean share of it is at least ``CATEGORY_LIFT`` (1.5x) the population's and at least 0.15 in absolute
terms ("prefers home decor"); a device when at least 60 % of the cluster prefer it ("mostly
mobile"). Nothing notable reads "close to the average customer".

``cluster_profile`` (stored on the proposed Segment) keeps the figures behind the words: size,
share, the median of each numeric trait in its own units, the z-scores, category and device shares.
"""

from __future__ import annotations

import numpy as np

from .features import NUMERIC_FEATURES, FeatureFrame, FeatureTransform

NOTABLE_Z = 0.5
MAX_WORDS = 4
CATEGORY_LIFT = 1.5
CATEGORY_MIN_SHARE = 0.15
DEVICE_MAJORITY = 0.6

# feature -> (word when high, word when low); recency-like features read backwards
WORDS: dict[str, tuple[str, str]] = {
    "recency_days": ("lapsed", "recent"),
    "frequency": ("frequent", "rarely buy"),
    "monetary": ("high spend", "low spend"),
    "avg_order_value": ("large baskets", "small baskets"),
    "orders_90d": ("buying this quarter", "not buying this quarter"),
    "revenue_365d": ("high spend this year", "low spend this year"),
    "engagement_score": ("highly engaged", "disengaged"),
    "sessions": ("many visits", "few visits"),
    "sessions_30d": ("visiting this month", "not visiting this month"),
    "browse_recency_days": ("not seen lately", "browsing lately"),
    "tenure_days": ("long-standing", "new"),
}
# when two words say the same thing, only the stronger is kept
SAME_IDEA = [
    {"frequency", "sessions", "orders_90d"},
    {"monetary", "revenue_365d"},
    {"recency_days", "orders_90d"},
    {"browse_recency_days", "sessions_30d", "engagement_score"},
]
_UNITS = {f.name: f.label for f in NUMERIC_FEATURES}


def _readable_category(name: str) -> str:
    return name.replace("_", " ").replace("-", " ").strip() or name


def describe(z_centre: dict[str, float], categories: dict[str, tuple[float, float]], devices: dict[str, float]) -> str:
    """Words for one cluster. ``z_centre``: feature -> mean z; ``categories``: category -> (cluster
    mean share, population mean share); ``devices``: device -> share of the cluster preferring it."""
    words: list[str] = []
    used: list[str] = []
    ranked = sorted(
        ((name, z) for name, z in z_centre.items() if name in WORDS and abs(z) >= NOTABLE_Z),
        key=lambda item: -abs(item[1]),
    )
    for name, z in ranked:
        if any(name in group and any(u in group for u in used) for group in SAME_IDEA):
            continue
        words.append(WORDS[name][0 if z > 0 else 1])
        used.append(name)
        if len(words) == MAX_WORDS:
            break
    parts = [", ".join(words)] if words else []
    liked = sorted(
        (
            (share, category)
            for category, (share, population) in categories.items()
            if share >= CATEGORY_MIN_SHARE and share >= CATEGORY_LIFT * max(population, 1e-9)
        ),
        reverse=True,
    )
    if liked:
        parts.append("prefers " + " and ".join(_readable_category(c) for _, c in liked[:2]))
    top_device = max(devices.items(), key=lambda item: item[1], default=None)
    if top_device and top_device[1] >= DEVICE_MAJORITY:
        parts.append(f"mostly {top_device[0]}")
    return "; ".join(parts) if parts else "close to the average customer"


def cluster_profiles(frame: FeatureFrame, transform: FeatureTransform, labels: np.ndarray, k: int) -> list[dict]:
    """Size, share, centre (readable units and z-scores) and description of each cluster 0..k-1."""
    z = transform.standardise(frame)
    index = {name: j for j, name in enumerate(frame.names)}
    kept = {name: j for j, name in enumerate(transform.names)}
    numeric = [f.name for f in NUMERIC_FEATURES if f.name in index]
    category_columns = [n for n in frame.names if n.startswith("category:")]
    device_columns = [n for n in frame.names if n.startswith("device:")]
    population_categories = {
        n.split(":", 1)[1]: float(np.nan_to_num(frame.values[:, index[n]]).mean()) for n in category_columns
    }
    out = []
    for label in range(k):
        members = labels == label
        size = int(members.sum())
        z_centre = {name: round(float(z[members, j].mean()), 3) if size else 0.0 for name, j in kept.items()}
        medians = {}
        for name in numeric:
            column = frame.values[members, index[name]]
            column = column[~np.isnan(column)]
            medians[name] = round(float(np.median(column)), 2) if column.size else None
        categories = {
            n.split(":", 1)[1]: round(float(np.nan_to_num(frame.values[members, index[n]]).mean()), 4) if size else 0.0
            for n in category_columns
        }
        devices = {
            n.split(":", 1)[1]: round(float(np.nan_to_num(frame.values[members, index[n]]).mean()), 4) if size else 0.0
            for n in device_columns
        }
        description = describe(
            {n: v for n, v in z_centre.items() if n in WORDS},
            {c: (s, population_categories[c]) for c, s in categories.items()},
            devices,
        )
        out.append(
            {
                "label": label,
                "size": size,
                "share": round(size / max(len(labels), 1), 4),
                "description": description,
                "median": medians,
                "units": {name: _UNITS[name] for name in numeric},
                "z": z_centre,
                "categories": categories,
                "devices": devices,
            }
        )
    return out
