"""The accept path's fast parts give the answers of the slow ones (decision 0044): bodies decoded by
orjson exactly as by the strict decoder, each call serialised once and read back as it was
cleaned, the intake log's payload stored as JSON text, the wake sent after the response, and the
per-process caches of validation (user agents, time zones) answering as the uncached code does."""

from __future__ import annotations

import json
import random
import sys
from datetime import UTC, datetime, timedelta, timezone

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.exceptions import ParseError

from cdp.api.jsonbody import MAX_JSON_DEPTH, json_loads_strict
from profiles.api.tracking import body_loads
from profiles.models import IntakeEvent, Source
from profiles.tracking import intake
from profiles.tracking.validate import (
    MAX_BATCH_BYTES,
    _device_of_user_agent,
    call_size,
    clean_event,
    device_type_of,
    local_hour_of,
)
from reliability.corpus import HOSTILE_BODIES
from tests.profiles.helpers import batch, call, writer

pytestmark = pytest.mark.intake_async

NOW = datetime(2026, 12, 6, 12, 0, 0, 123456, tzinfo=UTC)


def decoded(decode, body: bytes):
    """("ok", value) or ("error", None): what a decoder makes of a body."""
    try:
        return "ok", decode(body)
    except ParseError:
        return "error", None


# --- bodies: orjson where it agrees with the strict rules, the strict decoder elsewhere ---------------


EDGE_BODIES = {
    "NaN": b'{"a": NaN}',
    "Infinity": b'{"a": Infinity}',
    "1e400": b'{"a": 1e400}',
    "a double near its limit": b'{"a": 1.5e308, "b": -1e-400}',
    "the widest unsigned 64-bit integer": b'{"a": 18446744073709551615, "b": -9223372036854775808}',
    "an integer of 20 digits past 64 bits": b'{"a": 18446744073709551616}',
    "an integer of 25 digits": b'{"a": [1, {"b": 1234567890123456789012345}]}',
    "an integer of 30 digits": b'{"a": 123456789012345678901234567890}',
    "an integer of 31 digits": b'{"a": 1234567890123456789012345678901}',
    "a double of 25 digits": b'{"a": 1234567890123456789012345.0}',
    "a big negative integer": b'{"a": -99999999999999999999}',
    "invalid UTF-8": b'{"a": "\xff"}',
    "a UTF-8 BOM": b'\xef\xbb\xbf{"a": 1}',
    "overlong UTF-8": b'{"a": "\xc0\xaf"}',
    "an encoded surrogate": b'{"a": "\xed\xa0\x80"}',
    "duplicate keys": b'{"a": 1, "a": 2, "b": {"c": 1, "c": [3]}}',
    "escaped NUL": b'{"a": "x\\u0000"}',
    "an escaped backslash before u0000": b'{"a": "x\\\\u0000"}',
    "a raw control character": b'{"a": "x\x01"}',
    "a pair of surrogates": b'{"a": "\\ud83d\\ude00"}',
    "a lone low surrogate": b'{"a": "\\udc00"}',
    "a high surrogate then a letter": b'{"a": "\\ud800\\u0041"}',
    "nested to the limit": b'{"a":' * (MAX_JSON_DEPTH - 1) + b"1" + b"}" * (MAX_JSON_DEPTH - 1),
    "arrays nested to the limit": b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH,
    "arrays nested one past the limit": b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1),
    "a bare number": b"12345678901234567890123",
    "a bare string": b'"x"',
    "trailing data": b'{"a": 1} x',
    "trailing whitespace": b'{"a": 1}  \n',
    "empty": b"",
    "a minus zero": b'{"a": -0, "b": -0.0}',
    "unicode escapes": b'{"\\u00e9": "\\u00e9t\\u00e9"}',
}


