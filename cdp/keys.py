"""API key material: generation and hashing, shared by write keys (profiles.Source) and secret keys.

Keys are 32 random bytes, so a fast SHA-256 is a safe stored form (no dictionary to attack) and
lets us find a key by its hash with one indexed lookup per request.
"""

from __future__ import annotations

import hashlib
import secrets

WRITE_KEY_PREFIX = "wk_"
SECRET_KEY_PREFIX = "sk_"  # noqa: S105 - a prefix, not a secret


def key_generate(*, prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def key_hash(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def key_display_prefix(raw_key: str) -> str:
    """What admin shows to tell keys apart: the kind and the first characters."""
    return raw_key[:10]
