"""Validation: marketer-readable messages per field path, and no input that crashes anything."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segments.rules.compile import members_queryset
from segments.rules.evaluate import definition_match, definition_needs, facts_load, percentile_threshold
from segments.rules.validate import definition_errors
from tests.segments import factories as f

NOW = datetime(2026, 3, 1, tzinfo=UTC)


def no_segment(slug):
    return None


def errors(definition) -> dict:
    return definition_errors(definition, lookup=no_segment, purposes=["marketing"])


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("definition", "expected"),
    [
        (
            {"all": [{"trait": "a", "op": "=", "value": 1}, {"trait": "age", "op": "between", "value": [9, 1]}]},
            {"definition.all[1].value": ["'between' needs two values, the lower first"]},
        ),
        ({"any": "x"}, {"definition.any": ["'any' takes a list of conditions."]}),
        (
            {"trait": "plan", "op": "~", "value": 1},
            {
                "definition.op": [
                    "Choose an operator among: =, !=, in, <, <=, >, >=, contains, exists, between, within_last, "
                    "before, after, top_percent, bottom_percent."
                ]
            },
        ),
        (
            {"event": "Order Completed", "within_last": {"weeks": 2}},
            {
                "definition.within_last": [
                    'The window is {"days": 7} or {"hours": 24} (more than 0, at most 100 years).'
                ]
            },
        ),
        (
            {"event": "Order Completed", "count": {"op": ">=", "value": -1}},
            {"definition.count.value": ["A count is a whole number, 0 or more."]},
        ),
        (
            {"event": "Order Completed", "count": {"op": ">=", "value": 1}, "did_not": True},
            {"definition": ["Use one of 'count', 'sum' or 'did_not', not count and did_not."]},
        ),
        ({"consent": "newsletter"}, {"definition.consent": ["Unknown purpose 'newsletter'. Known: marketing."]}),
        ({"segment": "nope"}, {"definition.segment": ["There is no segment 'nope'."]}),
        (
            {"event": "Product Viewed", "where": [{"property": "products[].tags[].x", "op": "exists", "value": True}]},
            {
                "definition.where[0].property": [
                    "'[]' (any element of a list, e.g. 'products[].category') is allowed only in event "
                    "properties, once."
                ]
            },
        ),
        (
            {"trait": "a", "op": "=", "value": 1, "colour": "red"},
            {"definition.colour": ["Unknown setting 'colour' here; allowed: op, trait, value."]},
        ),
        (
            {"all": [], "any": []},
            {
                "definition": [
                    "Each condition needs exactly one of 'all', 'any', 'not', 'trait', 'computed', 'event', "
                    "'context', 'consent', 'segment' (found 'all', 'any')."
                ]
            },
        ),
        (None, {"definition": ['A rule segment needs a definition, e.g. {"all": [...]}.']}),
    ],
)
def test_messages_name_the_field_and_say_what_to_do(definition, expected):
    assert errors(definition) == expected


KEYS = [
    "all",
    "any",
    "not",
    "trait",
    "computed",
    "event",
    "context",
    "consent",
    "segment",
    "op",
    "value",
    "where",
    "within_last",
    "between",
    "count",
    "sum",
    "did_not",
    "property",
    "field",
    "days",
    "hours",
    "days_ago",
]
WORDS = [
    "=",
    "!=",
    "in",
    "<",
    ">=",
    "contains",
    "exists",
    "between",
    "within_last",
    "before",
    "after",
    "top_percent",
    "sessions",
    "plan",
    "Order Completed",
    "device_type",
    "local_hour",
    "country",
    "products[].category",
    "marketing",
    "2026-01-01",
    "a.b",
]
SCALAR = (
    st.none()
    | st.booleans()
    | st.integers(-3, 10**6)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=4)
    | st.sampled_from(WORDS)
)
ANY_JSON = st.recursive(
    SCALAR, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.sampled_from(KEYS), c, max_size=4), max_leaves=15
)


@pytest.mark.django_db
@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(definition=ANY_JSON)
def test_any_json_gets_messages_or_runs_on_both_paths(definition):
    found = errors(definition)
    assert all(isinstance(v, list) and all(isinstance(m, str) for m in v) for v in found.values())
    if found:
        return
    members_queryset(definition, now=NOW, resolve=no_segment).count()
    p = f.profile()
    facts = facts_load(
        profile_id=str(p.pk),
        needs=definition_needs(definition, resolve=no_segment),
        thresholds=percentile_threshold,
        now=NOW,
    )
    definition_match(definition, facts, now=NOW, resolve=no_segment)
