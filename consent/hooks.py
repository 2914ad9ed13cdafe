"""consent's own hook registry, for the apps above it (segments, recommendations).

    from consent import hooks
    hooks.on_consent_changed.subscribe(handler)  # handler(*, profile_ids: list[str], purposes: list[str])

Fired after the transaction that recorded the answers commits (see profiles.hooks.Hook).
"""

from __future__ import annotations

from profiles.hooks import Hook

on_consent_changed = Hook(
    "on_consent_changed",
    "Answers were recorded for these live profiles. kwargs: profile_ids (list[str]), purposes (list[str]).",
)
