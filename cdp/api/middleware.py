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
        if request.path.startswith(API_PATH_PREFIXES) and self._hostile(request):
            return JsonResponse(
                error_body(
                    code="invalid",
                    message="The URL may not contain NUL (%00) or unpaired surrogates.",
                    fields={"url": ["NUL and unpaired surrogates are not allowed in the path or query string."]},
                ),
                status=400,
            )
        return self.get_response(request)

    @staticmethod
    def _hostile(request) -> bool:
        if _BAD_CHARS.search(request.path):
            return True
        return any(_BAD_CHARS.search(k) or any(_BAD_CHARS.search(v) for v in vs) for k, vs in request.GET.lists())
