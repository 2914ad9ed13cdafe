"""The segment builder's server side: names offered from the schema registry, names never seen
flagged with a suggestion, the definition in plain words, the JSON view in a readable key order."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from profiles.schema import schema_record, schema_summary
from segments.admin import DefinitionWidget
from segments.builder import definition_summary, definition_warnings, readable_order

pytestmark = pytest.mark.django_db
AT = datetime(2026, 1, 5, tzinfo=UTC)


@pytest.fixture
def schema():
    events = [
        {
            "profile_id": "p",
            "type": "track",
            "name": "Product Viewed",
            "properties": {"category": "outdoor"},
            "occurred_at": AT,
        },
        {
            "profile_id": "p",
            "type": "track",
            "name": "Order Completed",
            "properties": {"revenue": 9},
            "occurred_at": AT,
        },
    ]
    schema_record(summary=schema_summary(events=events))


def test_names_never_seen_are_flagged_with_a_suggestion(schema):
    definition = {
        "all": [
            {"event": "Product Viewd"},
            {"event": "Product Viewed", "where": [{"property": "categroy", "op": "=", "value": "x"}]},
            {"not": {"event": "Newsletter Signup"}},
            {"event": "Order Completed", "sum": {"property": "revenue", "op": ">", "value": 1}},
        ]
    }
    assert definition_warnings(definition) == {
        "definition.all[0].event": ["Event 'Product Viewd' was never seen; did you mean 'Product Viewed'?"],
        "definition.all[1].where[0].property": ["Property 'categroy' was never seen; did you mean 'category'?"],
        "definition.all[2].not.event": [
            "Event 'Newsletter Signup' was never seen (nothing of that name has arrived yet)."
        ],
    }


def test_definitions_in_plain_words():
    assert definition_summary({"all": []}) == "Everyone."
    assert definition_summary(
        {
            "all": [
                {"event": "Product Viewed", "within_last": {"hours": 24}, "count": {"op": ">=", "value": 3}},
                {"any": [{"consent": "marketing"}, {"segment": "vips"}]},
                {"computed": "revenue_365d", "op": ">=", "value": 500},
            ]
        }
    ) == (
        "People who did “Product Viewed” at least 3 times in the last 24 hours and (granted marketing consent "
        "or are in the segment vips) and have revenue 365d that is at least 500."
    )


def test_admin_check_answers_with_warnings_and_summary_and_the_catalog_offers_names(admin_client, schema):
    body = {"definition": json.dumps({"event": "Product Viewd"}), "slug": ""}
    answer = admin_client.post("/admin/segments/segment/validate/", body, content_type="application/json").json()
    assert answer["errors"] == {}
    assert answer["warnings"]["definition.event"] == [
        "Event 'Product Viewd' was never seen; did you mean 'Product Viewed'?"
    ]
    assert answer["summary"] == "People who did “Product Viewd”."
    catalog = admin_client.get("/admin/segments/segment/builder-catalog/").json()
    viewed = next(e for e in catalog["events"] if e["name"] == "Product Viewed")
    assert viewed["count"] == 1 and viewed["properties"] == [{"name": "category", "count": 1, "samples": ["outdoor"]}]
    assert "revenue_365d" in catalog["computed"] and "contains" in catalog["ops"]["trait"]


def test_add_page_has_the_builder_and_the_json_view(admin_client):
    html = admin_client.get("/admin/segments/segment/add/").content.decode()
    assert 'id="seg-builder"' in html and "segments/builder.js" in html
    assert 'class="seg-definition"' in html  # the JSON view stays


def test_json_view_shows_keys_in_the_order_people_write_them():
    stored = {"op": ">=", "value": 3, "event": "X", "count": {"value": 3, "op": ">="}, "within_last": {"days": 7}}
    assert list(readable_order(stored)) == ["event", "op", "value", "within_last", "count"]
    text = DefinitionWidget().format_value(readable_order(stored))  # the fallback when no typed text matches
    assert text.index('"event"') < text.index('"within_last"') < text.index('"count"')
