"""Reads of the recommendations app for admin and the privacy export (selectors; the engine's
``interactions_extract`` lives in ``selectors.py``).

Outcomes come back as track events carrying ``properties.recommendation_id`` (the id the serving
API answered with): an impression is one of ``IMPRESSION_EVENTS``, a click one of ``CLICK_EVENTS``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from django.db import connection

from .models import RecommendationServed

IMPRESSION_EVENTS = ("Recommendation Viewed", "Product List Viewed")
CLICK_EVENTS = ("Product Clicked", "Recommendation Clicked")


def ctr_by_model_version(*, since: datetime | None = None) -> dict[int | None, dict]:
    """Per model version: answers served, answers seen (an impression event), answers clicked, and
    CTR = clicked / seen (clicked / served when no impression was reported)."""
    since = since or datetime(2000, 1, 1, tzinfo=UTC)
    params = [list(IMPRESSION_EVENTS), list(CLICK_EVENTS), [*IMPRESSION_EVENTS, *CLICK_EVENTS], since, since]
    with connection.cursor() as cursor:
        cursor.execute(
            """
            WITH outcome AS (
                SELECT e.properties->>'recommendation_id' AS rid,
                       bool_or(e.name = ANY(%s)) AS seen, bool_or(e.name = ANY(%s)) AS clicked
                FROM profiles_event e
                WHERE e.name = ANY(%s) AND e.properties ? 'recommendation_id' AND e.occurred_at >= %s
                GROUP BY 1
            )
            SELECT s.model_version_id, count(*),
                   count(*) FILTER (WHERE o.seen), count(*) FILTER (WHERE o.clicked)
            FROM recommendations_recommendationserved s
            LEFT JOIN outcome o ON o.rid = s.id::text
            WHERE s.created_at >= %s
            GROUP BY 1
            """,
            params,
        )
        rows = cursor.fetchall()
    out: dict[int | None, dict] = {}
    for version_id, served, seen, clicked in rows:
        base = seen or served
        out[version_id] = {
            "served": served,
            "seen": seen,
            "clicked": clicked,
            "ctr": round(clicked / base, 4) if base else 0.0,
        }
    return out


def served_export(*, profile_ids: list[str]) -> list[dict]:
    """The recommendations shown to these people (privacy export)."""
    rows = RecommendationServed.objects.filter(profile_id__in=profile_ids).order_by("created_at")
    return [
        {
            "recommendation_id": str(row.id),
            "shown_at": row.created_at.isoformat(),
            "placement": row.placement,
            "personalised": row.personalised,
            "model_version": row.model_version_id,
            "items": row.items,
        }
        for row in rows.iterator()
    ]


def served_with_outcomes(*, profile_ids: list[str], limit: int = 20) -> list[dict]:
    """The newest recommendations shown to these profiles, each with whether it was seen and clicked."""
    rows = list(
        RecommendationServed.objects.filter(profile_id__in=profile_ids)
        .order_by("-created_at")
        .values("id", "created_at", "placement", "personalised", "model_version_id", "items")[:limit]
    )
    if not rows:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT e.properties->>'recommendation_id', bool_or(e.name = ANY(%s)), bool_or(e.name = ANY(%s))
            FROM profiles_event e
            WHERE e.profile_id = ANY(%s::uuid[]) AND e.name = ANY(%s) AND e.properties->>'recommendation_id' = ANY(%s)
            GROUP BY 1
            """,
            [
                list(IMPRESSION_EVENTS),
                list(CLICK_EVENTS),
                [str(p) for p in profile_ids],
                [*IMPRESSION_EVENTS, *CLICK_EVENTS],
                [str(r["id"]) for r in rows],
            ],
        )
        outcomes = {rid: (seen, clicked) for rid, seen, clicked in cursor.fetchall()}
    for row in rows:
        row["seen"], row["clicked"] = outcomes.get(str(row["id"]), (False, False))
    return rows
