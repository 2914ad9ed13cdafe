from __future__ import annotations

from rest_framework import permissions

from cdp.models import ApiKey
from profiles.models import Source
from profiles.storefront import origin_of_request, source_allows_origin


class IsSecretKeyOrStaff(permissions.BasePermission):
    """Read and admin APIs: a secret key, or a staff user signed in to admin (for the API docs)."""

    message = "This endpoint needs a secret key (sk_…); a write key can only send events."

    def has_permission(self, request, view) -> bool:
        if isinstance(request.auth, ApiKey):
            return True
        user = request.user
        return bool(user and getattr(user, "is_staff", False) and request.auth is None)


class IsWriteKey(permissions.BasePermission):
    """Tracking endpoints: a source's write key."""

    message = "This endpoint needs a source's write key (wk_…)."

    def has_permission(self, request, view) -> bool:
        return isinstance(request.auth, Source)


class OriginAllowed(permissions.BasePermission):
    """Write-key endpoints that browsers call: a request sent by a page (it has an ``Origin``)
    must come from an origin its source lists (docs/decisions/0032-storefront-trust-model.md).
    Server-side calls send no Origin and pass."""

    code = "origin_not_allowed"

    def has_permission(self, request, view) -> bool:
        if not isinstance(request.auth, Source):
            return True
        origin = origin_of_request(request)
        if source_allows_origin(source=request.auth, origin=origin):
            return True
        self.message = (
            f"Origin {origin} is not allowed to use the write key of source {request.auth.name!r}; "
            "add it to the source's allowed origins (admin, or manage.py create_source --origin)."
        )
        return False
