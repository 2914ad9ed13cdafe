"""Writes of consent: recording answers in the ledger and keeping the derived state current.

Data-subject requests (access, erasure) live in ``consent/requests.py``; the privacy center's
links in ``consent/center.py``.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import uuid
import zlib
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from . import hooks
from .models import ConsentRecord, Purpose, Suppression
from .selectors import BUILTIN_DEFAULTS, profile_live_id

SOURCES = ("banner", "event", "api", "privacy_center", "admin", "import", "demo")


class ConsentError(ValueError):
    """Bad input to a consent service; ``field`` names what was wrong."""

    def __init__(self, message: str, *, field: str = "non_field_errors") -> None:
        super().__init__(message)
        self.field = field


def salted_hash(value: str) -> str:
    """HMAC-SHA256 of ``value`` with CONSENT_HASH_SALT: evidence IPs and suppression entries."""
    return hmac_sha256_hex(settings.CONSENT_HASH_SALT, value.encode())


def hmac_sha256_hex(salt: str, message: bytes) -> str:
    """``hmac.new(salt.encode(), message, hashlib.sha256).hexdigest()`` in a third of the time: the
    key's inner and outer hashes are made once per salt and copied (OpenSSL 3 looks the digest up
    again for every new HMAC). Every tracking call's identifiers are hashed (decision 0053)."""
    inner, outer = _hmac_pads(salt)
    digest = inner.copy()
    digest.update(message)
    result = outer.copy()
    result.update(digest.digest())
    return result.hexdigest()


@functools.lru_cache(maxsize=16)
def _hmac_pads(salt: str):
    key = salt.encode()
    if len(key) > _SHA256_BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_SHA256_BLOCK, b"\0")
    return hashlib.sha256(key.translate(hmac.trans_36)), hashlib.sha256(key.translate(hmac.trans_5C))


_SHA256_BLOCK = 64


def suppression_hash(kind: str, value: str) -> str:
    """The suppression list's key for a normalised identifier (under the current salt: new entries)."""
    return salted_hash(f"suppress:{kind}:{value}")


def suppression_hashes(kind: str, value: str) -> list[str]:
    """Every key an identifier's entry may have: the current salt's, then each previous salt's
    (``CONSENT_HASH_SALT_PREVIOUS``), so rotating the salt never voids the list (docs/privacy.md)."""
    return list(suppression_hasher()(kind, value))


def suppression_hasher():
    """``suppression_hashes`` as a function of (kind, value) with the salts in force read now, for a
    batch's identifiers: Django's settings read per identifier were most of a stitched batch's
    suppression check. Answers tuples."""
    salt = settings.CONSENT_HASH_SALT
    previous = tuple(getattr(settings, "CONSENT_HASH_SALT_PREVIOUS", None) or ())
    return lambda kind, value: _suppression_keys(kind, value, salt, previous)


@functools.lru_cache(maxsize=8_192)
def _suppression_keys(kind: str, value: str, salt: str, previous: tuple[str, ...]) -> tuple[str, ...]:
    # every tracking call's identifiers are looked up on the list, at accept and again at stitching,
    # and returning customers repeat them: HMACs cached per process, keyed on the salts in force
    # (8,192 identifiers, about 3 MB: web workers also hold the recommendation model, under 500 MB)
    message = f"suppress:{kind}:{value}".encode()
    if not previous:
        return (hmac_sha256_hex(salt, message),)
    return tuple(hmac_sha256_hex(s, message) for s in (salt, *previous))


# Where an opt-in that lifts suppression may come from: an answer the person gave on purpose, now
# (decision 0033). An event's ``context.consent`` is not one: consent managers re-send stored
# preferences with every call, so a cookie from before the erasure would bring the person back.
OPT_IN_SOURCES = ("banner", "privacy_center", "admin")


def suppressions_lift(*, hashes: list[str], source: str, answered_at: datetime | None = None) -> int:
    """The person opted in again, explicitly and freshly: events with these identifiers are accepted
    from now on. Only answers from ``OPT_IN_SOURCES`` lift, and only entries written before the
    answer was given (a replayed answer from before the erasure lifts nothing). Returns entries lifted."""
    if source not in OPT_IN_SOURCES:
        raise ConsentError(f"Suppression is lifted only by an explicit opt-in ({', '.join(OPT_IN_SOURCES)}).")
    answered_at = answered_at or timezone.now()
    deleted, _ = Suppression.objects.filter(hash__in=hashes, created_at__lt=answered_at).delete()
    return deleted


