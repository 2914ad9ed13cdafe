"""Clustering speed: 1,000,000 profiles' feature matrix through the product's clustering, k selection included.

    python benchmarks/clustering.py [--profiles 1000000] [--seed 0]

The feature matrix is SYNTHETIC, generated in numpy (not read from PostgreSQL): the same columns
``clustering_features_extract`` returns (11 numeric traits, 8 category shares, 3 device columns),
drawn from a mixture of eight kinds of customer (lapsed one-off buyers, browsers who never buy,
loyal high spenders, bargain regulars, new customers, category enthusiasts...) with lognormal
spend, Poisson order counts, missing recency for non-buyers, Dirichlet category shares and a
preferred device. Then exactly what a run does: ``clustering_compute`` (FeatureTransform fit +
transform, MiniBatch K-Means chosen automatically above 50,000 profiles, k = 4..12 chosen by
silhouette x bootstrap stability with a 2 % minimum share on the 20,000-row selection sample, the
final fit on all rows, metrics, cluster descriptions), one thread (the product's default).

Baseline in the same run: one scikit-learn ``KMeans`` (Lloyd, k-means++, n_init=1) fit on all rows at
the k the pipeline chose, without any k selection, same thread limit. Ratio = pipeline / baseline.
Peak memory: the process's maximum resident set size (includes the generated matrix).

``--postgres``: the same matrix is first written into a scratch database (``cdp_bench_clustering``,
migrated, dropped at the end unless ``--keep``) as live profiles with computed traits, and read back
by the product's selector ``clustering_features_extract``; the extraction is timed separately and
the run then clusters the matrix read from PostgreSQL (a whole run's path, minus proposals).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import django
import numpy as np
import psycopg
from sklearn.cluster import KMeans
from threadpoolctl import threadpool_limits

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cdp.settings")

SCRATCH = "cdp_bench_clustering"


def _with_db(url: str, name: str) -> str:
    return f"{url.rpartition('/')[0]}/{name}"


def scratch_database(argv: list[str], keep: bool) -> int:
    """Create and migrate the scratch database, run this script inside it, drop it."""
    from cdp.envfiles import load_env_files

    load_env_files()
    url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/cdp")
    admin = _with_db(url, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{SCRATCH}"')
        conn.execute(f'CREATE DATABASE "{SCRATCH}"')
    env = {**os.environ, "DATABASE_URL": _with_db(url, SCRATCH), "DEBUG": "true", "DB_STATEMENT_TIMEOUT_MS": "0"}
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=REPO, env=env, check=True)
        return subprocess.run([sys.executable, __file__, "--inner", *argv], cwd=REPO, env=env).returncode
    finally:
        if not keep:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{SCRATCH}" WITH (FORCE)')


CATEGORIES = ["home decor", "kitchen", "garden", "toys", "fashion", "books", "electronics", "beauty"]
# kind: weight, orders (Poisson mean), order value (lognormal mean of log), days since last order (exp scale),
#       sessions (Poisson), device probabilities (mobile, desktop, tablet), category concentration
KINDS = {
    "one_off_lapsed": (0.22, 1.0, 3.2, 240, 2, (0.6, 0.3, 0.1), 1.0),
    "browsers": (0.20, 0.0, 0.0, 0, 6, (0.75, 0.15, 0.1), 1.0),
    "loyal_high_spend": (0.06, 14.0, 4.6, 8, 30, (0.3, 0.6, 0.1), 2.0),
    "bargain_regulars": (0.14, 8.0, 2.6, 15, 18, (0.7, 0.2, 0.1), 1.0),
    "new_customers": (0.12, 1.0, 3.4, 10, 4, (0.65, 0.25, 0.1), 1.0),
    "enthusiasts": (0.10, 5.0, 3.8, 25, 20, (0.4, 0.4, 0.2), 12.0),
    "occasional": (0.11, 3.0, 3.5, 90, 8, (0.5, 0.4, 0.1), 1.0),
    "tablet_evening": (0.05, 4.0, 3.9, 30, 12, (0.1, 0.1, 0.8), 1.0),
}


def synthetic_frame(n: int, seed: int):
    from segments.clustering.features import DEVICES, FeatureFrame, all_features

    rng = np.random.default_rng(seed)
    features = all_features(CATEGORIES)
    names = [f.name for f in features]
    weights = np.array([k[0] for k in KINDS.values()])
    kind = rng.choice(len(KINDS), size=n, p=weights / weights.sum())
    values = np.full((n, len(features)), np.nan)
    col = {name: j for j, name in enumerate(names)}
    for i, (_, orders, log_value, recency, sessions, devices, concentration) in enumerate(KINDS.values()):
        rows = np.flatnonzero(kind == i)
        m = len(rows)
        freq = rng.poisson(orders, m) + (orders > 0)
        aov = np.exp(rng.normal(log_value, 0.5, m)) * (freq > 0)
        rec = rng.exponential(recency, m) if recency else np.zeros(m)
        values[rows, col["frequency"]] = freq
        values[rows, col["monetary"]] = freq * aov
        values[rows, col["avg_order_value"]] = aov
        values[rows, col["recency_days"]] = np.where(freq > 0, rec.round(), np.nan)
        values[rows, col["orders_90d"]] = np.where(rec < 90, rng.binomial(freq, 0.4), 0)
        values[rows, col["revenue_365d"]] = np.where(rec < 365, freq * aov * 0.7, 0)
        sess = rng.poisson(sessions, m) + 1
        values[rows, col["sessions"]] = sess
        browse = np.minimum(rng.exponential(max(recency, 5) / 2, m), rec if recency else 1e9)
        values[rows, col["sessions_30d"]] = np.where(browse < 30, rng.binomial(sess, 0.3), 0)
        values[rows, col["browse_recency_days"]] = browse
        values[rows, col["tenure_days"]] = browse + rng.exponential(300, m)
        values[rows, col["engagement_score"]] = np.clip(100 * (1 - np.exp(-sess / (1 + browse / 14) / 4)), 0, 100)
        favourite = rng.integers(0, len(CATEGORIES), m)
        alpha = np.ones((m, len(CATEGORIES)))
        alpha[np.arange(m), favourite] += concentration
        shares = rng.gamma(alpha)
        shares /= shares.sum(axis=1, keepdims=True)
        for c, name in enumerate(CATEGORIES):
            values[rows, col[f"category:{name}"]] = shares[:, c]
        device = rng.choice(3, size=m, p=devices)
        for d, name in enumerate(DEVICES):
            values[rows, col[f"device:{name}"]] = (device == d).astype(float)
    return FeatureFrame(
        ids=np.arange(n).astype(str).astype(object), features=features, values=values, categories=CATEGORIES
    )


def load_profiles(frame, now: datetime) -> float:
    """Write the frame as live profiles with computed traits (COPY); returns seconds."""
    from django.db import connection

    from segments.clustering.features import DEVICES

    started = time.monotonic()
    col = {name: j for j, name in enumerate(frame.names)}
    numeric = ["recency_days", "frequency", "monetary", "avg_order_value", "orders_90d", "revenue_365d"]
    numeric += ["engagement_score", "sessions", "sessions_30d"]
    categories = [(c, col[f"category:{c}"]) for c in frame.categories]
    devices = [col[f"device:{d}"] for d in DEVICES]
    stamp = now.isoformat()
    with connection.cursor() as cursor, cursor.connection.cursor() as pg:
        columns = "id, traits, trait_meta, computed, computed_at, first_seen_at, last_seen_at, created_at, updated_at"
        with pg.copy(f"COPY profiles_profile ({columns}) FROM STDIN") as copy:
            for row in frame.values:
                computed = {k: (None if row[col[k]] != row[col[k]] else round(float(row[col[k]]), 2)) for k in numeric}
                computed["category_affinity"] = {
                    "purchases": {c: round(float(row[j]), 4) for c, j in categories if row[j] > 0},
                    "views": {},
                }
                device = next((DEVICES[i] for i, j in enumerate(devices) if row[j] == 1), None)
                computed["preferred_device"] = device
                last_seen = now - timedelta(days=float(row[col["browse_recency_days"]]))
                first_seen = now - timedelta(days=float(row[col["tenure_days"]]))
                copy.write_row(
                    (str(uuid.uuid4()), "{}", "{}", json.dumps(computed), stamp, first_seen, last_seen, stamp, stamp)
                )
        cursor.execute("ANALYZE profiles_profile")
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profiles", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--postgres", action="store_true", help="through PostgreSQL and the selector")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database (--postgres)")
    parser.add_argument(
        "--full-run", action="store_true", help="with --postgres: also time a whole run (extract, cluster, propose)"
    )
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.postgres and not args.inner:
        sys.exit(scratch_database(sys.argv[1:], args.keep))
    django.setup()
    from segments.clustering.engine import ClusteringParams
    from segments.clustering.selectors import clustering_features_extract
    from segments.clustering.services import clustering_compute

    started = time.monotonic()
    frame = synthetic_frame(args.profiles, args.seed)
    generate_seconds = time.monotonic() - started
    load_seconds = extract_seconds = None
    if args.postgres:
        now = datetime.now(UTC)
        load_seconds = load_profiles(frame, now)
        del frame
        started = time.monotonic()
        frame = clustering_features_extract(now=now, categories=CATEGORIES)
        extract_seconds = time.monotonic() - started

    params = ClusteringParams(algorithms=["kmeans"])  # becomes MiniBatch K-Means above 50,000 profiles
    started = time.monotonic()

    def progress(fraction: float, message: str) -> None:
        print(f"\r  clustering {fraction:6.1%} {message:<30}", end="", file=sys.stderr, flush=True)

    outcome = clustering_compute(frame=frame, params=params, progress=progress)
    pipeline_seconds = time.monotonic() - started
    print(file=sys.stderr)

    x = outcome.transform.transform(frame)
    started = time.monotonic()
    with threadpool_limits(limits=params.threads):
        baseline = KMeans(n_clusters=outcome.chosen.k, n_init=1, random_state=args.seed).fit(x)
    baseline_seconds = time.monotonic() - started

    run_seconds = run_summary = None
    if args.postgres and args.full_run:
        from segments.clustering.services import clustering_run_now
        from segments.models import Segment

        del x, frame
        started = time.monotonic()
        run = clustering_run_now(requested_by="benchmark", params={"algorithms": ["kmeans"]})
        run_seconds = time.monotonic() - started
        run_summary = {
            "status": run.status,
            "k": run.chosen.get("k"),
            "members_proposed": sum(Segment.objects.filter(clustering_run=run).values_list("size", flat=True)),
        }

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    chosen = outcome.chosen
    result = {
        "profiles": args.profiles,
        "features": len(outcome.transform.names),
        "algorithm": chosen.algorithm,
        "k": chosen.k,
        "candidates": [c.__dict__ for c in chosen.candidates],
        "silhouette": chosen.silhouette,
        "stability": chosen.stability,
        "davies_bouldin": chosen.davies_bouldin,
        "pipeline_seconds": round(pipeline_seconds, 1),
        "selection_and_fit_seconds": chosen.seconds,
        "baseline_kmeans_full_fit_seconds": round(baseline_seconds, 2),
        "baseline_iterations": int(baseline.n_iter_),
        "ratio_pipeline_to_baseline": round(pipeline_seconds / baseline_seconds, 2),
        "target_seconds": 120,
        "target_met": pipeline_seconds < 120,
        "generate_seconds": round(generate_seconds, 1),
        "source": "PostgreSQL via clustering_features_extract" if args.postgres else "numpy (generated in memory)",
        "load_into_postgres_seconds": None if load_seconds is None else round(load_seconds, 1),
        "extract_seconds": None if extract_seconds is None else round(extract_seconds, 1),
        "extract_plus_pipeline_seconds": None
        if extract_seconds is None
        else round(extract_seconds + pipeline_seconds, 1),
        "full_run_seconds": None if run_seconds is None else round(run_seconds, 1),
        "full_run": run_summary,
        "peak_rss_mb": round(peak_mb),
        "threads": params.threads,
        "machine": f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}",
        "clusters": [(c["size"], c["description"]) for c in outcome.clusters],
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
