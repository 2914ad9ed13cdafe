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


def test_the_compiled_look_up_reads_consent_at_the_time_of_each_request(shop, monkeypatch):
    """The look-up is compiled once; the time its consent is read at is a parameter set on every run,
    so an answer that expires is no longer honoured, without compiling the statement again."""
    from datetime import timedelta

    from django.utils import timezone

    from consent.models import ConsentState

    grant(shop.person(2))
    ConsentState.objects.filter(profile_id=shop.person(2), purpose__key="personalisation").update(
        expires_at=timezone.now() + timedelta(hours=1)
    )
    compiles = []
    original = serving._Compiled._compile
    monkeypatch.setattr(serving._Compiled, "_compile", lambda self, key: (compiles.append(key), original(self, key)))
    query = serving.Query(profile_id=str(shop.person(2)), k=5)
    assert serving.resolve_profile(query) == (str(shop.person(2)), True)
    assert len(compiles) == 1
    later = timezone.now() + timedelta(hours=2)
    monkeypatch.setattr(timezone, "now", lambda: later)
    assert serving.resolve_profile(query) == (str(shop.person(2)), False)  # expired an hour ago
    serving._profile_query.at = -1e9  # the once-a-second look at the purpose's default: unchanged
    assert serving.resolve_profile(query) == (str(shop.person(2)), False)
    assert len(compiles) == 1


def test_the_look_up_is_compiled_again_when_the_purposes_default_changes(shop):
    """Without an answer of hers the personalisation purpose's default decides; the statement's shape
    depends on it, so a changed default is compiled in (within a second)."""
    from consent.models import Purpose
    from consent.services import purposes_ensure

    purposes_ensure()
    query = serving.Query(profile_id=str(shop.person(3)), k=5)
    Purpose.objects.filter(key="personalisation").update(default_granted=False)
    serving.runtime.reset()
    assert serving.resolve_profile(query) == (str(shop.person(3)), False)
    Purpose.objects.filter(key="personalisation").update(default_granted=True)
    assert serving.resolve_profile(query) == (str(shop.person(3)), False)  # within the second: as compiled
    serving._default_read = (-1e9, None)
    serving._profile_query.at = -1e9
    assert serving.resolve_profile(query) == (str(shop.person(3)), True)
