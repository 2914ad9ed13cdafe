"""Serving's look-up of the shopper (profile, consent, segments, history in one statement) is a
server-side prepared statement, planned once per connection; Django's own queries stay unprepared."""

from __future__ import annotations

import pytest
from django.db import connection

from recommendations import serving
from tests.recommendations.conftest import grant

pytestmark = pytest.mark.django_db


def prepared_statements() -> list[tuple[str, int, int]]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements")
        return cursor.fetchall()


def test_the_shoppers_look_up_is_prepared_once_and_reused(shop, secret_client):
    grant(shop.person(0))
    for _ in range(3):
        response = secret_client.get("/api/v1/recommendations/", {"profile_id": shop.person(0), "k": 5})
        assert response.status_code == 200
        assert response.json()["personalised"] is True
    mine = [row for row in prepared_statements() if "profiles_event" in row[0] and "consent_consentstate" in row[0]]
    assert len(mine) == 1, prepared_statements()
    _, generic, custom = mine[0]
    assert generic + custom == 3  # executed three times as one prepared statement, planned by PostgreSQL's cache
    # the connection is left as Django configured it: the ORM's statements are never prepared
    assert connection.connection.prepare_threshold is None
    assert not any("recommendations_recommendationserved" in row[0] for row in prepared_statements())


def test_a_statement_prepared_on_a_connection_answers_again_after_a_rollback(shop):
    """psycopg forgets its prepared statements on ROLLBACK (and deallocates them); the next request
    prepares again instead of failing."""
    grant(shop.person(1))
    query = serving.Query(profile_id=str(shop.person(1)), k=5)
    first = serving.resolve_profile(query)
    with connection.cursor() as cursor:
        cursor.execute("SAVEPOINT s1")
        cursor.execute("ROLLBACK TO SAVEPOINT s1")
    assert serving.resolve_profile(query) == first
