"""Evaluate a (valid) condition tree for one profile, in Python over that profile's rows.

``facts_load`` reads what the definitions need with few queries (the profile; its events of the
named kinds; its latest device/hour/country; consent; cluster memberships; percentile cut-offs),
then ``definition_match`` answers without touching the database. The semantics are those of
``segments.rules.compile`` (shared operators in ``ops``); a property test proves they agree.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import connection

from segments.rules import ops

# slug -> (segment id, kind, definition) or None
SegmentResolver = Callable[[str], "tuple[int, str, dict | None] | None"]
_INDEX = re.compile(r"-?[0-9]+")


def db_resolver() -> SegmentResolver:
    """Looks segments up by slug in the database (memoised for one compilation or evaluation)."""
    from segments.models import Segment, SegmentStatus

    cache: dict[str, tuple | None] = {}

    def resolve(slug: str):
        if slug not in cache:
            row = (
                Segment.objects.filter(slug=slug)
                .exclude(status=SegmentStatus.DISMISSED)
                .values_list("pk", "kind", "definition")
                .first()
            )
            cache[slug] = tuple(row) if row else None
        return cache[slug]

    return resolve


def split_array_path(path: str) -> tuple[list[str] | None, list[str]]:
    """ "products[].category" -> (["products"], ["category"]); "a.b" -> (None, ["a", "b"])."""
    if "[]" not in path:
        return None, path.split(".")
    head, tail = path.split("[]", 1)
    return head.split("."), tail.lstrip(".").split(".")


def json_get(value, path: list[str]):
    """``value #> path`` in Python (None when missing or JSON null)."""
    for key in path:
        if isinstance(value, dict):
            value = value.get(key)
        elif isinstance(value, list) and _INDEX.fullmatch(key):
            index = int(key)
            value = value[index] if -len(value) <= index < len(value) else None
        else:
            return None
    return value


@dataclass
class Needs:
    event_names: set[str] = field(default_factory=set)
    latest: set[str] = field(default_factory=set)  # device_type, local_hour, country
    consent: set[str] = field(default_factory=set)
    clusters: set[int] = field(default_factory=set)  # cluster segment ids referenced
    percentiles: set[tuple] = field(default_factory=set)  # (column, path tuple, op, percent)
    trait_keys: set[str] = field(default_factory=set)
    computed_keys: set[str] = field(default_factory=set)
    time_based: bool = False  # conditions relative to now: a scheduled refresh keeps them true
    # how far back event conditions look: timedeltas (rolling windows) and datetimes (between);
    # None in the list = some condition looks at all history
    event_horizons: list = field(default_factory=list)

    def events_since(self, now: datetime) -> datetime | None:
        """The oldest event time any condition can look at (None: all history)."""
        if not self.event_horizons or None in self.event_horizons:
            return None
        return min(now - h if isinstance(h, timedelta) else h for h in self.event_horizons)

    def merge(self, other: Needs) -> None:
        for name in ("event_names", "latest", "consent", "clusters", "percentiles", "trait_keys", "computed_keys"):
            getattr(self, name).update(getattr(other, name))
        self.time_based = self.time_based or other.time_based
        self.event_horizons.extend(other.event_horizons)


def definition_needs(definition: dict, *, resolve: SegmentResolver, stack: tuple[str, ...] = ()) -> Needs:
    needs = Needs()

    def walk(node, stack) -> None:
        if not isinstance(node, dict):
            return
        for key in ("all", "any"):
            for child in node.get(key, []) or []:
                walk(child, stack)
        if "not" in node:
            walk(node["not"], stack)
        if "trait" in node or "computed" in node:
            column = "traits" if "trait" in node else "computed"
            key = node["trait"] if column == "traits" else node["computed"]
            (needs.trait_keys if column == "traits" else needs.computed_keys).add(key.split(".")[0])
            if node["op"] in ops.PERCENT_OPS:
                needs.percentiles.add((column, tuple(key.split(".")), node["op"], node["value"]))
            if node["op"] == "within_last" or isinstance(node.get("value"), dict):
                needs.time_based = True
        elif "event" in node:
            needs.event_names.add(node["event"])
            if "within_last" in node or "between" in node:
                needs.time_based = True
            if "within_last" in node:
                w = node["within_last"]
                needs.event_horizons.append(timedelta(days=float(w.get("days", 0)), hours=float(w.get("hours", 0))))
            elif "between" in node:
                needs.event_horizons.append(ops.parse_ts(node["between"][0]))
            else:
                needs.event_horizons.append(None)
            for flt in node.get("where", []):
                if flt.get("op") == "within_last" or isinstance(flt.get("value"), dict):
                    needs.time_based = True
        elif "context" in node:
            needs.latest.add(node["context"])
        elif "consent" in node:
            needs.consent.add(node["consent"])
        elif "segment" in node:
            slug = node["segment"]
            found = resolve(slug)
            if found is None or slug in stack:
                return
            seg_id, kind, child = found
            if kind == "rule" and isinstance(child, dict):
                walk(child, (*stack, slug))
            elif kind != "rule":
                needs.clusters.add(seg_id)

    walk(definition, stack)
    return needs


