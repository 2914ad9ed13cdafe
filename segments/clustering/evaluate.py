"""PROTOCOL.md section C through the product's own path (``manage.py evaluate_clustering``).

The order-lines file is read and cleaned exactly as section R says (``profiles.bulk.read_order_lines``),
imported into PostgreSQL by ``profiles.bulk.orders_import`` under a source of its own (so customers
become profiles with ``Order Completed`` events), computed traits are computed by the import's own
``traits_refresh`` with the computation time set to the file's last order (so recency and the
90/365-day windows mean what they would have meant on that day), features are read by
``clustering_features_extract`` for the imported profiles only, and ``clustering_compute`` runs the
same code a ``ClusteringRun`` runs. The caller wraps this in a transaction it rolls back.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from profiles.bulk import CleaningStats, OrderColumns, orders_import, read_order_lines
from profiles.models import Profile

from .engine import ClusteringError, ClusteringParams
from .selectors import clustering_features_extract
from .services import clustering_compute


def clustering_evaluate(
    *,
    path: str,
    columns: OrderColumns,
    params: ClusteringParams,
    progress: bool = True,
    on_progress: Callable[[float, str], None] | None = None,
) -> dict:
    """The evaluation's figures (a JSON-ready dict). Raises ``OrderFileError`` for a bad file and
    ``ClusteringError`` when the data cannot be clustered. Writes: wrap in a rolled-back transaction."""
    started = time.monotonic()
    stats = CleaningStats()
    last = None
    for line in read_order_lines(path, columns, stats=stats, progress=progress):  # validates the file first
        if last is None or line.timestamp > last:
            last = line.timestamp
    if last is None:
        raise ClusteringError(f"{path}: no order line is left after cleaning ({stats.rows_read} rows read).")
    source_name = f"evaluate-clustering-{uuid.uuid4().hex[:12]}"
    summary = orders_import(path=path, columns=columns, source_name=source_name, progress=progress, now=last)
    imported = [
        str(pid)
        for pid in Profile.objects.filter(merged_into__isnull=True, events__source__name=source_name)
        .distinct()
        .values_list("pk", flat=True)
    ]
    frame = clustering_features_extract(now=last, top_categories=params.top_categories, profile_ids=imported)
    outcome = clustering_compute(frame=frame, params=params, progress=on_progress)
    models = {}
    for result in outcome.results:
        silhouette_only = max(result.candidates, key=lambda c: c.silhouette).k if result.candidates else None
        with_bic = [c for c in result.candidates if c.bic is not None]
        models[result.algorithm] = {
            "k": result.k,
            "silhouette": result.silhouette,
            "davies_bouldin": result.davies_bouldin,
            "calinski_harabasz": result.calinski_harabasz,
            "stability": result.stability,
            "min_share": result.min_share,
            "score": result.score,
            "seconds": result.seconds,
            "k_by_silhouette_alone": silhouette_only,
            "k_by_bic": min(with_bic, key=lambda c: c.bic).k if with_bic else None,
            "note": result.note,
            "candidates": [c.__dict__ for c in result.candidates],
        }
    return {
        "dataset": path.rsplit("/", 1)[-1],
        "customers": len(frame),
        "lines_kept": stats.kept,
        "orders": summary.orders,
        "as_of": last.isoformat(),
        "features": outcome.transform.names,
        "params": params.to_dict(),
        "models": models,
        "chosen": outcome.chosen_summary(),
        "clusters": [
            {
                "label": c["label"],
                "size": c["size"],
                "share": c["share"],
                "description": c["description"],
                "median": c["median"],
            }
            for c in outcome.clusters
        ],
        "seconds": round(time.monotonic() - started, 2),
        "import_seconds": round(summary.seconds, 2),
    }
