"""The export download: ``GET /privacy/exports/<signed token>/`` — the signed, expiring token is the
authentication (it names one archive, expires after PRIVACY_EXPORT_LINK_HOURS, and stops working
once the archive is deleted or expires)."""

from __future__ import annotations

from django.http import HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from ..requests import export_archive_by_token, export_archive_downloaded


@never_cache
@require_GET
def export_download(request, token: str):
    archive = export_archive_by_token(token=token)
    if archive is None:
        return JsonResponse(
            {"error": {"code": "not_found", "message": "This link is invalid or has expired.", "fields": {}}},
            status=404,
        )
    body = export_archive_downloaded(archive=archive, actor="download link")
    response = HttpResponse(body, content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="privacy-export-{str(archive.request_id)[:8]}.json"'
    response["X-Robots-Tag"] = "noindex"
    response["Referrer-Policy"] = "no-referrer"
    return response
