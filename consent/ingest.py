"""Consent on the ingestion path (subscribed to ``profiles.hooks`` filters in ``ConsentConfig.ready``).

1. Before identity work: events carrying an identifier of an erased person (suppression list) are
   dropped; only an explicit opt-in (banner, privacy center, admin) lifts the suppression, never an
   event's context. The same filter runs for ``import_orders``.
2. After identity work: Segment-style consent in the event context
   (``context.consent.categoryPreferences``) is recorded in the ledger when it differs from the
   person's current state, and events of people who denied analytics are dropped
   (``CONSENT_ANALYTICS_DENIAL``: strict = all, essential = all but CONSENT_ESSENTIAL_EVENTS, off).

Each costs one indexed query per batch; the ledger is written only when an answer changes.
"""

from __future__ import annotations

import re
from datetime import datetime

from django.conf import settings
from django.utils import timezone

from cdp.db import binary_cursor
from profiles import hooks

from .services import consent_records_bulk, salted_hash, suppression_hasher

# Segment's consent categories are named by each shop; these names map to cdp's purposes
# (case, spaces, hyphens and underscores ignored); CONSENT_CATEGORY_MAP adds or overrides.
DEFAULT_CATEGORY_MAP = {
    "analytics": "analytics",
    "performance": "analytics",
    "statistics": "analytics",
    "measurement": "analytics",
    "personalisation": "personalisation",
    "personalization": "personalisation",
    "functional": "personalisation",
    "marketing": "marketing",
    "advertising": "marketing",
    "targeting": "marketing",
    "thirdpartysharing": "third_party_sharing",
    "datasharing": "third_party_sharing",
    "sharing": "third_party_sharing",
}
_NAME = re.compile(r"[\s_\-]+")


def _category_map() -> dict[str, str]:
    extra = {_NAME.sub("", k.lower()): v for k, v in (getattr(settings, "CONSENT_CATEGORY_MAP", None) or {}).items()}
    return {**DEFAULT_CATEGORY_MAP, **extra}


def context_preferences(context: dict, category_map: dict[str, str] | None = None) -> dict[str, bool]:
    """cdp purposes stated by ``context.consent.categoryPreferences`` (unknown categories ignored)."""
    consent = context.get("consent") if isinstance(context, dict) else None
    prefs = consent.get("categoryPreferences") if isinstance(consent, dict) else None
    if not isinstance(prefs, dict) or not prefs:
        prefs = _rudderstack_preferences(context)
    if not prefs:
        return {}
    category_map = category_map or _category_map()
    found: dict[str, bool] = {}
    for name, value in prefs.items():
        purpose = category_map.get(_NAME.sub("", str(name).lower()))
        if purpose and isinstance(value, bool):
            # one denied category mapped to a purpose denies it
            found[purpose] = found.get(purpose, True) and value
    return found


def _rudderstack_preferences(context) -> dict[str, bool]:
    """RudderStack's SDK states consent as ``context.consentManagement`` (allowed / denied
    consent ids, the shop's category names): the same answers as Segment's categoryPreferences."""
    managed = context.get("consentManagement") if isinstance(context, dict) else None
    if not isinstance(managed, dict):
        return {}
    prefs: dict[str, bool] = {}
    for key, granted in (("allowedConsentIds", True), ("deniedConsentIds", False)):
        ids = managed.get(key)
        if isinstance(ids, list):
            prefs.update({str(i): granted for i in ids if isinstance(i, (str, int)) and not isinstance(i, bool)})
    return prefs


def suppression_keys_of(event, hasher=None) -> list[str]:
    """The suppression list's keys an event's identifiers have (every salt in force); ``hasher``:
    ``suppression_hasher()`` made once for a batch."""
    keys = hasher or suppression_hasher()
    return [h for kind, value in event.identifiers for h in keys(kind, value)]


