"""The API's edge: refuse hostile URLs before any view runs (NUL or unpaired surrogates in the path or
the query string would reach PostgreSQL, which cannot hold them, as a lookup value), and answer
every API error in the one error shape, even one raised before a view (an unknown URL while DEBUG
is on renders Django's HTML page otherwise)."""

from __future__ import annotations

import re

from django.contrib.auth import middleware as _auth
from django.contrib.messages import middleware as _messages
from django.contrib.sessions import middleware as _sessions
from django.http import JsonResponse

from cdp.api.errors import API_PATH_PREFIXES, error_body

_BAD_CHARS = re.compile("[\x00\ud800-\udfff]")


_ERRORS = {
    400: ("bad_request", "Bad request."),
    403: ("permission_denied", "Forbidden."),
    404: ("not_found", "Not found."),
    405: ("method_not_allowed", "Method not allowed."),
    500: ("server_error", "Internal server error."),
}


class HostileUrlMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith(API_PATH_PREFIXES):
            fields = self._hostile_fields(request)
            if fields:
                return JsonResponse(error_body(code="invalid", message="Invalid input.", fields=fields), status=400)
            response = self.get_response(request)
            if response.status_code >= 400 and not response.get("Content-Type", "").startswith("application/json"):
                code, message = _ERRORS.get(response.status_code, ("error", "Request failed."))
                return JsonResponse(error_body(code=code, message=message), status=response.status_code)
            return response
        return self.get_response(request)

    @staticmethod
    def _hostile_fields(request) -> dict:
        """{field: [message]} for the path and each query parameter holding NUL or a lone surrogate."""
        message = "Null characters are not allowed."
        fields = {"url": [message]} if _BAD_CHARS.search(request.path) else {}
        for key, values in request.GET.lists():
            if _BAD_CHARS.search(key) or any(_BAD_CHARS.search(v) for v in values):
                fields[_BAD_CHARS.sub("?", key)] = [message]
        return fields


# --- the session-side middleware, not run where an API key decides (decision 0059) ------------------


def decided_by_key(request) -> bool:
    """Whether ``ApiKeyAuthentication`` decides this request: an API path with a Bearer or Basic key.

    Every API view lists ``ApiKeyAuthentication`` first, and it either authenticates such a request or
    refuses it (401); DRF's ``SessionAuthentication`` is never asked. So the session, Django's user and
    the messages storage would be made for nothing: skipped. A request without an Authorization header,
    with another scheme or an empty key (a staff user's session on the API docs) keeps them all.
    """
    header = request.META.get("HTTP_AUTHORIZATION")
    if not header or not request.path_info.startswith(API_PATH_PREFIXES):
        return False
    from rest_framework.exceptions import AuthenticationFailed

    from cdp.api.authentication import raw_key_from_header

    try:
        return raw_key_from_header(header) is not None
    except AuthenticationFailed:  # malformed Basic credentials: the usual path answers it
        return False


class _NotForKeyRequests:
    """Runs the middleware it is mixed into except for requests an API key decides."""

    def __call__(self, request):
        if decided_by_key(request):
            return self.get_response(request)
        return super().__call__(request)


class SessionMiddleware(_NotForKeyRequests, _sessions.SessionMiddleware):
    pass


class AuthenticationMiddleware(_NotForKeyRequests, _auth.AuthenticationMiddleware):
    pass


class MessageMiddleware(_NotForKeyRequests, _messages.MessageMiddleware):
    pass
