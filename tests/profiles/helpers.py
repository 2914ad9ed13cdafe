"""Helpers for profiles tests: send tracking calls the way Segment's libraries do."""

from __future__ import annotations

import base64
import uuid

from rest_framework.test import APIClient


def writer(write_key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Basic " + base64.b64encode(f"{write_key}:".encode()).decode())
    return client


def call(client: APIClient, kind: str, **payload):
    payload.setdefault("messageId", str(uuid.uuid4()))
    return client.post(f"/v1/{kind}", payload, format="json")


def batch(client: APIClient, *events, **extra):
    for event in events:
        if isinstance(event, dict):
            event.setdefault("messageId", str(uuid.uuid4()))
    return client.post("/v1/batch", {"batch": list(events), **extra}, format="json")
