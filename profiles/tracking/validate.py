"""Validation of Segment tracking calls (HTTP Tracking API spec), by hand for speed.

A call becomes a ``CleanEvent`` or a dict of field errors ``{"field": ["message"]}``. Limits are
Segment's: 32 KB per call, 500 KB per batch request. Clock skew is corrected as Segment does:
``timestamp + (receivedAt - sentAt)`` when both are sent.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from django.utils.dateparse import parse_datetime

from profiles.normalize import MAX_IDENTIFIER_LENGTH

MAX_EVENT_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
MAX_MESSAGE_ID_LENGTH = 100
MAX_NAME_LENGTH = 200
EVENT_TYPES = ("identify", "track", "page", "screen", "alias", "group")
# How far in the future a corrected timestamp may be before it is clamped to receivedAt.
MAX_FUTURE_SKEW = timedelta(minutes=5)

_TABLET_HINTS = ("ipad", "tablet", "kindle", "silk", "playbook", "nexus 7", "nexus 9", "sm-t")
_MOBILE_HINTS = ("mobi", "iphone", "ipod", "android", "blackberry", "opera mini", "windows phone")


@dataclass
class CleanEvent:
    type: str
    message_id: str
    user_id: str
    anonymous_id: str
    name: str
    properties: dict
    traits: dict
    context: dict
    occurred_at: datetime
    original_timestamp: datetime | None
    sent_at: datetime | None
    received_at: datetime
    device_type: str
    local_hour: int | None
    previous_id: str = ""
    group_id: str = ""
    identifiers: list[tuple[str, str]] = field(default_factory=list)  # filled by ingestion


class Invalid(Exception):
    def __init__(self, fields: dict[str, list[str]]) -> None:
        super().__init__("invalid event")
        self.fields = fields


def parse_time(value, name: str, errors: dict) -> datetime | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        errors[name] = ["Must be an ISO-8601 date-time string."]
        return None
    try:
        parsed = parse_datetime(value)
    except ValueError:
        parsed = None
    if parsed is None:
        errors[name] = [f"Not an ISO-8601 date-time: {value[:40]!r}."]
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    if not (1970 <= parsed.year <= 9000):
        errors[name] = ["Date-time out of range."]
        return None
    return parsed


def device_type_of(context: dict) -> str:
    device = context.get("device") if isinstance(context.get("device"), dict) else {}
    declared = str(device.get("type", "")).lower()
    if declared in ("mobile", "tablet", "desktop"):
        return declared
    if declared in ("ios", "android"):
        return "tablet" if "ipad" in str(device.get("model", "")).lower() else "mobile"
    ua = context.get("userAgent", "")
    if not isinstance(ua, str):
        ua = str(ua)
    if not ua:
        return ""
    if len(ua) <= _UA_CACHED_LENGTH:
        return _device_of_user_agent(ua)
    return _device_of_user_agent.__wrapped__(ua)


_UA_CACHED_LENGTH = 512  # a browser's user agent; longer ones are classified but not kept
_TABLET_RE = re.compile("|".join(map(re.escape, _TABLET_HINTS)))
_MOBILE_RE = re.compile("|".join(map(re.escape, _MOBILE_HINTS)))


@lru_cache(maxsize=4096)
def _device_of_user_agent(ua: str) -> str:
    """mobile, tablet or desktop from a user agent (a few hundred browsers send most calls)."""
    ua = ua.lower()
    if _TABLET_RE.search(ua) or ("android" in ua and "mobile" not in ua):
        return "tablet"
    if _MOBILE_RE.search(ua):
        return "mobile"
    return "desktop"


def local_hour_of(context: dict, occurred_at: datetime) -> int | None:
    tz_name = context.get("timezone")
    if not isinstance(tz_name, str) or not tz_name:
        return None
    zone = _zone(tz_name) if len(tz_name) <= _MAX_ZONE_NAME else None
    if zone is None:
        return None
    try:
        return occurred_at.astimezone(zone).hour
    except (OverflowError, ValueError):
        return None


_MAX_ZONE_NAME = 64  # the longest IANA name is 32 characters


@lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo | None:
    """The time zone of that name, or None. Kept here: ``ZoneInfo`` itself holds only the last 8
    zones strongly, and reading one again from the zone files costs 40 µs per call."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def _id_field(payload: dict, key: str, errors: dict) -> str:
    value = payload.get(key)
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        errors[key] = ["Must be a string or a number."]
        return ""
    text = str(value).strip()
    if len(text) > MAX_IDENTIFIER_LENGTH:
        errors[key] = [f"Longer than {MAX_IDENTIFIER_LENGTH} characters."]
        return ""
    return text


def _object_field(payload: dict, key: str, errors: dict) -> dict:
    value = payload.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        errors[key] = ["Must be a JSON object."]
        return {}
    return value