def suppressed_hashes(*, identifiers: list[tuple[str, str]]) -> set[str]:
    """The suppression entries among these normalised identifiers (one indexed query)."""
    hashes = [h for kind, value in identifiers for h in suppression_hashes(kind, value)]
    if not hashes:
        return set()
    return set(Suppression.objects.filter(hash__in=hashes).values_list("hash", flat=True))


def consent_evidence(*, ip: str | None = None, user_agent: str | None = None, banner_id: str | None = None) -> dict:
    """The evidence stored with an answer: never the raw IP."""
    evidence: dict = {}
    if banner_id:
        evidence["banner_id"] = str(banner_id)[:100]
    if ip:
        evidence["ip_hash"] = salted_hash(ip)
    if user_agent:
        evidence["user_agent"] = str(user_agent)[:300]
    return evidence


def purposes_ensure() -> None:
    """Create the four standard purposes when missing (a flushed test database, a fresh install)."""
    names = {
        "analytics": ("Analytics", "legitimate_interest"),
        "personalisation": ("Personalisation", "consent"),
        "marketing": ("Marketing", "consent"),
        "third_party_sharing": ("Sharing with partners", "consent"),
    }
    for position, (key, default) in enumerate(BUILTIN_DEFAULTS.items()):
        name, basis = names[key]
        Purpose.objects.get_or_create(
            key=key, defaults={"name": name, "legal_basis": basis, "default_granted": default, "position": position}
        )


def _lock_profile(live) -> None:
    key = zlib.crc32(f"consent:{live}".encode())
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])


@transaction.atomic
def consent_record(
    *,
    profile_id,
    choices: dict[str, bool],
    source: str,
    policy_version: str | None = None,
    evidence: dict | None = None,
    at: datetime | None = None,
) -> list[ConsentRecord]:
    """Append one ledger record per purpose in ``choices`` for the person and refresh their state."""
    if source not in SOURCES:
        raise ConsentError(f"Unknown source {source!r}; one of {', '.join(SOURCES)}.", field="source")
    if not choices:
        raise ConsentError("Give at least one purpose.", field="purposes")
    if not Purpose.objects.exists():  # a fresh install or a flushed test database: the standard four
        purposes_ensure()
    purposes = {p.key: p for p in Purpose.objects.filter(key__in=list(choices), is_active=True)}
    unknown = sorted(set(choices) - set(purposes))
    if unknown:
        raise ConsentError(f"Unknown purpose(s): {', '.join(unknown)}.", field="purposes")
    live = profile_live_id(profile_id=profile_id)
    if live is None:
        raise ConsentError("Unknown profile.", field="profile_id")
    _lock_profile(live)
    at = at or timezone.now()
    records = []
    for key, granted in choices.items():
        purpose = purposes[key]
        days = purpose.validity_days or settings.CONSENT_VALIDITY_DAYS
        records.append(
            ConsentRecord(
                profile_id=live,
                purpose=purpose,
                granted=bool(granted),
                source=source,
                policy_version=str(policy_version or purpose.policy_version)[:32],
                evidence=evidence or {},
                recorded_at=at,
                expires_at=at + timedelta(days=days) if days else None,
            )
        )
    ConsentRecord.objects.bulk_create(records)
    consent_state_refresh(profile_ids=[str(live)])
    if choices.get("analytics") is False:
        analytics_denial_apply(profile_ids=[str(live)])
    hooks.on_consent_changed.fire(profile_ids=[str(live)], purposes=sorted(choices))
    return records


RECORDS_BULK_SQL = """
WITH v AS (
    SELECT * FROM unnest(%(pids)s::uuid[], %(keys)s::text[], %(granted)s::bool[], %(ats)s::timestamptz[],
                         %(evidence)s::text[]) AS v(pid, key, granted, at, evidence)
), ins AS (
    INSERT INTO consent_consentrecord (profile_id, purpose_id, granted, source, policy_version, evidence, recorded_at,
                                       expires_at)
    SELECT v.pid, p.id, v.granted, %(source)s, p.policy_version, v.evidence::jsonb, v.at,
           CASE WHEN coalesce(p.validity_days, %(days)s) > 0
                THEN v.at + make_interval(days => coalesce(p.validity_days, %(days)s)) END
    FROM v JOIN consent_purpose p ON p.key = v.key AND p.is_active
    RETURNING id, profile_id, purpose_id, granted, source, policy_version, recorded_at, expires_at
)
INSERT INTO consent_consentstate AS s (profile_id, purpose_id, granted, source, policy_version, recorded_at, expires_at,
                                       record_id)
SELECT DISTINCT ON (profile_id, purpose_id) profile_id, purpose_id, granted, source, policy_version, recorded_at,
       expires_at, id
FROM ins ORDER BY profile_id, purpose_id, recorded_at DESC, id DESC
ON CONFLICT (profile_id, purpose_id) DO UPDATE SET granted = EXCLUDED.granted, source = EXCLUDED.source,
    policy_version = EXCLUDED.policy_version, recorded_at = EXCLUDED.recorded_at, expires_at = EXCLUDED.expires_at,
    record_id = EXCLUDED.record_id
WHERE (EXCLUDED.recorded_at, EXCLUDED.record_id) >= (s.recorded_at, s.record_id)
"""