@pytest.mark.parametrize("name", sorted(EDGE_BODIES) + sorted(f"hostile: {n}" for n in HOSTILE_BODIES))
def test_the_fast_decoder_answers_as_the_strict_one(name):
    body = EDGE_BODIES[name] if name in EDGE_BODIES else HOSTILE_BODIES[name.removeprefix("hostile: ")]
    fast, strict = decoded(body_loads, body), decoded(json_loads_strict, body)
    assert fast == strict
    if fast[0] == "ok":  # the same types too (an integer stays an integer, 1 is not 1.0)
        assert json.dumps(fast[1], sort_keys=True) == json.dumps(strict[1], sort_keys=True)


def test_the_fast_decoder_answers_as_the_strict_one_on_generated_calls():
    sys.path.insert(0, "benchmarks")
    try:
        from benchmarks.ingest import batch_bodies, people
    finally:
        sys.path.remove("benchmarks")
    for body in batch_bodies(people(50, random.Random(3)), 300, 30, 4):
        assert body_loads(body) == json_loads_strict(body)


@pytest.mark.django_db
def test_hostile_numbers_and_text_in_a_batch_are_one_clean_400_and_store_nothing(write_key):
    client = writer(write_key)
    for body in (
        b'{"batch": [{"type": "track", "userId": "u", "event": "e", "properties": {"p": NaN}}]}',
        b'{"batch": [{"type": "track", "userId": "u", "event": "e", "properties": {"p": 1e999}}]}',
        b'{"batch": [{"type": "track", "userId": "u", "event": "e", "properties": {"p": ' + b"7" * 31 + b"}}]}",
        b'{"batch": [{"type": "track", "userId": "u", "event": "e\xff"}]}',
        b'{"batch": [{"type": "track", "userId": "u", "event": "e\\u0000"}]}',
    ):
        response = client.post("/v1/batch", body, content_type="application/json")
        assert response.status_code == 400, body
        assert set(response.json()["error"]) >= {"code", "message", "fields"}
    assert not IntakeEvent.objects.exists()


@pytest.mark.django_db
def test_a_body_over_the_size_limit_is_a_clear_400_before_any_work(write_key):
    client = writer(write_key)
    calls = [{"type": "track", "userId": "u", "event": "e", "properties": {"blob": "x" * 20_000}} for _ in range(30)]
    response = batch(client, *calls)
    assert response.status_code == 400
    message = json.dumps(response.json())
    assert "500 KB" in message and str(MAX_BATCH_BYTES) in message
    assert not IntakeEvent.objects.exists()


@pytest.mark.django_db
def test_duplicate_keys_keep_the_last_value_as_everywhere_else(write_key):
    client = writer(write_key)
    body = b'{"batch": [{"type": "track", "userId": "u-1", "userId": "u-2", "event": "E", "messageId": "m-dup"}]}'
    assert client.post("/v1/batch", body, content_type="application/json").json()["accepted"] == 1
    assert IntakeEvent.objects.get().user_id == "u-2"


# --- each call serialised once, read back as it was cleaned ---------------------------------------------


def _clean(payload: dict, **kwargs):
    return clean_event(payload, received_at=NOW, **kwargs)


ROUND_TRIPS = {
    "track with every time": (
        {
            "type": "track",
            "userId": "u",
            "event": "Order Completed",
            "properties": {"revenue": 12.5, "items": [{"sku": "a", "n": 2}], "big": 2**63 + 5, "é": "ü😀"},
            "timestamp": "2026-12-06T13:00:00.5+01:00",
            "originalTimestamp": "2026-12-06T12:00:00.5Z",
            "sentAt": "2026-12-06T11:59:59.000001Z",
            "context": {"timezone": "Asia/Kathmandu", "userAgent": "Mozilla/5.0 (iPad; CPU OS 17_0)"},
        },
        {},
    ),
    "page without times": ({"type": "page", "anonymousId": "a", "name": "Home", "category": "Docs"}, {}),
    "identify from context traits": (
        {"type": "identify", "userId": 42, "context": {"traits": {"email": "A@Example.com"}}},
        {"batch_context": {"locale": "de-DE"}, "batch_sent_at": NOW - timedelta(seconds=3)},
    ),
    "alias": ({"type": "alias", "userId": "u", "previousId": "old"}, {}),
    "group": ({"type": "group", "userId": "u", "groupId": "g", "traits": {"plan": "pro"}}, {}),
    "an integer wider than 64 bits": (
        {"type": "track", "userId": "u", "event": "E", "properties": {"wide": 10**25, "neg": -(10**22)}},
        {},
    ),
    "no messageId (one is made)": ({"type": "track", "anonymousId": "a", "event": "E"}, {}),
}


