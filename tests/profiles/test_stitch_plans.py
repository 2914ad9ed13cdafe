"""The stitch path's reads look each key up in its index, whatever the size of the table: as joins,
PostgreSQL hashed whole tables for every batch once they held a few tens of thousands of rows, a
cost that grows with the data, not with the batch (decision 0070)."""

from __future__ import annotations

import pytest
from django.db import connection

from cdp.db import binary_cursor
from profiles.tracking import stitch

STORED = 30_000
LOOKED_UP = 1_500


def plan_of(sql: str, params: list) -> str:
    with binary_cursor() as cursor:
        cursor.execute(f"EXPLAIN {sql}", params)
        return "\n".join(row[0] for row in cursor.fetchall())


@pytest.fixture
def many_identifiers(db):
    """STORED identifiers on as many profiles, with the table's statistics current (ANALYZE)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO profiles_profile (id, traits, trait_meta, computed, first_seen_at, last_seen_at, "
            "created_at, updated_at) SELECT gen_random_uuid(), '{}', '{}', '{}', now(), now(), now(), now() "
            "FROM generate_series(1, %s)",
            [STORED],
        )
        cursor.execute(
            "INSERT INTO profiles_identifier (kind, value, profile_id, created_at, last_seen_at) "
            "SELECT 'anonymous_id', 'device-' || row_number() OVER (), id, now(), now() FROM profiles_profile"
        )
        cursor.execute("ANALYZE profiles_profile")
        cursor.execute("ANALYZE profiles_identifier")


def test_owners_of_a_batch_are_found_by_index_probes_not_by_hashing_the_identifier_table(many_identifiers):
    # given a batch's worth of identifiers to look up in a table twenty times larger
    kinds = ["anonymous_id"] * LOOKED_UP
    values = [f"device-{n}" for n in range(1, LOOKED_UP + 1)]

    # when PostgreSQL plans the owners read
    plan = plan_of(stitch._OWNERS_SQL, [kinds, values])

    # then each identifier is one probe of the (kind, value) index; the table is never read whole
    assert "identifier_kind_value_uniq" in plan
    assert "Seq Scan on profiles_identifier" not in plan
    # and the read answers as before
    owners = stitch.owners_of([*list(zip(kinds, values, strict=True))[:3], ("anonymous_id", "nobody")])
    assert len(owners) == 3 and ("anonymous_id", "nobody") not in owners
