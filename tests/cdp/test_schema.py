"""The OpenAPI schema is a reviewed artefact: a change to the API shows up as a snapshot diff.

After an intended API change, refresh it with:  UPDATE_SNAPSHOTS=1 make test
"""

import os

import pytest
import yaml
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema

from tests.conftest import REPO

SNAPSHOT = REPO / "tests" / "snapshots" / "openapi.yaml"


def current_schema() -> str:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    validate_schema(schema)
    return yaml.safe_dump(schema, sort_keys=True, allow_unicode=True)


@pytest.mark.django_db
def test_openapi_schema_matches_snapshot():
    text = current_schema()
    if os.environ.get("UPDATE_SNAPSHOTS") == "1" or not SNAPSHOT.exists():
        SNAPSHOT.write_text(text)
    assert text == SNAPSHOT.read_text(), "API changed: review, then run UPDATE_SNAPSHOTS=1 make test"


@pytest.mark.django_db
def test_schema_and_docs_are_served(client, admin_client):
    schema = client.get("/api/schema/")
    assert schema.status_code == 200
    assert "/api/v1/sources/" in schema.content.decode()
    docs = admin_client.get("/api/docs/")
    assert docs.status_code == 200
    assert b"swagger" in docs.content.lower()


@pytest.mark.django_db
def test_docs_are_staff_only_and_load_nothing_from_the_internet(client, admin_client):
    import re

    from django.contrib.staticfiles import finders

    anonymous = client.get("/api/docs/")
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/admin/login/")
    html = admin_client.get("/api/docs/").content.decode()
    assert not re.search(r"(src|href)=[\"']?(https?:)?//", html), "the docs page loads something from outside"
    assets = re.findall(r"(?:src|href)=\"(/static/[^\"]+)\"", html)
    assert any(a.endswith("swagger-ui-bundle.js") for a in assets)
    for asset in assets:  # every asset is a pinned file of the project's static files
        assert finders.find(asset.removeprefix("/static/")), asset
