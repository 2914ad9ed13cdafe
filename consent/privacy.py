"""The privacy registry: every app that stores data about a person registers how to export it and
how to erase it. Data-subject requests walk the registry (highest ``order`` first).

Called from each app's ``AppConfig.ready()``::

    from consent.privacy import privacy_register
    privacy_register(name="segments", models=[SegmentMembership], export=..., erase=..., order=70)

``models`` are the models with a reference to a profile that the entry covers; a test fails when a
model that references ``profiles.Profile`` is covered by no entry. ``export(profile_ids)`` returns
JSON-serialisable data for the person's archive; ``erase(profile_ids)`` deletes or irreversibly
anonymises inside the caller's transaction. ``profile_ids`` are the live profile and every profile
merged into it, as strings.

``followup()`` (optional) is heavy work an erasure needs after its transaction commits (a stored
model rewritten without the person): ``privacy_erase`` runs every entry's follow-up right after the
commit, and a data-subject request is reported done only when they have finished. A follow-up finds
its work in what ``erase`` recorded in the transaction, so it is idempotent and can be run again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from django.db.models import Model


@dataclass(frozen=True)
class PrivacyEntry:
    name: str
    models: tuple[type[Model], ...]
    export: Callable[[list[str]], dict]
    erase: Callable[[list[str]], None]
    order: int = 50
    meta: dict = field(default_factory=dict)
    followup: Callable[[], object] | None = None


_REGISTRY: dict[str, PrivacyEntry] = {}


def privacy_register(
    *,
    name: str,
    models: list[type[Model]],
    export: Callable[[list[str]], dict],
    erase: Callable[[list[str]], None],
    order: int = 50,
    followup: Callable[[], object] | None = None,
) -> None:
    """Register (or replace, by ``name``) an app's exporter and eraser (and the eraser's follow-up)."""
    _REGISTRY[name] = PrivacyEntry(
        name=name, models=tuple(models), export=export, erase=erase, order=order, followup=followup
    )


def privacy_unregister(*, name: str) -> None:
    _REGISTRY.pop(name, None)


def privacy_entries() -> list[PrivacyEntry]:
    """Registered entries, highest order first (recommendations 90, segments 70, consent 30, profiles 10)."""
    return sorted(_REGISTRY.values(), key=lambda e: (-e.order, e.name))


def privacy_followups_run() -> dict[str, object]:
    """Run every entry's erasure follow-up (after an erasure committed); their results by entry."""
    return {entry.name: entry.followup() for entry in privacy_entries() if entry.followup is not None}


def privacy_covered_models() -> set[type[Model]]:
    return {model for entry in _REGISTRY.values() for model in entry.models}
