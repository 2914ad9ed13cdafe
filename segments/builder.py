"""What the point-and-click segment builder needs besides validation: the names it offers (from the
schema registry of what the shop sends), warnings for names never seen with a suggestion, a
plain-language summary of a definition, and a readable key order for the JSON view.

Warnings are not errors: a segment may wait for an event the shop will start sending tomorrow.
"""

from __future__ import annotations

import re

from profiles.models import SchemaKind
from profiles.schema import schema_catalog, schema_names, schema_suggest
from segments.rules import ops
from segments.rules.validate import CONTEXT_LEAVES, COUNT_OPS, EVENT_FIELDS, computed_trait_names

KEY_ORDER = [
    "all",
    "any",
    "not",
    "event",
    "trait",
    "computed",
    "context",
    "consent",
    "segment",
    "property",
    "field",
    "op",
    "value",
    "where",
    "within_last",
    "between",
    "count",
    "sum",
    "did_not",
    "days",
    "hours",
]
_RANK = {key: i for i, key in enumerate(KEY_ORDER)}


def readable_order(value):
    """The same JSON with keys in the order people write them (jsonb stores them by length)."""
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: (_RANK.get(k, len(_RANK)), k))
        return {k: readable_order(value[k]) for k in keys}
    if isinstance(value, list):
        return [readable_order(v) for v in value]
    return value


def builder_catalog() -> dict:
    from consent.models import Purpose
    from segments.models import Segment, SegmentStatus

    catalog = schema_catalog()
    return {
        **catalog,
        "computed": computed_trait_names(),
        "context": list(CONTEXT_LEAVES),
        "event_fields": list(EVENT_FIELDS),
        "purposes": list(
            Purpose.objects.filter(is_active=True).order_by("position", "key").values_list("key", flat=True)
        ),
        "segments": [
            {"slug": slug, "name": name}
            for slug, name in Segment.objects.filter(status=SegmentStatus.ACTIVE)
            .order_by("name")
            .values_list("slug", "name")
        ],
        "ops": {
            "trait": list(ops.TRAIT_OPS),
            "filter": list(ops.FILTER_OPS),
            "count": list(COUNT_OPS),
        },
    }


# --- warnings: names never seen --------------------------------------------------------------------

_INDEX = re.compile(r"\[\d*\]")


def _property_key(path: str) -> str:
    """``products[].category`` stays as registered; ``address.city`` is looked up by ``address``."""
    if "[]" in path:
        head, _, rest = path.partition("[]")
        return f"{head}[].{rest.lstrip('.').split('.')[0]}" if rest else head
    return path.split(".")[0]


class _Warner:
    def __init__(self) -> None:
        self.warnings: dict[str, list[str]] = {}
        self.events = schema_names(kind=SchemaKind.EVENT)
        self.traits = schema_names(kind=SchemaKind.TRAIT)
        self._properties: dict[str, list[str]] = {}

    def properties(self, event: str) -> list[str]:
        if event not in self._properties:
            self._properties[event] = schema_names(kind=SchemaKind.PROPERTY, event=event)
        return self._properties[event]

    def flag(self, path: str, what: str, name: str, known: list[str]) -> None:
        if not known or name in known:
            return
        suggestion = schema_suggest(name=name, choices=known)
        message = f"{what} '{name}' was never seen"
        message += f"; did you mean '{suggestion}'?" if suggestion else " (nothing of that name has arrived yet)."
        self.warnings.setdefault(path, []).append(message)

    def walk(self, node, path: str) -> None:
        if not isinstance(node, dict):
            return
        for group in ("all", "any"):
            if isinstance(node.get(group), list):
                for i, child in enumerate(node[group]):
                    self.walk(child, f"{path}.{group}[{i}]")
        if "not" in node:
            self.walk(node["not"], f"{path}.not")
        if isinstance(node.get("trait"), str):
            self.flag(f"{path}.trait", "Trait", node["trait"].split(".")[0], self.traits)
        if isinstance(node.get("event"), str):
            name = node["event"]
            self.flag(f"{path}.event", "Event", name, self.events)
            known = self.properties(name) if name in self.events else []
            for i, f in enumerate(node.get("where") or []):
                if isinstance(f, dict) and isinstance(f.get("property"), str):
                    self.flag(f"{path}.where[{i}].property", "Property", _property_key(f["property"]), known)
            total = node.get("sum")
            if isinstance(total, dict) and isinstance(total.get("property"), str):
                self.flag(f"{path}.sum.property", "Property", _property_key(total["property"]), known)


