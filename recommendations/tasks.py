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