def call_size(payload: dict) -> int:
    """A call's size in bytes as compact UTF-8 JSON (Segment's 32 KB limit is on the call as sent)."""
    try:
        return len(orjson.dumps(payload))
    except TypeError:  # orjson.JSONEncodeError: an integer wider than 64 bits, from the strict decoder
        return len(json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=str).encode())


def clean_event(
    payload,
    *,
    received_at: datetime,
    batch_sent_at: datetime | None = None,
    batch_context: dict | None = None,
    forced_type: str | None = None,
    size: int | None = None,
) -> CleanEvent:
    """Validate one call; raises ``Invalid`` with field messages."""
    if not isinstance(payload, dict):
        raise Invalid({"non_field_errors": ["Each event must be a JSON object."]})
    if size is None:
        size = call_size(payload)
    if size > MAX_EVENT_BYTES:
        raise Invalid({"non_field_errors": [f"Event is {size} bytes; the limit is {MAX_EVENT_BYTES} (32 KB)."]})
    errors: dict[str, list[str]] = {}
    event_type = forced_type or payload.get("type")
    if event_type not in EVENT_TYPES:
        errors["type"] = [f"Unknown type {str(event_type)[:40]!r}; expected one of {', '.join(EVENT_TYPES)}."]
    user_id = _id_field(payload, "userId", errors)
    anonymous_id = _id_field(payload, "anonymousId", errors)
    if not user_id and not anonymous_id and "userId" not in errors and "anonymousId" not in errors:
        errors["userId"] = ["Either userId or anonymousId is required."]
    properties = _object_field(payload, "properties", errors)
    traits = _object_field(payload, "traits", errors)
    context = _object_field(payload, "context", errors)
    if batch_context and not errors.get("context"):
        context = {**batch_context, **context}
    if event_type == "identify" and isinstance(context.get("traits"), dict):
        # RudderStack's SDK (and Segment's mobile libraries) send identify traits only in
        # context.traits: they are the person's traits exactly as top-level ones (which win).
        traits = {**context["traits"], **traits}
    message_id = payload.get("messageId")
    if message_id is None or message_id == "":
        message_id = f"cdp-{uuid.uuid4()}"
    elif not isinstance(message_id, (str, int)) or isinstance(message_id, bool):
        errors["messageId"] = ["Must be a string."]
    elif len(str(message_id)) > MAX_MESSAGE_ID_LENGTH:
        errors["messageId"] = [f"Longer than {MAX_MESSAGE_ID_LENGTH} characters."]
    name = ""
    previous_id = group_id = ""
    if event_type == "track":
        raw_name = payload.get("event")
        if not isinstance(raw_name, str) or not raw_name.strip():
            errors["event"] = ["A track call needs the event name."]
        elif len(raw_name) > MAX_NAME_LENGTH:
            errors["event"] = [f"Longer than {MAX_NAME_LENGTH} characters."]
        else:
            name = raw_name.strip()
    elif event_type in ("page", "screen"):
        raw_name = payload.get("name") or ""
        if not isinstance(raw_name, str) or len(raw_name) > MAX_NAME_LENGTH:
            errors["name"] = [f"Must be a string of at most {MAX_NAME_LENGTH} characters."]
        else:
            name = raw_name.strip()
        category = payload.get("category")
        if isinstance(category, str) and category and "category" not in properties:
            properties = {**properties, "category": category}  # Segment sends it beside name
    elif event_type == "alias":
        previous_id = _id_field(payload, "previousId", errors)
        if not previous_id and "previousId" not in errors:
            errors["previousId"] = ["An alias call needs previousId."]
        if not user_id and "userId" not in errors:
            errors["userId"] = ["An alias call needs userId."]
    elif event_type == "group":
        group_id = _id_field(payload, "groupId", errors)
        if not group_id and "groupId" not in errors:
            errors["groupId"] = ["A group call needs groupId."]
    timestamp = parse_time(payload.get("timestamp"), "timestamp", errors)
    original = parse_time(payload.get("originalTimestamp"), "originalTimestamp", errors)
    sent_at = parse_time(payload.get("sentAt"), "sentAt", errors) or batch_sent_at
    if errors:
        raise Invalid(errors)
    client_time = timestamp or original
    if client_time is None:
        occurred_at = received_at
    elif sent_at is not None:
        try:
            occurred_at = client_time + (received_at - sent_at)
        except OverflowError:  # a skew beyond datetime's range (sentAt in year 8000): trust nothing
            occurred_at = received_at
    else:
        occurred_at = client_time
    if occurred_at > received_at + MAX_FUTURE_SKEW:
        occurred_at = received_at
    return CleanEvent(
        type=event_type,
        message_id=str(message_id),
        user_id=user_id,
        anonymous_id=anonymous_id,
        name=name,
        properties=properties,
        traits=traits,
        context=context,
        occurred_at=occurred_at,
        original_timestamp=client_time,
        sent_at=sent_at,
        received_at=received_at,
        device_type=device_type_of(context),
        local_hour=local_hour_of(context, occurred_at),
        previous_id=previous_id,
        group_id=group_id,
    )
