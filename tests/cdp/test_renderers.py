"""The API's JSON renderer (decision 0059): orjson's speed, DRF's document."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import uuid

import numpy as np
import pytest
from django.utils.translation import gettext_lazy
from rest_framework import renderers as drf

from cdp.api.renderers import JSONRenderer

SAME_AS_DRF = [
    {"a": 1, "b": [1.5, None, True, False], "nested": {"x": [{"y": "z"}]}, "empty": {}, "list": []},
    {"text": "héllo ünïcode ✓ 日本", "ls": "a\u2028b\u2029c", "quote": 'say "hi"\n\t\\'},
    {
        "utc": datetime.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=datetime.UTC),
        "naive": datetime.datetime(2026, 1, 2, 3, 4, 5),
        "offset": datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone(datetime.timedelta(hours=2))),
        "date": datetime.date(2026, 1, 2),
        "time": datetime.time(3, 4, 5),
        "delta": datetime.timedelta(minutes=3),
    },
    {"decimal": decimal.Decimal("12.50"), "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678")},
    {"lazy": gettext_lazy("Not found."), "set": {3}, "bytes": b"raw", "tuple": (1, 2)},
    {"np_float": np.float64(0.5), "np_int": np.int64(7), "np_array": np.array([1, 2])},
    {1: "int key", "big": 2**70, "neg": -(2**70)},
    [0.1, 1.0, 100.0, 1 / 3, -0.0, 1e16, 1.5e300, 123456789.125],
    "a string",
    42,
]


@pytest.mark.parametrize("data", SAME_AS_DRF, ids=range(len(SAME_AS_DRF)))
def test_the_same_bytes_as_drfs_renderer(data):
    # given data of the kinds the API answers with
    # when both renderers render it
    ours = JSONRenderer().render(data, "application/json", {})
    # then the bytes are DRF's
    assert ours == drf.JSONRenderer().render(data, "application/json", {})


def test_line_and_paragraph_separators_stay_escaped():
    out = JSONRenderer().render({"s": "a\u2028b\u2029"}, "application/json", {})
    assert out == b'{"s":"a\\u2028b\\u2029"}'


def test_indent_asked_for_is_drfs_rendering():
    out = JSONRenderer().render({"a": [1]}, "application/json; indent=2", {})
    assert out == drf.JSONRenderer().render({"a": [1]}, "application/json; indent=2", {})
    assert b"\n" in out


def test_none_renders_empty():
    assert JSONRenderer().render(None) == b""


def test_what_neither_can_encode_fails_as_before():
    @dataclasses.dataclass
    class Point:
        x: int

    # a dataclass: DRF's encoder refuses it, so does this renderer (not orjson's own dict form)
    with pytest.raises(TypeError):
        drf.JSONRenderer().render({"p": Point(1)})
    with pytest.raises(TypeError):
        JSONRenderer().render({"p": Point(1)})
    # a lone surrogate cannot be UTF-8: both refuse
    with pytest.raises(UnicodeEncodeError):
        JSONRenderer().render({"s": "\ud800"})


def test_the_documented_differences():
    # a small float is written positionally (the same double when read back)
    out = JSONRenderer().render({"score": 2.5e-05})
    assert out == b'{"score":0.000025}'
    # a non-finite float is null, where DRF's strict renderer raised (a 500)
    assert JSONRenderer().render({"x": float("nan")}) == b'{"x":null}'
    with pytest.raises(ValueError):
        drf.JSONRenderer().render({"x": float("nan")})


@pytest.mark.django_db
def test_the_api_answers_through_it(api_client, settings):
    # given the project's DRF settings, when an API error is answered
    response = api_client.get("/api/v1/recommendations/", {"k": "nope"})
    # then the one error shape comes out of this renderer, compact
    assert response.status_code in (400, 401, 403)
    assert response.content.startswith(b'{"error":{"code":')
    assert settings.REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"][0] == "cdp.api.renderers.JSONRenderer"