@pytest.mark.parametrize("name", sorted(ROUND_TRIPS))
def test_a_call_is_read_back_from_the_intake_log_as_it_was_cleaned(name):
    payload, kwargs = ROUND_TRIPS[name]
    event = _clean(payload, **kwargs)
    text = intake.event_payload(event)
    assert isinstance(text, str)
    back = intake.event_from_payload(json.loads(text))
    assert back == event
    assert [type(getattr(back, f)) for f in ("occurred_at", "received_at")] == [datetime, datetime]
    assert back.occurred_at.utcoffset() == event.occurred_at.utcoffset()


def test_the_payload_reads_what_the_standard_library_wrote_before():
    # rows written by the earlier accept path (json.dumps, isoformat) are still read the same way
    event = _clean(ROUND_TRIPS["track with every time"][0])
    data = json.loads(intake.event_payload(event))
    for name in ("occurred_at", "original_timestamp", "sent_at", "received_at"):
        value = getattr(event, name)
        data[name] = value.isoformat() if value is not None else None
    assert intake.event_from_payload(json.loads(json.dumps(data))) == event


@pytest.mark.django_db
def test_the_intake_log_keeps_the_call_as_json_text(write_key):
    client = writer(write_key)
    wide = 10**25
    body = (
        b'{"batch": [{"type": "track", "userId": "u-text", "event": "E", "messageId": "m-text", '
        b'"properties": {"wide": ' + str(wide).encode() + b', "name": "caf\\u00e9"}}]}'
    )
    assert client.post("/v1/batch", body, content_type="application/json").json()["accepted"] == 1
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_typeof(payload)::text, payload FROM profiles_intakeevent")
        kind, text = cursor.fetchone()
    assert kind == "text"
    stored = json.loads(text)
    assert stored["properties"] == {"wide": wide, "name": "café"}
    assert intake.event_from_payload(stored).properties["wide"] == wide
    assert IntakeEvent.objects.get().payload["message_id"] == "m-text"  # the ORM reads the JSON


@pytest.mark.django_db
def test_a_call_stored_before_in_the_log_or_in_events_is_a_duplicate(write_key):
    client = writer(write_key)
    first = batch(client, {"type": "track", "userId": "u", "event": "E", "messageId": "m-1"})
    assert first.json()["accepted"] == 1
    again = batch(
        client,
        {"type": "track", "userId": "u", "event": "E", "messageId": "m-1"},
        {"type": "track", "userId": "u", "event": "E", "messageId": "m-2"},
        {"type": "track", "userId": "u", "event": "E", "messageId": "m-2"},
    )
    assert (again.json()["accepted"], again.json()["duplicates"]) == (1, 2)
    assert IntakeEvent.objects.count() == 2


@pytest.mark.django_db
def test_deleting_a_source_deletes_its_waiting_calls(write_key):
    # the log has no foreign-key constraint (a per-row check on every insert): Django's cascade does it
    client = writer(write_key)
    batch(client, {"type": "track", "userId": "u", "event": "E"})
    assert IntakeEvent.objects.count() == 1
    Source.objects.get().delete()
    assert not IntakeEvent.objects.exists()


@pytest.mark.django_db
def test_the_insert_is_counted_by_query_captures(write_key):
    from django.test.utils import CaptureQueriesContext

    client = writer(write_key)
    with CaptureQueriesContext(connection) as captured:
        batch(client, {"type": "track", "userId": "u", "event": "E"})
    assert sum("INSERT INTO profiles_intakeevent" in q["sql"] for q in captured) == 1


