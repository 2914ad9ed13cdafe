from __future__ import annotations

from rest_framework import permissions

from cdp.models import ApiKey
from profiles.models import Source


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