def definition_warnings(definition) -> dict[str, list[str]]:
    warner = _Warner()
    warner.walk(definition, "definition")
    return warner.warnings


# --- the definition in plain words -------------------------------------------------------------------

_OP_WORDS = {
    "=": "is",
    "!=": "is not",
    "in": "is one of",
    "<": "is less than",
    "<=": "is at most",
    ">": "is more than",
    ">=": "is at least",
    "contains": "contains",
}


def _value(value) -> str:
    if isinstance(value, list):
        return ", ".join(_value(v) for v in value)
    if isinstance(value, dict):
        if "days_ago" in value:
            return f"{value['days_ago']} days ago"
        if "hours_ago" in value:
            return f"{value['hours_ago']} hours ago"
        return ", ".join(f"{k} {v}" for k, v in value.items())
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"“{value}”"
    return str(value)


def _test(op, value) -> str:
    if op == "exists":
        return "has a value" if value is not False else "has no value"
    if op == "between" and isinstance(value, list) and len(value) == 2:
        return f"is between {_value(value[0])} and {_value(value[1])}"
    if op == "within_last":
        return f"is within the last {value} days"
    if op in ("before", "after"):
        return f"is {op} {_value(value)}"
    if op == "top_percent":
        return f"is in the top {value} %"
    if op == "bottom_percent":
        return f"is in the bottom {value} %"
    return f"{_OP_WORDS.get(op, op)} {_value(value)}"


def _window(node: dict) -> str:
    window = node.get("within_last")
    if isinstance(window, dict):
        if "days" in window:
            return f" in the last {window['days']} day{'s' if window['days'] != 1 else ''}"
        if "hours" in window:
            return f" in the last {window['hours']} hour{'s' if window['hours'] != 1 else ''}"
    between = node.get("between")
    if isinstance(between, list) and len(between) == 2:
        return f" between {between[0]} and {between[1]}"
    return ""


def _times(count: dict) -> str:
    op, value = count.get("op"), count.get("value")
    word = {
        "=": "exactly",
        "!=": "other than",
        "<": "fewer than",
        "<=": "at most",
        ">": "more than",
        ">=": "at least",
    }.get(op, op)
    return f" {word} {value} time{'s' if value != 1 else ''}"


def _leaf(node: dict) -> str:
    if "trait" in node:
        return f"have a trait {node['trait']} that {_test(node.get('op'), node.get('value'))}"
    if "computed" in node:
        return f"have {node['computed'].replace('_', ' ')} that {_test(node.get('op'), node.get('value'))}"
    if "context" in node:
        return (
            f"had a latest visit whose {node['context'].replace('_', ' ')} {_test(node.get('op'), node.get('value'))}"
        )
    if "consent" in node:
        return f"granted {node['consent']} consent"
    if "segment" in node:
        return f"are in the segment {node['segment']}"
    if "event" in node:
        text = ("did not do " if node.get("did_not") else "did ") + f"“{node['event']}”"
        filters = []
        for f in node.get("where") or []:
            if isinstance(f, dict):
                subject = f.get("property") or f.get("field") or f.get("context") or "?"
                filters.append(f"{subject.replace('_', ' ')} {_test(f.get('op'), f.get('value'))}")
        if filters:
            text += " where " + " and ".join(filters)
        if isinstance(node.get("count"), dict):
            text += _times(node["count"])
        if isinstance(node.get("sum"), dict):
            total = node["sum"]
            text += f" with a total {total.get('property')} that {_test(total.get('op'), total.get('value'))}"
        return text + _window(node)
    return "match an unknown condition"


def _words(node, nested: bool = False) -> str:
    if not isinstance(node, dict):
        return "?"
    for group, joiner, empty in (("all", " and ", "everyone"), ("any", " or ", "nobody")):
        if group in node and isinstance(node[group], list):
            parts = [_words(child, nested=True) for child in node[group]]
            if not parts:
                return empty
            text = joiner.join(parts)
            return f"({text})" if nested and len(parts) > 1 else text
    if "not" in node:
        return f"not ({_words(node['not'])})"
    return _leaf(node)


def definition_summary(definition) -> str:
    """A definition in plain words: "People who did “Product Viewed” at least 3 times in the last 24 hours"."""
    text = _words(definition)
    if text in ("everyone", "nobody"):
        return "Everyone." if text == "everyone" else "Nobody."
    return f"People who {text}."
