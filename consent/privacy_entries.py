"""The privacy registry entries of profiles (which may not import consent) and of consent itself.

Both are registered in ``ConsentConfig.ready()``. Erasure uses set-based SQL: a person with
10,000 events is deleted in a few statements, not by Django's cascade collector.
"""

from __future__ import annotations

import uuid
from importlib import import_module

from django.conf import settings
from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.models import Q
from django.utils import timezone

from profiles.models import Event, Identifier, MatchCandidate, Merge, PendingWork, Profile
from profiles.schema import schema_samples_forget

from .models import (
    ConsentRecord,
    ConsentState,
    DataSubjectRequest,
    ExportArchive,
    PrivacyCenterToken,
    RequestAuditEntry,
    Suppression,
)
from .privacy import privacy_register

EVENTS_JSON_SQL = (
    "SELECT coalesce(json_agg(row_to_json(e) ORDER BY e.occurred_at, e.id), '[]'::json)::text FROM ("
    "SELECT id, type, name, user_id, anonymous_id, properties, traits, context, occurred_at, received_at, "
    "device_type, local_hour, profile_id FROM profiles_event WHERE profile_id = ANY(%s::uuid[])) e"
)


def _iso(value):
    return value.isoformat() if value is not None else None


# --- profiles --------------------------------------------------------------------------------------


def profiles_export(profile_ids: list[str]) -> dict:
    profiles = list(
        Profile.objects.filter(pk__in=profile_ids)
        .order_by("created_at")
        .values("id", "traits", "computed", "merged_into_id", "first_seen_at", "last_seen_at", "created_at")
    )
    identifiers = list(
        Identifier.objects.filter(profile_id__in=profile_ids)
        .order_by("kind", "id")
        .values("kind", "value", "profile_id", "created_at", "last_seen_at")
    )
    with connection.cursor() as cursor:  # events as JSON straight from PostgreSQL (10k events: tens of ms)
        cursor.execute(EVENTS_JSON_SQL, [profile_ids])
        events_json = cursor.fetchone()[0]
    merges = list(
        Merge.objects.filter(Q(winner_id__in=profile_ids) | Q(loser_id__in=profile_ids))
        .order_by("created_at")
        .values("id", "winner_id", "loser_id", "status", "reason", "evidence", "score", "created_at", "undone_at")
    )
    return {
        "profiles": profiles,
        "identifiers": identifiers,
        "events": RawJSON(events_json),
        "merges": merges,
    }


class RawJSON(str):
    """Already-serialised JSON that the archive writer embeds as is (no decode + encode of 10k events)."""


# The schema registry (profiles.SchemaItem) keeps a few sample values per event property and trait:
# a value that occurs anywhere in the person's events, traits or identifiers leaves the samples
# (found by the concurrency suite's full-database scan). Strings only; over-removing a common value
# costs an example, never privacy.
_SCHEMA_SAMPLES_SCRUB = """
WITH person AS (
    SELECT properties::text || ' ' || traits::text || ' ' || context::text AS t
    FROM profiles_event WHERE profile_id = ANY(%s::uuid[])
    UNION ALL SELECT traits::text FROM profiles_profile WHERE id = ANY(%s::uuid[])
    UNION ALL SELECT value FROM profiles_identifier WHERE profile_id = ANY(%s::uuid[])
), hit AS (
    SELECT DISTINCT s.id, v.value AS sample
    FROM profiles_schemaitem s CROSS JOIN LATERAL jsonb_array_elements(
        CASE WHEN jsonb_typeof(s.samples) = 'array' THEN s.samples ELSE '[]'::jsonb END) AS v(value)
    WHERE jsonb_typeof(v.value) = 'string'
      AND EXISTS (SELECT 1 FROM person WHERE strpos(person.t, v.value #>> '{}') > 0)
)
UPDATE profiles_schemaitem s
SET samples = (SELECT coalesce(jsonb_agg(v.value), '[]'::jsonb) FROM jsonb_array_elements(s.samples) AS v(value)
               WHERE v.value NOT IN (SELECT h.sample FROM hit h WHERE h.id = s.id))
WHERE s.id IN (SELECT id FROM hit)
"""


def profiles_erase(profile_ids: list[str]) -> None:
    """Delete every row of the person in profiles (and admin log entries that name them)."""
    ids = [str(uuid.UUID(p)) for p in profile_ids]
    identifier_rows = list(Identifier.objects.filter(profile_id__in=ids).values_list("id", "value"))
    merge_ids = list(Merge.objects.filter(Q(winner_id__in=ids) | Q(loser_id__in=ids)).values_list("id", flat=True))
    _log_entries_delete(
        [
            (Profile, ids),
            (Identifier, [str(i) for i, _ in identifier_rows]),
            (Merge, [str(i) for i in merge_ids]),
        ],
        [value for _, value in identifier_rows],
    )
    with connection.cursor() as cursor:
        cursor.execute(_SCHEMA_SAMPLES_SCRUB, [ids, ids, ids])
        cursor.execute("DELETE FROM profiles_event WHERE profile_id = ANY(%s::uuid[])", [ids])
        cursor.execute("DELETE FROM profiles_identifier WHERE profile_id = ANY(%s::uuid[])", [ids])
        cursor.execute(
            "DELETE FROM profiles_matchcandidate "
            "WHERE profile_a_id = ANY(%s::uuid[]) OR profile_b_id = ANY(%s::uuid[])",
            [ids, ids],
        )
        cursor.execute(
            "DELETE FROM profiles_merge WHERE winner_id = ANY(%s::uuid[]) OR loser_id = ANY(%s::uuid[])", [ids, ids]
        )
        cursor.execute("DELETE FROM profiles_pendingwork WHERE profile_id = ANY(%s::uuid[])", [ids])
        # other profiles' undo data may name the erased ones (repointed ids): strip those mentions
        cursor.execute(
            "UPDATE profiles_profile SET merged_into_id = NULL WHERE merged_into_id = ANY(%s::uuid[])", [ids]
        )
        cursor.execute("DELETE FROM profiles_profile WHERE id = ANY(%s::uuid[])", [ids])


