"""The stitch path's owners read looks each identifier up in its index, whatever the size of the
table: as a join, PostgreSQL hashed the whole identifiers table for every batch once it held a few
tens of thousands of rows, a cost that grows with the data, not with the batch (decision 0070)."""

from __future__ import annotations

import json

import pytest
from django.db import connection

from cdp.db import binary_cursor
from profiles.tracking import stitch

STORED = 30_000
LOOKED_UP = 1_500

# the join the owners read was before decision 0070: the control, which these planner settings hash
JOIN_SQL = (
    "SELECT i.kind, i.value, i.profile_id FROM profiles_identifier i "
    "JOIN unnest(%b::text[], %b::text[]) AS q(kind, value) ON i.kind = q.kind AND i.value = q.value"
)


def scans_of(sql: str, params: list) -> list[dict]:
    """The plan's nodes that read ``profiles_identifier``, each with its parent's node type, planned
    with settings that favour hashing a table whole (dear random reads, ample memory for a hash):
    what a probe form has to withstand. ``SET LOCAL`` ends with the test's transaction."""
    with binary_cursor() as cursor:
        cursor.execute("SET LOCAL random_page_cost = 10")
        cursor.execute("SET LOCAL work_mem = '256MB'")
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan
    found = []

    def walk(node: dict, parent: str) -> None:
        if node.get("Relation Name") == "profiles_identifier":
            found.append({**node, "parent": parent})
        for child in node.get("Plans", []):
            walk(child, node["Node Type"])

    walk(plan[0]["Plan"], "")
    return found


@pytest.fixture
def many_identifiers(db):
    """STORED identifiers on as many profiles. No ANALYZE: its figures in ``pg_class`` would outlive
    the test's rollback; the planner sizes the table from its pages."""
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


def test_owners_of_a_batch_are_found_by_index_probes_not_by_hashing_the_identifier_table(many_identifiers):
    # given a batch's worth of identifiers to look up in a table twenty times larger
    params = [["anonymous_id"] * LOOKED_UP, [f"device-{n}" for n in range(1, LOOKED_UP + 1)]]

    # when PostgreSQL plans the join (the control) and the owners read, with hashing made attractive
    joined = scans_of(JOIN_SQL, params)
    probed = scans_of(stitch._OWNERS_SQL, params)

    # then the join reads the whole table (so these settings tell the two forms apart)
    assert [s["Node Type"] for s in joined] == ["Seq Scan"], joined
    # and the owners read probes the (kind, value) index once per identifier of the batch: an index
    # scan conditioned on the batch's row, inside a nested loop over the batch
    assert len(probed) == 1, probed
    scan = probed[0]
    assert scan["Node Type"] in ("Index Scan", "Index Only Scan"), scan
    assert scan["Index Name"] == "identifier_kind_value_uniq"
    assert "q.kind" in scan.get("Index Cond", "") and "q.value" in scan.get("Index Cond", ""), scan
    assert scan["parent"] == "Nested Loop", scan


def test_owners_of_answers_the_owner_of_each_stored_identifier_and_nothing_for_the_others(many_identifiers):
    wanted = [("anonymous_id", "device-1"), ("anonymous_id", "device-2"), ("anonymous_id", "device-2")]
    owners = stitch.owners_of([*wanted, ("anonymous_id", "nobody"), ("user_id", "device-1")])
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT kind, value, profile_id FROM profiles_identifier WHERE value IN ('device-1', 'device-2')"
        )
        stored = {(k, v): pid for k, v, pid in cursor.fetchall()}
    assert owners == stored
