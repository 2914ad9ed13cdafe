"""The recommendations app's hooks into lower layers: the privacy registry and new events."""

from __future__ import annotations

import logging

logger = logging.getLogger("cdp.recommendations")


def export(profile_ids: list[str]) -> dict:
    from .reports import served_export

    return {"recommendations_shown": served_export(profile_ids=profile_ids)}


def erase(profile_ids: list[str]) -> None:
    from .services import recommendations_erase

    recommendations_erase(profile_ids=profile_ids)
    from .models import ExperimentOverride, Exposure

    Exposure.objects.filter(profile_id__in=profile_ids).delete()
    ExperimentOverride.objects.filter(profile_id__in=profile_ids).delete()


def followup() -> dict:
    """After the erasure committed: the stored models forget the people (artifact rewrites)."""
    from .services import model_erasures_apply

    return model_erasures_apply()


def register() -> None:
    try:
        from consent.privacy import privacy_register
    except ImportError:  # consent's registry not there
        return
    from .models import ExperimentOverride, Exposure, PendingModelErasure, RecommendationServed

    # PendingModelErasure holds only ids of people being erased, until the follow-up removed them
    # from the stored models (then the row goes): nothing to export, and erasing is what it is for
    privacy_register(
        name="recommendations",
        models=[RecommendationServed, Exposure, ExperimentOverride, PendingModelErasure],
        export=export,
        erase=erase,
        order=90,
        followup=followup,
    )


def on_profiles_merged(*, winner_id, loser_id, **kwargs) -> None:
    """Experiments: the survivor keeps the earlier exposure's variant (experiments.services)."""
    from .experiments.services import experiments_on_profiles_merged

    experiments_on_profiles_merged(winner_id=str(winner_id), loser_id=str(loser_id))


def on_profiles_merged_many(*, calls: list[dict]) -> None:
    """A batch of merges (the fuzzy job's bulk path): only losers that were exposed to an experiment
    have anything to carry over, found in one query; the rest cost nothing."""
    from django.db import connection

    losers = list({str(c["loser_id"]) for c in calls})
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT profile_id::text FROM recommendations_exposure WHERE profile_id = ANY(%s::uuid[])",
            [losers],
        )
        exposed = {row[0] for row in cursor.fetchall()}
    for call in calls:
        if str(call["loser_id"]) in exposed:
            on_profiles_merged(**call)


def on_events_stored(*, events: list[dict]) -> None:
    """Products first seen in events are created from their properties (one cheap statement)."""
    from .services import products_from_events

    products_from_events(events=events)


def on_consent_changed(*, profile_ids: list[str], purposes: list[str] | None = None, **_) -> None:
    """consent's hook (after commit): a personalisation answer may be a withdrawal; the worker
    forgets the people who no longer allow it from the stored models (as erasure does)."""
    if not profile_ids or (purposes is not None and "personalisation" not in purposes):
        return
    from cdp.queueing import task_send

    from .tasks import ml_models_forget_withdrawn

    # never waits on Redis; if the broker is down, the next refresh leaves them out anyway (training
    # consent filter) and a later answer of theirs queues this again
    if not task_send(ml_models_forget_withdrawn, args=[[str(p) for p in profile_ids]]):
        logger.warning("could not queue forgetting %d people after a consent change", len(profile_ids))
