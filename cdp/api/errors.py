"""One error shape for every API error: ``{"error": {"code", "message", "fields"}}``.

``fields`` maps a field path to its messages for validation errors (``{}`` otherwise). Unexpected
exceptions become a 500 in the same shape, logged with their traceback but never sending it.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.db import DataError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger("cdp.api")

API_PATH_PREFIXES = ("/api/", "/v1/")


def error_body(*, code: str, message: str, fields: dict | None = None) -> dict:
    return {"error": {"code": code, "message": message, "fields": fields or {}}}


def flatten_field_errors(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """Turn DRF's nested error detail into {"a.b.0.c": ["message", …]}."""
    out: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            out.update(flatten_field_errors(value, path))
    elif isinstance(detail, list):
        if all(not isinstance(item, (dict, list)) for item in detail):
            out[prefix or "non_field_errors"] = [str(item) for item in detail]
        else:
            for index, item in enumerate(detail):
                if item:
                    out.update(flatten_field_errors(item, f"{prefix}.{index}" if prefix else str(index)))
    else:
        out[prefix or "non_field_errors"] = [str(detail)]
    return out


def _code_of(exc: exceptions.APIException) -> str:
    codes = exc.get_codes()
    if isinstance(codes, str):
        return codes
    return exc.default_code


def exception_handler(exc: Exception, context: dict) -> Response:
    if isinstance(exc, DataError):  # PostgreSQL refused a value (out of range, bad text): bad input
        logger.info("data error answered as 400: %s", exc)
        return Response(
            error_body(code="invalid", message="Invalid input: a value cannot be stored.", fields={}),
            status=status.HTTP_400_BAD_REQUEST,
        )
    if isinstance(exc, RequestDataTooBig):
        return Response(
            error_body(code="too_large", message="Request body is too large."),
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    response = drf_exception_handler(exc, context)
    if response is None:
        view = context.get("view")
        logger.exception("Unhandled error in %s", type(view).__name__ if view else "API view", exc_info=exc)
        return Response(
            error_body(code="server_error", message="Internal server error."),
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    if isinstance(exc, exceptions.ValidationError):
        body = error_body(code="invalid", message="Invalid input.", fields=flatten_field_errors(exc.detail))
    elif isinstance(exc, exceptions.APIException):
        body = error_body(code=_code_of(exc), message=str(exc.detail))
    elif isinstance(exc, Http404):
        body = error_body(code="not_found", message="Not found.")
    elif isinstance(exc, DjangoPermissionDenied):
        body = error_body(code="permission_denied", message="You do not have permission to perform this action.")
    else:  # pragma: no cover - DRF only handles the types above
        body = error_body(code="error", message="Request failed.")
    response.data = body
    return response


# --- Django-level handlers (errors raised outside DRF views, e.g. unknown URLs) --------------


def _is_api(request) -> bool:
    return request.path.startswith(API_PATH_PREFIXES)


def _json_or_default(request, status_code: int, code: str, message: str, default):
    if _is_api(request):
        return JsonResponse(error_body(code=code, message=message), status=status_code)
    return default()


def handler400(request, exception=None):
    from django.views import defaults

    return _json_or_default(
        request, 400, "bad_request", "Bad request.", lambda: defaults.bad_request(request, exception)
    )


def handler403(request, exception=None):
    from django.views import defaults

    return _json_or_default(
        request, 403, "permission_denied", "Forbidden.", lambda: defaults.permission_denied(request, exception)
    )


def handler404(request, exception=None):
    from django.views import defaults

    return _json_or_default(
        request, 404, "not_found", "Not found.", lambda: defaults.page_not_found(request, exception)
    )


def handler500(request):
    from django.views import defaults

    return _json_or_default(
        request, 500, "server_error", "Internal server error.", lambda: defaults.server_error(request)
    )