@pytest.mark.django_db
def test_the_request_lets_go_of_the_decoded_body_once_the_view_has_it(write_key):
    from django.test import Client

    # a batch, and a beacon whose write key is in the body (authentication decodes it first)
    sent = batch(writer(write_key), {"type": "track", "userId": "u", "event": "E"})
    beacon = Client().post(
        "/v1/batch",
        json.dumps({"writeKey": write_key, "batch": [{"type": "track", "userId": "u", "event": "E"}]}),
        content_type="text/plain",
    )

    # then both are stored and neither request keeps the decoded body (it would live on in the
    # request's reference cycles until the garbage collector ran: decision 0053)
    for response in (sent, beacon):
        assert response.status_code == 200 and response.json()["accepted"] == 1, response.content
        assert "_cdp_json_body" not in response.wsgi_request.__dict__


@pytest.mark.django_db(transaction=True)
def test_a_200_means_committed_without_a_transaction_of_its_own(write_key, monkeypatch):
    import psycopg

    # no stitch worker takes the calls meanwhile (its writes would deadlock the teardown's TRUNCATE)
    monkeypatch.setattr(intake, "intake_wake", lambda: None)

    # when calls are accepted (one statement, its own transaction: no BEGIN/COMMIT round trips)
    assert (
        batch(writer(write_key), *[{"type": "track", "userId": f"u{i}", "event": "E"} for i in range(3)]).json()[
            "accepted"
        ]
        == 3
    )
    assert connection.get_autocommit() and not connection.in_atomic_block

    # then another connection already sees them
    settings = connection.settings_dict
    with psycopg.connect(
        dbname=settings["NAME"], user=settings["USER"], host=settings["HOST"], port=settings["PORT"] or 5432
    ) as other:
        assert other.execute("SELECT count(*) FROM profiles_intakeevent").fetchone()[0] == 3


# --- consent's suppression check inside the INSERT gives the filter function's answers ----------------


def _suppressed_traffic() -> list[dict]:
    return [
        {"type": "identify", "userId": "gone", "traits": {"email": "Gone@Example.com"}, "messageId": "s-1"},
        {"type": "track", "anonymousId": "a-gone", "event": "E", "messageId": "s-2"},  # suppressed anonymous id
        {"type": "track", "userId": "here", "event": "E", "messageId": "s-3"},
        {"type": "track", "userId": "undefined", "event": "E", "messageId": "s-4"},  # junk id: no identifiers
        {"type": "identify", "userId": "here", "traits": {"email": "gone@example.com"}, "messageId": "s-5"},
        {"type": "track", "userId": "here", "event": "E", "messageId": "s-3"},  # repeated in the request
        {"type": "track", "userId": "also-here", "event": "E", "messageId": "s-6"},
    ]


def _accept_twice(source) -> list[tuple]:
    answers = []
    for _ in range(2):  # the second time, what was stored is a duplicate and the suppressed are dropped again
        result = intake.events_accept(source=source, events=[_clean(c) for c in _suppressed_traffic()])
        answers.append((result.accepted, result.duplicates, result.dropped))
    return answers