def _log_entries_delete(objects: list[tuple[type, list[str]]], values: list[str]) -> None:
    """Admin history names objects by their __str__ (a profile's e-mail): remove those entries."""
    q = Q(pk__in=[])
    for model, ids in objects:
        if ids:
            q |= Q(content_type=ContentType.objects.get_for_model(model), object_id__in=ids)
    for value in values:
        if len(value) >= 6:  # shorter values would match unrelated history
            q |= Q(object_repr__icontains=value) | Q(change_message__icontains=value)
    LogEntry.objects.filter(q).delete()


# --- consent ---------------------------------------------------------------------------------------


def consent_export(profile_ids: list[str]) -> dict:
    history = list(
        ConsentRecord.objects.filter(profile_id__in=profile_ids)
        .order_by("recorded_at", "id")
        .values(
            "purpose__key",
            "granted",
            "source",
            "policy_version",
            "evidence",
            "recorded_at",
            "expires_at",
            "profile_id",
        )
    )
    for row in history:
        row["purpose"] = row.pop("purpose__key")
    states = list(
        ConsentState.objects.filter(profile_id__in=profile_ids).values(
            "purpose__key", "granted", "source", "policy_version", "recorded_at", "expires_at"
        )
    )
    for row in states:
        row["purpose"] = row.pop("purpose__key")
    requests = list(
        DataSubjectRequest.objects.filter(profile_id__in=profile_ids).values(
            "id", "kind", "status", "channel", "received_at", "due_at", "finished_at"
        )
    )
    return {"consent_history": history, "consent_state": states, "privacy_requests": requests}


def consent_erase(profile_ids: list[str]) -> None:
    """The ledger keeps its proof, re-keyed to a random subject and without evidence (decision 0009);
    everything else of the person in consent goes."""
    subject = uuid.uuid4()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL cdp.consent_anonymise = 'on'")
        cursor.execute(
            "UPDATE consent_consentrecord SET profile_id = %s, anonymised_at = %s, "
            "evidence = CASE WHEN evidence ? 'banner_id' THEN jsonb_build_object('banner_id', evidence->'banner_id') "
            "ELSE '{}'::jsonb END "
            "WHERE profile_id = ANY(%s::uuid[]) AND anonymised_at IS NULL",
            [subject, timezone.now(), profile_ids],
        )
        cursor.execute("SET LOCAL cdp.consent_anonymise = 'off'")
    ConsentState.objects.filter(profile_id__in=profile_ids).delete()
    from .services import salted_hash

    emails = Identifier.objects.filter(profile_id__in=profile_ids, kind="email").values_list("value", flat=True)
    tokens = PrivacyCenterToken.objects.filter(email_hash__in=[salted_hash(f"email:{e}") for e in emails])
    _sessions_end([key for key in tokens.values_list("session_key", flat=True) if key])
    tokens.delete()
    ExportArchive.objects.filter(profile_id__in=profile_ids).delete()
    # requests keep their dates and outcome (the proof that the request was honoured), not the person
    DataSubjectRequest.objects.filter(profile_id__in=profile_ids).update(profile=None, identifier_value="")


def _sessions_end(session_keys: list[str]) -> None:
    """Privacy-center sessions hold the verified address: end the person's sessions (any engine)."""
    if not session_keys:
        return
    store = import_module(settings.SESSION_ENGINE).SessionStore
    for key in session_keys:
        store(session_key=key).delete()


def privacy_entries_register() -> None:
    privacy_register(
        name="profiles",
        models=[Profile, Identifier, Event, Merge, MatchCandidate, PendingWork],
        export=profiles_export,
        erase=profiles_erase,
        order=10,
    )
    privacy_register(
        name="schema-samples",  # before "profiles" (10): it reads the person's values to drop them
        models=[],
        export=lambda profile_ids: {},
        erase=lambda profile_ids: schema_samples_forget(profile_ids=profile_ids),
        order=15,
    )
    privacy_register(
        name="consent",
        models=[ConsentRecord, ConsentState, DataSubjectRequest, ExportArchive],
        export=consent_export,
        erase=consent_erase,
        order=30,
    )


# models that hold no reference to a person by design (documented for the coverage test)
NO_PERSON_MODELS = (Suppression, PrivacyCenterToken, RequestAuditEntry)