@dataclass
class EventRow:
    id: int
    name: str
    properties: dict
    context: dict
    occurred_at: datetime
    device_type: str
    local_hour: int | None


@dataclass
class Facts:
    profile_id: str
    traits: dict
    computed: dict
    events: list[EventRow] = field(default_factory=list)
    latest: dict[str, object] = field(default_factory=dict)
    consent: dict[str, bool] = field(default_factory=dict)
    clusters: set[int] = field(default_factory=set)
    thresholds: dict[tuple, Decimal | None] = field(default_factory=dict)


_LATEST_SQL = {
    "device_type": "SELECT to_jsonb(e.device_type) FROM profiles_event e WHERE e.profile_id = %s "
    "AND e.device_type <> '' ORDER BY e.occurred_at DESC, e.id DESC LIMIT 1",
    "local_hour": "SELECT to_jsonb(e.local_hour) FROM profiles_event e WHERE e.profile_id = %s "
    "AND e.local_hour IS NOT NULL ORDER BY e.occurred_at DESC, e.id DESC LIMIT 1",
    "country": "SELECT e.context #> '{location,country}' FROM profiles_event e WHERE e.profile_id = %s "
    "AND COALESCE(jsonb_typeof(e.context #> '{location,country}') <> 'null', false) "
    "ORDER BY e.occurred_at DESC, e.id DESC LIMIT 1",
}


def percentile_threshold(key: tuple) -> Decimal | None:
    from segments.rules.compile import percentile_threshold_sql

    column, path, op, percent = key
    sql, params = percentile_threshold_sql(column, list(path), op, percent)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()[0]


def facts_load(
    *,
    profile_id: str,
    needs: Needs,
    thresholds: Callable[[tuple], Decimal | None] = percentile_threshold,
    now: datetime | None = None,
) -> Facts | None:
    """What ``needs`` asks for about one live profile; None when it is unknown or merged away."""
    import json

    from profiles.models import Profile

    row = Profile.objects.filter(pk=profile_id, merged_into__isnull=True).values_list("traits", "computed").first()
    if row is None:
        return None
    facts = Facts(profile_id=str(profile_id), traits=row[0] or {}, computed=row[1] or {})
    with connection.cursor() as cursor:
        if needs.event_names:
            since = needs.events_since(now) if now is not None else None
            cursor.execute(
                "SELECT id, name, properties, context, occurred_at, device_type, local_hour FROM profiles_event "
                "WHERE profile_id = %s AND name = ANY(%s) AND (%s::timestamptz IS NULL OR occurred_at >= %s)",
                [profile_id, sorted(needs.event_names), since, since],
            )
            for eid, name, props, ctx, at, device, hour in cursor.fetchall():
                props = json.loads(props) if isinstance(props, str) else props
                ctx = json.loads(ctx) if isinstance(ctx, str) else ctx
                facts.events.append(EventRow(eid, name, props or {}, ctx or {}, at, device, hour))
        if needs.latest:
            parts = [f"({_LATEST_SQL[k]})" for k in sorted(needs.latest)]
            cursor.execute("SELECT " + ", ".join(parts), [profile_id] * len(parts))
            values = cursor.fetchone()
            for key, value in zip(sorted(needs.latest), values, strict=True):
                facts.latest[key] = json.loads(value) if isinstance(value, str) else value
        if needs.clusters:
            cursor.execute(
                "SELECT segment_id FROM segments_segmentmembership WHERE profile_id = %s AND exited_at IS NULL "
                "AND segment_id = ANY(%s)",
                [profile_id, sorted(needs.clusters)],
            )
            facts.clusters = {r[0] for r in cursor.fetchall()}
    if needs.consent:
        from consent.selectors import consent_granted

        facts.consent = {p: consent_granted(profile_id=profile_id, purpose=p) for p in sorted(needs.consent)}
    facts.thresholds = {key: thresholds(key) for key in needs.percentiles}
    return facts


