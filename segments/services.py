"""Writes of the segments app: membership with history, sizes over time."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.utils import timezone

from segments.models import Segment, SegmentMembership, SegmentSize

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


# --- rule segments ------------------------------------------------------------------------------

PREVIEW_SAMPLE = 20
REALTIME_CHUNK = 200


class SegmentInvalid(ValueError):
    """A definition or segment field failed validation; ``errors`` maps field paths to messages."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items()))
        self.errors = errors


def _validate(*, definition, slug: str | None) -> None:
    from segments.rules.validate import definition_errors

    errors = definition_errors(definition, slug=slug)
    if errors:
        raise SegmentInvalid(errors)


def _queue_refresh(segment: Segment) -> None:
    from segments import tasks

    transaction.on_commit(lambda: tasks.segment_refresh.delay(segment.pk))


def _definition_text(*, definition, text: str | None) -> str:
    """The definition as typed: ``text`` verbatim when it parses to ``definition``, else ``definition``
    dumped in its own key order (parsed JSON keeps the typed order; jsonb would not)."""
    if text is not None:
        try:
            if json.loads(text) == definition:
                return text
        except ValueError:
            pass
    return json.dumps(definition, indent=2, ensure_ascii=False) if definition is not None else ""


def segment_create(
    *,
    slug: str,
    name: str,
    definition: dict,
    definition_text: str | None = None,
    description: str = "",
    created_by: str = "",
    refresh: str = "queue",
) -> Segment:
    """A new active rule segment. ``refresh``: "queue" (a Celery task after commit), "now" or "no"."""
    if Segment.objects.filter(slug=slug).exists():
        raise SegmentInvalid({"slug": [f"A segment '{slug}' already exists."]})
    _validate(definition=definition, slug=slug)
    with transaction.atomic():
        segment = Segment.objects.create(
            slug=slug,
            name=name,
            description=description,
            definition=definition,
            definition_text=_definition_text(definition=definition, text=definition_text),
            created_by=created_by,
        )
        _index_changed()
        if refresh == "queue":
            _queue_refresh(segment)
    if refresh == "now":
        segment_refresh(segment=segment)
    return segment


def segment_update(
    *, segment: Segment, refresh: str = "queue", definition_text: str | None = None, **fields
) -> Segment:
    """Change name, description, slug, status or definition (validated as on creation). ``definition_text``
    is the definition as typed, kept to show its key order back (see ``_definition_text``)."""
    allowed = {"slug", "name", "description", "definition", "status"}
    unknown = set(fields) - allowed
    if unknown:
        raise SegmentInvalid({k: ["This field cannot be changed."] for k in sorted(unknown)})
    if "slug" in fields and fields["slug"] != segment.slug and Segment.objects.filter(slug=fields["slug"]).exists():
        raise SegmentInvalid({"slug": [f"A segment '{fields['slug']}' already exists."]})
    if segment.kind != "rule" and "status" in fields and fields["status"] != segment.status:
        raise SegmentInvalid(
            {"status": ["A cluster segment is accepted or dismissed through its proposal's actions, not edited."]}
        )
    if "definition" in fields:
        if segment.kind != "rule":
            raise SegmentInvalid({"definition": ["A cluster segment has no definition; its clustering run decides."]})
        _validate(definition=fields["definition"], slug=fields.get("slug", segment.slug))
    with transaction.atomic():
        for key, value in fields.items():
            setattr(segment, key, value)
        if "definition" in fields:
            segment.definition_text = _definition_text(definition=fields["definition"], text=definition_text)
        segment.save()
        _index_changed()
        if "definition" in fields and refresh == "queue" and segment.status == "active":
            _queue_refresh(segment)
    if "definition" in fields and refresh == "now":
        segment_refresh(segment=segment)
    return segment


def segment_delete(*, segment: Segment) -> None:
    """Delete a segment with its memberships and size history (other segments referring to it no
    longer match through it)."""
    with transaction.atomic():
        segment.delete()
        _index_changed()


def _resolve():
    from segments.rules.evaluate import db_resolver

    return db_resolver()


def segment_refresh(*, segment: Segment, at: datetime | None = None) -> tuple[int, int]:
    """Full refresh of a rule segment: one SQL query over every live profile decides membership.

    Returns (entered, exited). Cluster segments are not rule-evaluated (returns (0, 0)).
    """
    from segments.rules.compile import members_queryset

    if segment.kind != "rule" or not isinstance(segment.definition, dict):
        return 0, 0
    at = at or timezone.now()
    query = members_queryset(segment.definition, now=at, resolve=_resolve(), slug=segment.slug).values("pk")
    sql, params = query.query.sql_with_params()
    return _membership_apply(
        segment=segment, members_sql=sql, members_params=list(params), scope=None, at=at, full=True
    )


def segments_refresh_all(*, time_based_only: bool = False, at: datetime | None = None, progress=None) -> int:
    """Full refresh of every active rule segment (or only those with time-relative conditions)."""
    from segments.selectors import rule_segments_active

    done = 0
    index = segments_index()
    for segment in rule_segments_active().order_by("pk"):
        entry = index.get(segment.pk)
        if time_based_only and (entry is None or not entry.scheduled):
            continue
        segment_refresh(segment=segment, at=at)
        done += 1
        if progress:
            progress(done)
    return done


