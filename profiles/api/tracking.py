"""Segment-compatible tracking endpoints: /v1/identify|track|page|screen|alias|group|batch|import.

The body is read directly (no DRF parser) so that the size limits, content type and JSON errors are
checked before any work and reported in cdp's error shape. Segment's libraries send the write key
as the Basic username; analytics.js may send text/plain bodies (beacons), which are accepted too.
Browser SDKs (docs/storefront.md): short paths, /v1/b (Analytics.js batching), /beacon/v1/batch
(RudderStack's beacons), and the write key in the body or the query where no header can carry it;
a browser's Origin must be one its source allows (``OriginAllowed``).
"""

from __future__ import annotations

import orjson
from django.core.exceptions import RequestDataTooBig
from django.http import HttpResponse
from django.urls import path
from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_view, inline_serializer
from rest_framework import authentication, exceptions, serializers
from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.views import APIView

from cdp.api.authentication import ApiKeyAuthentication, ApiPrincipal
from cdp.api.jsonbody import MAX_JSON_DEPTH, BodyTooLarge, gunzip_limited, json_loads_strict
from cdp.api.permissions import IsWriteKey, OriginAllowed
from cdp.api.renderers import javascript_safe
from cdp.api.schema import ErrorResponse
from cdp.keys import WRITE_KEY_PREFIX
from profiles.selectors import source_by_write_key
from profiles.services import events_accept
from profiles.tracking.debugger import rejections_record
from profiles.tracking.spec import BATCH, call_schema
from profiles.tracking.validate import MAX_BATCH_BYTES, Invalid, clean_event, parse_time

ACCEPTED_CONTENT_TYPES = ("application/json", "text/plain")

IngestResponse = inline_serializer(
    "IngestResponse",
    {
        "success": serializers.BooleanField(),
        "accepted": serializers.IntegerField(
            help_text="events stored by this request (in the intake log: durable, stitched to profiles within seconds)"
        ),
        "duplicates": serializers.IntegerField(help_text="events already stored (same messageId)"),
        "errors": serializers.ListField(
            child=serializers.DictField(), required=False, help_text="batch only: {index, fields} per bad event"
        ),
    },
)


def _too_large(size) -> ValidationError:
    return ValidationError({"body": [f"Request is {size} bytes; the limit is {MAX_BATCH_BYTES} (500 KB)."]})


def read_json_body(request) -> tuple[object, int]:
    """The body of a tracking call, decoded: (value, size in bytes after decompression).

    Steps, each refusing bad input with a 400 in the one error shape before any work:
    content type; declared and actual size on the wire (read at most the limit + 1 bytes, so a
    body without Content-Length cannot grow the worker); ``Content-Encoding`` gzip/deflate,
    decompressed in bounded steps that stop as soon as the limit is passed; then strict JSON
    (``cdp.api.jsonbody``'s rules: depth, NUL and lone surrogates, non-finite numbers; decoded by orjson
    where that gives the same answer, ``body_loads``).
    """
    content_type = (request.META.get("CONTENT_TYPE") or "").split(";")[0].strip().lower()
    if content_type not in ACCEPTED_CONTENT_TYPES:
        raise ValidationError(
            {"content_type": [f"Send JSON (Content-Type: application/json), not {content_type or 'nothing'!r}."]}
        )
    declared = request.META.get("CONTENT_LENGTH")
    if declared and declared.isdigit() and int(declared) > MAX_BATCH_BYTES:
        raise _too_large(declared)
    body = _read_wire_body(getattr(request, "_request", request))
    encoding = (request.META.get("HTTP_CONTENT_ENCODING") or "identity").strip().lower()
    if encoding in ("gzip", "x-gzip", "deflate"):
        try:
            body = gunzip_limited(body, MAX_BATCH_BYTES)
        except BodyTooLarge as exc:
            raise ValidationError(
                {"body": [f"Request expands to more than {MAX_BATCH_BYTES} bytes (500 KB) when decompressed."]}
            ) from exc
    elif encoding != "identity":
        raise ValidationError({"content_encoding": [f"Send gzip, deflate or no encoding, not {encoding!r}."]})
    if len(body) > MAX_BATCH_BYTES:
        raise _too_large(len(body))
    return body_loads(body), len(body)


