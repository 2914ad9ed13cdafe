"""The Segment call shapes as JSON Schema, for the OpenAPI description of the tracking endpoints.

They say what ``validate.clean_event`` and ``cdp.api.jsonbody`` accept, so that a body valid by the
schema is accepted and the schema is the reference a client can generate from: ids are non-blank
strings (or integers) of at most 255 characters, ``messageId`` at most 100, event and page names at
most 200, times ISO-8601 between 1970 and 9000, free-form objects hold JSON without NUL characters.
"""

from __future__ import annotations

from profiles.normalize import MAX_IDENTIFIER_LENGTH

from .validate import EVENT_TYPES, MAX_MESSAGE_ID_LENGTH, MAX_NAME_LENGTH

_NO_NUL = "^[^\\u0000]*$"
_NOT_BLANK = "^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$"
_TIME = (
    "^(19[7-9][0-9]|[2-8][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    "(\\.[0-9]{1,6})?(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9])$"
)
_SAFE_INT = {"type": "integer", "minimum": -(10**15), "maximum": 10**15}

TEXT = {"type": "string", "pattern": _NO_NUL, "maxLength": 2000}
# a JSON value as the API stores it: no NUL in text, finite numbers, shallow enough for every store
SCALAR = {"anyOf": [TEXT, {"type": "number", "minimum": -1e15, "maximum": 1e15}, {"type": "boolean", "nullable": True}]}
VALUE = {
    "anyOf": [
        SCALAR,
        {"type": "array", "items": SCALAR, "maxItems": 20},
        {
            "type": "object",
            "additionalProperties": SCALAR,
            "maxProperties": 20,
        },
    ]
}
OBJECT = {
    "type": "object",
    "additionalProperties": VALUE,
    "maxProperties": 30,
}


def _id(max_length: int = MAX_IDENTIFIER_LENGTH) -> dict:
    return {"anyOf": [{"type": "string", "pattern": _NOT_BLANK, "maxLength": max_length}, _SAFE_INT]}


TIME = {"type": "string", "pattern": _TIME, "description": "ISO-8601 date-time"}

COMMON = {
    "userId": _id(),
    "anonymousId": _id(),
    "messageId": {
        **_id(MAX_MESSAGE_ID_LENGTH),
        "description": "deduplication key per source; generated when missing",
    },
    "timestamp": TIME,
    "originalTimestamp": TIME,
    "sentAt": TIME,
    "context": {
        **OBJECT,
        "description": "Segment context: ip, userAgent, page, device, timezone, traits, consent…",
    },
    "integrations": OBJECT,
    "writeKey": {"type": "string", "pattern": _NO_NUL, "description": "for beacons that cannot set a header"},
}
_PERSON = [{"required": ["userId"]}, {"required": ["anonymousId"]}]


def call_schema(call_type: str, *, typed: bool = False) -> dict:
    """One call of ``call_type`` (``typed``: inside a batch, where ``type`` says which)."""
    properties = dict(COMMON)
    required: list[str] = []
    any_of = _PERSON
    if call_type == "track":
        properties["event"] = {"type": "string", "pattern": _NOT_BLANK, "maxLength": MAX_NAME_LENGTH}
        properties["properties"] = OBJECT
        required.append("event")
    elif call_type in ("page", "screen"):
        properties["name"] = {"type": "string", "pattern": _NO_NUL, "maxLength": MAX_NAME_LENGTH}
        properties["category"] = TEXT
        properties["properties"] = OBJECT
    elif call_type == "identify":
        properties["traits"] = OBJECT
    elif call_type == "alias":
        properties["previousId"] = _id()
        required += ["previousId", "userId"]
        any_of = []
    elif call_type == "group":
        properties["groupId"] = _id()
        properties["traits"] = OBJECT
        required.append("groupId")
    if typed:
        properties["type"] = {"type": "string", "enum": [call_type]}
        required.append("type")
    schema = {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": VALUE,
    }
    if any_of:
        schema["anyOf"] = any_of
    if not required:
        schema.pop("required")
    return schema


BATCH = {
    "type": "object",
    "properties": {
        "batch": {
            "type": "array",
            "items": {"oneOf": [call_schema(t, typed=True) for t in EVENT_TYPES]},
            "maxItems": 50,
        },
        "sentAt": TIME,
        "context": COMMON["context"],
        "integrations": OBJECT,
        "writeKey": COMMON["writeKey"],
    },
    "required": ["batch"],
    "additionalProperties": VALUE,
}
