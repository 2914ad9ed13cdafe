"""The JSON view and the API show a definition's keys in the order the expert typed them (jsonb reorders)."""

from __future__ import annotations

import html
import json

from segments.models import Segment

# keys deliberately not in jsonb's (length, then bytes) order nor in the builder's readable order
TYPED = (
    '{\n    "all": [\n        {"within_last": {"days": 7}, "event": "Product Viewed",'
    ' "count": {"value": 3, "op": ">="}},\n'
    '        {"value": "pro", "op": "=", "trait": "plan"}\n    ]\n}'
)


def _textarea(page: str) -> str:
    start = page.index(">", page.index('class="seg-definition"')) + 1
    return html.unescape(page[start : page.index("</textarea>", start)]).strip("\r\n")


def test_admin_json_view_round_trips_the_text_as_typed(admin_client):
    form = {"name": "Typed", "slug": "typed", "description": "", "status": "active", "definition": TYPED}
    response = admin_client.post("/admin/segments/segment/add/", form)
    assert response.status_code == 302, response.context["adminform"].form.errors
    seg = Segment.objects.get(slug="typed")
    # jsonb: shorter keys first, so the text must be kept apart
    assert list(seg.definition["all"][0]) == ["count", "event", "within_last"]
    page = admin_client.get(f"/admin/segments/segment/{seg.pk}/change/").content.decode()
    assert _textarea(page) == TYPED
    # saving the page again (and an edit) keeps the typed text, not jsonb's order
    edited = TYPED.replace('"pro"', '"gold"')
    response = admin_client.post(f"/admin/segments/segment/{seg.pk}/change/", {**form, "definition": edited})
    assert response.status_code == 302, response.context["adminform"].form.errors
    page = admin_client.get(f"/admin/segments/segment/{seg.pk}/change/").content.decode()
    assert _textarea(page) == edited


def test_admin_falls_back_to_the_stored_value_when_the_text_no_longer_matches(admin_client):
    seg = Segment.objects.create(
        slug="drift", name="Drift", definition={"event": "Order Completed"}, definition_text='{"event": "Old"}'
    )
    page = admin_client.get(f"/admin/segments/segment/{seg.pk}/change/").content.decode()
    assert json.loads(_textarea(page)) == {"event": "Order Completed"}


def test_api_returns_the_definition_in_typed_order(secret_client):
    body = '{"slug": "typed-api", "name": "Typed", "definition": ' + TYPED + "}"
    response = secret_client.post("/api/v1/segments/", body, content_type="application/json")
    assert response.status_code == 201, response.content.decode()
    got = secret_client.get("/api/v1/segments/typed-api/").json()["definition"]
    assert list(got["all"][0]) == ["within_last", "event", "count"]
    assert list(got["all"][0]["count"]) == ["value", "op"] and list(got["all"][1]) == ["value", "op", "trait"]
    response = secret_client.patch(
        "/api/v1/segments/typed-api/",
        '{"definition": {"within_last": {"days": 3}, "event": "Product Viewed"}}',
        content_type="application/json",
    )
    assert response.status_code == 200, response.content.decode()
    got = secret_client.get("/api/v1/segments/typed-api/").json()["definition"]
    assert list(got) == ["within_last", "event"]
