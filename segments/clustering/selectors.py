"""Reads for clustering: the raw feature matrix of live profiles, from their computed traits.

One set-based query reads every live profile's features (``merged_into IS NULL``) straight out of
``profiles_profile.computed`` (jsonb, written by ``profiles.traits``) into numpy; a small aggregate
query before it finds the population's top categories, which become share columns.

Keys read (profiles/traits.py ``compute``): ``recency_days``, ``frequency``, ``monetary``,
``avg_order_value``, ``orders_90d``, ``revenue_365d``, ``engagement_score``, ``sessions``,
``sessions_30d``, ``category_affinity`` (``purchases`` and ``views`` shares), ``preferred_device``;
and the profile's own ``last_seen_at`` (browsing recency) and ``first_seen_at`` (tenure), in days
before ``now``. Category affinity per category = (2 x purchase share + view share) / 3 when the
profile has both, else whichever it has (a purchase says more than a view).
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
from django.db import connection
from django.utils import timezone

from .features import DEVICES, FeatureFrame, all_features

FETCH = 20_000

_TOP_CATEGORIES_SQL = """
SELECT c.key, sum(c.value::float) AS weight
FROM profiles_profile p,
     LATERAL (
        SELECT key, value FROM jsonb_each_text(
            CASE WHEN jsonb_typeof(p.computed->'category_affinity'->'purchases') = 'object'
                 THEN p.computed->'category_affinity'->'purchases' ELSE '{}'::jsonb END)
        UNION ALL
        SELECT key, value FROM jsonb_each_text(
            CASE WHEN jsonb_typeof(p.computed->'category_affinity'->'views') = 'object'
                 THEN p.computed->'category_affinity'->'views' ELSE '{}'::jsonb END)
     ) AS c
WHERE p.merged_into_id IS NULL AND (%s::uuid[] IS NULL OR p.id = ANY(%s::uuid[]))
GROUP BY c.key
ORDER BY weight DESC, c.key
LIMIT %s
"""


def _num(key: str) -> str:
    """A numeric computed trait; NULL when absent or not a number."""
    return f"CASE WHEN jsonb_typeof(p.computed->'{key}') = 'number' THEN (p.computed->>'{key}')::float8 END"


def clustering_categories_top(*, limit: int, profile_ids: list[str] | None = None) -> list[str]:
    """The ``limit`` categories with the largest summed affinity over live profiles (or these)."""
    if limit <= 0:
        return []
    with connection.cursor() as cursor:
        cursor.execute(_TOP_CATEGORIES_SQL, [profile_ids, profile_ids, limit])
        return [row[0] for row in cursor.fetchall()]


def clustering_features_extract(
    *,
    now: datetime | None = None,
    categories: list[str] | None = None,
    top_categories: int = 8,
    profile_ids: list[str] | None = None,
) -> FeatureFrame:
    """Raw features of every live profile (``NaN`` where a trait is missing), ids sorted.

    ``categories``: the category columns to read (a stored model's); default: the current top
    ``top_categories``. ``profile_ids``: only these live profiles (an evaluation's import).
    """
    now = now or timezone.now()
    if categories is None:
        categories = clustering_categories_top(limit=top_categories, profile_ids=profile_ids)
    features = all_features(categories)
    numeric = [
        _num("recency_days"),
        _num("frequency"),
        _num("monetary"),
        _num("avg_order_value"),
        _num("orders_90d"),
        _num("revenue_365d"),
        _num("engagement_score"),
        _num("sessions"),
        _num("sessions_30d"),
        "extract(epoch FROM (%s - p.last_seen_at)) / 86400.0",
        "extract(epoch FROM (%s - p.first_seen_at)) / 86400.0",
    ]
    params: list = [now, now]
    category_sql = []
    for category in categories:
        # purchases weigh twice a view; NULL (-> share 0) when the profile has neither
        category_sql.append(
            "((2 * coalesce((p.computed->'category_affinity'->'purchases'->>%s)::float8, 0)"
            " + coalesce((p.computed->'category_affinity'->'views'->>%s)::float8, 0))"
            " / nullif(2 * (coalesce(p.computed->'category_affinity'->'purchases', '{}') <> '{}')::int"
            " + (coalesce(p.computed->'category_affinity'->'views', '{}') <> '{}')::int, 0))"
        )
        params += [category, category]
    device_sql = ["(p.computed->>'preferred_device' = %s)::int::float8" for _ in DEVICES]
    params += list(DEVICES)
    columns = ", ".join([*numeric, *category_sql, *device_sql])
    sql = (
        f"SELECT p.id::text, {columns} FROM profiles_profile p "  # noqa: S608 - columns are built here
        "WHERE p.merged_into_id IS NULL AND (%s::uuid[] IS NULL OR p.id = ANY(%s::uuid[])) ORDER BY p.id"
    )
    params += [profile_ids, profile_ids]
    ids: list[str] = []
    blocks: list[np.ndarray] = []
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        while rows := cursor.fetchmany(FETCH):
            ids.extend(r[0] for r in rows)
            blocks.append(np.array([r[1:] for r in rows], dtype=np.float64))  # None -> nan
    values = np.vstack(blocks) if blocks else np.empty((0, len(features)))
    return FeatureFrame(ids=np.array(ids, dtype=object), features=features, values=values, categories=list(categories))
