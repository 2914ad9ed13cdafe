"""Validation of a condition tree, with messages a marketer can act on, keyed by field path.

``definition_errors(definition)`` returns ``{}`` when the definition is valid, otherwise e.g.
``{"definition.all[1].value": ["'between' needs two values, the lower first"]}``. Admin and API
call exactly this function.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from django.utils import timezone

from segments.rules import ops

MAX_DEPTH = 8
MAX_CONDITIONS = 50
MAX_IN_VALUES = 1000
MAX_DAYS = 36_500  # windows and "days ago": at most 100 years (keeps date arithmetic in range)
MAX_HOURS = MAX_DAYS * 24
CONTEXT_LEAVES = ("device_type", "local_hour", "country")
EVENT_FIELDS = ("device_type", "local_hour")
LEAF_KEYS = ("trait", "computed", "event", "context", "consent", "segment")
COUNT_OPS = ("=", "!=", *ops.COMPARE)

# lookup of another segment by slug: (kind, definition) or None when there is no such segment
SegmentLookup = Callable[[str], "tuple[str, dict | None] | None"]


def computed_trait_names() -> list[str]:
    from profiles.traits import compute

    now = timezone.now()
    return sorted(compute([], first_seen=now, last_seen=now, now=now))


def _db_lookup(slug: str):
    from segments.models import Segment

    row = Segment.objects.filter(slug=slug).values_list("kind", "definition").first()
    return tuple(row) if row else None


def _is_scalar(v) -> bool:
    return isinstance(v, (str, bool)) or ops.is_number(v)


def _describe(v) -> str:
    return {dict: "an object", list: "a list", str: "text", bool: "true/false"}.get(
        type(v), "a number" if ops.is_number(v) else "nothing"
    )


class _Checker:
    def __init__(self, *, slug: str | None, lookup: SegmentLookup, purposes: list[str] | None) -> None:
        self.errors: dict[str, list[str]] = {}
        self.slug = slug
        self.lookup = lookup
        self.purposes = purposes
        self.conditions = 0
        self._computed: list[str] | None = None

    def add(self, path: str, message: str) -> None:
        self.errors.setdefault(path, []).append(message)

    @property
    def computed(self) -> list[str]:
        if self._computed is None:
            self._computed = computed_trait_names()
        return self._computed

    # -- nodes --

    def node(self, node, path: str, depth: int) -> None:
        if depth > MAX_DEPTH:
            self.add(path, f"Conditions are nested too deeply (at most {MAX_DEPTH} levels).")
            return
        if not isinstance(node, dict):
            self.add(path, f'A condition must be an object such as {{"all": [...]}}, not {_describe(node)}.')
            return
        groups = [k for k in ("all", "any", "not") if k in node]
        leaves = [k for k in LEAF_KEYS if k in node]
        if len(groups) + len(leaves) != 1:
            found = ", ".join(f"'{k}'" for k in (*groups, *leaves)) or "none"
            self.add(
                path,
                "Each condition needs exactly one of 'all', 'any', 'not', 'trait', 'computed', 'event', "
                f"'context', 'consent', 'segment' (found {found}).",
            )
            return
        kind = (groups or leaves)[0]
        if kind in ("all", "any"):
            self._only(node, path, {kind})
            items = node[kind]
            if not isinstance(items, list):
                self.add(f"{path}.{kind}", f"'{kind}' takes a list of conditions.")
                return
            for i, child in enumerate(items):
                self.node(child, f"{path}.{kind}[{i}]", depth + 1)
            return
        if kind == "not":
            self._only(node, path, {"not"})
            self.node(node["not"], f"{path}.not", depth + 1)
            return
        self.conditions += 1
        if self.conditions == MAX_CONDITIONS + 1:
            self.add("definition", f"A segment can have at most {MAX_CONDITIONS} conditions.")
        getattr(self, f"leaf_{kind}")(node, path)

    def _only(self, node: dict, path: str, allowed: set[str]) -> None:
        for key in node:
            if key not in allowed:
                self.add(f"{path}.{key}", f"Unknown setting '{key}' here; allowed: {', '.join(sorted(allowed))}.")

    def _path(self, value, path: str, what: str, *, arrays: bool = False) -> bool:
        if not isinstance(value, str) or not value.strip():
            self.add(path, f"Name the {what} (text, e.g. 'plan' or 'address.country').")
            return False
        parts = value.split(".")
        if any(not p for p in parts) or len(parts) > 10:
            self.add(path, f"'{value}' is not a valid {what} path: dot-separated names, at most 10.")
            return False
        brackets = sum(p.count("[]") for p in parts)
        if brackets and (not arrays or brackets > 1 or any(p.count("[]") and not p.endswith("[]") for p in parts)):
            where = "only in event properties, once" if arrays else "not here"
            self.add(path, f"'[]' (any element of a list, e.g. 'products[].category') is allowed {where}.")
            return False
        if value.endswith("[]"):
            self.add(path, "Say which field of the list elements to compare, e.g. 'products[].category'.")
            return False
        return True

    def _op_value(self, node: dict, path: str, allowed: tuple[str, ...]) -> None:
        op = node.get("op")
        if op not in allowed:
            self.add(f"{path}.op", f"Choose an operator among: {', '.join(allowed)}.")
            return
        if "value" not in node:
            self.add(f"{path}.value", f"'{op}' needs a value.")
            return
        self._value(op, node["value"], f"{path}.value")

    def _value(self, op: str, v, path: str) -> None:
        if op in ("=", "!="):
            if not _is_scalar(v):
                self.add(path, f"'{op}' compares with one value (text, a number or true/false), not {_describe(v)}.")
        elif op == "in":
            if not isinstance(v, list) or not v or not all(_is_scalar(x) for x in v):
                self.add(path, '\'in\' needs a non-empty list of values, e.g. ["outdoor", "sports"].')
            elif len(v) > MAX_IN_VALUES:
                self.add(path, f"'in' takes at most {MAX_IN_VALUES} values.")
        elif op in ops.COMPARE:
            if not (ops.is_number(v) or isinstance(v, str)):
                self.add(path, f"'{op}' compares with a number or a text, not {_describe(v)}.")
        elif op == "contains":
            if not (ops.is_number(v) or isinstance(v, str)):
                self.add(path, f"'contains' looks for a text or a number, not {_describe(v)}.")
        elif op == "exists":
            if not isinstance(v, bool):
                self.add(path, "'exists' takes true (has a value) or false (has none).")
        elif op == "between":
            if not (isinstance(v, list) and len(v) == 2 and all(ops.is_number(x) for x in v) and v[0] <= v[1]):
                self.add(path, "'between' needs two values, the lower first")
        elif op == "within_last":
            if not ops.is_number(v) or not 0 < v <= MAX_DAYS:
                self.add(path, "'within_last' takes a number of days greater than 0, e.g. 30 (at most 100 years).")
        elif op in ("before", "after"):
            if isinstance(v, dict):
                keys = set(v)
                if len(keys) != 1 or not keys <= {"days_ago", "hours_ago"} or not ops.is_number(next(iter(v.values()))):
                    self.add(path, f'\'{op}\' takes a date such as "2026-01-31" or {{"days_ago": 90}}.')
                elif not 0 <= next(iter(v.values())) <= (MAX_DAYS if "days_ago" in v else MAX_HOURS):
                    self.add(path, "The number of days or hours ago is 0 or more, at most 100 years.")
            elif ops.parse_ts(v) is None:
                self.add(path, f'\'{op}\' takes a date such as "2026-01-31" or {{"days_ago": 90}}.')
        elif op in ops.PERCENT_OPS and (not ops.is_number(v) or not 0 < v <= 100):
            self.add(path, f"'{op}' takes a percentage between 0 and 100, e.g. 25.")

    # -- leaves --

    def leaf_trait(self, node: dict, path: str) -> None:
        self._only(node, path, {"trait", "op", "value"})
        self._path(node["trait"], f"{path}.trait", "trait")
        self._op_value(node, path, ops.TRAIT_OPS)

    def leaf_computed(self, node: dict, path: str) -> None:
        self._only(node, path, {"computed", "op", "value"})
        name = node["computed"]
        if self._path(name, f"{path}.computed", "computed trait") and name.split(".")[0] not in self.computed:
            self.add(f"{path}.computed", f"Unknown computed trait '{name}'. Known: {', '.join(self.computed)}.")
        self._op_value(node, path, ops.TRAIT_OPS)

    def leaf_context(self, node: dict, path: str) -> None:
        self._only(node, path, {"context", "op", "value"})
        if node["context"] not in CONTEXT_LEAVES:
            self.add(f"{path}.context", f"Context is one of: {', '.join(CONTEXT_LEAVES)} (of the latest event).")
        self._op_value(node, path, ops.FILTER_OPS)

    def leaf_consent(self, node: dict, path: str) -> None:
        self._only(node, path, {"consent"})
        purpose = node["consent"]
        if not isinstance(purpose, str) or not purpose:
            self.add(f"{path}.consent", 'Name the purpose, e.g. "marketing".')
        elif self.purposes is not None and purpose not in self.purposes:
            self.add(f"{path}.consent", f"Unknown purpose '{purpose}'. Known: {', '.join(self.purposes)}.")

    def leaf_segment(self, node: dict, path: str) -> None:
        self._only(node, path, {"segment"})
        slug = node["segment"]
        if not isinstance(slug, str) or not slug:
            self.add(f"{path}.segment", "Name the segment by its slug.")
            return
        if slug == self.slug:
            self.add(f"{path}.segment", "A segment cannot contain itself.")
            return
        found = self.lookup(slug)
        if found is None:
            self.add(f"{path}.segment", f"There is no segment '{slug}'.")
            return
        if self.slug is not None:
            cycle = self._cycle(slug, [slug], set())
            if cycle:
                chain = " → ".join([self.slug, *cycle])
                self.add(f"{path}.segment", f"This would make a cycle of segments: {chain}.")

    def _cycle(self, slug: str, chain: list[str], seen: set[str]) -> list[str] | None:
        if slug in seen:
            return None
        seen.add(slug)
        found = self.lookup(slug)
        if not found or found[0] != "rule" or not isinstance(found[1], dict):
            return None
        for ref in segment_refs(found[1]):
            if ref == self.slug:
                return [*chain, ref]
            deeper = self._cycle(ref, [*chain, ref], seen)
            if deeper:
                return deeper
        return None

    def leaf_event(self, node: dict, path: str) -> None:
        self._only(node, path, {"event", "where", "within_last", "between", "count", "sum", "did_not"})
        name = node["event"]
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            self.add(f"{path}.event", 'Name the event, e.g. "Order Completed" or "Product Viewed".')
        where = node.get("where", [])
        if not isinstance(where, list):
            self.add(f"{path}.where", "'where' takes a list of property filters.")
            where = []
        for i, flt in enumerate(where):
            self._filter(flt, f"{path}.where[{i}]")
        if "within_last" in node and "between" in node:
            self.add(path, "Use either 'within_last' or 'between' for the time window, not both.")
        if "within_last" in node:
            w = node["within_last"]
            if not (
                isinstance(w, dict)
                and len(w) == 1
                and set(w) <= {"days", "hours"}
                and ops.is_number(next(iter(w.values())))
                and 0 < next(iter(w.values())) <= (MAX_DAYS if "days" in w else MAX_HOURS)
            ):
                self.add(
                    f"{path}.within_last",
                    'The window is {"days": 7} or {"hours": 24} (more than 0, at most 100 years).',
                )
        if "between" in node:
            b = node["between"]
            dates = [ops.parse_ts(x) for x in b] if isinstance(b, list) and len(b) == 2 else [None]
            if None in dates:
                self.add(f"{path}.between", '\'between\' takes two dates, e.g. ["2026-01-01", "2026-02-01"].')
            elif dates[0] >= dates[1]:
                self.add(f"{path}.between", "'between' needs two values, the earlier date first")
        chosen = [k for k in ("count", "sum", "did_not") if k in node]
        if len(chosen) > 1:
            self.add(path, f"Use one of 'count', 'sum' or 'did_not', not {' and '.join(chosen)}.")
        if "did_not" in node and node["did_not"] is not True:
            self.add(f"{path}.did_not", "'did_not' is true (the person did not do this); leave it out otherwise.")
        if "count" in node:
            c = node["count"]
            if not isinstance(c, dict):
                self.add(f"{path}.count", '\'count\' is e.g. {"op": ">=", "value": 3}.')
            else:
                self._only(c, f"{path}.count", {"op", "value"})
                if c.get("op") not in COUNT_OPS:
                    self.add(f"{path}.count.op", f"Choose an operator among: {', '.join(COUNT_OPS)}.")
                v = c.get("value")
                if not (isinstance(v, int) and not isinstance(v, bool) and v >= 0):
                    self.add(f"{path}.count.value", "A count is a whole number, 0 or more.")
        if "sum" in node:
            s = node["sum"]
            if not isinstance(s, dict):
                self.add(f"{path}.sum", '\'sum\' is e.g. {"property": "revenue", "op": ">=", "value": 100}.')
            else:
                self._only(s, f"{path}.sum", {"property", "op", "value"})
                if self._path(s.get("property"), f"{path}.sum.property", "property"):
                    pass
                if s.get("op") not in COUNT_OPS:
                    self.add(f"{path}.sum.op", f"Choose an operator among: {', '.join(COUNT_OPS)}.")
                if not ops.is_number(s.get("value")):
                    self.add(f"{path}.sum.value", "A sum is compared with a number.")

    def _filter(self, flt, path: str) -> None:
        if not isinstance(flt, dict):
            self.add(path, 'A filter is e.g. {"property": "category", "op": "=", "value": "outdoor"}.')
            return
        keys = [k for k in ("property", "field", "context") if k in flt]
        if len(keys) != 1:
            self.add(path, "A filter names one of 'property', 'field' (device_type, local_hour) or 'context'.")
            return
        key = keys[0]
        self._only(flt, path, {key, "op", "value"})
        if key == "field":
            if flt["field"] not in EVENT_FIELDS:
                self.add(f"{path}.field", f"'field' is one of: {', '.join(EVENT_FIELDS)}.")
        else:
            self._path(flt[key], f"{path}.{key}", key, arrays=key == "property")
        self._op_value(flt, path, ops.FILTER_OPS)


def segment_refs(definition) -> list[str]:
    """Slugs of the segments a definition refers to (anywhere in the tree)."""
    out: list[str] = []

    def walk(node) -> None:
        if not isinstance(node, dict):
            return
        if isinstance(node.get("segment"), str):
            out.append(node["segment"])
        for key in ("all", "any"):
            if isinstance(node.get(key), list):
                for child in node[key]:
                    walk(child)
        if "not" in node:
            walk(node["not"])

    walk(definition)
    return out


def definition_errors(
    definition,
    *,
    slug: str | None = None,
    lookup: SegmentLookup | None = None,
    purposes: list[str] | None = None,
) -> dict[str, list[str]]:
    """Field path -> messages; empty when the definition is valid. ``slug`` is the segment being
    saved (for cycle checks); ``lookup`` finds other segments (the database by default)."""
    if purposes is None:
        purposes = _purposes()
    checker = _Checker(slug=slug, lookup=lookup or _db_lookup, purposes=purposes)
    if definition is None:
        checker.add("definition", 'A rule segment needs a definition, e.g. {"all": [...]}.')
    else:
        checker.node(definition, "definition", 1)
    return checker.errors


def _purposes() -> list[str] | None:
    try:
        from consent.selectors import purposes_active
    except ImportError:  # pragma: no cover - consent is installed with cdp
        return None
    keys = list(purposes_active().values_list("key", flat=True))
    return keys or None


def as_of(value: datetime | None) -> datetime:
    return value or timezone.now()
