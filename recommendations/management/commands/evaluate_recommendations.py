"""``manage.py evaluate_recommendations FILE``: recommendation quality on an order history (PROTOCOL.md R).

Through the product's own path: the order lines are imported into PostgreSQL by profiles' import
(``orders_import``: cleaning rules 1-3, one ``Order Completed`` event per order and customer),
extracted back with ``interactions_extract``, split in time with ``holdout_split``, trained with
``train_bundle`` (the service the scheduled refresh uses) and scored with ``evaluate_bundle``.
Everything happens in one transaction that is rolled back: the database is left as it was.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from tqdm import tqdm

from profiles.bulk import OrderColumns, OrderImportError, orders_import
from profiles.models import Source
from recommendations.engine.bundle import train_bundle
from recommendations.engine.evaluate import evaluate_bundle, holdout_split
from recommendations.engine.params import DEFAULT_PARAMS
from recommendations.selectors import interactions_extract

# the protocol's baselines, then cdp's own recommenders
BASELINES = ("popularity", "buy_again", "als", "bpr", "item_item", "item_item_bm25")
OWN = ("hybrid", "repeat_knn", "session", "content", "trending")
METRICS = ("precision@{k}", "recall@{k}", "ndcg@{k}", "map@{k}", "hit_rate@{k}", "coverage")


class _RollBack(Exception):
    """Raised at the end of the evaluation to undo everything it wrote."""


class Command(BaseCommand):
    help = (
        "Evaluate the recommenders on an order-lines CSV (optionally gzipped) as PROTOCOL.md section R says: "
        "cleaning, temporal split (the last --test-days are the test window), precision/recall/nDCG/MAP/hit rate "
        "at k and catalogue coverage for every protocol baseline and cdp's own recommenders. One JSON object on "
        "stdout, a table on stderr. Runs inside one database transaction that is rolled back."
    )

    def add_arguments(self, parser):
        OrderColumns.add_arguments(parser)
        parser.add_argument("--test-days", type=float, default=30.0)
        parser.add_argument("--k", type=int, default=10)
        parser.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")

    def handle(self, *args, **options):
        path = options["file"]
        if not Path(path).is_file():
            raise CommandError(f"No such file: {path}")
        k, test_days = options["k"], options["test_days"]
        if k < 1:
            raise CommandError("--k must be at least 1.")
        if test_days <= 0:
            raise CommandError("--test-days must be positive.")
        columns = OrderColumns.from_options(options)
        progress = not options["no_progress"]
        result: dict = {}
        try:
            with transaction.atomic():
                result = self._evaluate(path, columns, k, test_days, progress)
                raise _RollBack
        except _RollBack:
            pass
        except OrderImportError as exc:
            raise CommandError(str(exc)) from exc
        self.stderr.write(self._table(result, k))
        self.stdout.write(json.dumps(result, indent=2))

    def _evaluate(self, path: str, columns: OrderColumns, k: int, test_days: float, progress: bool) -> dict:
        seconds: dict[str, float] = {}
        t0 = time.monotonic()
        source_name = f"evaluate-recommendations-{uuid.uuid4().hex[:8]}"
        summary = orders_import(path=path, columns=columns, source_name=source_name, progress=progress)
        seconds["import"] = round(time.monotonic() - t0, 2)
        if summary.lines_kept == 0:
            raise CommandError(
                f"{path}: no order line is left after cleaning ({summary.rows_read} rows read, "
                f"{summary.kept_rule1} with a customer and an item, {summary.kept_rule2} with a positive quantity "
                f"and not cancelled, {summary.kept_rule3} with a digit in the item id)."
            )
        t0 = time.monotonic()
        source = Source.objects.get(name=source_name)
        # an offline measurement of an imported data set: it serves nobody, so no consent filter
        data, catalog = interactions_extract(source_ids=[source.pk], consent_purpose=None)
        seconds["extract"] = round(time.monotonic() - t0, 2)
        if len(data) == 0:
            raise CommandError(f"{path}: no order line could be imported.")
        train, truth = holdout_split(data, test_days)
        if len(train) == 0 or len(truth) == 0:
            raise CommandError(
                f"{path}: no customer has order lines both before and within the last {test_days:g} days; "
                "nothing to evaluate (try another --test-days)."
            )
        bar = tqdm(total=100, desc="training", unit="%", disable=not progress, file=self.stderr, leave=False)

        def report(fraction: float, message: str) -> None:
            bar.n = round(100 * fraction)
            bar.set_postfix_str(message)
            bar.refresh()

        t0 = time.monotonic()
        try:
            params = {
                "recommenders": [
                    *DEFAULT_PARAMS["recommenders"],
                    *(b for b in BASELINES if b not in DEFAULT_PARAMS["recommenders"]),
                ]
            }
            bundle = train_bundle(data=train, catalog=catalog, params=params, now=truth.cutoff, progress=report)
        finally:
            bar.close()
        seconds["train"] = round(time.monotonic() - t0, 2)
        fit = bundle.metrics["fit_seconds"]
        models: dict[str, dict] = {}
        t0 = time.monotonic()
        names = [n for n in (*BASELINES, *OWN) if n in bundle.recommenders]
        for name in tqdm(names, desc="evaluating", disable=not progress, file=self.stderr, leave=False):
            metrics = evaluate_bundle(bundle, truth, k, recommender=name)
            row = {m.format(k=k): round(metrics[m.format(k=k)], 6) for m in METRICS}
            row["train_seconds"] = round(_train_seconds(bundle, name, fit), 3)
            row["baseline"] = name in BASELINES
            models[name] = row
        seconds["evaluate"] = round(time.monotonic() - t0, 2)
        key = f"ndcg@{k}"
        best = max((n for n in BASELINES if n in models), key=lambda n: models[n][key])
        ratio = models["hybrid"][key] / models[best][key] if "hybrid" in models and models[best][key] else None
        return {
            "dataset": os.path.basename(path),
            "users_evaluated": len(truth),
            "items": truth.candidates,
            "k": k,
            "test_days": test_days,
            "cutoff": truth.cutoff,
            "order_lines": summary.lines_kept,
            "interactions_train": len(train),
            "best_baseline": best,
            "hybrid_vs_best_baseline": round(ratio, 4) if ratio is not None else None,
            "seconds": seconds,
            "models": models,
        }

    def _table(self, result: dict, k: int) -> str:
        if not result:
            return ""
        heads = [m.format(k=k) for m in METRICS] + ["train_seconds"]
        lines = [
            f"{result['dataset']}: {result['users_evaluated']} customers evaluated, {result['items']} candidate "
            f"items, cutoff {time.strftime('%Y-%m-%d %H:%M', time.gmtime(result['cutoff']))} UTC",
            f"{'model':<16}" + "".join(f"{h:>14}" for h in heads),
        ]
        for name, row in result["models"].items():
            label = name + (" *" if row["baseline"] else "")
            lines.append(f"{label:<16}" + "".join(f"{row[h]:>14.4f}" for h in heads))
        lines.append("* protocol baseline")
        if result["hybrid_vs_best_baseline"] is not None:
            lines.append(
                f"hybrid / best baseline ({result['best_baseline']}) nDCG@{k}: {result['hybrid_vs_best_baseline']:.3f}"
            )
        lines.append("seconds: " + ", ".join(f"{key} {value}" for key, value in result["seconds"].items()))
        return "\n".join(lines) + "\n"


def _train_seconds(bundle, name: str, fit: dict) -> float:
    """A recommender's fitting time including the recommenders it is built from."""
    seen: set[str] = set()

    def total(n: str) -> float:
        if n in seen:
            return 0.0
        seen.add(n)
        rec = bundle.recommenders.get(n)
        deps = getattr(type(rec), "requires", ()) if rec is not None else ()
        return fit.get(n, 0.0) + sum(total(d) for d in deps)

    return total(name)
