"""The recommendations endpoint's query read without the serializer (``recommendation_query_fast``)
gives exactly the serializer's validated data wherever it answers, and steps aside (None) for
everything it does not check itself, so that every error still comes from the serializer."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from django.http import QueryDict

from recommendations.api.serializers import RecommendationQueryInput, recommendation_query_fast

ACCEPTED = [
    {},
    {"user_id": "u17", "k": "10", "placement": "home"},
    {"anonymous_id": "visitor-12", "k": "10", "session_items": "P000012"},
    {"user_id": "u1", "placement": "cart", "cart_items": "A,B, C"},
    {"user_id": "u1", "placement": "post_purchase", "order_items": "A"},
    {"anonymous_id": "v", "placement": "product", "product": "SKU-1", "k": "100"},
    {"k": "1"},
    {"k": "010"},
    {"session_items": ","},
    {"session_items": "a,,b"},
    {"user_id": "ü-ñ 1"},
]

STEPS_ASIDE = [
    {"user_id": "a", "anonymous_id": "b"},  # conflict: the serializer names both fields
    {"profile_id": "7b0f7cd0-0000-4000-8000-000000000001"},
    {"profile_id": "nope"},
    {"k": "0"},
    {"k": "101"},
    {"k": "-1"},
    {"k": "10.0"},
    {"k": " 10"},
    {"k": ""},
    {"k": "1000"},
    {"user_id": ""},
    {"user_id": " u1"},
    {"user_id": "   "},
    {"user_id": "x" * 256},
    {"user_id": "a\x00b"},
    {"placement": ""},
    {"placement": "p" * 101},
    {"session_items": " A"},
    {"session_items": "A" * 2001},
    {"device": "mobile"},
    {"local_hour": "7"},
    {"max_per_category": "2"},
    {"exclude_categories": "books"},
    {"boost_categories": "books"},
    {"unknown": "1"},
]


def serializer_result(params: QueryDict):
    query = RecommendationQueryInput(data=params)
    return query.validated_data if query.is_valid() else None


@pytest.mark.parametrize("params", ACCEPTED, ids=lambda p: urlencode(p)[:60] or "empty")
def test_the_common_query_reads_as_the_serializer_reads_it(params):
    query = QueryDict(urlencode(params))
    fast = recommendation_query_fast(query)
    assert fast is not None
    assert fast == dict(serializer_result(query))


@pytest.mark.parametrize("params", STEPS_ASIDE, ids=lambda p: urlencode(p)[:60])
def test_anything_else_is_left_to_the_serializer(params):
    assert recommendation_query_fast(QueryDict(urlencode(params))) is None


def test_a_repeated_parameter_is_left_to_the_serializer():
    assert recommendation_query_fast(QueryDict("user_id=a&user_id=b")) is None
    assert recommendation_query_fast(QueryDict("k=5&k=6")) is None


def test_errors_still_come_from_the_serializer(shop, secret_client):
    for params, fields in (
        ({"user_id": "a", "anonymous_id": "b"}, {"user_id", "anonymous_id"}),
        ({"k": "0"}, {"k"}),
        ({"user_id": "x" * 256}, {"user_id"}),
        ({"placement": "p" * 101}, {"placement"}),
    ):
        response = secret_client.get("/api/v1/recommendations/", params)
        assert response.status_code == 400, params
        assert set(response.json()["error"]["fields"]) == fields
