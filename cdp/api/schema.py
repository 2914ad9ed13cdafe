"""The OpenAPI description tells the truth about every operation (drf-spectacular extensions).

- ``ApiKeyAuthenticationScheme``: the two key kinds.
- ``CdpAutoSchema`` (``DEFAULT_SCHEMA_CLASS``): every operation also documents the error answers any
  endpoint can give, in the one error shape (``cdp.api.errors``): 400 (bad input anywhere: body,
  query, URL), 401/403 (missing, wrong or revoked key) unless the view is public, 404, 429
  (throttled) and, for operations with a body, 413 and 415. An operation that documents a status
  itself keeps its own description. New endpoints get this without any per-endpoint work.
"""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny

ErrorResponse = inline_serializer(
    "ErrorResponse",
    {
        "error": inline_serializer(
            "ErrorBody",
            {
                "code": serializers.CharField(),
                "message": serializers.CharField(),
                "fields": serializers.DictField(
                    child=serializers.ListField(child=serializers.CharField()),
                    help_text="field path → messages (validation errors), else empty",
                ),
            },
        )
    },
)

DEFAULT_ERRORS = {
    "400": "Invalid input (body, query or URL), in the one error shape.",
    "401": "No key, or an unknown, revoked or rotated-away key.",
    "403": "The key may not use this endpoint (e.g. a write key on a secret-key API).",
    "404": "Not found.",
    "429": "Too many requests for this key; retry after the Retry-After header.",
}
BODY_ERRORS = {
    "413": "Request body too large.",
    "415": "Unsupported content type.",
}


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "cdp.api.authentication.ApiKeyAuthentication"
    name = ["secretKey", "writeKey"]

    def get_security_definition(self, auto_schema):
        return [
            {
                "type": "http",
                "scheme": "bearer",
                "description": "A secret key (sk_…) for the read and admin APIs: `Authorization: Bearer sk_…`.",
            },
            {
                "type": "http",
                "scheme": "basic",
                "description": "A source's write key (wk_…) as the Basic username with an empty password, as "
                "Segment's libraries send it; `Authorization: Bearer wk_…` works too. Tracking endpoints only.",
            },
        ]


class WriteKeyInRequestScheme(OpenApiAuthenticationExtension):
    target_class = "profiles.api.tracking.WriteKeyInRequestAuthentication"
    name = "writeKeyInBody"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "query",
            "name": "writeKey",
            "description": "For beacons that cannot set a header: the write key as `?writeKey=` or as the JSON "
            "body's `writeKey` (tracking endpoints only).",
        }


class CdpAutoSchema(AutoSchema):
    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        errors = dict(DEFAULT_ERRORS)
        if self._is_public():
            errors.pop("401")
            errors.pop("403")
        if self.method in ("POST", "PUT", "PATCH"):
            errors.update(BODY_ERRORS)
        if "414" not in responses:  # the web server's own answer (gunicorn: request line > 4 KB), any body
            responses["414"] = {"description": "URI too long (the request line is limited by the web server)."}
        for code, description in errors.items():
            if code not in responses:
                responses[code] = self._get_response_for_code(
                    OpenApiResponse(response=ErrorResponse, description=description), code, direction=direction
                )
        return responses

    def _get_request_body(self, direction="request"):
        """A raw JSON-schema body that names required members (the tracking calls) is itself required."""
        body = super()._get_request_body(direction)
        request = self.get_request_serializer()
        if body and isinstance(request, dict):
            schemas = [s for s in request.values() if isinstance(s, dict)]
            if schemas and all("required" in s or "anyOf" in s for s in schemas):
                body["required"] = True
        return body

    def _is_public(self) -> bool:
        permissions = getattr(self.view, "permission_classes", None) or []
        return bool(permissions) and all(p is AllowAny for p in permissions)
