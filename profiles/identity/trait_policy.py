"""The trait merge policy: how observed traits are applied and how two profiles' traits combine.

Policy (docs/identity.md): for each trait the value updated most recently wins (ties: the winner's);
the earliest first-seen time of either side is kept. ``contradictions`` tells which identifying
traits two sides disagree on (the merge guards and resolution read it).
"""

from __future__ import annotations

import copy
from datetime import datetime

from django.conf import settings

from profiles.models import Profile


def trait_value(traits: dict, key: str):
    """A trait by its snake_case name, also accepting Segment's camelCase spelling."""
    if key in traits:
        return traits[key]
    head, *rest = key.split("_")
    camel = head + "".join(part.title() for part in rest)
    if camel in traits:
        return traits[camel]
    if key == "first_name" and isinstance(traits.get("name"), str) and traits["name"].strip():
        return traits["name"].split()[0]
    if key == "birthday":
        return traits.get("birth_date") or traits.get("birthDate")
    return None


def _comparable(value) -> str:
    return str(value).strip().casefold() if value not in (None, "") else ""


def contradictions(a: dict, b: dict) -> list[str]:
    """Traits on which two profiles (or an event and a profile) disagree, both having a value."""
    found = []
    for key in settings.CDP_CONTRADICTION_TRAITS:
        va, vb = _comparable(trait_value(a, key)), _comparable(trait_value(b, key))
        if va and vb and va != vb:
            found.append(key)
    return found


def traits_apply(profile: Profile, traits: dict, at: datetime) -> bool:
    """Apply incoming traits observed at ``at``; an older observation never overwrites a newer one."""
    changed = False
    stamp = at.isoformat()
    for key, value in traits.items():
        meta = profile.trait_meta.get(key)
        if meta is None:
            profile.traits[key] = value
            profile.trait_meta[key] = {"first": stamp, "at": stamp}
            changed = True
            continue
        if stamp < meta["first"]:
            meta["first"] = stamp
            changed = True
        if stamp >= meta["at"] and profile.traits.get(key) != value:
            profile.traits[key] = value
            meta["at"] = stamp
            changed = True
    return changed


def traits_merge(winner: Profile, loser: Profile) -> None:
    for key, value in loser.traits.items():
        lmeta = loser.trait_meta.get(key) or {"first": "", "at": ""}
        wmeta = winner.trait_meta.get(key)
        if wmeta is None or key not in winner.traits:
            winner.traits[key] = value
            winner.trait_meta[key] = dict(lmeta)
            continue
        if lmeta["at"] > wmeta["at"]:
            winner.traits[key] = value
            wmeta["at"] = lmeta["at"]
        if lmeta["first"] and lmeta["first"] < wmeta["first"]:
            wmeta["first"] = lmeta["first"]


def profile_snapshot(profile: Profile) -> dict:
    """What a merge records of a profile to undo it: a copy (not references: the merge then changes
    the winner's dicts in place)."""
    return {
        "traits": copy.deepcopy(profile.traits),
        "trait_meta": copy.deepcopy(profile.trait_meta),
        "computed": copy.deepcopy(profile.computed),
        "first_seen_at": profile.first_seen_at.isoformat(),
        "last_seen_at": profile.last_seen_at.isoformat(),
    }
