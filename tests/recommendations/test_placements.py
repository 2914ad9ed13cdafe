"""Placements mean something (home, product, cart, post_purchase; admin-managed), and every reason
names the real driver of the item."""

from __future__ import annotations

import pytest

from recommendations.models import Placement, PlacementKind

from .conftest import CATALOG, grant

pytestmark = pytest.mark.django_db
TITLES = {s: t for s, t, _, _ in CATALOG}


def ask(client, **params):
    return client.get("/api/v1/recommendations/", params)


def test_an_unknown_placement_is_a_400_that_lists_the_allowed_ones(shop, secret_client):
    response = ask(secret_client, placement="bogus")
    assert response.status_code == 400
    message = response.json()["error"]["fields"]["placement"][0]
    assert message == "Unknown placement 'bogus'; allowed: cart, home, post_purchase, product."
    assert ask(secret_client).json()["placement"] == "home"  # the default


def test_placements_are_managed_in_admin(shop, secret_client, admin_client):
    from recommendations.services import placement_save

    # an admin adds a placement of kind "product" and switches "cart" off
    response = admin_client.post(
        "/admin/recommendations/placement/add/",
        {"key": "pdp", "name": "PDP", "kind": "product", "is_active": "on", "default_k": "2"},
    )
    assert response.status_code == 302, response.content
    cart = Placement.objects.get(key="cart")
    cart.is_active = False
    placement_save(placement=cart)
    from recommendations import serving

    serving.runtime.reset()  # the test runs inside one transaction: the catalog bump waits for commit
    body = ask(secret_client, placement="pdp", product="ELE-1", k=4).json()
    assert body["placement"] == "pdp"
    assert {item["reason"]["type"] for item in body["items"]} <= {"similar_product", "bought_with", "popular"}
    assert len(ask(secret_client, placement="pdp", product="ELE-1").json()["items"]) == 2  # its default k
    refused = ask(secret_client, placement="cart")
    assert refused.status_code == 400 and "allowed: home, pdp, post_purchase, product" in refused.content.decode()
    with pytest.raises(ValueError, match="Unknown placement kind"):
        placement_save(placement=Placement(key="x", kind="nope"))


def test_cart_suggests_what_is_bought_with_the_cart_and_never_the_cart(shop, secret_client):
    # TOY-1 was bought by person 2 (with ELE-1, BOO-1) and person 8 (with TOY-2)
    body = ask(secret_client, placement="cart", cart_items="TOY-1", k=3).json()
    items = body["items"]
    assert items and "TOY-1" not in [item["sku"] for item in items]
    related = [item for item in items if item["recommender"] == "complements"]
    assert {item["sku"] for item in related} <= {"TOY-2", "ELE-1", "BOO-1"} and related
    for item in related:
        assert item["reason"] == {"type": "bought_with_cart", "item_id": "TOY-1"}
        assert item["explanation"] == "Often bought with Bricktopia Building Block Set in your cart"
        assert item["score_type"] == "similarity" and 0 < item["score"] <= 1.0
    # the cart's list is not the home list
    assert [i["sku"] for i in items] != [i["sku"] for i in ask(secret_client, k=3).json()["items"]]


def test_product_page_shows_similar_and_complementary_products(shop, secret_client):
    body = ask(secret_client, placement="product", product="ELE-1", k=6).json()
    skus = [item["sku"] for item in body["items"]]
    assert "ELE-1" not in skus and "ELE-4" not in skus  # the product itself, out of stock
    kinds = {item["reason"]["type"] for item in body["items"]}
    assert {"similar_product", "bought_with"} <= kinds
    for item in body["items"]:
        if item["reason"]["type"] == "similar_product":
            assert item["category"] == "electronics"  # the same kind of product
            assert item["explanation"] == f"Similar to {TITLES['ELE-1']}"
        elif item["reason"]["type"] == "bought_with":
            assert item["explanation"] == f"Often bought with {TITLES['ELE-1']}"


def test_post_purchase_follows_the_latest_order(shop, secret_client):
    # person 2's latest order is TOY-1 (5 days ago)
    person = shop.person(2)
    grant(person)
    body = ask(secret_client, placement="post_purchase", profile_id=person, k=3).json()
    assert body["personalised"] is True
    assert "TOY-1" not in [item["sku"] for item in body["items"]]
    related = [item for item in body["items"] if item["recommender"] == "complements"]
    assert related and all(item["reason"] == {"type": "bought_with_order", "item_id": "TOY-1"} for item in related)
    # or what the storefront says was just bought
    body = ask(secret_client, placement="post_purchase", order_items="BEA-1", k=2).json()
    assert all(item["sku"] != "BEA-1" for item in body["items"])


def test_home_reasons_name_the_real_driver(shop, secret_client):
    from recommendations.models import ModelVersion

    from .conftest import ORDERS, publish, train_from_events

    # a hybrid-free recipe with item-item as the personal model: its suggestions come from her items
    publish(train_from_events({"primary": "item_item", "recommenders": ["popularity", "buy_again", "item_item"]}))
    assert ModelVersion.objects.filter(status="active").count() == 1
    for n in range(len(ORDERS)):
        person = shop.person(n)
        grant(person)
        bought = {sku for sku, _ in ORDERS[n]}
        for item in ask(secret_client, profile_id=person, k=8, max_per_category=8).json()["items"]:
            reason = item["reason"]
            if reason["type"] == "bought":
                assert item["sku"] in bought and item["explanation"] == "You bought this before"
            elif reason["type"] == "because_bought":
                assert reason["item_id"] in bought and item["sku"] not in bought
                assert item["explanation"] == f"Because you bought {TITLES[reason['item_id']]}"
            else:
                assert reason["type"] in ("popular", "similar_shoppers", "trending"), reason


def test_placement_kinds_are_the_four_of_the_issue():
    assert set(PlacementKind.values) == {"home", "product", "cart", "post_purchase"}