def body_loads(body: bytes):
    """A tracking request's JSON body, decoded under ``cdp.api.jsonbody.json_loads_strict``'s rules,
    by orjson where that gives the same answer (decision 0044).

    orjson refuses what the rules refuse (invalid UTF-8, NaN and Infinity, numbers beyond a double,
    lone surrogates, control characters) but differs in three places, each checked here: it keeps
    NUL (``\\u0000``, which jsonb cannot hold: looked for in the bytes), nests up to 1,024 levels
    (the rules allow ``MAX_JSON_DEPTH``: one walk over the containers) and reads integers wider than
    64 bits as doubles (the rules keep up to 30 digits: such a double sends the body to the strict
    decoder). Anything refused or in doubt is decoded again by ``json_loads_strict``, which gives
    the exact answer and the error message of every other endpoint.
    """
    if b"\\u0000" not in body:
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
        else:
            if type(value) is dict or type(value) is list:
                if _plain(value, 1):
                    return value
            elif type(value) is not float or -_WIDE < value < _WIDE:
                return value
    return json_loads_strict(body)


_WIDE = 9.2e18  # about 2**63: a double this large may have been written as an integer


def _plain(value, depth: int) -> bool:
    """True when no container is nested deeper than ``MAX_JSON_DEPTH`` and no number may have been
    an integer wider than 64 bits."""
    if depth > MAX_JSON_DEPTH:
        return False
    for item in value.values() if type(value) is dict else value:
        kind = type(item)
        if kind is dict or kind is list:
            if not _plain(item, depth + 1):
                return False
        elif kind is float and not -_WIDE < item < _WIDE:
            return False
    return True


def _read_wire_body(django_request) -> bytes:
    if hasattr(django_request, "_body"):  # someone read it already
        return django_request._body
    try:
        return django_request.read(MAX_BATCH_BYTES + 1)
    except (OSError, RequestDataTooBig) as exc:
        raise ParseError("Could not read the request body.") from exc


def request_json(request, *, keep: bool = True) -> tuple[object, int]:
    """``read_json_body`` once per request: the write key may be in the body (beacons), so
    authentication may need the body before the view does.

    The view takes it with ``keep=False``: the request is part of reference cycles (DRF's request,
    view and response point at each other), so a body kept on it lives until the garbage collector
    finds the cycle, and a batch's few thousand objects made every collection slow (decision 0053).
    """
    django_request = getattr(request, "_request", request)
    cached = django_request.__dict__.pop("_cdp_json_body", None)
    if cached is None:
        cached = read_json_body(request)
    if keep:
        django_request._cdp_json_body = cached
    return cached


class WriteKeyInRequestAuthentication(authentication.BaseAuthentication):
    """For calls that cannot set a header: ``navigator.sendBeacon`` (the write key as the JSON body's
    ``writeKey``, as Analytics.js puts it there, or as RudderStack's ``?writeKey=`` on
    /beacon/v1/batch). Runs after ``ApiKeyAuthentication``, only when no Authorization came."""

    def authenticate(self, request):
        if request.META.get("HTTP_AUTHORIZATION"):
            return None
        raw = request.query_params.get("writeKey")
        if not raw and request.method == "POST":
            payload, _ = request_json(request)
            raw = payload.get("writeKey") if isinstance(payload, dict) else None
        if not raw or not isinstance(raw, str):
            return None
        if not raw.startswith(WRITE_KEY_PREFIX):
            raise exceptions.AuthenticationFailed("writeKey is not a write key (expected wk_…).")
        source = source_by_write_key(raw_key=raw)
        if source is None:
            raise exceptions.AuthenticationFailed("Unknown or disabled write key.")
        return ApiPrincipal(kind="write_key", name=source.name), source

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="cdp"'


class TrackingView(APIView):
    authentication_classes = [ApiKeyAuthentication, WriteKeyInRequestAuthentication]
    permission_classes = [IsWriteKey, OriginAllowed]
    parser_classes: list = []
    call_type: str = "track"

    @extend_schema(
        request={"application/json": call_schema("track")},
        responses={200: IngestResponse, 400: ErrorResponse},
        examples=[
            OpenApiExample(
                "track",
                value={
                    "userId": "u-42",
                    "event": "Product Viewed",
                    "properties": {"product_id": "sku-1", "category": "outdoor"},
                },
            )
        ],
        description="One tracking call (Segment HTTP Tracking API).",
    )
    def post(self, request):
        payload, size = request_json(request, keep=False)
        try:
            event = clean_event(payload, received_at=timezone.now(), forced_type=self.call_type, size=size)
        except Invalid as exc:
            keep_rejected(request, [{"errors": exc.fields, "call": payload}])
            raise ValidationError(exc.fields) from exc
        wakes: list = []
        result = events_accept(source=request.auth, events=[event], wake=wakes.append)
        return wake_after(
            ingest_response({"success": True, "accepted": result.accepted, "duplicates": result.duplicates}), wakes
        )


