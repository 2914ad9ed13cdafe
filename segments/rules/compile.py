"""Compile a (valid) condition tree into one ORM filter over live profiles.

``definition_q(definition, now=...)`` returns a ``Q`` for ``Profile.objects``; ``members_queryset``
adds the live-profile filter. Event conditions become ``Exists`` (did / did not) or ``pk IN`` a
grouped subquery with ``HAVING`` (counts and sums), so PostgreSQL plans them as (anti-)semi-joins;
context conditions are ``Subquery`` lookups of the latest event; percentiles an uncorrelated scalar
subquery evaluated once.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from django.db.models import (
    BooleanField,
    Count,
    DecimalField,
    Exists,
    Expression,
    F,
    JSONField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
)

from profiles.models import Event, Profile
from segments.rules import ops
from segments.rules.evaluate import SegmentResolver, db_resolver, split_array_path

ALWAYS = Q(pk__isnull=False)
NEVER = Q(pk__isnull=True)  # always false, without Django's EmptyResultSet


class _OneSource(Expression):
    """An expression over one source expression (``self.source``), which Django may rewrite."""

    def get_source_expressions(self):
        return [self.source]

    def set_source_expressions(self, exprs):
        (self.source,) = exprs


class JsonAt(_OneSource):
    """``column #> path`` (jsonb, NULL when missing)."""

    output_field = JSONField()

    def __init__(self, source, path: list[str]) -> None:
        super().__init__(output_field=JSONField())
        self.source = source if isinstance(source, Expression) else F(source)
        self.path = list(path)

    def as_sql(self, compiler, connection):
        sql, params = compiler.compile(self.source)
        return f"({sql} #> %s::text[])", [*params, self.path]


class ToJsonb(_OneSource):
    """``to_jsonb(expr)``: a plain column or subquery as a jsonb value for the shared predicates."""

    def __init__(self, source) -> None:
        super().__init__(output_field=JSONField())
        self.source = source

    def as_sql(self, compiler, connection):
        sql, params = compiler.compile(self.source)
        return f"to_jsonb({sql})", list(params)


class JsonMatch(_OneSource):
    """A shared predicate (segments.rules.ops) over a jsonb-valued expression; never NULL."""

    conditional = True

    def __init__(self, source, op: str, value, now: datetime) -> None:
        super().__init__(output_field=BooleanField())
        self.source, self.op, self.value, self.now = source, op, value, now

    def as_sql(self, compiler, connection):
        sql, params = compiler.compile(self.source)
        return ops.match_sql(f"({sql})", list(params), self.op, self.value, self.now)


class AnyElementMatch(_OneSource):
    """Some element of the list at ``array_path`` has ``element_path`` matching (``products[].category``)."""

    conditional = True

    def __init__(self, column: str, array_path, element_path, op: str, value, now: datetime) -> None:
        super().__init__(output_field=BooleanField())
        self.source = F(column)
        self.array_path, self.element_path = list(array_path), list(element_path)
        self.op, self.value, self.now = op, value, now

    def as_sql(self, compiler, connection):
        col, params = compiler.compile(self.source)
        arr = f"({col} #> %s::text[])"
        arr_params = [*params, self.array_path]
        pred, pred_params = ops.match_sql("(el.v #> %s::text[])", [self.element_path], self.op, self.value, self.now)
        return (
            f"EXISTS (SELECT 1 FROM jsonb_array_elements(CASE WHEN jsonb_typeof({arr}) = 'array' THEN {arr} "  # noqa: S608
            f"ELSE '[]'::jsonb END) AS el(v) WHERE {pred})",
            [*arr_params, *arr_params, *pred_params],
        )


class PercentileMatch(_OneSource):
    """The profile's number at ``path`` is in the top (or bottom) ``percent`` % of live profiles'."""

    conditional = True

    def __init__(self, column: str, path: list[str], op: str, percent, now: datetime | None = None) -> None:
        super().__init__(output_field=BooleanField())
        if column not in ("traits", "computed"):
            raise ValueError(column)
        self.column, self.path, self.op, self.percent = column, list(path), op, percent
        self.source = F(column)

    def as_sql(self, compiler, connection):
        col, params = compiler.compile(self.source)
        threshold_sql, threshold_params = percentile_threshold_sql(self.column, self.path, self.op, self.percent)
        sign = ">=" if self.op == "top_percent" else "<="
        return (
            f"COALESCE(CASE WHEN jsonb_typeof({col} #> %s::text[]) = 'number' "
            f"THEN ({col} #>> %s::text[])::numeric {sign} ({threshold_sql}) END, false)",
            [*params, self.path, *params, self.path, *threshold_params],
        )


