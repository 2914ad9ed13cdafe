"""Clustering algorithms and the choice of k (pure numpy/scikit-learn; no database).

Algorithms: ``kmeans`` (Lloyd, k-means++), ``minibatch_kmeans`` (replaces ``kmeans`` automatically
above ``minibatch_above`` profiles), ``gmm`` (Gaussian mixture, full covariances) and
``agglomerative`` (Ward linkage on a sample of at most ``agglomerative_sample`` rows; the rest go to
the nearest cluster centroid).

The choice of k, per algorithm (docs/clustering.md states it with the figures):

1. Candidates are k = ``k_min`` .. ``k_max``. Each is fitted on the selection sample (at most
   ``selection_sample`` rows drawn without replacement; the whole population when smaller).
2. A candidate is *eligible* only if its smallest cluster holds at least ``min_share`` of the
   sample (default 2 %): a cluster too small to act on disqualifies the k.
3. Silhouette is measured on at most ``silhouette_sample`` rows of the fit; stability is the mean
   adjusted Rand index over all pairs of ``bootstrap`` clusterings (default 5) of bootstrap
   resamples of the selection sample, each pair scored on the rows both resamples drew.
4. score(k) = max(silhouette, 0) x stability. The chosen k is the LARGEST eligible k whose score is
   at least ``(1 - tolerance)`` x the best eligible score (default tolerance 0.10): the most detailed
   segmentation that is nearly as well separated and as reproducible as the best one. A larger k
   that is noise (an arbitrary split of one group) loses stability and so its score, and is not
   chosen. Silhouette alone favours the fewest clusters (k = 2 on RFM), which is why it is
   combined with stability and read as "nearly as good", not "best".
5. The chosen model of the run is the algorithm with the highest score at its chosen k (ties: the
   order of ``algorithms``). No eligible k for an algorithm: it is reported, never chosen.

Threads: BLAS and OpenMP pools are limited to ``threads`` (default 1) around every fit, so a run on
the ``ml`` worker never takes more cores than it was given.

Imports: scikit-learn and scipy.cluster are imported inside the functions that fit. The admin and
the API of every web process import this module (for ``ALGORITHMS`` and ``ClusteringError``) and
never cluster; scikit-learn with what it pulls in (pandas, scipy.stats) is ~100 MB of every web
worker (tests/cdp/test_web_imports.py keeps them out).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from itertools import combinations

import numpy as np
from threadpoolctl import threadpool_limits

from .features import nearest

ALGORITHMS = ("kmeans", "minibatch_kmeans", "gmm", "agglomerative")
DEFAULT_ALGORITHMS = ("kmeans", "gmm", "agglomerative")
ALGORITHM_LABELS = {
    "kmeans": "K-Means",
    "minibatch_kmeans": "MiniBatch K-Means",
    "gmm": "Gaussian mixture",
    "agglomerative": "Agglomerative (Ward)",
}

Progress = Callable[[float, str], None]


class ClusteringError(ValueError):
    """The run cannot produce clusters (too few profiles, bad parameters); the message says why."""


@dataclass
class ClusteringParams:
    algorithms: list[str] = field(default_factory=lambda: list(DEFAULT_ALGORITHMS))
    k_min: int = 4
    k_max: int = 12
    min_share: float = 0.02
    bootstrap: int = 5
    tolerance: float = 0.10
    selection_sample: int = 20_000
    silhouette_sample: int = 5_000
    agglomerative_sample: int = 3_000
    fit_sample: int = 200_000  # Gaussian mixture: fitted on at most this many rows, then predicts all
    minibatch_above: int = 50_000
    top_categories: int = 8
    seed: int = 0
    threads: int = 1

    @classmethod
    def from_dict(cls, data: dict | None) -> ClusteringParams:
        data = dict(data or {})
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ClusteringError(f"Unknown clustering parameter(s): {', '.join(unknown)}.")
        params = cls(**data)
        params.validate()
        return params

    def validate(self) -> None:
        bad = [a for a in self.algorithms if a not in ALGORITHMS]
        if bad or not self.algorithms:
            raise ClusteringError(f"Unknown algorithm(s) {bad}; use some of {', '.join(ALGORITHMS)}.")
        if not 2 <= self.k_min <= self.k_max:
            raise ClusteringError(f"Need 2 <= k_min <= k_max (got k_min={self.k_min}, k_max={self.k_max}).")
        if not 0 <= self.min_share < 1 / self.k_min:
            raise ClusteringError(f"min_share must be in [0, 1/k_min) (got {self.min_share}).")
        if self.bootstrap < 2:
            raise ClusteringError("bootstrap needs at least 2 resamples to compare.")
        if not 0 <= self.tolerance < 1:
            raise ClusteringError("tolerance must be in [0, 1).")
        for name in ("selection_sample", "silhouette_sample", "agglomerative_sample", "fit_sample"):
            if getattr(self, name) < 50:
                raise ClusteringError(f"{name} must be at least 50.")

    def to_dict(self) -> dict:
        return asdict(self)

    def effective_algorithms(self, population: int) -> list[str]:
        """``kmeans`` becomes ``minibatch_kmeans`` for large populations; order kept, no duplicates."""
        out: list[str] = []
        for name in self.algorithms:
            if name == "kmeans" and population > self.minibatch_above:
                name = "minibatch_kmeans"
            if name not in out:
                out.append(name)
        return out


# --- fitting ------------------------------------------------------------------------------------


def _fit_labels(algorithm: str, x: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels (0..k-1) and centres of one clustering of ``x``."""
    from sklearn.cluster import KMeans, MiniBatchKMeans
    from sklearn.mixture import GaussianMixture

    if algorithm == "kmeans":
        model = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(x)
        return model.labels_.astype(np.int32), model.cluster_centers_
    if algorithm == "minibatch_kmeans":
        model = MiniBatchKMeans(
            n_clusters=k, n_init=3, batch_size=4096, random_state=seed, max_no_improvement=10, reassignment_ratio=0.01
        ).fit(x)
        return model.labels_.astype(np.int32), model.cluster_centers_
    if algorithm == "gmm":
        model = GaussianMixture(
            n_components=k, covariance_type="full", reg_covar=1e-4, max_iter=200, random_state=seed
        ).fit(x)
        return model.predict(x).astype(np.int32), model.means_
    if algorithm == "agglomerative":
        from scipy.cluster.hierarchy import linkage

        tree = linkage(x.astype(np.float64), method="ward")
        return _cut(tree, x, k)
    raise ClusteringError(f"Unknown algorithm {algorithm!r}")


