"""Search by any identifier: the (kind, value) pairs a term may mean, or a profile id (prefix)."""

from __future__ import annotations

import re
import uuid

from django.conf import settings
from django.db.models import Q

from ..models import Identifier, Profile, profile_name_text
from ..normalize import identifier_kinds, normalize_identifier

_HEX_PREFIX = re.compile(r"[0-9a-f]{4,32}")


def search_kinds() -> list[str]:
    return list(dict.fromkeys([*identifier_kinds(), *settings.CDP_EXTRA_IDENTIFIER_KINDS]))


def identifier_candidates(term: str) -> set[tuple[str, str]]:
    """(kind, normalised value) pairs a search term may mean; ``kind:value`` narrows to one kind."""
    term = term.strip()
    kinds = search_kinds()
    pairs = set()
    head, sep, rest = term.partition(":")
    if sep and head.strip().lower() in kinds and rest.strip():
        kind = head.strip().lower()
        value = normalize_identifier(kind, rest.strip())
        if value:
            pairs.add((kind, value))
    for kind in kinds:
        value = normalize_identifier(kind, term)
        if value:
            pairs.add((kind, value))
    return pairs


def profile_id_q(term: str) -> Q | None:
    """A full profile id, or a hex prefix of one (as in the list's short id) as a primary-key range."""
    compact = term.strip().lower().replace("-", "")
    if not _HEX_PREFIX.fullmatch(compact):
        return None
    if len(compact) == 32:
        return Q(pk=uuid.UUID(compact))
    return Q(pk__gte=uuid.UUID(compact.ljust(32, "0")), pk__lte=uuid.UUID(compact.ljust(32, "f")))


NAME_MIN_LENGTH = 3  # trigrams: shorter terms cannot use the index


def name_term(term: str) -> str | None:
    """The lower-cased, space-normalised term to look for in names, or None when it cannot be a name."""
    words = term.strip().lower().split()
    text = " ".join(words)
    if len(text) < NAME_MIN_LENGTH or "@" in text or not any(ch.isalpha() for ch in text):
        return None
    return text


def profile_name_q(term: str) -> Q | None:
    """Profiles whose name contains the term (any case), answered by the trigram index ``profile_name_trgm``."""
    text = name_term(term)
    if text is None:
        return None
    ids = Profile.objects.annotate(name_text=profile_name_text()).filter(name_text__contains=text).values("pk")
    return Q(pk__in=ids)


def profile_search_q(term: str, prefix: str = "") -> Q:
    """Profiles a term finds: exact (kind, value) identifier matches (unique index), an id (primary key)
    or a part of the name (trigram index)."""
    q = Q(pk__in=[])
    pairs = identifier_candidates(term)
    if pairs:
        match = Q()
        for kind, value in pairs:
            match |= Q(kind=kind, value=value)
        q |= Q(pk__in=Identifier.objects.filter(match).values("profile_id"))
    id_q = profile_id_q(term)
    if id_q is not None:
        q |= id_q
    name_q = profile_name_q(term)
    if name_q is not None:
        q |= name_q
    if not prefix:
        return q
    ids = Profile.objects.filter(q).values("pk")
    return Q(**{f"{prefix}__in": ids})