class BatchView(APIView):
    authentication_classes = [ApiKeyAuthentication, WriteKeyInRequestAuthentication]
    permission_classes = [IsWriteKey, OriginAllowed]
    parser_classes: list = []

    @extend_schema(
        request={"application/json": BATCH},
        responses={200: IngestResponse, 400: ErrorResponse},
        examples=[
            OpenApiExample(
                "batch",
                value={
                    "batch": [
                        {"type": "identify", "userId": "u-42", "traits": {"email": "ann@example.com"}},
                        {"type": "track", "userId": "u-42", "event": "Order Completed", "properties": {"revenue": 25}},
                    ]
                },
            )
        ],
        description="Many calls at once (Segment's /v1/batch): good events are stored, bad ones reported by index.",
    )
    def post(self, request):
        payload, _ = request_json(request, keep=False)
        if not isinstance(payload, dict) or not isinstance(payload.get("batch"), list):
            raise ValidationError({"batch": ["Send an object with a 'batch' list of calls."]})
        received_at = timezone.now()
        errors: dict = {}
        sent_at = parse_time(payload.get("sentAt"), "sentAt", errors)
        context = payload.get("context") if isinstance(payload.get("context"), dict) else None
        if errors:
            raise ValidationError(errors)
        clean, bad = [], []
        for index, item in enumerate(payload["batch"]):
            try:
                clean.append(clean_event(item, received_at=received_at, batch_sent_at=sent_at, batch_context=context))
            except Invalid as exc:
                bad.append({"index": index, "fields": exc.fields})
        keep_rejected(request, [{"errors": b["fields"], "call": payload["batch"][b["index"]]} for b in bad])
        if not clean and bad:
            raise ValidationError({f"batch.{b['index']}.{f}": m for b in bad for f, m in b["fields"].items()})
        wakes: list = []
        result = events_accept(source=request.auth, events=clean, wake=wakes.append) if clean else None
        return wake_after(
            ingest_response(
                {
                    "success": not bad,
                    "accepted": result.accepted if result else 0,
                    "duplicates": result.duplicates if result else 0,
                    "errors": bad,
                }
            ),
            wakes,
        )


def ingest_response(data: dict) -> HttpResponse:
    """A tracking call's 200: the document DRF's ``Response`` with cdp's renderer gives (content
    negotiation still runs in ``APIView.initial``),
    without a template response to build and render per request (decision 0063). The answer holds
    only booleans, integers and the validation messages (text)."""
    return HttpResponse(javascript_safe(orjson.dumps(data)), content_type="application/json")


def wake_after(response: HttpResponse, wakes: list) -> HttpResponse:
    """Run the stitch workers' wake (``events_accept`` committed the calls) once the response has been
    sent: the WSGI server closes the response after writing it, and Django runs its closers then
    (an error in one is swallowed; ``intake_wake`` never raises anyway)."""
    response._resource_closers.extend(wakes)
    return response


def keep_rejected(request, rejections: list[dict]) -> None:
    """The live event debugger shows rejected calls for a while (profiles/tracking/debugger.py)."""
    if rejections and request.auth is not None:
        rejections_record(source_id=request.auth.pk, rejections=rejections)


def _call(call_type: str):
    view = type(f"{call_type.title()}View", (TrackingView,), {"call_type": call_type})
    # the request body this call type accepts (Segment's shape), for the schema
    return extend_schema_view(post=extend_schema(request={"application/json": call_schema(call_type)}))(view).as_view()


tracking_urls = [
    path("batch", BatchView.as_view(), name="batch"),
    path("b", BatchView.as_view(), name="batch-short"),  # Analytics.js 2.0's batching delivery
    path("import", BatchView.as_view(), name="import"),
]
# RudderStack's JavaScript SDK posts its navigator.sendBeacon batches here (?writeKey=…, text/plain)
beacon_urls = [path("batch", BatchView.as_view(), name="beacon-batch")]
for _type, _short in (
    ("identify", "i"),
    ("track", "t"),
    ("page", "p"),
    ("screen", "s"),
    ("alias", "a"),
    ("group", "g"),
):
    _view = _call(_type)
    tracking_urls += [path(_type, _view, name=_type), path(_short, _view, name=f"{_type}-short")]
