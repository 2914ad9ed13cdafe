"""Reads of consent: the current state per profile and purpose, as a value and as a queryset filter.

State follows merges: the derived ``ConsentState`` rows belong to live profiles and are computed
from the ledger records of the live profile and of every profile merged into it. An answer that
expired, or no answer at all, means the purpose's default (``Purpose.default_granted``: analytics
yes, everything else no).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from profiles.models import Profile

from .models import ConsentRecord, ConsentState, DataSubjectRequest, Purpose

PURPOSE_KEYS = ("analytics", "personalisation", "marketing", "third_party_sharing")
# used when a purpose row is missing (e.g. a test flushed the seeded rows): the contract's defaults
BUILTIN_DEFAULTS = {"analytics": True, "personalisation": False, "marketing": False, "third_party_sharing": False}


def purpose_default(*, purpose: str) -> bool:
    row = Purpose.objects.filter(key=purpose).values_list("default_granted", flat=True).first()
    return BUILTIN_DEFAULTS.get(purpose, False) if row is None else bool(row)


def purposes_active() -> QuerySet[Purpose]:
    return Purpose.objects.filter(is_active=True).order_by("position", "key")


def _uuid(value) -> uuid.UUID | None:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except (TypeError, ValueError):
        return None


def profile_live_id(*, profile_id) -> uuid.UUID | None:
    """The live profile id for any (possibly merged-away) profile id; None when unknown."""
    pk = _uuid(profile_id)
    if pk is None:
        return None
    row = Profile.objects.filter(pk=pk).values_list("pk", "merged_into_id").first()
    if row is None:
        return None
    return row[1] or row[0]


def profile_group_ids(*, profile_id) -> list[str]:
    """The live profile of ``profile_id`` and every profile merged into it (strings, live first)."""
    live = profile_live_id(profile_id=profile_id)
    if live is None:
        return []
    absorbed = Profile.objects.filter(merged_into_id=live).order_by("created_at").values_list("pk", flat=True)
    return [str(live), *(str(pk) for pk in absorbed)]


def consent_granted(*, profile_id, purpose: str, at: datetime | None = None) -> bool:
    """Whether ``purpose`` is allowed for the person of ``profile_id`` now (or at ``at``, from the ledger)."""
    live = profile_live_id(profile_id=profile_id)
    default = purpose_default(purpose=purpose)
    if live is None:
        return default
    if at is None:
        now = timezone.now()
        states = ConsentState.objects.filter(profile_id=live, purpose__key=purpose)
        state = states.values("granted", "expires_at").first()
        if state is None or (state["expires_at"] is not None and state["expires_at"] <= now):
            return default
        return state["granted"]
    record = (
        ConsentRecord.objects.filter(
            profile_id__in=_group_at(live), purpose__key=purpose, recorded_at__lte=at, anonymised_at__isnull=True
        )
        .order_by("-recorded_at", "-id")
        .values("granted", "expires_at")
        .first()
    )
    if record is None or (record["expires_at"] is not None and record["expires_at"] <= at):
        return default
    return record["granted"]


def _group_at(live: uuid.UUID) -> list[uuid.UUID]:
    return [live, *Profile.objects.filter(merged_into_id=live).values_list("pk", flat=True)]


def consent_granted_q(*, purpose: str, profile_field: str = "pk", now: datetime | None = None) -> Q:
    """A filter keeping rows whose ``profile_field`` (a live profile id) may be used for ``purpose``
    at ``now`` (default: the current time; answers expired by then count as not given).

    ``Profile.objects.filter(consent_granted_q(purpose="marketing"))``;
    ``SegmentMembership.objects.filter(consent_granted_q(purpose="marketing", profile_field="profile_id"))``.
    """
    now = timezone.now() if now is None else now
    current = ConsentState.objects.filter(profile_id=OuterRef(profile_field), purpose__key=purpose).filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=now)
    )
    if purpose_default(purpose=purpose):
        return ~Q(Exists(current.filter(granted=False)))
    return Q(Exists(current.filter(granted=True)))


def consent_states(*, profile_id) -> dict[str, dict]:
    """Per active purpose: granted, source, policy_version, recorded_at, expires_at (None when the
    default applies), plus ``default`` (whether the value is the purpose's default)."""
    live = profile_live_id(profile_id=profile_id)
    now = timezone.now()
    states = {}
    rows = {}
    if live is not None:
        rows = {s.purpose.key: s for s in ConsentState.objects.filter(profile_id=live).select_related("purpose").all()}
    for purpose in purposes_active():
        row = rows.get(purpose.key)
        if row is None or (row.expires_at is not None and row.expires_at <= now):
            states[purpose.key] = {
                "granted": purpose.default_granted,
                "source": "default",
                "policy_version": purpose.policy_version,
                "recorded_at": None,
                "expires_at": None,
                "default": True,
                "expired": row is not None,
            }
        else:
            states[purpose.key] = {
                "granted": row.granted,
                "source": row.source,
                "policy_version": row.policy_version,
                "recorded_at": row.recorded_at,
                "expires_at": row.expires_at,
                "default": False,
                "expired": False,
            }
    return states


def consent_history(*, profile_id) -> QuerySet[ConsentRecord]:
    """Every ledger record of the person (all merged profiles), newest first."""
    return (
        ConsentRecord.objects.filter(profile_id__in=profile_group_ids(profile_id=profile_id))
        .select_related("purpose")
        .order_by("-recorded_at", "-id")
    )


def privacy_requests_overdue() -> QuerySet[DataSubjectRequest]:
    open_statuses = ["received", "verified", "queued", "running", "failed"]
    return DataSubjectRequest.objects.filter(status__in=open_statuses, due_at__lt=timezone.now())


def consent_granted_sql(*, purpose: str, profile_column: str) -> tuple[str, list]:
    """A SQL condition for set-based queries: true when the LIVE profile id in ``profile_column`` may
    be used for ``purpose`` now (its unexpired answer; without one, the purpose's default). Returns
    (sql, params) with positional ``%s`` parameters. ``profile_column`` is SQL written by the caller
    (e.g. ``COALESCE(p.merged_into_id, p.id)``), never user input.

    Planned as a semi-join on ``consent_consentstate`` (one index probe per person, not per row):
    for an opt-in purpose (default no, e.g. personalisation) an unexpired grant must exist; for an
    opt-out purpose (default yes, e.g. analytics) no unexpired denial may exist. This is the one
    place where training leaves out people without personalisation consent
    (``recommendations.selectors.interactions_extract``)."""
    default = purpose_default(purpose=purpose)
    # profile_column is SQL written by the calling code; values are parameters
    exists = (
        "EXISTS (SELECT 1 FROM consent_consentstate cs JOIN consent_purpose cp ON cp.id = cs.purpose_id "  # noqa: S608
        f"WHERE cs.profile_id = {profile_column} AND cp.key = %s AND cs.granted = %s "
        "AND (cs.expires_at IS NULL OR cs.expires_at > now()))"
    )
    if default:
        return f"NOT {exists}", [purpose, False]
    return exists, [purpose, True]
