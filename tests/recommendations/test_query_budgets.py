"""Query budget of GET /api/v1/recommendations/, Saleor style: an exact count, the same for a shopper
with one order as for one with many, so an N+1 over history or items fails the suite."""

from __future__ import annotations

import time
import types

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from recommendations import serving
from tests.recommendations.conftest import grant

pytestmark = pytest.mark.django_db

# the key, the model, the shopper's history and consent are served from the process's caches (kept
# fresh by their own invalidation); the one query is the served-log INSERT (exposures, experiments)
BUDGET_RECOMMENDATIONS = 1


def queries_of(client, params) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        response = client.get("/api/v1/recommendations/", params)
    assert response.status_code == 200, response.content
    return [q["sql"] for q in captured]


def test_recommendations_cost_the_same_queries_for_any_shopper(shop, secret_client, settings, monkeypatch):
    settings.API_KEY_CACHE_SECONDS = 60
    for n in range(3):
        grant(shop.person(n))
    queries_of(secret_client, {"profile_id": shop.person(0)})  # warm: key cache, model load
    # the budget is the steady state: serving's once-a-second refreshes (version check, compiled
    # look-ups, the consent expression) must not fall inside the counted requests on a slow machine
    frozen = time.monotonic()
    monkeypatch.setattr(serving, "time", types.SimpleNamespace(monotonic=lambda: frozen, time=time.time))
    counts = [len(queries_of(secret_client, {"profile_id": shop.person(n), "k": 10})) for n in range(3)]
    anonymous = queries_of(secret_client, {"k": 10})
    assert counts == [BUDGET_RECOMMENDATIONS] * 3, counts
    assert len(anonymous) <= BUDGET_RECOMMENDATIONS, anonymous
