"""Every model that references a profile is covered by a privacy registry entry (export + erase)."""

from __future__ import annotations

from django.apps import apps
from django.db import models

from consent.privacy import privacy_covered_models, privacy_entries
from profiles.models import Profile


def _references_profile(model: type[models.Model]) -> list[str]:
    """Fields pointing at a profile: foreign keys (with or without a constraint), and plain uuid/text
    columns named like a profile id (``profile_id``, ``winner_profile_id``…)."""
    found = []
    for field in model._meta.get_fields(include_hidden=False):
        if not getattr(field, "concrete", False):
            continue
        by_fk = field.is_relation and field.related_model is Profile
        by_name = field.name.endswith("profile_id") or field.name.endswith("profile_ids")  # uuid/text/array ids
        if by_fk or by_name:
            found.append(field.name)
    return found


def test_every_model_referencing_a_profile_is_covered():
    covered = privacy_covered_models()
    missing = {
        f"{m._meta.label} ({', '.join(fields)})"
        for m in apps.get_models()
        if (fields := _references_profile(m)) and m not in covered and m is not Profile
    }
    assert not missing, f"models with personal data that no privacy_register() entry covers: {sorted(missing)}"
    assert Profile in covered


def test_the_detector_sees_what_it_must():
    from consent.models import ConsentRecord, DataSubjectRequest
    from profiles.models import Event, MatchCandidate, PendingWork

    for model in (Event, MatchCandidate, PendingWork, ConsentRecord, DataSubjectRequest):
        assert _references_profile(model), model


def test_entries_run_in_the_agreed_order():
    orders = {e.name: e.order for e in privacy_entries()}
    assert orders["profiles"] == 10 and orders["consent"] == 30
    assert [e.order for e in privacy_entries()] == sorted(orders.values(), reverse=True)
