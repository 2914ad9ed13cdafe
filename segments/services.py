"""Writes of the segments app: membership with history, sizes over time."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.utils import timezone

from segments.models import Segment, SegmentSize

# Real-time changes of one profile's membership record at most one size sample per this interval
# (the latest sample within it is updated instead), so a busy shop does not write one row per event.
SIZE_SAMPLE_INTERVAL = timedelta(minutes=1)


def _uuid_list(profile_ids: Iterable) -> list[str]:
    return sorted({str(uuid.UUID(str(p))) for p in profile_ids})


def _membership_apply(
    *, segment: Segment, members_sql: str, members_params: list, scope: list[str] | None, at: datetime, full: bool
) -> tuple[int, int]:
    """Make the open memberships of ``segment`` equal ``members_sql`` (a query returning profile ids),
    within ``scope`` (a list of profile ids) or for the whole population (``scope`` None).

    Runs under a lock on the segment row, so a full refresh and real-time updates of the same segment
    take turns; the members query runs after the lock is taken and so sees every committed event.
    """
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT id FROM segments_segment WHERE id = %s FOR UPDATE", [segment.pk])
        cursor.execute("CREATE TEMP TABLE IF NOT EXISTS _seg_members (pid uuid PRIMARY KEY) ON COMMIT DROP")
        cursor.execute("TRUNCATE _seg_members")
        cursor.execute(  # members_sql is built by this app (compiled ORM SQL), values are parameters
            "INSERT INTO _seg_members (pid) SELECT DISTINCT t.pid FROM (" + members_sql + ") AS t(pid) "  # noqa: S608
            "WHERE t.pid IS NOT NULL",
            members_params,
        )
        cursor.execute(
            "UPDATE segments_segmentmembership m SET exited_at = %s "
            "WHERE m.segment_id = %s AND m.exited_at IS NULL "
            "AND (%s::uuid[] IS NULL OR m.profile_id = ANY(%s::uuid[])) "
            "AND NOT EXISTS (SELECT 1 FROM _seg_members s WHERE s.pid = m.profile_id)",
            [at, segment.pk, scope, scope],
        )
        exited = cursor.rowcount
        cursor.execute(
            "INSERT INTO segments_segmentmembership (segment_id, profile_id, entered_at, exited_at) "
            "SELECT %s, s.pid, %s, NULL FROM _seg_members s "
            "ON CONFLICT (segment_id, profile_id) WHERE exited_at IS NULL DO NOTHING",
            [segment.pk, at],
        )
        entered = cursor.rowcount
        cursor.execute("DROP TABLE _seg_members")
        cursor.execute(
            "SELECT count(*) FROM segments_segmentmembership WHERE segment_id = %s AND exited_at IS NULL", [segment.pk]
        )
        size = cursor.fetchone()[0]
        changes = {"size": size}
        if full:
            changes["last_refreshed_at"] = at
        Segment.objects.filter(pk=segment.pk).update(**changes)
        for key, value in changes.items():
            setattr(segment, key, value)
        _size_sample(segment=segment, size=size, at=at, force=full, changed=bool(entered or exited))
    return entered, exited


def _size_sample(*, segment: Segment, size: int, at: datetime, force: bool, changed: bool) -> None:
    last = SegmentSize.objects.filter(segment=segment).order_by("-at", "-id").first()
    if last is not None and not force and not changed:
        return
    if last is not None and not force and at - last.at < SIZE_SAMPLE_INTERVAL and last.at <= at:
        SegmentSize.objects.filter(pk=last.pk).update(size=size)
        return
    SegmentSize.objects.create(segment=segment, at=at, size=size)


def segment_membership_set(
    *, segment: Segment, profile_ids: Iterable[str], at: datetime | None = None
) -> tuple[int, int]:
    """Make ``profile_ids`` the segment's members (everyone else exits); returns (entered, exited).

    Memberships keep their history (entered_at / exited_at) and a SegmentSize sample is recorded.
    Ids of merged-away or unknown profiles are ignored: only live profiles are members.
    """
    at = at or timezone.now()
    ids = _uuid_list(profile_ids)
    sql = "SELECT p.id FROM profiles_profile p WHERE p.id = ANY(%s::uuid[]) AND p.merged_into_id IS NULL"
    return _membership_apply(segment=segment, members_sql=sql, members_params=[ids], scope=None, at=at, full=True)
