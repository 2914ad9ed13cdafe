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
def test_schema_and_docs_are_served(client):
    schema = client.get("/api/schema/")
    assert schema.status_code == 200
    assert "/api/v1/sources/" in schema.content.decode()
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    assert b"swagger" in docs.content.lower()
