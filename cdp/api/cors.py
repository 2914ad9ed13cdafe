"""CORS for the storefront endpoints, per source, with django-cors-headers.

django-cors-headers answers every preflight (``OPTIONS`` + ``Access-Control-Request-Method``) on
``CORS_URLS_REGEX`` itself, before authentication, with 200: a preflight never carries the write
key, so it can never get a 401. Whether an origin gets ``Access-Control-Allow-Origin`` is asked of
this ``check_request_enabled`` handler: yes when some active source lists the origin (or allows
any). The request that follows is then checked against *its own* source by
``cdp.api.permissions.OriginAllowed``: a page on an origin its source does not list gets a 403 in
the one error shape and nothing is stored. The secret-key API (/api/) is outside the regex: no CORS.
"""

from __future__ import annotations

import re

from corsheaders.signals import check_request_enabled
from django.conf import settings

from profiles.storefront import origin_allowed_anywhere, origin_of_request


def origin_enabled_by_a_source(sender, request, **kwargs) -> bool:
    # django-cors-headers also asks this handler whether CORS is on for a path at all: only the
    # storefront paths, never the secret-key API.
    if not re.match(settings.CORS_URLS_REGEX, request.path_info):
        return False
    return origin_allowed_anywhere(origin_of_request(request))


def connect() -> None:
    check_request_enabled.connect(origin_enabled_by_a_source, dispatch_uid="cdp-cors-per-source")
