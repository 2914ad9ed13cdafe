"""The settings documents the browser SDKs fetch before they send anything, served by cdp.

- Analytics.js 2.0 (``@segment/analytics-next``) loads ``{cdnURL}/v1/projects/{writeKey}/settings``;
  its ``Segment.io`` entry tells it where to send (``apiHost`` + ``protocol``): here, this cdp.
- RudderStack's SDK (``@rudderstack/analytics-js``) loads ``{configUrl}/sourceConfig/?writeKey=…``
  (also with the key as Basic auth) and sends to the data plane URL it was loaded with.

So a shop points each SDK at cdp with one option (``cdnURL`` / ``configUrl``) and nothing else.
No device-mode destinations, no remote plugins, no SDK metrics or error reports to third parties.
"""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from cdp.api.authentication import raw_key_from_header
from cdp.keys import WRITE_KEY_PREFIX
from profiles.selectors import source_by_write_key
from profiles.storefront import origin_of_request, source_allows_origin

from .tracking import ErrorResponse


def _source_for(raw: str | None, request):
    if not raw or not raw.startswith(WRITE_KEY_PREFIX):
        raise exceptions.NotFound("No source has this write key.")
    source = source_by_write_key(raw_key=raw)
    if source is None:
        raise exceptions.NotFound("No source has this write key.")
    origin = origin_of_request(request)
    if not source_allows_origin(source=source, origin=origin):
        raise exceptions.PermissionDenied(
            f"Origin {origin} is not allowed to use the write key of source {source.name!r}; "
            "add it to the source's allowed origins (admin, or manage.py create_source --origin).",
            code="origin_not_allowed",
        )
    return source


def segment_settings(*, write_key: str, api_host: str, protocol: str) -> dict:
    """What Analytics.js 2.0 reads from its CDN, for a source whose events come here."""
    return {
        "integrations": {
            "Segment.io": {
                "apiKey": write_key,
                "apiHost": api_host,
                "protocol": protocol,
                "unbundledIntegrations": [],
                "addBundledMetadata": True,
                "maybeBundledConfigIds": {},
            }
        },
        "plan": {
            "track": {"__default": {"enabled": True, "integrations": {}}},
            "identify": {"__default": {"enabled": True}},
            "group": {"__default": {"enabled": True}},
        },
        "edgeFunction": {},
        "analyticsNextEnabled": True,
        "middlewareSettings": {},
        "enabledMiddleware": {},
        "metrics": {"sampleRate": 0},  # no SDK telemetry to Segment
        "legacyVideoPluginsEnabled": False,
        "remotePlugins": [],
    }


def rudderstack_source_config(*, source, write_key: str) -> dict:
    """What RudderStack's SDK reads from its control plane, for a cdp source."""
    return {
        "isHosted": True,
        "source": {
            "id": f"cdp-source-{source.pk}",
            "name": source.name,
            "writeKey": write_key,
            "workspaceId": "cdp",
            "enabled": True,
            "config": {"statsCollection": {"errors": {"enabled": False}, "metrics": {"enabled": False}}},
            "destinations": [],
        },
        "updatedAt": timezone.now().isoformat(),
    }


class SegmentSettingsView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []

    @extend_schema(
        responses={200: OpenApiTypes.OBJECT, 404: ErrorResponse, 403: ErrorResponse},
        description="Analytics.js 2.0 settings for a source (load the SDK with cdnURL set to this cdp).",
    )
    def get(self, request, write_key: str):
        _source_for(write_key, request)
        api_host = f"{request.get_host()}/v1"
        return Response(segment_settings(write_key=write_key, api_host=api_host, protocol=request.scheme))


class RudderStackSourceConfigView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []

    @extend_schema(
        responses={200: OpenApiTypes.OBJECT, 404: ErrorResponse, 403: ErrorResponse},
        description="RudderStack JavaScript SDK source config (load the SDK with configUrl set to this cdp).",
    )
    def get(self, request):
        raw = request.query_params.get("writeKey")
        if not raw and request.META.get("HTTP_AUTHORIZATION"):
            raw = raw_key_from_header(request.META["HTTP_AUTHORIZATION"])
        source = _source_for(raw, request)
        return Response(rudderstack_source_config(source=source, write_key=raw))
