"""Computed traits: RFM, windows, category affinity, engagement, cart abandonment, habits.

One computation from a profile's events serves both paths: after each event, for the profiles it
touched (``profiles.tasks.pending_process``), and nightly for everyone (``traits_recompute_all``),
so the two always agree. Time-relative traits (recency, windows, engagement) are relative to the
computation time and kept current by the nightly run.

Event vocabulary (Segment e-commerce spec v2): "Order Completed" (revenue or total, products[] with
price, quantity, category), "Product Viewed" (category), "Product Added" (cart), pages and screens.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation

from django.db import connection, transaction
from django.utils import timezone

from profiles.locks import lock_profile_ids
from profiles.models import Profile

ORDER_EVENT = "Order Completed"
VIEW_EVENT = "Product Viewed"
CART_EVENT = "Product Added"
SESSION_GAP = timedelta(minutes=30)
CART_ABANDON_AFTER = timedelta(hours=1)
ENGAGEMENT_HALF_LIFE_DAYS = 14
ENGAGEMENT_WEIGHTS = {ORDER_EVENT: 8.0, CART_EVENT: 4.0, VIEW_EVENT: 2.0, "page": 1.0, "screen": 1.0}
WINDOWS = (30, 90, 365)
CHUNK = 2000


def _number(value) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def order_revenue(properties: dict) -> Decimal:
    for key in ("revenue", "total"):
        number = _number(properties.get(key))
        if number is not None:
            return number
    total = Decimal(0)
    products = properties.get("products")
    if isinstance(products, list):
        for item in products:
            if isinstance(item, dict):
                price = _number(item.get("price")) or Decimal(0)
                quantity = _number(item.get("quantity"))
                total += price * (quantity if quantity is not None else Decimal(1))
    return total


def _categories(name: str, properties: dict) -> list[str]:
    if name == ORDER_EVENT:
        products = properties.get("products")
        cats = (
            [str(p.get("category")) for p in products if isinstance(p, dict) and p.get("category")]
            if isinstance(products, list)
            else []
        )
        return cats
    category = properties.get("category")
    return [str(category)] if category else []


def _shares(counter: Counter) -> dict[str, float]:
    total = sum(counter.values())
    return {k: round(v / total, 4) for k, v in counter.most_common()} if total else {}


def _mode(counter: Counter):
    if not counter:
        return None
    best = max(counter.values())
    return min(k for k, v in counter.items() if v == best)  # deterministic tie-break


def compute(events: Iterable[tuple], *, first_seen: datetime, last_seen: datetime, now: datetime) -> dict:
    """Computed traits from (type, name, properties, occurred_at, device_type, local_hour) rows."""
    orders: list[tuple[datetime, Decimal]] = []
    views, purchases, devices, hours = Counter(), Counter(), Counter(), Counter()
    last_cart = None
    engagement = 0.0
    times: list[datetime] = []
    for etype, name, properties, at, device, hour in events:
        if isinstance(properties, str):  # raw cursors return jsonb as text under Django's psycopg setup
            properties = json.loads(properties)
        properties = properties if isinstance(properties, dict) else {}
        times.append(at)
        key = name if etype == "track" else etype
        if etype == "track" and name == ORDER_EVENT:
            orders.append((at, order_revenue(properties)))
            purchases.update(_categories(name, properties))
        elif etype == "track" and name == VIEW_EVENT:
            views.update(_categories(name, properties))
        elif etype == "track" and name == CART_EVENT:
            last_cart = at if last_cart is None or at > last_cart else last_cart
        if device:
            devices[device] += 1
        if hour is not None:
            hours[hour] += 1
        weight = ENGAGEMENT_WEIGHTS.get(key, 0.5)
        age_days = max((now - at).total_seconds() / 86400, 0)
        engagement += weight * math.pow(0.5, age_days / ENGAGEMENT_HALF_LIFE_DAYS)
    times.sort()
    sessions_total = sum(1 for i, t in enumerate(times) if i == 0 or t - times[i - 1] > SESSION_GAP)
    recent = [t for t in times if now - t <= timedelta(days=30)]
    sessions_30d = sum(1 for i, t in enumerate(recent) if i == 0 or t - recent[i - 1] > SESSION_GAP)
    revenue = sum((r for _, r in orders), Decimal(0))
    last_order = max((t for t, _ in orders), default=None)
    traits: dict = {
        "orders": len(orders),
        "revenue": float(round(revenue, 2)),
        "avg_order_value": float(round(revenue / len(orders), 2)) if orders else 0.0,
        "recency_days": (now - last_order).days if last_order else None,
        "frequency": len(orders),
        "monetary": float(round(revenue, 2)),
        "first_order_at": min((t for t, _ in orders), default=None),
        "last_order_at": last_order,
        "category_affinity": {"views": _shares(views), "purchases": _shares(purchases)},
        "top_category": _mode(purchases + views),
        "engagement_score": round(100 * (1 - math.exp(-engagement / 20)), 2),
        "sessions": sessions_total,
        "sessions_30d": sessions_30d,
        "last_cart_at": last_cart,
        "cart_abandoned": bool(
            last_cart and (last_order is None or last_cart > last_order) and now - last_cart >= CART_ABANDON_AFTER
        ),
        "preferred_device": _mode(devices),
        "preferred_hour": _mode(hours),
        "first_seen_at": first_seen,
        "last_seen_at": last_seen,
        "events": len(times),
    }
    for days in WINDOWS:
        window = [(t, r) for t, r in orders if now - t <= timedelta(days=days)]
        traits[f"orders_{days}d"] = len(window)
        traits[f"revenue_{days}d"] = float(round(sum((r for _, r in window), Decimal(0)), 2))
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in traits.items()}


_EVENTS_SQL = """
SELECT e.profile_id, e.type, e.name,
       CASE WHEN e.type = 'track' AND e.name IN (%s, %s) THEN e.properties ELSE NULL END,
       e.occurred_at, e.device_type, e.local_hour