def consent_records_bulk(*, entries: list[tuple[str, dict[str, bool], datetime, dict]], source: str) -> int:
    """Append many answers of LIVE profiles at once and move their state forward, in one statement
    (ingestion: consent in event context; the demo). ``entries`` are (live profile id,
    {purpose: granted}, answered at, evidence); unknown or inactive purposes are skipped. An answer
    older than the current state is recorded but does not replace it."""
    columns: dict[str, list] = {"pids": [], "keys": [], "granted": [], "ats": [], "evidence": []}
    for profile_id, choices, at, evidence in entries:
        encoded = json.dumps(evidence or {})
        for key, granted in choices.items():
            columns["pids"].append(str(profile_id))
            columns["keys"].append(key)
            columns["granted"].append(bool(granted))
            columns["ats"].append(at)
            columns["evidence"].append(encoded)
    if not columns["pids"]:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(RECORDS_BULK_SQL, {**columns, "source": source, "days": settings.CONSENT_VALIDITY_DAYS})
    denied = sorted(
        {
            pid
            for pid, key, g in zip(columns["pids"], columns["keys"], columns["granted"], strict=True)
            if key == "analytics" and not g
        }
    )
    if denied:
        analytics_denial_apply(profile_ids=denied)
    if hooks.on_consent_changed.subscribers:
        hooks.on_consent_changed.fire(profile_ids=sorted(set(columns["pids"])), purposes=sorted(set(columns["keys"])))
    return len(columns["pids"])


def analytics_denial_apply(*, profile_ids: list[str]) -> int:
    """Honour an analytics denial for events already stored (CONSENT_ANALYTICS_DENIAL): ``strict``
    deletes every event of the person (all merged profiles), ``essential`` all but
    CONSENT_ESSENTIAL_EVENTS, ``off`` nothing. Computed traits are recomputed (pending work).
    Returns the events deleted."""
    policy = settings.CONSENT_ANALYTICS_DENIAL
    if policy not in ("strict", "essential") or not profile_ids:
        return 0
    from profiles.identity.merge import pending_mark

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id::text FROM profiles_profile WHERE coalesce(merged_into_id, id) IN "
            "(SELECT coalesce(merged_into_id, id) FROM profiles_profile WHERE id::text = ANY(%s))",
            [sorted({str(p) for p in profile_ids})],
        )
        group = [row[0] for row in cursor.fetchall()]
        if policy == "strict":
            cursor.execute("DELETE FROM profiles_event WHERE profile_id = ANY(%s::uuid[])", [group])
        else:
            cursor.execute(
                "DELETE FROM profiles_event WHERE profile_id = ANY(%s::uuid[]) "
                "AND NOT (type = 'track' AND name = ANY(%s::text[]))",
                [group, list(settings.CONSENT_ESSENTIAL_EVENTS)],
            )
        deleted = cursor.rowcount
    if deleted:
        pending_mark(group)  # computed traits follow the events that remain
    return deleted


STATE_REFRESH_SQL = """
INSERT INTO consent_consentstate (profile_id, purpose_id, granted, source, policy_version, recorded_at, expires_at,
                                  record_id)
SELECT DISTINCT ON (p.live, r.purpose_id) p.live, r.purpose_id, r.granted, r.source, r.policy_version, r.recorded_at,
       r.expires_at, r.id
FROM consent_consentrecord r
JOIN (SELECT id, coalesce(merged_into_id, id) AS live FROM profiles_profile
      WHERE id = ANY(%(lives)s) OR merged_into_id = ANY(%(lives)s)) p ON r.profile_id = p.id
ORDER BY p.live, r.purpose_id, r.recorded_at DESC, r.id DESC
ON CONFLICT (profile_id, purpose_id) DO UPDATE SET granted = EXCLUDED.granted, source = EXCLUDED.source,
    policy_version = EXCLUDED.policy_version, recorded_at = EXCLUDED.recorded_at, expires_at = EXCLUDED.expires_at,
    record_id = EXCLUDED.record_id
"""


