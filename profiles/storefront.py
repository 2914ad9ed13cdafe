"""What a source allows a browser to do: its allowed origins and its signed user tokens.

A write key is publishable: it sits in every shop page. What makes browser calls safe is
(1) the origin check: a browser says which page sent a request (the ``Origin`` header, which page
script cannot forge), and a source accepts browser calls only from the origins it lists; and
(2) user tokens: a page may ask for a *user id's* recommendations only with a token the shop's
backend signed with the source's secret (docs/decisions/0032-storefront-trust-model.md).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from urllib.parse import urlsplit

from cdp.api.keycache import cached_lookup

ANY_ORIGIN = "*"
USER_TOKEN_MAX_SECONDS = 7 * 24 * 3600  # a token may live at most a week
_DEFAULT_PORTS = {"http": 80, "https": 443}


class InvalidOrigin(ValueError):
    pass


def origin_normalize(value: str) -> str:
    """``https://Shop.Example.com:443/`` -> ``https://shop.example.com``; ``*`` stays ``*``.

    An origin is scheme, host and port, nothing else: a path, query or credentials are refused, so
    that a typo does not silently allow less (or more) than meant."""
    text = (value or "").strip()
    if text == ANY_ORIGIN:
        return ANY_ORIGIN
    parts = urlsplit(text)
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise InvalidOrigin(f"{text!r} is not an origin: give scheme://host[:port], e.g. https://shop.example.com")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or parts.password:
        raise InvalidOrigin(f"{text!r} is not an origin: no path, query or credentials (scheme://host[:port]).")
    try:
        port = parts.port
    except ValueError as exc:
        raise InvalidOrigin(f"{text!r} has an invalid port.") from exc
    host = parts.hostname.lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    if port is None or port == _DEFAULT_PORTS[parts.scheme]:
        return f"{parts.scheme}://{host}"
    return f"{parts.scheme}://{host}:{port}"


def origins_normalize(values) -> list[str]:
    out: list[str] = []
    for value in values or []:
        origin = origin_normalize(value)
        if origin not in out:
            out.append(origin)
    return out


def origin_of_request(request) -> str | None:
    """The browser's ``Origin`` header, normalised; None for server-side calls (no header).

    ``Origin: null`` (sandboxed frames, file:// pages) is returned as "null": no source lists it,
    so such pages are refused unless the source allows any origin."""
    raw = request.META.get("HTTP_ORIGIN")
    if raw is None:
        return None
    if raw.strip() == "null":
        return "null"
    try:
        return origin_normalize(raw)
    except InvalidOrigin:
        return "null"


def source_allows_origin(*, source, origin: str | None) -> bool:
    """Server-side calls (no Origin) always pass; a browser's origin must be listed (or ``*``)."""
    if origin is None:
        return True
    allowed = source.allowed_origins or []
    return ANY_ORIGIN in allowed or origin in allowed


def origins_allowed_anywhere() -> tuple[bool, frozenset[str]]:
    """(some active source allows any origin, the union of listed origins), cached like keys are.

    The CORS preflight carries no key, so it can only ask "may any source be used from here?";
    the request itself is then checked against its own source (``source_allows_origin``)."""

    def load():
        from .models import Source

        rows = Source.objects.filter(is_active=True).values_list("allowed_origins", flat=True)
        union: set[str] = set()
        for origins in rows:
            union.update(origins or [])
        return (ANY_ORIGIN in union, frozenset(union - {ANY_ORIGIN}))

    return cached_lookup("origins", "all", load)


def origin_allowed_anywhere(origin: str | None) -> bool:
    if origin is None:
        return False
    any_origin, listed = origins_allowed_anywhere()
    return any_origin or origin in listed


# --- user tokens -------------------------------------------------------------------------------


def user_token_secret_generate() -> str:
    return "uts_" + secrets.token_urlsafe(32)


def user_token_make(*, secret: str, user_id: str, expires_at: int) -> str:
    """What the shop's backend computes (docs/storefront.md shows it in five lines of Python):
    ``"{expires_at}.{hex HMAC-SHA256(secret, "{user_id}.{expires_at}")}"``."""
    digest = hmac.new(secret.encode(), f"{user_id}.{expires_at}".encode(), hashlib.sha256).hexdigest()
    return f"{expires_at}.{digest}"


def user_token_check(*, source, user_id: str, token: str, now: float | None = None) -> str | None:
    """None when the token is good for this user id on this source, else why not (for the 403)."""
    if not source.user_token_secret:
        return "This source has no user-token secret yet; create one (manage.py create_source --user-token-secret)."
    expires_text, _, digest = (token or "").partition(".")
    if not expires_text.isdigit() or not digest:
        return "The user token is malformed (expected '<expires>.<hmac>')."
    expires_at = int(expires_text)
    now = time.time() if now is None else now
    if expires_at <= now:
        return "The user token has expired."
    if expires_at > now + USER_TOKEN_MAX_SECONDS:
        return "The user token's expiry is too far ahead (at most 7 days)."
    expected = user_token_make(secret=source.user_token_secret, user_id=user_id, expires_at=expires_at)
    if not hmac.compare_digest(expected, f"{expires_text}.{digest}"):
        return "The user token does not match this user id."
    return None


def anonymous_id_is_signed_in(*, anonymous_id: str) -> bool:
    """Does this anonymous id belong to a person who also has a user id (has logged in)?

    Such a person's recommendations are not served to the anonymous id alone: a browser left
    signed out on a shared computer keeps the anonymous id, and the next visitor must not see the
    last one's tastes. The page then asks with the user id and a user token."""
    from .selectors import profile_find_by_identifier

    profile = profile_find_by_identifier(kind="anonymous_id", value=anonymous_id)
    if profile is None:
        return False
    return any(identifier.kind == "user_id" for identifier in profile.identifiers.all())


class UserTokenRefused(Exception):
    """A user id came without a valid user token; ``str(exc)`` says why (for the 403)."""


def visitor_identity(
    *, source, user_id: str | None, anonymous_id: str | None, token: str
) -> tuple[str | None, str | None]:
    """Who a shop page may ask about: (user id, anonymous id), at most one of them set.

    A user id needs a valid user token signed by the shop's backend (``UserTokenRefused`` otherwise);
    an anonymous id that belongs to someone who has logged in is not enough on its own
    (``anonymous_id_is_signed_in``), so the page gets the visitor's non-personal view."""
    user_id, anonymous_id = user_id or None, anonymous_id or None
    if user_id:
        why = user_token_check(source=source, user_id=user_id, token=token)
        if why:
            raise UserTokenRefused(f"A user id needs a valid user token from the shop's backend: {why}")
        return user_id, None
    if anonymous_id and anonymous_id_is_signed_in(anonymous_id=anonymous_id):
        return None, None
    return None, anonymous_id
