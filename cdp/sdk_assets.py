"""Analytics.js 2.0 at the paths its snippet and its chunk loader expect, from the pinned package.

Segment's copy-paste snippet loads ``{cdn}/analytics.js/v1/{writeKey}/analytics.min.js`` and that
script loads its lazy chunks from ``{cdn}/analytics-next/bundles/``. A shop that sets ``_cdn`` in the
snippet to cdp's address (the one change) gets them from here: the same files as
/static/storefront/vendor/analytics-next/, from node_modules (development) or STATIC_ROOT.
"""

from __future__ import annotations

import re
from pathlib import Path

from django.conf import settings
from django.contrib.staticfiles import finders
from django.http import FileResponse, Http404

_BUNDLE_NAME = re.compile(r"^[A-Za-z0-9_.-]+\.js$")


def _vendor_file(name: str) -> Path:
    relative = f"storefront/vendor/analytics-next/{name}"
    found = finders.find(relative)
    path = Path(found) if found else Path(settings.STATIC_ROOT) / relative
    if not path.is_file():
        raise Http404("Analytics.js is not installed here (run `npm ci`, then collectstatic).")
    return path


def _serve(path: Path) -> FileResponse:
    response = FileResponse(path.open("rb"), content_type="application/javascript; charset=utf-8")
    response["Cache-Control"] = "public, max-age=3600"
    return response


def analytics_js_snippet_bundle(request, write_key: str):
    return _serve(_vendor_file("standalone.js"))


def analytics_js_chunk(request, name: str):
    if not _BUNDLE_NAME.match(name) or name.startswith("."):
        raise Http404("No such bundle.")
    return _serve(_vendor_file(name))