def segment_preview(*, definition: dict, sample: int = PREVIEW_SAMPLE, slug: str | None = None, at=None) -> dict:
    """Size and a sample of members of a definition, without saving anything."""
    from segments.rules.compile import members_queryset

    _validate(definition=definition, slug=slug)
    at = at or timezone.now()
    members = members_queryset(definition, now=at, resolve=_resolve(), slug=slug or "")
    rows = list(members.order_by("-last_seen_at", "pk").values("pk", "traits", "last_seen_at")[:sample])
    return {
        "size": members.count(),
        "sample": [
            {
                "id": str(r["pk"]),
                "email": (r["traits"] or {}).get("email"),
                "name": (r["traits"] or {}).get("name"),
                "last_seen_at": r["last_seen_at"],
            }
            for r in rows
        ],
        "at": at,
    }


# --- real time: which segments can change for an event, and single-profile evaluation ----------


class _IndexEntry:
    __slots__ = ("definition", "kind", "needs", "scheduled", "segment_id", "slug")

    def __init__(self, segment_id: int, slug: str, definition: dict, needs) -> None:
        self.segment_id, self.slug, self.definition, self.needs = segment_id, slug, definition, needs
        self.kind = "rule"
        # time-relative conditions, consent and cluster references change without an event of the
        # profile: the scheduled refresh keeps those true
        self.scheduled = bool(needs.time_based or needs.consent or needs.clusters or needs.computed_keys)

    def relevant(self, event_names: set[str] | None) -> bool:
        n = self.needs
        if event_names is None:  # the activity hook did not say which events: anything may have changed
            return bool(n.event_names or n.latest or n.computed_keys or n.trait_keys)
        return bool(n.event_names & event_names or n.latest or n.computed_keys or n.trait_keys)


_INDEX: dict = {"key": None, "entries": {}}


def _index_changed() -> None:
    _INDEX["key"] = None


def segments_index() -> dict[int, _IndexEntry]:
    """Active rule segments with what their conditions depend on (event names, trait keys…),
    rebuilt when any segment changes (checked with one cheap query)."""
    from django.db.models import Count, Max

    from segments.rules.evaluate import definition_needs
    from segments.selectors import rule_segments_active

    stamp = Segment.objects.aggregate(n=Count("pk"), at=Max("updated_at"))
    key = (stamp["n"], stamp["at"])
    if _INDEX["key"] != key:
        resolve = _resolve()
        entries = {}
        for seg in rule_segments_active().only("pk", "slug", "definition"):
            if isinstance(seg.definition, dict):
                needs = definition_needs(seg.definition, resolve=resolve, stack=(seg.slug,))
                entries[seg.pk] = _IndexEntry(seg.pk, seg.slug, seg.definition, needs)
        _INDEX.update(key=key, entries=entries)
    return _INDEX["entries"]


def profile_segments_evaluate(
    *, profile_id: str, segments: list | None = None, at: datetime | None = None, resolve=None
) -> dict[int, bool]:
    """Single-profile evaluation: {segment id: member?} for the given (default: all active) rule
    segments, from that profile's rows loaded with a few queries. A merged or unknown profile is a
    member of nothing."""
    from segments.rules.evaluate import Needs, definition_match, facts_load

    at = at or timezone.now()
    entries = segments if segments is not None else list(segments_index().values())
    needs = Needs()
    for entry in entries:
        needs.merge(entry.needs)
    facts = facts_load(profile_id=profile_id, needs=needs, thresholds=_cached_threshold, now=at)
    if facts is None:
        return {entry.segment_id: False for entry in entries}
    resolve = resolve or _resolve()
    return {
        entry.segment_id: definition_match(entry.definition, facts, now=at, resolve=resolve, stack=(entry.slug,))
        for entry in entries
    }


PERCENTILE_CACHE_SECONDS = 300


_THRESHOLDS: dict[tuple, tuple[float, object]] = {}


def _cached_threshold(key: tuple):
    """Percentile cut-offs for real-time evaluation, cached a few minutes in Redis and for a
    minute in the process (the full refresh computes them exactly in its query)."""
    import time

    from django.core.cache import cache

    from segments.rules.evaluate import percentile_threshold

    local = _THRESHOLDS.get(key)
    if local is not None and local[0] > time.monotonic():
        return local[1]
    cache_key = "segments:pct:" + "|".join(map(str, key))
    cached = cache.get(cache_key)
    if cached is None:
        value = percentile_threshold(key)
        cache.set(cache_key, ("v", value), PERCENTILE_CACHE_SECONDS)
    else:
        value = cached[1]
    _THRESHOLDS[key] = (time.monotonic() + 60, value)
    return value


