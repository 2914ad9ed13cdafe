"""demo_recommendations on a small demo store: catalog loaded, a model trained and active, a working URL."""

from __future__ import annotations

import io
import re

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from cdp.demo.store import demo_catalog, demo_store_generate
from recommendations.models import ModelStatus, ModelVersion, Product

pytestmark = pytest.mark.django_db


def test_demo_recommendations_serves_a_demo_shopper(django_capture_on_commit_callbacks, settings):
    settings.RECS_TRAIN_PARAMS = {}  # the default recipe, as `make demo` trains it
    with django_capture_on_commit_callbacks(execute=True):
        demo_store_generate(customers=40, days=30, seed=5, progress=False)
        # as `make demo` runs it, after consent's demo step: training learns from those who agreed
        call_command("demo_consent", stdout=io.StringIO(), stderr=io.StringIO())
    out = io.StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("demo_recommendations", stdout=out)
    text = out.getvalue()
    assert Product.objects.filter(sku__in=[p["sku"] for p in demo_catalog()]).count() == len(demo_catalog())
    assert ModelVersion.objects.filter(status=ModelStatus.ACTIVE).exists(), text
    key, url = re.search(r'Bearer (sk_\S+)" "http://127\.0\.0\.1:\d+(/api/v1/recommendations/\S+)"', text).groups()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    body = client.get(url).json()
    assert len(body["items"]) == 5
    assert all(item["explanation"] for item in body["items"])
    # a second run changes nothing in the catalog
    out = io.StringIO()
    call_command("demo_recommendations", stdout=out)
    assert "0 created" in out.getvalue()
