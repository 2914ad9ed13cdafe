"""Stage 6, follow up: what happens because events were stored.

In the storing transaction: ``on_events_stored`` subscribers hear about the events actually
inserted (they act after commit), and every touched profile gets a ``PendingWork`` mark
(``profiles.pending``). On commit a worker is asked to do the pending work (computed traits, then
the activity hook: segment refresh…); if Redis or the workers are down, the minute sweep does it.
"""

from __future__ import annotations

from django.db import transaction

from cdp.db import uuid_texts
from profiles import hooks
from profiles.pending import pending_mark, pending_schedule


def events_stored(rows: list, inserted: set[str]) -> None:
    """``rows``: (event, profile id) pairs written; ``inserted``: the message ids actually new."""
    if not hooks.on_events_stored.subscribers or not inserted:
        return
    kept = [(e, pid) for e, pid in rows if e.message_id in inserted]
    hooks.on_events_stored.fire(
        events=[
            {
                "profile_id": text,
                "type": e.type,
                "name": e.name,
                "properties": e.properties,
                "context": e.context,
                "occurred_at": e.occurred_at,
                "device_type": e.device_type,
                "local_hour": e.local_hour,
            }
            for (e, _), text in zip(kept, uuid_texts([pid for _, pid in kept]), strict=True)
        ]
    )


def profiles_follow_up(profile_ids) -> None:
    """Mark the profiles' follow-up work now (same transaction) and ask for it on commit."""
    pending_mark(profile_ids)
    transaction.on_commit(pending_schedule)