def segments_profiles_refresh(
    *,
    profile_ids: Iterable[str],
    event_names: Iterable[str] | None = None,
    at: datetime | None = None,
    every_segment: bool = False,
) -> tuple[int, int]:
    """Real time: re-evaluate these profiles in the rule segments their activity could change.

    Per chunk of profiles, in one transaction: the segments' rows are locked (id order, the lock a
    full refresh takes), then the time is taken, then the profiles are evaluated and the differences
    applied. So two overlapping refreshes take turns and the later one evaluates what the earlier one
    wrote against the data committed before it got the lock: no stale membership is written, and
    entries and exits are stamped in the order they are applied. ``at`` fixes the time (tests).

    Returns (entered, exited) summed over segments. Merged-away profiles leave every segment
    (cluster segments included: members are live profiles).
    """
    ids = _uuid_list(profile_ids)
    names = set(event_names) if event_names is not None else None
    entries = sorted(
        (e for e in segments_index().values() if every_segment or e.relevant(names)), key=lambda e: e.segment_id
    )
    entered = exited = 0
    resolve = _resolve()
    for start in range(0, len(ids), REALTIME_CHUNK):
        chunk = ids[start : start + REALTIME_CHUNK]
        if entries:
            e, x = _chunk_refresh(chunk=chunk, entries=entries, at=at, resolve=resolve)
            entered, exited = entered + e, exited + x
        exited += _merged_exit(profile_ids=chunk, at=at or timezone.now())
    return entered, exited


def _chunk_refresh(*, chunk: list[str], entries: list, at: datetime | None, resolve) -> tuple[int, int]:
    """Evaluate and apply one chunk under the segments' locks (see ``segments_profiles_refresh``)."""
    entered = exited = 0
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT id FROM segments_segment WHERE id = ANY(%s) ORDER BY id FOR UPDATE",
            [[e.segment_id for e in entries]],
        )
        now = at or timezone.now()  # inside the lock: applied in the order the locks were granted
        members: dict[int, list[str]] = {e.segment_id: [] for e in entries}
        for pid in chunk:
            for seg_id, is_member in profile_segments_evaluate(
                profile_id=pid, segments=entries, at=now, resolve=resolve
            ).items():
                if is_member:
                    members[seg_id].append(pid)
        current: dict[int, set[str]] = {e.segment_id: set() for e in entries}
        for seg_id, pid in SegmentMembership.objects.filter(
            profile_id__in=chunk, segment_id__in=list(current), exited_at__isnull=True
        ).values_list("segment_id", "profile_id"):
            current[seg_id].add(str(pid))
        for entry in entries:
            if set(members[entry.segment_id]) == current[entry.segment_id]:
                continue  # nothing changes for these profiles: no write
            e, x = _membership_apply(
                segment=Segment(pk=entry.segment_id),
                members_sql="SELECT unnest(%s::uuid[])",
                members_params=[members[entry.segment_id]],
                scope=chunk,
                at=now,
                full=False,
            )
            entered, exited = entered + e, exited + x
    return entered, exited


def _merged_exit(*, profile_ids: list[str], at: datetime) -> int:
    """Close the open memberships of profiles that were merged away (in any segment)."""
    from segments.models import SegmentMembership

    rows = SegmentMembership.objects.filter(
        profile_id__in=profile_ids, profile__merged_into__isnull=False, exited_at__isnull=True
    )
    segment_ids = set(rows.values_list("segment_id", flat=True))
    if not segment_ids:
        return 0
    closed = 0
    for seg in Segment.objects.filter(pk__in=segment_ids):
        _, x = _membership_apply(
            segment=seg, members_sql="SELECT NULL::uuid", members_params=[], scope=profile_ids, at=at, full=False
        )
        closed += x
    return closed


def segments_on_merge(*, winner_id: str, loser_id: str) -> tuple[int, int]:
    """After a merge or unmerge: both profiles re-evaluated in every active rule segment (events,
    traits and consent all moved)."""
    return segments_profiles_refresh(profile_ids=[winner_id, loser_id], every_segment=True)


# --- privacy (registered with consent's registry in apps.py) ------------------------------------


def privacy_export(profile_ids: list[str]) -> dict:
    from segments.models import SegmentMembership

    rows = (
        SegmentMembership.objects.filter(profile_id__in=profile_ids)
        .select_related("segment")
        .order_by("entered_at", "pk")
    )
    return {
        "segment_memberships": [
            {
                "segment": r.segment.slug,
                "segment_name": r.segment.name,
                "profile_id": str(r.profile_id),
                "entered_at": r.entered_at.isoformat(),
                "exited_at": r.exited_at.isoformat() if r.exited_at else None,
            }
            for r in rows
        ]
    }


def privacy_erase(profile_ids: list[str]) -> None:
    from segments.models import SegmentMembership

    affected = set(SegmentMembership.objects.filter(profile_id__in=profile_ids).values_list("segment_id", flat=True))
    SegmentMembership.objects.filter(profile_id__in=profile_ids).delete()
    for seg_id in affected:
        Segment.objects.filter(pk=seg_id).update(
            size=SegmentMembership.objects.filter(segment_id=seg_id, exited_at__isnull=True).count()
        )
