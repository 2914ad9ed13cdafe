"""Recompute the per-unit rows and rollups of experiments from the events (the repair), or check them.

    manage.py experiments_units_rebuild [KEY ...] [--all] [--check]

Without keys: every running experiment. ``--check`` only compares the rollups with the full
recompute from events and exits 1 when they differ.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from recommendations.experiments.models import Experiment, ExperimentStatus
from recommendations.experiments.units import sums_equal, units_rebuild, variant_sums_reference, variant_sums_stored


class Command(BaseCommand):
    help = "Recompute experiments' unit rows and per-variant rollups from the events (or --check them)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("keys", nargs="*", help="experiment keys (default: the running ones)")
        parser.add_argument("--all", action="store_true", help="every experiment, whatever its status")
        parser.add_argument("--check", action="store_true", help="compare with the full recompute; change nothing")

    def handle(self, *args, **options) -> None:
        experiments = Experiment.objects.filter(status=ExperimentStatus.RUNNING)
        if options["all"]:
            experiments = Experiment.objects.all()
        if options["keys"]:
            experiments = Experiment.objects.filter(key__in=options["keys"])
            missing = sorted(set(options["keys"]) - set(experiments.values_list("key", flat=True)))
            if missing:
                raise CommandError(f"No experiment {', '.join(missing)}.")
        differ = []
        for experiment in experiments.order_by("key"):
            if options["check"]:
                same = sums_equal(
                    variant_sums_stored(experiment=experiment), variant_sums_reference(experiment=experiment)
                )
                self.stdout.write(f"{experiment.key}: {'matches' if same else 'DIFFERS from'} the full recompute")
                if not same:
                    differ.append(experiment.key)
                continue
            bar = tqdm(desc=experiment.key, unit=" units", disable=None)

            def progress(done: int, total: int, bar=bar) -> None:
                bar.total = total
                bar.update(done - bar.n)

            units = units_rebuild(experiment=experiment, progress=progress)
            bar.close()
            self.stdout.write(f"{experiment.key}: {units} units recomputed")
        if differ:
            raise CommandError(f"Rollups differ from the full recompute: {', '.join(differ)}.")
