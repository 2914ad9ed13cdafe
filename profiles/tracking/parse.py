"""Stage 1, parse: a validated call (``validate.clean_event`` checked its shape) becomes the normalised
identifiers it carries: ids, identifying traits of the person, an alias's previous id.
"""

from __future__ import annotations

from django.conf import settings

from profiles.normalize import normalize_identifier

from .validate import CleanEvent


def event_identifiers(event: CleanEvent) -> list[tuple[str, str]]:
    """Normalised identifiers an event carries: ids, and identifying traits of the person."""
    found: list[tuple[str, str]] = []
    for kind, raw in (("user_id", event.user_id), ("anonymous_id", event.anonymous_id)):
        value = normalize_identifier(kind, raw) if raw else None
        if value:
            found.append((kind, value))
    person_traits = dict(event.context.get("traits") or {}) if isinstance(event.context.get("traits"), dict) else {}
    if event.type == "identify":
        person_traits.update(event.traits)
    for kind in ("email", "phone", *settings.CDP_EXTRA_IDENTIFIER_KINDS):
        raw = person_traits.get(kind)
        value = normalize_identifier(kind, raw) if raw not in (None, "") else None
        if value:
            found.append((kind, value))
    return found


def alias_identifiers(event: CleanEvent) -> list[tuple[str, str]]:
    """alias(previousId → userId): previousId is whichever id kind it already is, else anonymous."""
    previous = normalize_identifier("user_id", event.previous_id)
    if not previous:
        return event.identifiers
    from profiles.models import Identifier

    kind = "user_id" if Identifier.objects.filter(kind="user_id", value=previous).exists() else "anonymous_id"
    return [*event.identifiers, (kind, previous)]


def identifiers_attach(events: list[CleanEvent], indexes: list[int]) -> None:
    """Set ``event.identifiers`` on the events at ``indexes``; an event whose ids were all junk
    (blocklisted) still gets a home of its own."""
    for index in indexes:
        event = events[index]
        event.identifiers = event_identifiers(event)
        if event.type == "alias":
            event.identifiers = alias_identifiers(event)
        if not event.identifiers:
            event.identifiers = [("anonymous_id", f"cdp-unidentified-{event.message_id}")]