@transaction.atomic
def consent_state_refresh(*, profile_ids: list[str]) -> int:
    """Recompute the derived state of the live profiles of ``profile_ids`` from the ledger (after a
    record, a merge or an unmerge). States of merged-away profiles are removed. Returns rows written."""
    asked = sorted({str(pid) for pid in profile_ids})
    with connection.cursor() as cursor:
        cursor.execute(
            # ids compared as uuids (not id::text), so the primary key is used: this runs once per merge,
            # and a text comparison scanned every profile (162 ms at 100,000 profiles)
            "SELECT DISTINCT coalesce(merged_into_id, id)::text FROM profiles_profile WHERE id = ANY(%s::uuid[])",
            [[pid for pid in asked if _is_uuid(pid)]],
        )
        lives = sorted(row[0] for row in cursor.fetchall())
        given = sorted(set(asked) | set(lives))
        cursor.execute("DELETE FROM consent_consentstate WHERE profile_id::text = ANY(%s)", [given])
        if not lives:
            return 0
        cursor.execute(STATE_REFRESH_SQL.replace("%(lives)s", "%(lives)s::uuid[]"), {"lives": lives})
        return cursor.rowcount


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def consent_state_rebuild() -> int:
    """Rebuild the whole derived state from the ledger (repair; management command)."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM consent_consentstate")
        cursor.execute(
            STATE_REFRESH_SQL.replace(
                "WHERE id = ANY(%(lives)s) OR merged_into_id = ANY(%(lives)s)",
                "WHERE id IN (SELECT profile_id FROM consent_consentrecord)",
            )
        )
        return cursor.rowcount


def on_profiles_merged(*, winner_id: str, loser_id: str, merge_id: int) -> None:
    """profiles hook: the loser's answers now count for the winner (latest answer wins)."""
    consent_state_refresh(profile_ids=[winner_id, loser_id])


def on_profiles_merged_many(*, calls: list[dict]) -> None:
    """profiles hook, a batch of merges (the fuzzy job's bulk path): one refresh for all of them."""
    consent_state_refresh(profile_ids=[str(p) for c in calls for p in (c["winner_id"], c["loser_id"])])


def on_profiles_unmerged(*, winner_id: str, loser_id: str, merge_id: int) -> None:
    """profiles hook: each profile gets back the state of its own records."""
    consent_state_refresh(profile_ids=[winner_id, loser_id])


@transaction.atomic
def consent_record_for_identifiers(
    *,
    identifiers: list[tuple[str, str]],
    choices: dict[str, bool],
    source: str,
    policy_version: str | None = None,
    evidence: dict | None = None,
    at: datetime | None = None,
) -> tuple[str | None, list[ConsentRecord]]:
    """The storefront's banner: answers for whoever these (raw) identifiers belong to, creating or
    linking the profile as ingestion would. An erased person's identifiers (suppression list) are
    refused — ``(None, [])`` — unless this is an explicit opt-in (``OPT_IN_SOURCES``) granting
    analytics, given after the erasure: that lifts the suppression."""
    from profiles.identity.resolve import profile_resolve
    from profiles.normalize import normalize_identifier

    normalised = []
    for kind, raw in identifiers:
        value = normalize_identifier(kind, raw) if raw not in (None, "") else None
        if value:
            normalised.append((kind, value))
    if not normalised:
        raise ConsentError("No usable identifier (userId, anonymousId, email or phone).", field="identifiers")
    at = at or timezone.now()
    suppressed = suppressed_hashes(identifiers=normalised)
    if suppressed:
        # an erased person comes back only by a fresh, explicit opt-in to analytics
        if choices.get("analytics") is not True or source not in OPT_IN_SOURCES:
            return None, []
        suppressions_lift(hashes=sorted(suppressed), source=source, answered_at=at)
        if suppressed_hashes(identifiers=normalised):  # the answer predates the erasure: not fresh
            return None, []
    profile = profile_resolve(identifiers=normalised, traits={}, at=at)
    records = consent_record(
        profile_id=profile.pk,
        choices=choices,
        source=source,
        policy_version=policy_version,
        evidence=evidence,
        at=at,
    )
    return str(profile.pk), records
