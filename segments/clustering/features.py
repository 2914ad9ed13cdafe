"""The clustering feature space: which computed traits, how they are scaled, and the fitted transform.

Raw features come from ``profiles.traits`` (computed traits) via
``segments.clustering.selectors.clustering_features_extract`` as a ``FeatureFrame``: one row per live
profile, one float column per feature, ``NaN`` where a trait is missing. ``FeatureTransform`` turns
it into the matrix the algorithms see:

1. missing values: recency-like columns get the population maximum (never ordered = as lapsed as the
   most lapsed customer), category shares and device columns get 0, everything else the median;
2. ``log1p`` on counts, money and day counts (heavy right tails), after clipping at 0;
3. standard scaling (mean 0, standard deviation 1); a constant column is dropped (the data has no
   such trait, e.g. no devices in an order-history import);
4. block weights: the category-share columns together weigh as much as ``CATEGORY_BLOCK_WEIGHT``
   numeric features and the device one-hot columns as much as ``DEVICE_BLOCK_WEIGHT``, so twelve
   category columns do not outvote recency, frequency and spend.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field

import numpy as np
from threadpoolctl import threadpool_limits

CATEGORY_BLOCK_WEIGHT = 2.0
DEVICE_BLOCK_WEIGHT = 1.0
DEVICES = ("mobile", "desktop", "tablet")


@dataclass(frozen=True)
class Feature:
    name: str
    label: str  # readable, for tables and admin
    log: bool
    fill: str  # "max" | "median" | "zero"
    block: str = "numeric"  # "numeric" | "category" | "device"


# Numeric features, in the order the selector extracts them (each from profiles/traits.py compute()):
NUMERIC_FEATURES: tuple[Feature, ...] = (
    Feature("recency_days", "days since last order", log=True, fill="max"),
    Feature("frequency", "orders", log=True, fill="zero"),
    Feature("monetary", "revenue", log=True, fill="zero"),
    Feature("avg_order_value", "average order value", log=True, fill="median"),
    Feature("orders_90d", "orders in 90 days", log=True, fill="zero"),
    Feature("revenue_365d", "revenue in 365 days", log=True, fill="zero"),
    Feature("engagement_score", "engagement score", log=False, fill="zero"),
    Feature("sessions", "sessions", log=True, fill="zero"),
    Feature("sessions_30d", "sessions in 30 days", log=True, fill="zero"),
    Feature("browse_recency_days", "days since last seen", log=True, fill="max"),
    Feature("tenure_days", "days since first seen", log=True, fill="median"),
)


def category_feature(category: str) -> Feature:
    return Feature(f"category:{category}", f"share of {category}", log=False, fill="zero", block="category")


def device_feature(device: str) -> Feature:
    return Feature(f"device:{device}", f"prefers {device}", log=False, fill="zero", block="device")


@dataclass
class FeatureFrame:
    """Raw features of a population: ``values[i, j]`` is feature ``features[j]`` of ``ids[i]``."""

    ids: np.ndarray  # str profile (or customer) ids
    features: list[Feature]
    values: np.ndarray  # float64, NaN = missing
    categories: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.values.shape != (len(self.ids), len(self.features)):
            raise ValueError(f"values {self.values.shape} do not match {len(self.ids)} ids x {len(self.features)}")

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    def __len__(self) -> int:
        return len(self.ids)


def all_features(categories: list[str]) -> list[Feature]:
    return [*NUMERIC_FEATURES, *(category_feature(c) for c in categories), *(device_feature(d) for d in DEVICES)]


@dataclass
class FeatureTransform:
    """Fitted on one population, applied to any later one (new profiles assigned to stored centres)."""

    names: list[str]  # kept columns, in matrix order
    labels: list[str]
    blocks: list[str]
    log: np.ndarray  # bool per kept column
    fill: np.ndarray  # fill value per kept column (raw units)
    mean: np.ndarray  # after log
    std: np.ndarray
    weight: np.ndarray

    @classmethod
    def fit(cls, frame: FeatureFrame) -> FeatureTransform:
        names, labels, blocks, logs, fills, means, stds = [], [], [], [], [], [], []
        for j, feature in enumerate(frame.features):
            column = frame.values[:, j]
            present = column[~np.isnan(column)]
            if feature.fill == "max":
                fill = float(present.max()) if present.size else 0.0
            elif feature.fill == "median":
                fill = float(np.median(present)) if present.size else 0.0
            else:
                fill = 0.0
            filled = _prepare(column, fill, feature.log)
            std = float(filled.std())
            if not np.isfinite(std) or std < 1e-9:
                continue  # the data carries no such trait (or everyone has the same value)
            names.append(feature.name)
            labels.append(feature.label)
            blocks.append(feature.block)
            logs.append(feature.log)
            fills.append(fill)
            means.append(float(filled.mean()))
            stds.append(std)
        weight = np.ones(len(names))
        for block, total in (("category", CATEGORY_BLOCK_WEIGHT), ("device", DEVICE_BLOCK_WEIGHT)):
            members = [i for i, b in enumerate(blocks) if b == block]
            if members:
                weight[members] = np.sqrt(total / len(members))
        return cls(
            names=names,
            labels=labels,
            blocks=blocks,
            log=np.array(logs, dtype=bool),
            fill=np.array(fills, dtype=float),
            mean=np.array(means, dtype=float),
            std=np.array(stds, dtype=float),
            weight=weight,
        )

    def standardise(self, frame: FeatureFrame) -> np.ndarray:
        """z-scores per kept column (no block weights): what descriptions are read from."""
        index = {name: j for j, name in enumerate(frame.names)}
        out = np.empty((len(frame), len(self.names)), dtype=np.float64)
        for k, name in enumerate(self.names):
            column = frame.values[:, index[name]] if name in index else np.full(len(frame), np.nan)
            out[:, k] = (_prepare(column, self.fill[k], bool(self.log[k])) - self.mean[k]) / self.std[k]
        return out

    def transform(self, frame: FeatureFrame) -> np.ndarray:
        """The matrix the algorithms see (float32 keeps 1M x 20 at 80 MB)."""
        return (self.standardise(frame) * self.weight).astype(np.float32)

    def to_dict(self) -> dict:
        return {
            "names": self.names,
            "labels": self.labels,
            "blocks": self.blocks,
            "log": self.log.tolist(),
            "fill": self.fill.tolist(),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "weight": self.weight.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> FeatureTransform:
        return cls(
            names=list(data["names"]),
            labels=list(data["labels"]),
            blocks=list(data["blocks"]),
            log=np.array(data["log"], dtype=bool),
            fill=np.array(data["fill"], dtype=float),
            mean=np.array(data["mean"], dtype=float),
            std=np.array(data["std"], dtype=float),
            weight=np.array(data["weight"], dtype=float),
        )


def _prepare(column: np.ndarray, fill: float, log: bool) -> np.ndarray:
    filled = np.where(np.isnan(column), fill, column)
    return np.log1p(np.clip(filled, 0, None)) if log else filled


@dataclass
class ClusterModel:
    """What a run keeps to assign profiles later: the transform and the centres (in matrix space)."""

    transform: FeatureTransform
    centres: np.ndarray  # k x d, in the transformed (weighted) space
    categories: list[str]
    algorithm: str

    def assign(self, frame: FeatureFrame) -> np.ndarray:
        """Nearest stored centre for each row (the cluster label)."""
        return nearest(self.transform.transform(frame), self.centres)

    def to_bytes(self) -> bytes:
        """npz with JSON metadata; no pickle, so a stored model cannot run code when loaded."""
        buffer = io.BytesIO()
        meta = {"transform": self.transform.to_dict(), "categories": self.categories, "algorithm": self.algorithm}
        np.savez_compressed(buffer, centres=self.centres, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> ClusterModel:
        with np.load(io.BytesIO(bytes(data)), allow_pickle=False) as archive:
            meta = json.loads(archive["meta"].tobytes().decode())
            centres = archive["centres"]
        return cls(
            transform=FeatureTransform.from_dict(meta["transform"]),
            centres=centres,
            categories=list(meta["categories"]),
            algorithm=meta["algorithm"],
        )


def nearest(x: np.ndarray, centres: np.ndarray, chunk: int = 200_000) -> np.ndarray:
    """Index of the nearest centre per row (squared Euclidean), in chunks to bound memory."""
    out = np.empty(len(x), dtype=np.int32)
    c = centres.astype(np.float32)
    c_sq = (c * c).sum(axis=1)
    with threadpool_limits(limits=1, user_api="blas"):  # never more BLAS threads than the worker was given
        for start in range(0, len(x), chunk):
            block = x[start : start + chunk].astype(np.float32, copy=False)
            distances = c_sq[None, :] - 2.0 * block @ c.T
            out[start : start + chunk] = distances.argmin(axis=1)
    return out
