"""Reads of the profiles app."""

from __future__ import annotations

import uuid
from datetime import datetime

from django.db import connection
from django.db.models import Prefetch, QuerySet, prefetch_related_objects

from cdp.keys import key_hash

from .identity.trait_policy import trait_value
from .models import Event, Identifier, Profile, Source
from .normalize import normalize_identifier


def profile_display_name(traits: dict | None) -> str:
    """The person's name from their traits: ``name``, else first and last name (snake or camelCase)."""
    traits = traits or {}
    name = trait_value(traits, "name")
    if isinstance(name, str) and name.strip():
        return name.strip()
    parts = [traits.get("first_name") or traits.get("firstName"), traits.get("last_name") or traits.get("lastName")]
    return " ".join(str(p).strip() for p in parts if isinstance(p, str) and p.strip())


def source_by_write_key(*, raw_key: str) -> Source | None:
    """The active source of a write key (cached briefly per process, see cdp.api.keycache)."""
    from cdp.api.keycache import cached_lookup

    digest = key_hash(raw_key)
    return cached_lookup("source", digest, lambda: Source.objects.filter(write_key_hash=digest, is_active=True).first())


# --- profiles read API ---------------------------------------------------------------------------

# merged_into is kept flat (a merge repoints everything at the survivor), so one hop is the norm;
# the bound only stops a corrupt chain or cycle from looping.
MAX_MERGE_HOPS = 10


class MergeChainBroken(RuntimeError):
    """A merged_into chain longer than MAX_MERGE_HOPS, or a cycle: the data needs repair."""


def _parse_profile_id(profile_id: uuid.UUID | str) -> uuid.UUID | None:
    if isinstance(profile_id, uuid.UUID):
        return profile_id
    try:
        return uuid.UUID(str(profile_id))
    except ValueError:
        return None


def _follow_merges(profile: Profile) -> Profile:
    """The live survivor of ``profile`` (itself when live), following merged_into with a bound.

    The first hop is free when the caller used ``select_related("merged_into")``; later hops (which a
    flat merged_into never needs) cost a query each.
    """
    seen = {profile.pk}
    while profile.merged_into_id is not None:
        profile = profile.merged_into
        if profile.pk in seen:
            raise MergeChainBroken(f"merged_into cycle through profile {profile.pk}")
        if len(seen) > MAX_MERGE_HOPS:
            raise MergeChainBroken(f"merged_into chain longer than {MAX_MERGE_HOPS} hops to profile {profile.pk}")
        seen.add(profile.pk)
    return profile


def _with_identifiers(profile: Profile) -> Profile:
    prefetch_related_objects([profile], Prefetch("identifiers", queryset=Identifier.objects.order_by("kind", "id")))
    return profile


def profile_get_live(*, profile_id: uuid.UUID | str, with_identifiers: bool = False) -> tuple[Profile, bool]:
    """The live profile for an id and whether the id was merged away (then the survivor is returned).

    Raises ``Profile.DoesNotExist`` for an unknown or malformed id. With ``with_identifiers`` the
    identifiers are prefetched (ordered by kind), so reading them costs one query in all.
    """
    pk = _parse_profile_id(profile_id)
    if pk is None:
        raise Profile.DoesNotExist(f"Not a profile id: {str(profile_id)[:40]!r}")
    requested = Profile.objects.select_related("merged_into").get(pk=pk)
    profile = _follow_merges(requested)
    if with_identifiers:
        _with_identifiers(profile)
    return profile, profile.pk != requested.pk


def profile_find_by_identifier(*, kind: str, value: str) -> Profile | None:
    """The live profile owning identifier ``kind`` = ``value``, normalised exactly as ingestion does.

    None when nobody owns it or the value normalises to nothing (junk, blocklisted, invalid email or
    phone). Identifiers are prefetched.
    """
    normalised = normalize_identifier(kind, value)
    if normalised is None:
        return None
    identifier = Identifier.objects.select_related("profile__merged_into").filter(kind=kind, value=normalised).first()
    if identifier is None:
        return None
    return _with_identifiers(_follow_merges(identifier.profile))


def profile_events(
    *,
    profile: Profile,
    name: str | None = None,
    type: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[Event]:
    """A profile's events, newest first; ``since`` is inclusive, ``until`` exclusive (on occurred_at)."""
    events = Event.objects.filter(profile=profile)
    if name is not None:
        events = events.filter(name=name)
    if type is not None:
        events = events.filter(type=type)
    if since is not None:
        events = events.filter(occurred_at__gte=since)
    if until is not None:
        events = events.filter(occurred_at__lt=until)
    return events.order_by("-occurred_at", "-id")


def profile_intake_state(*, profile: Profile) -> tuple[int, float | None]:
    """(calls of this person still in the intake log, seconds since the oldest of them was accepted).

    Matched by the profile's user and anonymous ids (prefetched by the callers that read them);
    one query, a scan of the intake log, which is small while the stitch workers keep up."""
    ids = {"user_id": [], "anonymous_id": []}
    for identifier in profile.identifiers.all():
        if identifier.kind in ids:
            ids[identifier.kind].append(identifier.value)
    if not ids["user_id"] and not ids["anonymous_id"]:
        return 0, None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), EXTRACT(EPOCH FROM clock_timestamp() - min(received_at)) FROM profiles_intakeevent "
            "WHERE user_id = ANY(%s::text[]) OR anonymous_id = ANY(%s::text[])",
            [ids["user_id"], ids["anonymous_id"]],
        )
        count, lag = cursor.fetchone()
    return count, (round(float(lag), 3) if lag is not None else None)


def intake_state() -> dict:
    """Depth and lag of the whole intake log (readiness details, admin), and the calls set aside."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), EXTRACT(EPOCH FROM clock_timestamp() - min(received_at)), "
            "(SELECT count(*) FROM profiles_intakepoison) FROM profiles_intakeevent"
        )
        depth, lag, poison = cursor.fetchone()
    return {"depth": depth, "lag_seconds": round(float(lag), 3) if lag is not None else 0.0, "set_aside": poison}


def review_queue(queryset: QuerySet | None = None) -> QuerySet:
    """Match candidates (``queryset``, default all) in the order a reviewer should answer them (issue
    17's review queue): pending before decided, then the pair the matcher is least sure of first
    (``evidence.uncertainty``, the binary entropy of its match probability; a pair a conflict rule
    refused counts as fully uncertain), then the pair whose answer settles most record pairs, then
    the higher score."""
    from django.db.models import F, FloatField, IntegerField
    from django.db.models.fields.json import KeyTextTransform
    from django.db.models.functions import Cast

    from .models import MatchCandidate

    queryset = MatchCandidate.objects.all() if queryset is None else queryset
    return queryset.annotate(
        _uncertainty=Cast(KeyTextTransform("uncertainty", "evidence"), FloatField()),
        _record_pairs=Cast(KeyTextTransform("record_pairs", "evidence"), IntegerField()),
    ).order_by(
        "status",
        F("_uncertainty").desc(nulls_last=True),
        F("_record_pairs").desc(nulls_last=True),
        "-score",
        "pk",
    )


def review_next(*, skip=()) -> tuple[object | None, int]:
    """(the pending pair to answer next, how many are pending), leaving out the pairs in ``skip`` (those
    the reviewer put off in this sitting)."""
    from .models import CandidateStatus

    pending = review_queue().filter(status=CandidateStatus.PENDING)
    return pending.exclude(pk__in=list(skip)).first(), pending.count()
