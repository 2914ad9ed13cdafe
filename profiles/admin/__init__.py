"""Admin of profiles: sources and keys, profile search and pages, merges, the review queue, events.

A package in the style of PostHog's ``posthog/admin/``: one module per admin under ``admins/``,
shared ``paginators``, ``filters``, ``inlines``, ``search`` and ``display`` helpers, and one
entry point, :func:`register_all_admin`, which Django's admin autodiscovery runs on import.

Profiles, identifiers, events, merges and match candidates are written by ingestion and identity
resolution only, so their admin pages are read-only; the one write offered here is undoing a merge,
which goes through ``profiles.services.profile_unmerge``. The events table is the largest in the
system: its list never counts all rows, never sorts the whole table by default and builds its date
navigation from indexed profile columns instead of scanning events.
"""

from __future__ import annotations

from django.contrib import admin

from ..models import (
    Event,
    IntakePartition,
    IntakePoison,
    MatchCandidate,
    MatchingRun,
    Merge,
    Profile,
    SchemaItem,
    Source,
)
from .display import pretty_json
from .paginators import CappedCountPaginator

__all__ = ["CappedCountPaginator", "pretty_json", "register_all_admin"]


def register_all_admin(site: admin.AdminSite = admin.site) -> None:
    """Register every admin of the profiles app on ``site`` (once)."""
    from .admins import (
        EventAdmin,
        IntakePartitionAdmin,
        IntakePoisonAdmin,
        MatchingRunAdmin,
        MergeAdmin,
        ProfileAdmin,
        ReviewQueueAdmin,
        SchemaItemAdmin,
        SourceAdmin,
    )

    for model, model_admin in [
        (Source, SourceAdmin),
        (Profile, ProfileAdmin),
        (Merge, MergeAdmin),
        (MatchCandidate, ReviewQueueAdmin),  # MatchCandidateAdmin ordered by uncertainty (issue 17)
        (Event, EventAdmin),
        (MatchingRun, MatchingRunAdmin),
        (SchemaItem, SchemaItemAdmin),
        (IntakePartition, IntakePartitionAdmin),
        (IntakePoison, IntakePoisonAdmin),
    ]:
        if not site.is_registered(model):
            site.register(model, model_admin)


register_all_admin()
