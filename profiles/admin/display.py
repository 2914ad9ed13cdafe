"""Shared display helpers of the profiles admin: links, names, readable values, trait tables."""

from __future__ import annotations

import json
from datetime import datetime

from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.text import Truncator

from ..identity.trait_policy import trait_value
from ..models import Profile

EMPTY = "—"


def can_unmerge(user) -> bool:
    return user.is_active and user.has_perm("profiles.change_merge")


def profile_url(pk) -> str:
    return reverse("admin:profiles_profile_change", args=[pk])


def profile_link(profile: Profile | None):
    if profile is None:
        return EMPTY
    return format_html('<a href="{}">{}</a>', profile_url(profile.pk), str(profile))


def short_id(pk) -> str:
    return str(pk)[:8]


def display_name(traits: dict) -> str:
    name = trait_value(traits, "name")
    if isinstance(name, str) and name.strip():
        return name.strip()
    parts = [trait_value(traits, "first_name"), trait_value(traits, "last_name")]
    return " ".join(str(p).strip() for p in parts if isinstance(p, str) and p.strip())


def display_value(value) -> str:
    """One trait value as readable text (ISO times shortened, containers compact)."""
    if value is None or value == "" or value == {} or value == []:
        return EMPTY
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        if len(value) >= 19 and value[4:5] == "-" and value[10:11] == "T":
            try:
                return date_format(timezone.localtime(datetime.fromisoformat(value)), "Y-m-d H:i")
            except ValueError:
                return value
        return value
    if isinstance(value, dict):
        return ", ".join(f"{k}: {display_value(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(display_value(v) for v in value)
    return str(value)


COMPUTED_ORDER = [
    "orders",
    "revenue",
    "avg_order_value",
    "recency_days",
    "frequency",
    "monetary",
    "first_order_at",
    "last_order_at",
    *(f"{kind}_{days}d" for days in (30, 90, 365) for kind in ("orders", "revenue")),
    "engagement_score",
    "events",
    "sessions",
    "sessions_30d",
    "top_category",
    "category_affinity",
    "cart_abandoned",
    "last_cart_at",
    "preferred_device",
    "preferred_hour",
    "first_seen_at",
    "last_seen_at",
]
TRAITS_FIRST = ["email", "phone", "user_id", "name", "first_name", "last_name", "birthday"]


def ordered_keys(keys, first: list[str]) -> list[str]:
    """Known keys in a readable order, then the rest alphabetically (jsonb keeps no order)."""
    rank = {key: i for i, key in enumerate(first)}
    return sorted(keys, key=lambda key: (rank.get(key, len(rank)), key))


def value_rows(data: dict, meta: dict | None = None, first: list[str] = TRAITS_FIRST) -> list[dict]:
    """Rows for a trait table; nested objects are spread one level (``category_affinity.views``)."""
    rows = []
    for key in ordered_keys(data, first):
        value = data[key]
        if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            rows.extend({"key": f"{key}.{sub}", "value": display_value(v)} for sub, v in value.items())
            continue
        row = {"key": key, "value": display_value(value)}
        if meta is not None:
            info = meta.get(key) or {}
            row["first"] = display_value(info.get("first"))
            row["updated"] = display_value(info.get("at"))
        rows.append(row)
    return rows


def figure(value, pattern: str) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return EMPTY
    return pattern.format(value)


def properties_summary(properties, limit: int = 120) -> str:
    """A one-line summary of an event's properties (scalars first, containers as counts)."""
    if not isinstance(properties, dict) or not properties:
        return ""
    parts = []
    for key, value in properties.items():
        if isinstance(value, list):
            parts.append(f"{key}: [{len(value)}]")
        elif isinstance(value, dict):
            parts.append(f"{key}: {{…}}")
        else:
            parts.append(f"{key}: {value}")
    return Truncator(", ".join(parts)).chars(limit)


def pretty_json(value):
    if value in (None, {}, []):
        return EMPTY
    return format_html(
        '<pre style="margin:0;white-space:pre-wrap">{}</pre>',
        json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str),
    )
