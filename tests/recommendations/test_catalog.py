"""The catalog: bulk upsert through the API (with field errors), read one, products from events, import."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from recommendations.models import Product
from tests.profiles.helpers import batch, writer

pytestmark = pytest.mark.django_db


def test_upsert_creates_then_updates_only_the_fields_sent(secret_client):
    # given a new product
    response = secret_client.put(
        "/api/v1/products/",
        {"products": [{"sku": "A-1", "title": "Alpha", "category": "Shoes>Running", "price": "59.90", "brand": "Z"}]},
        format="json",
    )
    assert response.status_code == 200, response.content
    assert response.json() == {"created": 1, "updated": 0, "skus": ["A-1"]}
    # when only its stock changes (a bare list works too)
    response = secret_client.post("/api/v1/products/", [{"sku": "A-1", "in_stock": False}], format="json")
    assert response.json() == {"created": 0, "updated": 1, "skus": ["A-1"]}
    # then the other fields are kept and the category path is normalised
    body = secret_client.get("/api/v1/products/A-1/").json()
    assert body["title"] == "Alpha"
    assert body["category"] == "Shoes > Running"
    assert body["price"] == "59.90"
    assert body["in_stock"] is False
    assert body["first_seen_source"] == "api"


def test_upsert_with_invalid_items_is_refused_with_messages_per_item(secret_client):
    response = secret_client.put(
        "/api/v1/products/",
        {"products": [{"sku": "OK-1"}, {"title": "no sku"}, {"sku": "B-2", "price": "-3", "in_stock": "maybe"}]},
        format="json",
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert set(error["fields"]) == {"products.1.sku", "products.2.price", "products.2.in_stock"}
    assert Product.objects.count() == 0  # all or nothing


def test_upsert_refuses_an_empty_or_malformed_body(secret_client):
    assert secret_client.put("/api/v1/products/", {"products": []}, format="json").status_code == 400
    response = secret_client.put("/api/v1/products/", {"items": 3}, format="json")
    assert response.status_code == 400
    assert "products" in response.json()["error"]["fields"]


def test_catalog_needs_a_secret_key(api_client, write_key):
    assert api_client.get("/api/v1/products/X/").status_code in (401, 403)
    client = writer(write_key)
    assert client.put("/api/v1/products/", [{"sku": "X"}], format="json").status_code == 403


def test_unknown_product_is_404(secret_client):
    response = secret_client.get("/api/v1/products/NOPE/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_products_first_seen_in_events_are_created_from_their_properties(
    write_key, secret_client, django_capture_on_commit_callbacks
):
    # given a product the catalog does not know, and one it knows (with another title)
    secret_client.put("/api/v1/products/", [{"sku": "KNOWN", "title": "From the feed"}], format="json")
    with django_capture_on_commit_callbacks(execute=True):
        response = batch(
            writer(write_key),
            {
                "type": "track",
                "event": "Product Viewed",
                "userId": "u1",
                "properties": {"product_id": "NEW-1", "name": "Blue Mug", "category": "kitchen", "price": 12.5},
            },
            {
                "type": "track",
                "event": "Order Completed",
                "userId": "u1",
                "properties": {
                    "order_id": "o1",
                    "products": [{"product_id": "NEW-2", "name": "Tea Pot", "brand": "Tilo"}, {"product_id": "KNOWN"}],
                },
            },
        )
    assert response.status_code == 200, response.content
    new1 = Product.objects.get(sku="NEW-1")
    assert (new1.title, new1.category, str(new1.price), new1.first_seen_source) == (
        "Blue Mug",
        "kitchen",
        "12.50",
        "event",
    )
    assert Product.objects.get(sku="NEW-2").brand == "Tilo"
    assert Product.objects.get(sku="KNOWN").title == "From the feed"  # events never overwrite the catalog


def test_import_products_reads_csv_and_jsonl(tmp_path):
    csv_file = tmp_path / "products.csv"
    csv_file.write_text(
        "sku,title,category,brand,price,in_stock,attributes\n"
        'C-1,Chair,home > chairs,Oak,120.00,true,"{""color"": ""red""}"\n'
        "C-2,Table,home,Oak,,false,\n"
    )
    call_command("import_products", str(csv_file), "--no-progress")
    assert Product.objects.get(sku="C-1").attributes == {"color": "red"}
    assert Product.objects.get(sku="C-2").in_stock is False
    assert Product.objects.get(sku="C-2").first_seen_source == "import"
    jsonl = tmp_path / "products.jsonl"
    jsonl.write_text(json.dumps({"sku": "C-2", "in_stock": True}) + "\n" + json.dumps({"sku": "C-3", "title": "Lamp"}))
    call_command("import_products", str(jsonl), "--no-progress")
    assert Product.objects.get(sku="C-2").in_stock is True
    assert Product.objects.get(sku="C-2").title == "Table"
    assert Product.objects.count() == 3


def test_import_products_reports_bad_rows_and_imports_nothing(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("sku,title,price\nD-1,Desk,12\n,No sku,3\nD-3,Bad price,abc\n")
    with pytest.raises(CommandError) as caught:
        call_command("import_products", str(bad), "--no-progress")
    message = str(caught.value)
    assert "line 3" in message and "sku" in message
    assert "line 4" in message and "price" in message
    assert Product.objects.count() == 0


def test_import_products_missing_file_exits_non_zero_without_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "manage.py", "import_products", str(tmp_path / "missing.csv")],
        capture_output=True,
        text=True,
        env={**__import__("tests.conftest", fromlist=["worker_env"]).worker_env()},
    )
    assert result.returncode != 0
    assert "missing.csv" in result.stderr
    assert "Traceback" not in result.stderr