@pytest.mark.django_db
def test_the_suppression_check_in_the_insert_answers_as_the_filter_function(write_key):
    from consent.ingest import filter_suppressed
    from consent.models import Suppression
    from consent.services import suppression_hash
    from profiles import hooks

    # given an erased person's user id, anonymous id and email on the suppression list
    for kind, value in (("user_id", "gone"), ("anonymous_id", "a-gone"), ("email", "gone@example.com")):
        Suppression.objects.create(hash=suppression_hash(kind, value), kind=kind)
    source = Source.objects.get()

    # when the same calls are accepted with the check in the INSERT (one statement) ...
    assert hooks.ingest_filter_identifiers.sql_guards() is not None
    with CaptureQueriesContext(connection) as captured:
        guarded = _accept_twice(source)
    assert len(captured) == 2
    stored = sorted(IntakeEvent.objects.values_list("message_id", flat=True))
    IntakeEvent.objects.all().delete()

    # ... and by the filter function alone (a look-up, then the plain INSERT)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(hooks.ingest_filter_identifiers, "_subscribers", [lambda **kw: filter_suppressed(**kw)])
        assert hooks.ingest_filter_identifiers.sql_guards() is None
        with CaptureQueriesContext(connection) as captured:
            unguarded = _accept_twice(source)
        assert len(captured) == 4

    # then both store, count and drop the same calls: 3 stored, the request's repeat a duplicate, three
    # calls of the erased person's identifiers dropped every time (one with two of them)
    assert guarded == unguarded == [(3, 1, 3), (0, 4, 3)]
    assert stored == sorted(IntakeEvent.objects.values_list("message_id", flat=True)) == ["s-3", "s-4", "s-6"]


@pytest.mark.django_db
def test_calls_whose_ids_are_all_junk_have_no_suppression_keys_and_are_stored(write_key):
    from profiles import hooks

    # given only calls whose ids normalise to nothing (no identifiers: no keys for the guard)
    source = Source.objects.get()
    assert hooks.ingest_filter_identifiers.sql_guards() is not None
    calls = [_clean({"type": "track", "userId": junk, "event": "E"}) for junk in ("undefined", "null")]

    # then they are stored (an empty key list is a valid parameter)
    assert intake.events_accept(source=source, events=calls).accepted == 2
    assert [c.identifiers for c in calls] == [[], []]


# --- the wake runs after the response, only when calls were stored ---------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_wake_runs_once_the_response_is_closed_and_only_for_stored_calls(write_key, monkeypatch):
    woken: list[str] = []
    monkeypatch.setattr(intake, "intake_wake", lambda: woken.append("wake"))
    client = writer(write_key)
    # the test client closes each response as a WSGI server does after sending it
    assert call(client, "track", userId="u", event="E", messageId="m-w1").status_code == 200
    assert woken == ["wake"]
    assert batch(client, {"type": "track", "userId": "u", "event": "E", "messageId": "m-w2"}).status_code == 200
    assert woken == ["wake", "wake"]
    # a request whose calls were all stored before wakes nobody
    assert call(client, "track", userId="u", event="E", messageId="m-w1").json()["duplicates"] == 1
    assert woken == ["wake", "wake"]


def test_the_wake_runs_on_commit_for_other_callers(db, monkeypatch, write_key):
    woken: list[str] = []
    monkeypatch.setattr(intake, "intake_wake", lambda: woken.append("wake"))
    source = Source.objects.get()
    with pytest.MonkeyPatch.context() as m:
        hooks: list = []
        m.setattr("django.db.transaction.on_commit", lambda fn, *a, **k: hooks.append(fn))
        intake.events_accept(source=source, events=[_clean({"type": "track", "userId": "u", "event": "E"})])
    assert woken == [] and len(hooks) == 1
    hooks[0]()
    assert woken == ["wake"]


# --- per-process caches answer as the uncached code --------------------------------------------------------


@pytest.mark.parametrize(
    "ua",
    [
        "Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X)",
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) Mobile Safari/537.36",
        "Mozilla/5.0 (Linux; Android 13; SM-X700) Safari/537.36",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120",
        "Opera Mini/9.80",
        "",
    ],
)
def test_device_type_from_a_user_agent_long_or_short(ua):
    expected = device_type_of({"userAgent": ua})
    if ua:
        assert device_type_of({"userAgent": ua + " " * 600}) == expected  # past the cached length
        assert _device_of_user_agent.__wrapped__(ua) == expected
    else:
        assert expected == ""
    assert device_type_of({"userAgent": None}) == "desktop"  # str(None), as before