def _cut(tree: np.ndarray, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    from scipy.cluster.hierarchy import fcluster

    raw = fcluster(tree, t=k, criterion="maxclust")
    _, labels = np.unique(raw, return_inverse=True)
    centres = np.vstack([x[labels == c].mean(axis=0) for c in range(labels.max() + 1)])
    return labels.astype(np.int32), centres


class _Fitter:
    """Fits one algorithm for many k on the same rows; Ward's tree is built once and cut per k."""

    def __init__(self, algorithm: str, x: np.ndarray, seed: int) -> None:
        from scipy.cluster.hierarchy import linkage

        self.algorithm, self.x, self.seed = algorithm, x, seed
        self.tree = linkage(x.astype(np.float64), method="ward") if algorithm == "agglomerative" else None
        self.bic: dict[int, float] = {}  # Gaussian mixture: reported beside the rule, never used by it

    def labels(self, k: int) -> np.ndarray:
        if self.tree is not None:
            return _cut(self.tree, self.x, k)[0]
        if self.algorithm == "gmm":
            from sklearn.mixture import GaussianMixture

            model = GaussianMixture(
                n_components=k, covariance_type="full", reg_covar=1e-4, max_iter=200, random_state=self.seed
            ).fit(self.x)
            self.bic[k] = float(model.bic(self.x))
            return model.predict(self.x).astype(np.int32)
        return _fit_labels(self.algorithm, self.x, k, self.seed)[0]


def shares(labels: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(labels, minlength=k) / max(len(labels), 1)


def stability(labelings: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """Mean ARI over pairs of (row indices drawn, labels) clusterings, on the rows both drew."""
    from sklearn.metrics import adjusted_rand_score

    scores = []
    for (idx_a, lab_a), (idx_b, lab_b) in combinations(labelings, 2):
        first_a = dict(zip(idx_a.tolist(), lab_a.tolist(), strict=True))  # a duplicate row has one label
        first_b = dict(zip(idx_b.tolist(), lab_b.tolist(), strict=True))
        common = sorted(first_a.keys() & first_b.keys())
        if len(common) < 2:
            continue
        scores.append(adjusted_rand_score([first_a[i] for i in common], [first_b[i] for i in common]))
    return float(np.mean(scores)) if scores else 0.0


def _silhouette(x: np.ndarray, labels: np.ndarray, sample: int, rng: np.random.Generator) -> float:
    from sklearn.metrics import silhouette_score

    if len(np.unique(labels)) < 2:
        return -1.0
    if len(x) > sample:
        pick = rng.choice(len(x), size=sample, replace=False)
        x, labels = x[pick], labels[pick]
        if len(np.unique(labels)) < 2:
            return -1.0
    return float(silhouette_score(x, labels))


@dataclass
class Candidate:
    k: int
    silhouette: float
    stability: float
    min_share: float
    eligible: bool
    score: float
    bic: float | None = None


@dataclass
class AlgorithmResult:
    algorithm: str
    k: int | None
    silhouette: float | None = None
    davies_bouldin: float | None = None
    calinski_harabasz: float | None = None
    stability: float | None = None
    min_share: float | None = None
    score: float | None = None
    seconds: float = 0.0
    candidates: list[Candidate] = field(default_factory=list)
    labels: np.ndarray | None = None  # over the whole population (not serialised)
    centres: np.ndarray | None = None
    note: str = ""

    def summary(self) -> dict:
        data = asdict(self)
        data.pop("labels")
        data.pop("centres")
        data["label"] = ALGORITHM_LABELS[self.algorithm]
        return data


def choose_k(candidates: list[Candidate], tolerance: float) -> Candidate | None:
    """Step 4 of the rule in this module's docstring."""
    eligible = [c for c in candidates if c.eligible]
    if not eligible:
        return None
    best = max(c.score for c in eligible)
    if best <= 0:
        return max(eligible, key=lambda c: (c.stability, -c.k))
    return max((c for c in eligible if c.score >= (1 - tolerance) * best), key=lambda c: c.k)


def select_k(
    algorithm: str,
    x: np.ndarray,
    params: ClusteringParams,
    *,
    progress: Callable[[float], None] | None = None,
) -> list[Candidate]:
    """Score every k of the range on the selection sample (steps 1-3)."""
    rng = np.random.default_rng(params.seed)
    cap = params.agglomerative_sample if algorithm == "agglomerative" else params.selection_sample
    sample = rng.choice(len(x), size=cap, replace=False) if len(x) > cap else np.arange(len(x))
    xs = x[sample]
    ks = [k for k in range(params.k_min, params.k_max + 1) if k < len(xs)]
    resamples = [rng.integers(0, len(xs), size=len(xs)) for _ in range(params.bootstrap)]
    steps = 1 + len(resamples)
    main = _Fitter(algorithm, xs, params.seed)
    if progress:
        progress(1 / steps)
    boot = []
    for b, idx in enumerate(resamples):
        boot.append((idx, _Fitter(algorithm, xs[idx], params.seed + 1 + b)))
    out = []
    for i, k in enumerate(ks):
        labels = main.labels(k)
        smallest = float(shares(labels, k).min())
        sil = _silhouette(xs, labels, params.silhouette_sample, rng)
        stab = stability([(idx, fitter.labels(k)) for idx, fitter in boot])
        eligible = smallest >= params.min_share and len(np.unique(labels)) == k
        out.append(Candidate(k, sil, stab, smallest, eligible, max(sil, 0.0) * stab, main.bic.get(k)))
        if progress:
            progress((i + 1) / len(ks))
    return out


def fit_final(algorithm: str, x: np.ndarray, k: int, params: ClusteringParams) -> tuple[np.ndarray, np.ndarray]:
    """Labels for the whole population and the centres (used to assign later profiles)."""
    rng = np.random.default_rng(params.seed)
    if algorithm in ("kmeans", "minibatch_kmeans"):
        return _fit_labels(algorithm, x, k, params.seed)
    cap = params.agglomerative_sample if algorithm == "agglomerative" else params.fit_sample
    if len(x) <= cap:
        return _fit_labels(algorithm, x, k, params.seed)
    sample = rng.choice(len(x), size=cap, replace=False)
    if algorithm == "gmm":
        from sklearn.mixture import GaussianMixture

        model = GaussianMixture(
            n_components=k, covariance_type="full", reg_covar=1e-4, max_iter=200, random_state=params.seed
        ).fit(x[sample])
        return model.predict(x).astype(np.int32), model.means_
    _, centres = _fit_labels(algorithm, x[sample], k, params.seed)
    return nearest(x, centres), centres


def run_algorithm(
    algorithm: str, x: np.ndarray, params: ClusteringParams, *, progress: Callable[[float], None] | None = None
) -> AlgorithmResult:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score

    started = time.monotonic()
    with threadpool_limits(limits=params.threads), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        candidates = select_k(algorithm, x, params, progress=(lambda f: progress(0.85 * f)) if progress else None)
        chosen = choose_k(candidates, params.tolerance)
        if chosen is None:
            return AlgorithmResult(
                algorithm,
                None,
                candidates=candidates,
                seconds=round(time.monotonic() - started, 2),
                note=f"no k in {params.k_min}..{params.k_max} keeps every cluster above {params.min_share:.0%}",
            )
        labels, centres = fit_final(algorithm, x, chosen.k, params)
        rng = np.random.default_rng(params.seed + 99)
        result = AlgorithmResult(
            algorithm,
            chosen.k,
            silhouette=round(_silhouette(x, labels, params.silhouette_sample, rng), 4),
            davies_bouldin=round(float(davies_bouldin_score(x, labels)), 4) if len(np.unique(labels)) > 1 else None,
            calinski_harabasz=round(float(calinski_harabasz_score(x, labels)), 1)
            if len(np.unique(labels)) > 1
            else None,
            stability=round(chosen.stability, 4),
            min_share=round(float(shares(labels, chosen.k).min()), 4),
            score=round(chosen.score, 4),
            candidates=[
                Candidate(
                    c.k,
                    round(c.silhouette, 4),
                    round(c.stability, 4),
                    round(c.min_share, 4),
                    c.eligible,
                    round(c.score, 4),
                    None if c.bic is None else round(c.bic, 1),
                )
                for c in candidates
            ],
            labels=labels,
            centres=np.asarray(centres, dtype=np.float32),
        )
    if progress:
        progress(1.0)
    result.seconds = round(time.monotonic() - started, 2)
    return result


def cluster(x: np.ndarray, params: ClusteringParams, *, progress: Progress | None = None) -> list[AlgorithmResult]:
    """Every algorithm of ``params`` on the matrix ``x``; progress in [0, 1] with a message."""
    minimum = max(params.k_min * 10, 50)
    if len(x) < minimum:
        raise ClusteringError(f"Too few profiles to cluster: {len(x)} (at least {minimum} for k_min={params.k_min}).")
    if x.shape[1] == 0:
        raise ClusteringError("No feature varies across the population (no computed traits yet?).")
    algorithms = params.effective_algorithms(len(x))
    results = []
    for i, name in enumerate(algorithms):

        def step(fraction: float, i: int = i, name: str = name) -> None:
            if progress:
                progress((i + fraction) / len(algorithms), f"{ALGORITHM_LABELS[name]}")

        step(0.0)
        results.append(run_algorithm(name, x, params, progress=step))
    return results


def best(results: list[AlgorithmResult]) -> AlgorithmResult | None:
    """Step 5: the highest score at the chosen k; ties go to the earlier algorithm."""
    usable = [r for r in results if r.k is not None]
    if not usable:
        return None
    top = max(r.score for r in usable)
    return next(r for r in usable if r.score == top)
