"""API key authentication for both kinds of key.

- A source's **write key** (``wk_…``) sends events. Segment's libraries send it as the HTTP Basic
  username with an empty password; ``Authorization: Bearer wk_…`` works too.
- A **secret key** (``sk_…``) reads and administers, as ``Authorization: Bearer sk_…`` (or Basic).

Authentication only says who is calling; the permission classes in ``cdp.api.permissions`` decide
what each kind may do (a write key can never read).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from rest_framework import authentication, exceptions

from cdp.keys import SECRET_KEY_PREFIX, WRITE_KEY_PREFIX
from cdp.selectors import api_key_by_raw
from profiles.selectors import source_by_write_key


@dataclass(frozen=True)
class ApiPrincipal:
    """``request.user`` for key-authenticated calls; ``request.auth`` holds the Source or ApiKey."""

    kind: str  # "write_key" | "secret_key"
    name: str
    is_authenticated: bool = True
    is_active: bool = True
    is_staff: bool = False
    is_superuser: bool = False
    is_anonymous: bool = False

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"


def raw_key_from_header(header: str) -> str | None:
    scheme, _, credentials = header.partition(" ")
    scheme = scheme.lower()
    credentials = credentials.strip()
    if scheme == "bearer":
        return credentials or None
    if scheme == "basic":
        try:
            decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise exceptions.AuthenticationFailed("Malformed Basic credentials.") from exc
        username, _, _password = decoded.partition(":")
        return username.strip() or None
    return None


class ApiKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        raw = raw_key_from_header(header)
        if raw is None:
            return None
        if raw.startswith(WRITE_KEY_PREFIX):
            source = source_by_write_key(raw_key=raw)
            if source is None:
                raise exceptions.AuthenticationFailed("Unknown or disabled write key.")
            return ApiPrincipal(kind="write_key", name=source.name), source
        if raw.startswith(SECRET_KEY_PREFIX):
            key = api_key_by_raw(raw_key=raw)
            if key is None:
                raise exceptions.AuthenticationFailed("Unknown or revoked secret key.")
            return ApiPrincipal(kind="secret_key", name=key.name), key
        raise exceptions.AuthenticationFailed("Not a cdp API key (expected wk_… or sk_…).")

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="cdp"'