@hooks.sql_guard(hooks.SqlGuard(table="consent_suppression", column="hash", keys=suppression_keys_of))
def filter_suppressed(*, events: list, indexes: list[int]) -> list[int]:
    """Drop events carrying an identifier of an erased person. Nothing in an event lifts the
    suppression, not even ``context.consent`` granting analytics: consent managers re-send stored
    preferences with every call, so only an explicit opt-in (banner, privacy center, admin) does.

    The accept path makes the same decision inside its INSERT (``hooks.SqlGuard``, decision 0053)."""
    hasher = suppression_hasher()
    hashes = {i: suppression_keys_of(events[i], hasher) for i in indexes}
    every = sorted({h for hs in hashes.values() for h in hs})
    if not every:
        return indexes
    with binary_cursor() as cursor:  # hundreds of hashes: bound by the server (decision 0044)
        cursor.execute("SELECT hash FROM consent_suppression WHERE hash = ANY(%b::text[])", [every])
        suppressed = {row[0] for row in cursor.fetchall()}
    if not suppressed:
        return indexes
    return [i for i in indexes if not suppressed.intersection(hashes[i])]


def filter_consent(*, events: list, indexes: list[int], profiles: dict) -> list[int]:
    """Record consent stated in context; drop events of people whose analytics answer is no.

    ``profiles``: {event index: live profile id} (``uuid.UUID``, as ingestion holds them)."""
    policy = settings.CONSENT_ANALYTICS_DENIAL
    category_map = _category_map()
    stated = {i: prefs for i in indexes if (prefs := context_preferences(events[i].context, category_map))}
    if policy == "off" and not stated:
        return indexes
    now = timezone.now()
    state, defaults = _states({profiles[i] for i in indexes}, now)
    # answers in event order; record only what differs from the person's current explicit answer
    to_record: list[tuple[str, dict[str, bool], datetime, dict]] = []
    for i in sorted(stated, key=lambda i: events[i].occurred_at):
        pid = profiles[i]
        current = state.setdefault(pid, {})
        changed = {p: g for p, g in stated[i].items() if p in defaults and current.get(p) is not g}
        if changed:
            current.update(changed)
            context = events[i].context
            evidence = {"message_id": events[i].message_id}
            if context.get("ip"):
                evidence["ip_hash"] = salted_hash(str(context["ip"]))
            if context.get("userAgent"):
                evidence["user_agent"] = str(context["userAgent"])[:300]
            to_record.append((str(pid), changed, events[i].occurred_at, evidence))
    if to_record:
        consent_records_bulk(entries=to_record, source="event")
    if policy == "off":
        return indexes
    essential = set(settings.CONSENT_ESSENTIAL_EVENTS) if policy == "essential" else set()
    analytics_default = defaults.get("analytics", True)
    kept = []
    for i in indexes:
        allowed = state.get(profiles[i], {}).get("analytics", analytics_default)
        own = stated.get(i, {}).get("analytics")  # the event's own statement decides for itself
        if own is not None:
            allowed = own
        if allowed or (events[i].type == "track" and events[i].name in essential):
            kept.append(i)
    return kept


STATES_SQL = (
    "SELECT NULL, key, default_granted, NULL FROM consent_purpose WHERE is_active "
    "UNION ALL "
    # answers of the batch's live profiles and of profiles merged into them: a merge made by this very
    # batch is committed (and its state hook run) only after the filters, so its loser's answers count here
    "SELECT coalesce(pr.merged_into_id, pr.id), p.key, s.granted, s.recorded_at FROM consent_consentstate s "
    "JOIN profiles_profile pr ON pr.id = s.profile_id JOIN consent_purpose p ON p.id = s.purpose_id "
    "WHERE (pr.id = ANY(%b::uuid[]) OR pr.merged_into_id = ANY(%b::uuid[])) "
    "AND (s.expires_at IS NULL OR s.expires_at > %b) "
    "ORDER BY 4 NULLS FIRST"
)


def _states(pids: set, now: datetime) -> tuple[dict, dict[str, bool]]:
    """Current explicit (unexpired) answers of these live profiles (by profile id, as the batch
    holds them: ``uuid.UUID``), and every active purpose's default: one round trip, the ids bound
    on the server in binary (quoted into the SQL text as strings they were 4 % of a batch)."""
    ids = list(pids)
    with binary_cursor() as cursor:
        cursor.execute(STATES_SQL, [ids, ids, now])
        rows = cursor.fetchall()
    defaults: dict[str, bool] = {}
    state: dict[str, dict[str, bool]] = {}
    for pid, key, granted, _ in rows:  # oldest answer first: the latest one wins
        if pid is None:
            defaults[key] = bool(granted)
        else:
            state.setdefault(pid, {})[key] = granted
    return state, defaults