def percentile_threshold_sql(column: str, path: list[str], op: str, percent) -> tuple[str, list]:
    """The cut-off among live profiles (NULL when nobody has a number there): for the top p %, the
    value reached by the first p % in descending order; for the bottom p %, in ascending order."""
    order = "DESC" if op == "top_percent" else "ASC"
    return (
        f"SELECT percentile_disc(%s) WITHIN GROUP (ORDER BY (pp.{column} #>> %s::text[])::numeric {order}) "  # noqa: S608
        f"FROM profiles_profile pp WHERE pp.merged_into_id IS NULL "
        f"AND jsonb_typeof(pp.{column} #> %s::text[]) = 'number'",
        [float(percent) / 100, path, path],
    )


class NumberAt(_OneSource):
    """The number at ``path`` of a jsonb column, 0 when it is not a number (for sums)."""

    def __init__(self, column: str, path: list[str]) -> None:
        super().__init__(output_field=DecimalField())
        self.source, self.path = F(column), list(path)

    def as_sql(self, compiler, connection):
        col, params = compiler.compile(self.source)
        return (
            f"(CASE WHEN jsonb_typeof({col} #> %s::text[]) = 'number' THEN ({col} #>> %s::text[])::numeric ELSE 0 END)",
            [*params, self.path, *params, self.path],
        )


def _measure_q(op: str, value) -> Q:
    lookups = {"=": "exact", "<": "lt", "<=": "lte", ">": "gt", ">=": "gte"}
    if op == "!=":
        return ~Q(measure=value)
    return Q(**{f"measure__{lookups[op]}": value})


def _holds_for_zero(op: str, value) -> bool:
    return ops.match_py(0, op, value, datetime.min)


def _field_q(field: str, op: str, value) -> Q | None:
    """Plain column filters for the common cases (the planner can estimate them; same answers as
    the JSON predicate): device type (text, never null) equal to / in texts; local hour
    (small integer, null when unknown) compared with numbers. None: use the JSON predicate."""
    lookups = {"=": "exact", "<": "lt", "<=": "lte", ">": "gt", ">=": "gte"}
    if field == "device_type":
        if op == "=" and isinstance(value, str):
            return Q(device_type=value)
        if op == "in" and all(isinstance(v, str) for v in value):
            return Q(device_type__in=value)
        return None
    if op in lookups and ops.is_number(value):
        return Q(**{f"local_hour__{lookups[op]}": value})
    if op == "between":
        return Q(local_hour__gte=value[0], local_hour__lte=value[1])
    if op == "in" and all(ops.is_number(v) for v in value):
        return Q(local_hour__in=value)
    return None


def event_filters_q(node: dict, now: datetime) -> list:
    """The ORM filters (on Event) of an event leaf: name, time window and property filters."""
    filters: list = [Q(name=node["event"])]
    if "within_last" in node:
        w = node["within_last"]
        filters.append(
            Q(occurred_at__gte=now - timedelta(days=float(w.get("days", 0)), hours=float(w.get("hours", 0))))
        )
    if "between" in node:
        start, end = (ops.parse_ts(x) for x in node["between"])
        filters.append(Q(occurred_at__gte=start, occurred_at__lt=end))
    for flt in node.get("where", []):
        op, value = flt["op"], flt["value"]
        if "field" in flt:
            native = _field_q(flt["field"], op, value)
            filters.append(native if native is not None else JsonMatch(ToJsonb(F(flt["field"])), op, value, now))
        elif "context" in flt:
            filters.append(JsonMatch(JsonAt("context", flt["context"].split(".")), op, value, now))
        else:
            array_path, element_path = split_array_path(flt["property"])
            if array_path is None:
                filters.append(JsonMatch(JsonAt("properties", element_path), op, value, now))
            else:
                filters.append(AnyElementMatch("properties", array_path, element_path, op, value, now))
    return filters


