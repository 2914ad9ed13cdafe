"""``manage.py evaluate_clustering FILE``: customer clustering on an order-lines file (PROTOCOL.md C).

Thin: ``segments.clustering.evaluate.clustering_evaluate`` does the work inside one transaction that
is rolled back, so the database is left as it was. One JSON object on stdout, a table on stderr.
"""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from tqdm import tqdm

from profiles.bulk import OrderColumns, OrderImportError
from segments.clustering.engine import ALGORITHM_LABELS, ALGORITHMS, ClusteringError, ClusteringParams


def fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


class _RollBack(Exception):
    """Raised at the end of the evaluation to undo everything it wrote."""


class Command(BaseCommand):
    help = (
        "Evaluate customer clustering on an order-lines CSV (optionally gzipped; PROTOCOL.md section C, cleaning "
        "of section R). The file is imported into PostgreSQL, computed traits and clustering features are the "
        "product's own, and every algorithm chooses k by silhouette and bootstrap stability with a minimum "
        "cluster share. One JSON object on stdout, a table on stderr; everything is rolled back at the end."
    )

    def add_arguments(self, parser):
        OrderColumns.add_arguments(parser)
        parser.add_argument(
            "--algorithms",
            default="kmeans,gmm,agglomerative",
            help=f"comma-separated, from {', '.join(ALGORITHMS)} (default: %(default)s)",
        )
        parser.add_argument("--k-min", type=int, default=4, help="smallest k considered (default: %(default)s)")
        parser.add_argument("--k-max", type=int, default=12, help="largest k considered (default: %(default)s)")
        parser.add_argument(
            "--min-share", type=float, default=0.02, help="smallest cluster share allowed (default: %(default)s)"
        )
        parser.add_argument(
            "--bootstrap", type=int, default=5, help="bootstrap resamples for stability (default: %(default)s)"
        )
        parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
        parser.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")

    def handle(self, *args, **options):
        from segments.clustering.evaluate import clustering_evaluate

        try:
            params = ClusteringParams.from_dict(
                {
                    "algorithms": [a.strip() for a in options["algorithms"].split(",") if a.strip()],
                    "k_min": options["k_min"],
                    "k_max": options["k_max"],
                    "min_share": options["min_share"],
                    "bootstrap": options["bootstrap"],
                    "seed": options["seed"],
                }
            )
        except ClusteringError as exc:
            raise CommandError(str(exc)) from exc
        columns = OrderColumns.from_options(options)
        progress = not options["no_progress"]
        bar = tqdm(total=100, desc="clustering", unit="%", disable=not progress, file=self.stderr)

        def on_progress(fraction: float, message: str) -> None:
            bar.set_postfix_str(message)
            bar.update(max(int(100 * fraction) - bar.n, 0))

        result: dict = {}
        try:
            with transaction.atomic():
                result = clustering_evaluate(
                    path=options["file"], columns=columns, params=params, progress=progress, on_progress=on_progress
                )
                raise _RollBack
        except _RollBack:
            pass
        except (OrderImportError, ClusteringError) as exc:
            raise CommandError(str(exc)) from exc
        finally:
            bar.close()
        self._table(result)
        self.stdout.write(json.dumps(result))

    def _table(self, result: dict) -> None:
        write = self.stderr.write
        write(
            f"{result['dataset']}: {result['customers']} customers, {result['orders']} orders, as of "
            f"{result['as_of'][:10]}; features: {', '.join(result['features'])}"
        )
        write(
            f"{'algorithm':<22}{'k':>4}{'silhouette':>12}{'Davies-B.':>11}{'Calinski-H.':>13}{'stability':>11}"
            f"{'min share':>11}{'seconds':>9}{'k by sil. alone':>17}{'k by BIC':>10}"
        )
        for name, m in result["models"].items():
            write(
                f"{ALGORITHM_LABELS[name]:<22}{fmt(m['k'], 'd'):>4}{fmt(m['silhouette'], '.3f'):>12}"
                f"{fmt(m['davies_bouldin'], '.3f'):>11}{fmt(m['calinski_harabasz'], '.0f'):>13}"
                f"{fmt(m['stability'], '.3f'):>11}{fmt(m['min_share'], '.1%'):>11}{m['seconds']:>9.1f}"
                f"{fmt(m['k_by_silhouette_alone'], 'd'):>17}{fmt(m['k_by_bic'], 'd'):>10}"
            )
        chosen = result["chosen"]
        write(f"chosen: {ALGORITHM_LABELS[chosen['algorithm']]}, k={chosen['k']}")
        for c in result["clusters"]:
            write(f"  {c['label'] + 1:>2}  {c['size']:>6}  {c['share']:>6.1%}  {c['description']}")
