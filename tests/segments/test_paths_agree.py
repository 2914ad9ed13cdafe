"""Property: for random definitions over random histories, the SQL path and the single-profile
path choose exactly the same members."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segments.rules.compile import members_queryset
from segments.rules.evaluate import definition_match, definition_needs, facts_load, percentile_threshold
from segments.rules.validate import definition_errors
from tests.segments import factories as f

pytestmark = pytest.mark.django_db(transaction=False)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NAMES = ["Product Viewed", "Order Completed", "Product Added"]
CATEGORIES = ["outdoor", "books", "Luxury Bags", "toys"]
SCALARS = st.sampled_from(["pro", "free", "Outdoor", "", 0, 1, 2.5, 10, -3, True, False])
DATES = st.sampled_from(
    [
        "2026-02-20",
        "2026-01-01T10:00:00Z",
        "2025-06-30T23:59:59+02:00",
        "2026-02-28 08:00",
        "2026-02-28T10:00:00.5+0130",
        "2024-02-29",
        "not a date",
        "2026-13-01",
        "2026-02-30",
    ]
)
JSON_VALUES = st.one_of(SCALARS, DATES, st.none(), st.lists(SCALARS, max_size=3))


def ops_and_values(numeric_only: bool = False):
    number = st.sampled_from([0, 1, 2, 2.5, 3, 10, 100, -1])
    text = st.sampled_from(["pro", "free", "out", "Outdoor", "b", ""])
    cmp = st.tuples(st.sampled_from(["<", "<=", ">", ">="]), number if numeric_only else st.one_of(number, text))
    return st.one_of(
        st.tuples(st.sampled_from(["=", "!="]), SCALARS),
        st.tuples(st.just("in"), st.lists(SCALARS, min_size=1, max_size=3)),
        cmp,
        st.tuples(st.just("contains"), st.one_of(text, number)),
        st.tuples(st.just("exists"), st.booleans()),
        st.tuples(st.just("between"), st.tuples(number, number).map(sorted).map(list)),
        st.tuples(st.just("within_last"), st.sampled_from([1, 7, 30, 400])),
        st.tuples(
            st.sampled_from(["before", "after"]),
            st.one_of(
                DATES.filter(lambda d: d not in ("not a date", "2026-13-01", "2026-02-30")), st.just({"days_ago": 30})
            ),
        ),
    )


def leaf_value(kind_key: str, key_values):
    return st.tuples(key_values, ops_and_values()).map(lambda t: {kind_key: t[0], "op": t[1][0], "value": t[1][1]})


FILTERS = st.one_of(
    st.tuples(st.sampled_from(["category", "products[].category", "price", "products[].price"]), ops_and_values()).map(
        lambda t: {"property": t[0], "op": t[1][0], "value": t[1][1]}
    ),
    st.tuples(st.sampled_from(["device_type", "local_hour"]), ops_and_values()).map(
        lambda t: {"field": t[0], "op": t[1][0], "value": t[1][1]}
    ),
    st.tuples(st.just("location.country"), ops_and_values()).map(
        lambda t: {"context": t[0], "op": t[1][0], "value": t[1][1]}
    ),
)


@st.composite
def event_leaf(draw):
    node: dict = {"event": draw(st.sampled_from(NAMES))}
    filters = draw(st.lists(FILTERS, max_size=2))
    if filters:
        node["where"] = filters
    window = draw(st.sampled_from(["none", "days", "hours", "between"]))
    if window == "days":
        node["within_last"] = {"days": draw(st.sampled_from([1, 7, 30]))}
    elif window == "hours":
        node["within_last"] = {"hours": draw(st.sampled_from([6, 24]))}
    elif window == "between":
        node["between"] = ["2026-02-01", "2026-02-25T00:00:00Z"]
    measure = draw(st.sampled_from(["default", "count", "sum", "did_not"]))
    count_ops = st.sampled_from(["=", "!=", "<", "<=", ">", ">="])
    if measure == "count":
        node["count"] = {"op": draw(count_ops), "value": draw(st.integers(0, 3))}
    elif measure == "sum":
        node["sum"] = {"property": "price", "op": draw(count_ops), "value": draw(st.sampled_from([0, 10, 50.5]))}
    elif measure == "did_not":
        node["did_not"] = True
    return node


LEAVES = st.one_of(
    leaf_value("trait", st.sampled_from(["plan", "age", "tags", "signup", "address.country", "tags.0"])),
    leaf_value("computed", st.sampled_from(["sessions", "revenue_365d", "last_order_at"])),
    st.tuples(st.sampled_from(["top_percent", "bottom_percent"]), st.sampled_from([10, 25, 50, 100])).map(
        lambda t: {"computed": "sessions", "op": t[0], "value": t[1]}
    ),
    event_leaf(),
    leaf_value("context", st.sampled_from(["device_type", "local_hour", "country"])),
    st.just({"consent": "marketing"}),
)

DEFINITIONS = st.recursive(
    LEAVES,
    lambda children: st.one_of(
        st.lists(children, max_size=3).map(lambda c: {"all": c}),
        st.lists(children, max_size=3).map(lambda c: {"any": c}),
        children.map(lambda c: {"not": c}),
    ),
    max_leaves=5,
)

EVENTS = st.lists(
    st.fixed_dictionaries(
        {
            "name": st.sampled_from(NAMES),
            "hours_ago": st.integers(-2, 24 * 40),
            "category": st.one_of(st.none(), st.sampled_from(CATEGORIES)),
            "price": st.one_of(st.none(), st.sampled_from([5, 20.5, 100]), st.just("12")),
            "products": st.lists(
                st.fixed_dictionaries({"category": st.sampled_from(CATEGORIES), "price": st.sampled_from([1, 60])}),
                max_size=2,
            ),
            "device": st.sampled_from(["", "mobile", "desktop"]),
            "hour": st.one_of(st.none(), st.integers(0, 23)),
            "country": st.one_of(st.none(), st.sampled_from(["DE", "US", 7])),
        }
    ),
    max_size=5,
)

PEOPLE = st.lists(
    st.tuples(
        st.fixed_dictionaries(
            {},
            optional={
                "plan": JSON_VALUES,
                "age": JSON_VALUES,
                "tags": JSON_VALUES,
                "signup": DATES,
                "address": st.fixed_dictionaries({"country": SCALARS}),
            },
        ),
        st.fixed_dictionaries(
            {}, optional={"sessions": JSON_VALUES, "revenue_365d": JSON_VALUES, "last_order_at": DATES}
        ),
        EVENTS,
    ),
    min_size=2,
    max_size=4,
)


def no_segment(slug):
    return None


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(definition=DEFINITIONS, people=PEOPLE)
def test_sql_and_single_profile_paths_agree(definition, people):
    assert definition_errors(definition, lookup=no_segment, purposes=["marketing"]) == {}
    with transaction.atomic():
        profiles = []
        for traits, computed, events in people:
            p = f.profile(traits=traits, computed=computed, at=NOW)
            profiles.append(p)
            for e in events:
                props: dict = {"products": e["products"]}
                for key in ("category", "price"):
                    if e[key] is not None:
                        props[key] = e[key]
                context = {"location": {"country": e["country"]}} if e["country"] is not None else {}
                f.event(
                    p,
                    e["name"],
                    NOW - timedelta(hours=e["hours_ago"]),
                    properties=props,
                    device_type=e["device"],
                    local_hour=e["hour"],
                    context=context,
                )
        by_sql = {
            str(pk) for pk in members_queryset(definition, now=NOW, resolve=no_segment).values_list("pk", flat=True)
        }
        needs = definition_needs(definition, resolve=no_segment)
        by_python = set()
        for p in profiles:
            facts = facts_load(profile_id=str(p.pk), needs=needs, thresholds=percentile_threshold, now=NOW)
            if definition_match(definition, facts, now=NOW, resolve=no_segment):
                by_python.add(str(p.pk))
        assert by_sql == by_python, definition
        transaction.set_rollback(True)


@pytest.mark.django_db
def test_date_conditions_run_inside_parallel_queries():
    """PostgreSQL refuses subtransactions in parallel mode: the date cast must not need one."""
    from django.db import connection

    for i, signup in enumerate(["2026-02-01", "2026-02-30", "junk", "2026-01-31T23:00:00-02:00"]):
        f.profile(traits={"signup": signup, "n": i})
    definition = {"trait": "signup", "op": "after", "value": "2026-01-31T12:00:00Z"}
    with transaction.atomic(), connection.cursor() as cursor:
        # the setting was renamed in PostgreSQL 16 (the machine has 15, the embedded server 18)
        setting = "debug_parallel_query" if connection.pg_version >= 160000 else "force_parallel_mode"
        cursor.execute(f"SET LOCAL {setting} = on")
        assert members_queryset(definition, now=NOW, resolve=no_segment).count() == 2