class _Compiler:
    def __init__(self, *, now: datetime, resolve: SegmentResolver) -> None:
        self.now = now
        self.resolve = resolve

    def node(self, node: dict, stack: tuple[str, ...]) -> Q:
        if "all" in node:
            if not node["all"]:
                return ALWAYS  # (an empty Q would vanish under "not")
            q = self.node(node["all"][0], stack)
            for child in node["all"][1:]:
                q &= self.node(child, stack)
            return q
        if "any" in node:
            if not node["any"]:
                return NEVER
            q = self.node(node["any"][0], stack)
            for child in node["any"][1:]:
                q |= self.node(child, stack)
            return q
        if "not" in node:
            return ~self.node(node["not"], stack)
        if "trait" in node or "computed" in node:
            column = "traits" if "trait" in node else "computed"
            path = node[column if column == "computed" else "trait"].split(".")
            if node["op"] in ops.PERCENT_OPS:
                return Q(PercentileMatch(column, path, node["op"], node["value"]))
            return Q(JsonMatch(JsonAt(column, path), node["op"], node["value"], self.now))
        if "event" in node:
            return self.event(node)
        if "context" in node:
            return Q(JsonMatch(self.latest(node["context"]), node["op"], node["value"], self.now))
        if "consent" in node:
            from consent.selectors import consent_granted_q

            return consent_granted_q(purpose=node["consent"], profile_field="pk")
        if "segment" in node:
            return self.segment(node["segment"], stack)
        raise ValueError(f"not a condition: {node!r}")

    def event(self, node: dict) -> Q:
        events = Event.objects.filter(*event_filters_q(node, self.now))
        if "sum" in node:
            measure = Sum(NumberAt("properties", node["sum"]["property"].split(".")))
            op, value = node["sum"]["op"], node["sum"]["value"]
        else:
            count = node.get("count", {"op": ">=", "value": 1})
            if node.get("did_not"):
                count = {"op": "=", "value": 0}
            op, value = count["op"], count["value"]
            measure = Count("id")
            if (op, value) in ((">=", 1), (">", 0), ("!=", 0)):
                return Q(Exists(events.filter(profile=OuterRef("pk"))))
            if (op, value) in (("=", 0), ("<", 1), ("<=", 0)):
                return ~Q(Exists(events.filter(profile=OuterRef("pk"))))
        grouped = events.order_by().values("profile_id").annotate(measure=measure)
        if _holds_for_zero(op, value):  # people without such events qualify: exclude those who fail
            return ~Q(pk__in=grouped.exclude(_measure_q(op, value)).values("profile_id"))
        return Q(pk__in=grouped.filter(_measure_q(op, value)).values("profile_id"))

    def latest(self, what: str):
        events = Event.objects.filter(profile=OuterRef("pk")).order_by("-occurred_at", "-id")
        if what == "device_type":
            return ToJsonb(Subquery(events.exclude(device_type="").values("device_type")[:1]))
        if what == "local_hour":
            return ToJsonb(Subquery(events.filter(local_hour__isnull=False).values("local_hour")[:1]))
        country = JsonAt("context", ["location", "country"])
        rows = events.annotate(_country=country).filter(JsonMatch(country, "exists", True, self.now))
        return Subquery(rows.values("_country")[:1], output_field=JSONField())

    def segment(self, slug: str, stack: tuple[str, ...]) -> Q:
        found = self.resolve(slug)
        if found is None or slug in stack:
            return NEVER
        seg_id, kind, definition = found
        if kind == "rule":
            return self.node(definition, (*stack, slug)) if isinstance(definition, dict) else NEVER
        from segments.models import SegmentMembership

        return Q(
            Exists(SegmentMembership.objects.filter(segment_id=seg_id, profile=OuterRef("pk"), exited_at__isnull=True))
        )


def definition_q(definition: dict, *, now: datetime, resolve: SegmentResolver | None = None, slug: str = "") -> Q:
    """One ORM filter for ``Profile.objects`` that keeps exactly the members of ``definition``."""
    return _Compiler(now=now, resolve=resolve or db_resolver()).node(definition, (slug,) if slug else ())


def members_queryset(
    definition: dict, *, now: datetime, resolve: Callable | None = None, slug: str = ""
) -> QuerySet[Profile]:
    """Live profiles matching ``definition`` (one SQL query)."""
    return Profile.objects.filter(merged_into__isnull=True).filter(
        definition_q(definition, now=now, resolve=resolve, slug=slug)
    )
