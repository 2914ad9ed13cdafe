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
    # every demo shopper's reasons name what really led to each item. The demo's home experiment
    # serves half of them (by a hash of their random profile id) the popular list, which gives no
    # reasons to check: with it running, 6-11 of the first 15 got a personalised answer in five runs,
    # and 2 in a CI run that failed here. Stopped first, every consenting shopper gets one
    from recommendations.experiments.demo import EXPERIMENT_KEY
    from recommendations.experiments.models import Experiment
    from recommendations.experiments.services import experiment_stop

    with django_capture_on_commit_callbacks(execute=True):
        experiment_stop(experiment=Experiment.objects.get(key=EXPERIMENT_KEY), by="test")
    _reasons_are_honest(client)
    # a second run changes nothing in the catalog
    out = io.StringIO()
    call_command("demo_recommendations", stdout=out)
    assert "0 created" in out.getvalue()


def _reasons_are_honest(client) -> None:
    from profiles.models import Event, Identifier
    from recommendations.models import Product

    titles = dict(Product.objects.values_list("sku", "title"))
    checked = 0
    from .conftest import grant

    shoppers = Identifier.objects.filter(kind="user_id", profile__merged_into__isnull=True).order_by("value")
    for user_id, profile_id in shoppers.values_list("value", "profile_id")[:15]:
        grant(str(profile_id))  # the demo shopper agrees to personalisation
        body = client.get("/api/v1/recommendations/", {"user_id": user_id, "k": 8, "placement": "home"}).json()
        assert "items" in body, body
        if not body["personalised"]:
            continue
        events = Event.objects.filter(profile_id=body["profile_id"])
        bought, viewed = set(), set()
        for name, props in events.values_list("name", "properties"):
            if name == "Order Completed":
                bought |= {p.get("product_id") or p.get("sku") for p in props.get("products") or []}
            elif name in ("Product Viewed", "Product Added"):
                viewed.add(props.get("product_id") or props.get("sku"))
        for item in body["items"]:
            reason, sku = item["reason"], item["sku"]
            if reason["type"] == "bought":
                assert sku in bought and item["explanation"] == "You bought this before"
            elif reason["type"] == "viewed":
                # viewed; a purchase after the model's data (its holdout) is not known to it yet
                assert sku in viewed and item["explanation"] == "You viewed this"
            elif reason["type"] == "because_bought":
                assert reason["item_id"] in bought and reason["item_id"] != sku
                assert item["explanation"] == f"Because you bought {titles[reason['item_id']]}"
            elif reason["type"] == "because_viewed":
                assert reason["item_id"] in viewed and reason["item_id"] != sku
            else:
                assert reason["type"] in ("similar_shoppers", "popular", "trending", "popular_in_segment")
            assert item["score_type"] == "probability" or item["recommender"] != "hybrid"
            if item["recommender"] == "hybrid":
                assert 0.0 <= item["score"] <= 1.0
        checked += 1
    assert checked >= 3
