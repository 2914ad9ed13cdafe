"""Refuse hostile URLs on the API before any view runs: NUL or unpaired surrogates in the path or
the query string would reach PostgreSQL (which cannot hold them) as a lookup value."""

from __future__ import annotations

import re

from django.http import JsonResponse

from cdp.api.errors import API_PATH_PREFIXES, error_body

_BAD_CHARS = re.compile("[\x00\ud800-\udfff]")


class HostileUrlMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith(API_PATH_PREFIXES):
            fields = self._hostile_fields(request)
            if fields:
                return JsonResponse(error_body(code="invalid", message="Invalid input.", fields=fields), status=400)
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
