"""Celery tasks of the recommendations app: thin wrappers over services, safe to run twice."""

from __future__ import annotations

from celery import shared_task

from recommendations import services


@shared_task(name="recommendations.tasks.ml_model_refresh", acks_late=True)
def ml_model_refresh(version_id: int | None = None) -> int:
    """Train, evaluate and maybe promote a model (``version_id`` from admin; none: nightly, a new one)."""
    if version_id is None:
        version_id = services.model_refresh_start(requested_by="schedule", queue=False).pk
    return services.model_refresh_execute(version_id=version_id).pk


@shared_task(
    name="recommendations.tasks.ml_models_forget_withdrawn",
    acks_late=True,
    autoretry_for=(Exception,),
    retry_backoff=True,
    max_retries=10,
)
def ml_models_forget_withdrawn(profile_ids: list[str]) -> list[int]:
    """People who withdrew personalisation consent leave every stored model (consent's hook)."""
    return services.recommendations_consent_withdrawn(profile_ids=profile_ids)


@shared_task(name="recommendations.tasks.experiments_bandits_update", acks_late=True)
def experiments_bandits_update(policy_id: int | None = None) -> int:
    """Recompute the arm shares of one running bandit policy (or every one) from its logged answers
    (idempotent: each run recomputes from the whole log)."""
    from recommendations.experiments.bandits import bandit_update
    from recommendations.experiments.models import BanditPolicy, BanditStatus

    ids = (
        [policy_id]
        if policy_id
        else BanditPolicy.objects.filter(status=BanditStatus.RUNNING).values_list("pk", flat=True)
    )
    for pk in ids:
        bandit_update(policy_id=pk)
    return len(ids)


@shared_task(name="recommendations.tasks.experiments_results_snapshot", acks_late=True)
def experiments_results_snapshot(experiment_id: int | None = None) -> int:
    """Refresh exposures and store the results of one running experiment (or every one): the series
    of the cumulative-lift chart."""
    from recommendations.experiments.models import Experiment, ExperimentStatus
    from recommendations.experiments.selectors import experiment_results

    experiments = Experiment.objects.filter(status=ExperimentStatus.RUNNING)
    if experiment_id:
        experiments = Experiment.objects.filter(pk=experiment_id)
    count = 0
    for experiment in experiments:
        experiment_results(experiment=experiment, refresh=True, snapshot=True)
        count += 1
    return count