def test_local_hour_for_good_bad_and_hostile_zone_names():
    at = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert local_hour_of({"timezone": "Europe/Berlin"}, at) == 13
    assert local_hour_of({"timezone": "Asia/Kathmandu"}, at) == 17
    for name in ("Nope/Nope", "../../etc/passwd", "/etc/localtime", "Europe", "zone.tab", "x" * 300, "", 5):
        assert local_hour_of({"timezone": name}, at) is None, name
    assert local_hour_of({"timezone": "UTC"}, datetime(2026, 1, 1, 23, tzinfo=timezone(timedelta(hours=-2)))) == 1


def test_call_size_is_the_calls_compact_utf8_json():
    payload = {"userId": "u", "event": "é", "n": [1, 2.5, None, True]}
    assert call_size(payload) == len(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode())
    wide = {"n": 10**25}
    assert call_size(wide) == len('{"n":10000000000000000000000000}')


# --- decision 0063: the cheaper accept path answers as before -------------------------------------------


@pytest.mark.django_db
def test_the_intake_insert_is_not_left_prepared_on_the_connection(write_key):
    # a generic plan cached on a pooled connection outlives the statistics it was made from (0063)
    client = writer(write_key)
    for n in range(8):
        call(client, "track", userId=f"u-{n}", event="E")
        batch(client, {"type": "track", "userId": f"b-{n}", "event": "E"}, {"type": "page", "anonymousId": f"a-{n}"})
    assert IntakeEvent.objects.count() == 24
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE '%%profiles_intakeevent%%'")
        assert cursor.fetchone() == (0,)


@pytest.mark.django_db
def test_the_ingest_answer_is_the_document_drf_rendered(write_key):
    from cdp.api.renderers import JSONRenderer
    from profiles.api.tracking import ingest_response

    for data in (
        {"success": True, "accepted": 1, "duplicates": 0},
        {
            "success": False,
            "accepted": 0,
            "duplicates": 2,
            "errors": [{"index": 1, "fields": {"type": ["No \u2028 é"]}}],
        },
    ):
        response = ingest_response(data)
        assert response.content == JSONRenderer().render(data)
        assert response["Content-Type"] == "application/json"
    # through the API: the headers DRF adds to every answer are still there (content negotiation still runs)
    client = writer(write_key)
    answer = call(client, "track", userId="u", event="E")
    assert answer.status_code == 200 and answer.json() == {"success": True, "accepted": 1, "duplicates": 0}
    assert answer["Content-Type"] == "application/json" and "Accept" in answer["Vary"] and "POST" in answer["Allow"]


_ODD_VALUES = [
    None,
    "",
    " ",
    " x ",
    "x" * 255,
    " " + "y" * 255 + " ",
    "z" * 256,
    0,
    7,
    1.5,
    True,
    [],
    {},
    {"a": 1},
    ["x"],
]


class _Mapping(dict):
    pass


@pytest.mark.parametrize(
    ("key", "attribute", "others"),
    [
        ("userId", "user_id", {"anonymousId": "o-1"}),
        ("anonymousId", "anonymous_id", {"userId": "o-1"}),
        ("properties", "properties", {"userId": "u"}),
        ("traits", "traits", {"userId": "u"}),
        ("context", "context", {"userId": "u"}),
    ],
)
def test_fields_decided_by_clean_event_answer_as_the_field_helpers(key, attribute, others):
    from profiles.tracking.validate import Invalid, _id_field, _object_field

    helper, odd = (_id_field, _ODD_VALUES) if key.endswith("Id") else (_object_field, [*_ODD_VALUES, _Mapping(a=1)])
    for value in odd:
        payload = {"type": "track", "event": "E", **others, key: value}
        errors: dict = {}
        expected = helper(payload, key, errors)
        try:
            event = clean_event(payload, received_at=NOW)
        except Invalid as exc:
            assert exc.fields == errors, value
        else:
            assert not errors and getattr(event, attribute) == expected