def _measure_match(rows: list[EventRow], node: dict) -> bool:
    if "sum" in node:
        path = node["sum"]["property"].split(".")
        total = Decimal(0)
        for row in rows:
            v = json_get(row.properties, path)
            total += ops.dec(v) if ops.is_number(v) else 0
        return ops.match_py(total, node["sum"]["op"], node["sum"]["value"], datetime.min)
    count = {"op": "=", "value": 0} if node.get("did_not") else node.get("count", {"op": ">=", "value": 1})
    return ops.match_py(len(rows), count["op"], count["value"], datetime.min)


def _filter_match(row: EventRow, flt: dict, now: datetime) -> bool:
    op, value = flt["op"], flt["value"]
    if "field" in flt:
        return ops.match_py(getattr(row, flt["field"]), op, value, now)
    if "context" in flt:
        return ops.match_py(json_get(row.context, flt["context"].split(".")), op, value, now)
    array_path, element_path = split_array_path(flt["property"])
    if array_path is None:
        return ops.match_py(json_get(row.properties, element_path), op, value, now)
    items = json_get(row.properties, array_path)
    if not isinstance(items, list):
        return False
    return any(ops.match_py(json_get(item, element_path), op, value, now) for item in items)


def _event_match(facts: Facts, node: dict, now: datetime) -> bool:
    start = end = None
    if "within_last" in node:
        w = node["within_last"]
        start = now - timedelta(days=float(w.get("days", 0)), hours=float(w.get("hours", 0)))
    if "between" in node:
        start, end = (ops.parse_ts(x) for x in node["between"])
    rows = [
        row
        for row in facts.events
        if row.name == node["event"]
        and (start is None or row.occurred_at >= start)
        and (end is None or row.occurred_at < end)
        and all(_filter_match(row, flt, now) for flt in node.get("where", []))
    ]
    return _measure_match(rows, node)


def definition_match(
    definition: dict, facts: Facts, *, now: datetime, resolve: SegmentResolver, stack: tuple[str, ...] = ()
) -> bool:
    """Is the profile of ``facts`` a member of ``definition`` at ``now``?"""

    def match(node: dict, stack) -> bool:
        if "all" in node:
            return all(match(child, stack) for child in node["all"])
        if "any" in node:
            return any(match(child, stack) for child in node["any"])
        if "not" in node:
            return not match(node["not"], stack)
        if "trait" in node or "computed" in node:
            column = "traits" if "trait" in node else "computed"
            key = node["trait"] if column == "traits" else node["computed"]
            path = key.split(".")
            v = json_get(facts.traits if column == "traits" else facts.computed, path)
            if node["op"] in ops.PERCENT_OPS:
                threshold = facts.thresholds.get((column, tuple(path), node["op"], node["value"]))
                if threshold is None or not ops.is_number(v):
                    return False
                return ops.dec(v) >= threshold if node["op"] == "top_percent" else ops.dec(v) <= threshold
            return ops.match_py(v, node["op"], node["value"], now)
        if "event" in node:
            return _event_match(facts, node, now)
        if "context" in node:
            return ops.match_py(facts.latest.get(node["context"]), node["op"], node["value"], now)
        if "consent" in node:
            return facts.consent.get(node["consent"], False)
        if "segment" in node:
            slug = node["segment"]
            found = resolve(slug)
            if found is None or slug in stack:
                return False
            seg_id, kind, child = found
            if kind == "rule":
                return isinstance(child, dict) and match(child, (*stack, slug))
            return seg_id in facts.clusters
        raise ValueError(f"not a condition: {node!r}")

    return match(definition, stack)
