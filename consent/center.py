"""The privacy center's e-mail verification: one-time, expiring links (only hashes are stored).

A link is sent whether or not the address is known, so neither the page nor the mailbox tells an
attacker anything the address's owner would not see anyway (enumeration). Sending is limited per
address and per client address; the answer on screen stays the same when the limit is hit.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
from datetime import timedelta

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.cache import cache
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone

from profiles.normalize import normalize_identifier

from .models import PrivacyCenterToken
from .services import salted_hash

logger = logging.getLogger("cdp.privacy")

SEND_LIMIT_PER_HOUR = 5


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _fernet(token: str) -> Fernet:
    """A Fernet key (AES-128-CBC + HMAC-SHA256, from the ``cryptography`` library) derived from the
    link's token with HKDF: whoever holds the link can read the address, the database alone cannot."""
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"cdp-privacy-center-seal/1").derive(
        token.encode()
    )
    return Fernet(base64.urlsafe_b64encode(key))


def _seal(token: str, email: str) -> str:
    """The address encrypted and authenticated with a key derived from the link's token (the link may
    be opened in another browser than the one that asked)."""
    return _fernet(token).encrypt(email.encode()).decode()


def _unseal(token: str, sealed: str) -> str | None:
    """The sealed address, or None when the seal was not made with this token or was altered."""
    try:
        return _fernet(token).decrypt(sealed.encode()).decode()
    except (InvalidToken, ValueError):
        return None


def center_email_normalise(*, email: str) -> str | None:
    return normalize_identifier("email", email or "")


def _limited(key: str) -> bool:
    try:
        cache.add(key, 0, timeout=3600)
        return cache.incr(key) > SEND_LIMIT_PER_HOUR
    except Exception:  # cache down: do not block people from their rights
        return False


def center_link_send(*, email: str, client_ip: str, build_url) -> bool:
    """Send a one-time link to ``email`` (known or not). Returns whether a mail went out (callers
    must not show this to the visitor)."""
    normalised = center_email_normalise(email=email)
    if not normalised:
        return False
    email_hash = salted_hash(f"email:{normalised}")
    if _limited(f"privacy-center:send:{email_hash}") or _limited(f"privacy-center:ip:{salted_hash(client_ip)}"):
        logger.info("privacy center: send limit reached")
        return False
    token = secrets.token_urlsafe(32)
    PrivacyCenterToken.objects.create(
        token_hash=_token_hash(token),
        email_hash=email_hash,
        email_sealed=_seal(token, normalised),
        expires_at=timezone.now() + timedelta(minutes=settings.PRIVACY_CENTER_LINK_MINUTES),
    )
    context = {
        "shop_name": settings.PRIVACY_CENTER_SHOP_NAME,
        "url": build_url(token),
        "minutes": settings.PRIVACY_CENTER_LINK_MINUTES,
    }
    send_mail(
        subject=f"{settings.PRIVACY_CENTER_SHOP_NAME}: your privacy center link",
        message=render_to_string("consent/center/email.txt", context),
        from_email=settings.PRIVACY_CENTER_FROM_EMAIL,
        recipient_list=[email.strip()],
    )
    return True


def center_token_valid(*, token: str) -> PrivacyCenterToken | None:
    return PrivacyCenterToken.objects.filter(
        token_hash=_token_hash(token), used_at__isnull=True, expires_at__gt=timezone.now()
    ).first()


@transaction.atomic
def center_token_use(*, token: str, session_key: str = "") -> str | None:
    """Consume a link (once): the verified, normalised address, or None (unknown, used, expired).
    ``session_key`` is the session it opens, remembered so that an erasure can end it."""
    row = (
        PrivacyCenterToken.objects.select_for_update()
        .filter(token_hash=_token_hash(token), used_at__isnull=True, expires_at__gt=timezone.now())
        .first()
    )
    if row is None:
        return None
    email = _unseal(token, row.email_sealed)
    if email is None or row.email_hash != salted_hash(f"email:{email}"):
        return None
    row.used_at = timezone.now()
    row.email_sealed = ""  # nothing left to read once used
    row.session_key = session_key or ""
    row.save(update_fields=["used_at", "email_sealed", "session_key"])
    return email
