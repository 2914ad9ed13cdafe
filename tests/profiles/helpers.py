"""Helpers for profiles tests: send tracking calls the way Segment's libraries do."""

from __future__ import annotations

import base64
import uuid

from django.db import connection
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


def deadlocks() -> int:
    """PostgreSQL's own count of deadlocks detected in this (test) database."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
        return cursor.fetchone()[0]


def person_insert(other, kind: str, value: str):
    """A new profile with one identifier, written on ``other`` (another psycopg connection: another
    transaction, as a concurrent batch writes it); returns its id."""
    pid = other.execute(
        "INSERT INTO profiles_profile (id, traits, trait_meta, computed, first_seen_at, last_seen_at, "
        "created_at, updated_at) VALUES (gen_random_uuid(), '{}', '{}', '{}', now(), now(), now(), now()) "
        "RETURNING id"
    ).fetchone()[0]
    other.execute(
        "INSERT INTO profiles_identifier (kind, value, profile_id, created_at, last_seen_at) "
        "VALUES (%s, %s, %s, now(), now())",
        [kind, value, pid],
    )
    return pid
