"""Identifier normalisation: one canonical value per real-world identifier, or None when junk."""

from __future__ import annotations

import re
from functools import lru_cache

import phonenumbers
from django.conf import settings

MAX_IDENTIFIER_LENGTH = 255
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@lru_cache(maxsize=1)
def _blocklist() -> frozenset[str]:
    return frozenset(v.strip().lower() for v in settings.CDP_IDENTIFIER_BLOCKLIST)


def is_blocked(value: str) -> bool:
    return value.strip().lower() in _blocklist()


def normalize_email(raw: str) -> str | None:
    value = raw.strip().lower()
    if not _EMAIL_RE.match(value) or is_blocked(value):
        return None
    local, _, domain = value.rpartition("@")
    rules = settings.CDP_EMAIL_PROVIDER_RULES.get(domain, {})
    if rules.get("strip_plus"):
        local = local.split("+", 1)[0]
    if rules.get("strip_dots"):
        local = local.replace(".", "")
    domain = rules.get("domain", domain)
    if not local:
        return None
    value = f"{local}@{domain}"
    return None if is_blocked(value) else value


def normalize_phone(raw: str, region: str | None = None) -> str | None:
    """E.164, or None when it is not a valid number or is junk such as 0000000000."""
    digits = re.sub(r"\D", "", raw)
    if len(digits) < 6 or len(set(digits.lstrip("0") or "0")) == 1 or is_blocked(raw):
        return None
    try:
        number = phonenumbers.parse(raw, region or settings.CDP_PHONE_DEFAULT_REGION)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_id(raw) -> str | None:
    value = str(raw).strip()
    if not value or is_blocked(value):
        return None
    return value


def normalize_identifier(kind: str, raw) -> str | None:
    if raw is None or isinstance(raw, (dict, list, bool)):
        return None
    if kind == "email":
        return normalize_email(str(raw))
    if kind == "phone":
        return normalize_phone(str(raw))
    return normalize_id(raw)


def identifier_kinds() -> list[str]:
    return list(settings.CDP_IDENTIFIER_PRIORITY)


def priority(kind: str) -> int:
    order = settings.CDP_IDENTIFIER_PRIORITY
    return order.index(kind) if kind in order else len(order)


def limit_for(kind: str) -> int:
    return settings.CDP_IDENTIFIER_LIMITS.get(kind, settings.CDP_IDENTIFIER_LIMIT_DEFAULT)
