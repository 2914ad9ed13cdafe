"""The serving API: output shape, explanations, filters, consent, business rules, diversity, context."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from recommendations.models import BusinessRule, RecommendationServed
from recommendations.selectors import model_bundle_load

from .conftest import CATALOG, add_event, grant

pytestmark = pytest.mark.django_db
TITLES = {s: t for s, t, _, _ in CATALOG}


def get(client, **params):
    response = client.get("/api/v1/recommendations/", params)
    assert response.status_code == 200, response.content
    return response.json()


def test_output_shape_and_the_served_log(shop, secret_client):
    person = shop.person(0)
    grant(person)
    body = get(secret_client, profile_id=person, k=5, placement="home")
    assert set(body) == {
        "recommendation_id",
        "model_version",
        "personalised",
        "profile_id",
        "placement",
        "experiment",
        "variant",
        "propensity",
        "context",
        "items",
    }
    assert (body["experiment"], body["variant"], body["propensity"]) == (None, None, 1.0)
    assert body["model_version"] == shop.version.pk
    assert body["personalised"] is True
    assert body["profile_id"] == person
    assert 0 < len(body["items"]) <= 5
    for item in body["items"]:
        assert set(item) == {
            "sku", "title", "category", "score", "score_type", "recommender", "reason", "explanation"
        }  # fmt: skip
        assert item["title"] == TITLES[item["sku"]]
        assert item["explanation"]
    served = RecommendationServed.objects.get(pk=body["recommendation_id"])
    assert str(served.profile_id) == person
    assert served.model_version_id == shop.version.pk
    assert served.placement == "home"
    assert served.items == [item["sku"] for item in body["items"]]


def test_buy_again_is_explained_and_recently_bought_non_repeat_items_are_excluded(shop, secret_client):
    # person 0 bought ELE-1 (electronics: not a repeat category) and BEA-1 (beauty: a repeat category)
    person = shop.person(0)
    grant(person)
    body = get(secret_client, profile_id=person, k=10, max_per_category=10)
    skus = [item["sku"] for item in body["items"]]
    assert "ELE-1" not in skus
    assert "BEA-1" in skus
    bought = next(item for item in body["items"] if item["sku"] == "BEA-1")
    assert bought["reason"] == {"type": "bought", "item_id": "BEA-1"}
    assert bought["explanation"] == "You bought this before"


def test_out_of_stock_items_are_never_recommended(shop, secret_client):
    # ELE-4 was bought, but is out of stock
    for person in shop.people:
        body = get(secret_client, profile_id=person, k=12, max_per_category=12)
        assert "ELE-4" not in [item["sku"] for item in body["items"]]


def test_without_personalisation_consent_the_list_is_not_personalised(shop, secret_client):
    person = shop.person(0)
    body = get(secret_client, profile_id=person, k=10, max_per_category=10)  # no consent record at all
    assert body["personalised"] is False
    assert all(item["reason"]["type"] != "bought" for item in body["items"])
    assert all(item["recommender"] in ("popularity", "trending", "segment_popularity") for item in body["items"])
    # a denial works the same, and a grant turns personalisation on
    grant(person, False)
    assert get(secret_client, profile_id=person)["personalised"] is False
    grant(person, True)
    assert get(secret_client, profile_id=person)["personalised"] is True
    assert RecommendationServed.objects.filter(profile_id=person, personalised=True).count() == 1


def test_unknown_shoppers_get_popular_items_and_unknown_profile_ids_are_404(shop, secret_client):
    body = get(secret_client, anonymous_id="never-seen", k=3)
    assert body["personalised"] is False and body["profile_id"] is None
    assert body["items"][0]["sku"] == "ELE-1"  # the best seller
    assert body["items"][0]["explanation"] == "Popular in our shop"
    response = secret_client.get("/api/v1/recommendations/", {"profile_id": "00000000-0000-0000-0000-000000000000"})
    assert response.status_code == 404


def test_bad_parameters_get_field_messages(shop, secret_client):
    response = secret_client.get("/api/v1/recommendations/", {"k": 0, "profile_id": "nope", "device": "fridge"})
    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == {"k", "profile_id", "device"}
    response = secret_client.get("/api/v1/recommendations/", {"user_id": "a", "anonymous_id": "b"})
    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == {"user_id", "anonymous_id"}


def test_business_rules_exclude_and_boost_categories(shop, secret_client, django_capture_on_commit_callbacks):
    base = get(secret_client, k=12, max_per_category=12)
    assert any(item["category"] == "electronics" for item in base["items"])
    # query parameters
    body = get(secret_client, k=12, max_per_category=12, exclude_categories="electronics")
    assert all(item["category"] != "electronics" for item in body["items"])
    boosted = get(secret_client, k=12, max_per_category=12, boost_categories="toys")

    def first_toy(answer):
        return [item["category"] for item in answer["items"]].index("toys")

    assert first_toy(boosted) < first_toy(base)
    # an admin-managed rule, for one placement only
    from recommendations import serving
    from recommendations.services import business_rule_save

    with django_capture_on_commit_callbacks(execute=True):
        business_rule_save(rule=BusinessRule(kind="exclude", category="books", placement="cart"))

    serving.runtime.checked_at = -1e9
    assert all(item["category"] != "books" for item in get(secret_client, k=12, placement="cart")["items"])
    assert any(item["category"] == "books" for item in get(secret_client, k=12, placement="home")["items"])


def test_diversity_caps_items_per_category(shop, secret_client):
    body = get(secret_client, k=6, max_per_category=1)
    categories = [item["category"] for item in body["items"]]
    assert len(categories) == len(set(categories)) == 4  # electronics, beauty, books, toys
    body = get(secret_client, k=12)  # default cap 3
    counts = {}
    for item in body["items"]:
        counts[item["category"]] = counts.get(item["category"], 0) + 1
    assert max(counts.values()) <= 3


def test_the_current_sessions_category_reranks(shop, secret_client):
    person = shop.person(11)  # no orders
    grant(person)
    before = get(secret_client, profile_id=person, k=4, max_per_category=4)
    assert before["items"][0]["category"] != "toys"
    add_event(shop.source, person, "Product Viewed", {"product_id": "TOY-2", "category": "toys"}, timezone.now())
    after = get(secret_client, profile_id=person, k=4, max_per_category=4)
    assert after["context"]["session_category"] == "toys"
    assert after["items"][0]["category"] == "toys"


def test_an_old_session_does_not_count(shop, secret_client):
    person = shop.person(11)
    grant(person)
    add_event(shop.source, person, "Product Viewed", {"product_id": "TOY-2"}, timezone.now() - timedelta(hours=3))
    assert get(secret_client, profile_id=person)["context"]["session_category"] == ""


def test_segment_popularity_is_explained_with_the_segments_name(shop, secret_client):
    from segments.models import Segment
    from segments.services import segment_membership_set

    from .conftest import publish

    # people 6 and 8 (beauty and toys buyers) form a segment; person 11 (no orders) joins it
    segment = Segment.objects.create(slug="gift-buyers", name="Gift buyers", kind="rule", status="active")
    segment_membership_set(segment=segment, profile_ids=[shop.person(6), shop.person(8), shop.person(11)])
    bundle = model_bundle_load(version_id=shop.version.pk)
    bundle.segment_popularity_set(slug="gift-buyers", name="Gift buyers", user_ids=[shop.person(6), shop.person(8)])
    publish(bundle)
    grant(shop.person(11))
    body = get(secret_client, profile_id=shop.person(11), k=3)
    assert body["items"][0]["reason"]["type"] == "popular_in_segment"
    assert body["items"][0]["explanation"] == "Popular with Gift buyers"


def test_similar_products(shop, secret_client):
    response = secret_client.get("/api/v1/products/ELE-1/similar/", {"k": 3})
    assert response.status_code == 200
    body = response.json()
    assert body["placement"] == "similar"
    assert "ELE-1" not in [item["sku"] for item in body["items"]]
    assert "ELE-4" not in [item["sku"] for item in body["items"]]
    for item in body["items"]:
        assert item["reason"] == {"type": "similar_product", "item_id": "ELE-1"}
        assert item["explanation"].startswith("Similar to ")
    assert RecommendationServed.objects.filter(pk=body["recommendation_id"]).exists()
    assert secret_client.get("/api/v1/products/NOPE/similar/").status_code == 404
    assert secret_client.get("/api/v1/products/ELE-1/similar/", {"k": 1000}).status_code == 400


def test_recommendations_need_a_secret_key(shop, api_client):
    assert api_client.get("/api/v1/recommendations/").status_code in (401, 403)


def test_the_served_log_can_be_written_by_the_background_writer(shop, secret_client, settings, monkeypatch):
    from recommendations import services

    # a writer that would wait an hour: its thread uses its own connection (outside this test's
    # transaction), so the test takes the rows and inserts them itself
    writer = services.ServedLogWriter(interval=3600)
    monkeypatch.setattr(services, "served_log_writer", writer)
    settings.RECS_SERVED_LOG_ASYNC = True
    body = get(secret_client, k=3, placement="cart")
    assert writer.thread is not None and writer.thread.is_alive()
    with writer.lock:
        rows, writer.rows = writer.rows, []
    assert [row[0] for row in rows] == [body["recommendation_id"]]
    from recommendations.services import recommendations_served_insert

    assert recommendations_served_insert(rows=rows) == 1
    served = RecommendationServed.objects.get(pk=body["recommendation_id"])
    assert (served.placement, served.items) == ("cart", [item["sku"] for item in body["items"]])


def test_flush_returns_only_after_the_writer_threads_insert_in_progress_is_done(monkeypatch):
    """A caller that flushes (at exit; a test before its teardown truncates the tables) must not
    return while the writer thread is still inserting rows it took a moment earlier."""
    import threading

    from recommendations import services

    inserting, release = threading.Event(), threading.Event()
    written: list = []

    def slow_insert(*, rows):
        inserting.set()
        release.wait(10)
        written.extend(rows)
        return len(rows)

    monkeypatch.setattr(services, "recommendations_served_insert", slow_insert)
    writer = services.ServedLogWriter(interval=3600)
    writer.rows.append(("row-1",))
    background = threading.Thread(target=writer.flush)  # the writer thread's turn
    background.start()
    assert inserting.wait(10)
    flushed = threading.Event()
    caller = threading.Thread(target=lambda: (writer.flush(), flushed.set()))
    caller.start()
    assert not flushed.wait(0.3)  # still inserting: flush() must wait
    release.set()
    assert flushed.wait(10)
    assert written == [("row-1",)]
    background.join(10)
    caller.join(10)


def test_served_rows_of_people_erased_meanwhile_are_dropped(shop):
    import uuid

    from recommendations.services import recommendations_served_insert

    gone = str(uuid.uuid4())
    rows = [
        (str(uuid.uuid4()), gone, shop.version.pk, "home", True, ["ELE-1"]),
        (str(uuid.uuid4()), shop.person(0), shop.version.pk, "home", True, ["ELE-1"]),
        (str(uuid.uuid4()), None, None, "", False, []),
    ]
    assert recommendations_served_insert(rows=rows) == 2
    assert not RecommendationServed.objects.filter(profile_id=gone).exists()


def test_a_merged_away_profile_id_gets_the_survivors_answer_under_the_survivors_consent(shop, secret_client):
    from profiles.models import Profile

    survivor, merged = shop.person(0), shop.person(11)
    Profile.objects.filter(pk=merged).update(merged_into=survivor)
    body = get(secret_client, profile_id=merged)
    assert (body["profile_id"], body["personalised"]) == (survivor, False)
    grant(survivor)
    body = get(secret_client, profile_id=merged, k=10, max_per_category=10)
    assert (body["profile_id"], body["personalised"]) == (survivor, True)
    assert "BEA-1" in [item["sku"] for item in body["items"]]  # the survivor's purchase, bought again
