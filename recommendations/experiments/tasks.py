"""Celery tasks of experiments (imported by ``units.register`` so that the worker knows them)."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="recommendations.experiments.tasks.experiments_units_drain", acks_late=True)
def experiments_units_drain() -> int:
    """Recompute the units whose events, consent or merges changed (the pending set)."""
    from .units import units_drain

    return units_drain()


@shared_task(name="recommendations.experiments.tasks.experiments_exposures_refresh", acks_late=True)
def experiments_exposures_refresh() -> int:
    """First exposures and the units they touch, from the served log since the last refresh, for
    every running experiment (beat, every minute)."""
    from django.utils import timezone

    from .models import Experiment, ExperimentStatus
    from .services import exposures_refresh

    count = 0
    for experiment in Experiment.objects.filter(status=ExperimentStatus.RUNNING):
        count += exposures_refresh(experiment=experiment, until=timezone.now())
    return count


@shared_task(name="recommendations.experiments.tasks.heavy_experiment_units_rebuild", acks_late=True)
def heavy_experiment_units_rebuild(experiment_id: int | None = None) -> int:
    """Every unit again from the events: one experiment (after it stopped: late events), or every
    running one (nightly: bulk imports fire no hook)."""
    from .models import Experiment, ExperimentStatus
    from .units import units_rebuild

    experiments = Experiment.objects.filter(status=ExperimentStatus.RUNNING)
    if experiment_id is not None:
        experiments = Experiment.objects.filter(pk=experiment_id)
    return sum(units_rebuild(experiment=experiment) for experiment in experiments)