FROM profiles_event e
WHERE e.profile_id = ANY(%s::uuid[])
ORDER BY e.profile_id, e.occurred_at, e.id
"""


def traits_refresh(*, profile_ids: Iterable, now: datetime | None = None) -> int:
    """Recompute computed traits for these (live) profiles; returns how many were written."""
    now = now or timezone.now()
    ids = sorted({str(p) for p in profile_ids})
    written = 0
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        profiles = {
            str(p.pk): p
            for p in Profile.objects.filter(pk__in=chunk, merged_into__isnull=True).only(
                "pk", "first_seen_at", "last_seen_at"
            )
        }
        rows: dict[str, list] = {pid: [] for pid in profiles}
        with connection.cursor() as cursor:
            cursor.execute(_EVENTS_SQL, [ORDER_EVENT, VIEW_EVENT, list(profiles)])
            for pid, *rest in cursor.fetchall():
                rows[str(pid)].append(rest)
        values = [
            json.dumps(compute(rows[pid], first_seen=p.first_seen_at, last_seen=p.last_seen_at, now=now))
            for pid, p in profiles.items()
        ]
        with transaction.atomic(), connection.cursor() as cursor:  # one set-based UPDATE per chunk
            lock_profile_ids(list(profiles))  # in id order first (profiles/locks.py); no wait if held
            cursor.execute(
                "UPDATE profiles_profile p SET computed = v.c::jsonb, computed_at = %s "
                "FROM unnest(%s::uuid[], %s::text[]) AS v(id, c) WHERE p.id = v.id",
                [now, list(profiles), values],
            )
        written += len(profiles)
    return written


def traits_recompute_all(*, now: datetime | None = None, progress=None) -> int:
    """The nightly batch: every live profile, in chunks (memory stays bounded)."""
    now = now or timezone.now()
    total = 0
    last = None
    while True:
        page = Profile.objects.filter(merged_into__isnull=True).order_by("pk")
        if last is not None:
            page = page.filter(pk__gt=last)
        ids = list(page.values_list("pk", flat=True)[:CHUNK])
        if not ids:
            return total
        total += traits_refresh(profile_ids=ids, now=now)
        last = ids[-1]
        if progress:
            progress(total)
