"""The pending-work queue: profiles whose follow-up work (computed traits, then the activity hook's
subscribers such as segment refresh) is still to do.

- ``pending_mark``: in the writing transaction (ingestion, merges, erasure), one upsert per batch
  of profiles; the mark commits with the change, so follow-up work is never lost.
- ``pending_schedule``: on commit, asks a worker to run ``pending_process`` soon (throttled,
  fire-and-forget: with Redis down the beat sweep picks the rows up later).
- ``pending_process``: the worker's side, in lock order (profiles/locks.py).
"""

from __future__ import annotations

import logging

from django.db import connection, transaction

from cdp.db import binary_cursor
from profiles.locks import sorted_uuids

logger = logging.getLogger("cdp.profiles")

PENDING_SCHEDULE_KEY = "cdp:pending:scheduled"
PENDING_CHUNK = 500


def pending_mark(profile_ids) -> None:
    ids = sorted_uuids(profile_ids)  # upserted in the one lock order
    if not ids:
        return
    with binary_cursor() as cursor:
        cursor.execute(
            "INSERT INTO profiles_pendingwork (profile_id, queued_at) SELECT unnest(%b::uuid[]), now() "
            "ON CONFLICT (profile_id) DO UPDATE SET queued_at = EXCLUDED.queued_at",
            [ids],
        )


def pending_schedule() -> None:
    """Ask a worker to process pending follow-up work soon; never fails or slows ingestion.

    At most one task now and one a second later per second across web processes: work that arrives
    while a task is already running is picked up by the delayed one (within about a second), not
    left for the minute sweep. Queueing is fire-and-forget (``cdp.queueing.task_send``): with Redis
    gone it fails within its short timeout, then at once for a few seconds, and the PendingWork
    rows this transaction committed wait for the next task or the beat sweep.
    """
    from cdp.queueing import task_send_throttled
    from profiles.tasks import pending_process as pending_process_task

    task_send_throttled(pending_process_task, key=PENDING_SCHEDULE_KEY, what="follow-up work")


def pending_process(*, max_rounds: int = 1000) -> int:
    """Follow-up work of ingestion and merges: refresh the computed traits of pending profiles, then
    hand them to the activity hook's subscribers (segments…). Idempotent; returns profiles done.

    Lock order (profiles/locks.py): the oldest pending rows are read without a lock, then their
    profiles are locked (SKIP LOCKED: one being ingested right now is left for the next round), then
    their PendingWork rows. No PendingWork row is ever held while waiting for a profile, so this
    never deadlocks against ingestion, which takes profiles before PendingWork.

    Durable: a PendingWork row is deleted only after the subscribers took the work (their tasks are
    queued); if the broker is down the rows stay and the next run (beat's minute sweep, or the task
    ingestion queues once Redis is back) does it again. A row re-queued meanwhile (newer
    ``queued_at``) is kept for a later round.
    """
    from profiles import hooks
    from profiles.locks import lock_pending, lock_profile_ids
    from profiles.models import PendingWork
    from profiles.traits import traits_refresh

    done = 0
    for _ in range(max_rounds):
        candidates = list(
            PendingWork.objects.order_by("queued_at").values_list("profile_id", flat=True)[:PENDING_CHUNK]
        )
        if not candidates:
            return done
        with transaction.atomic():
            rows = lock_pending(lock_profile_ids(candidates, skip_locked=True), skip_locked=True)
            if rows:
                traits_refresh(profile_ids=[pid for pid, _ in rows])
        if not rows:  # every candidate is busy (being ingested or processed elsewhere): try later
            return done
        ids = [str(pid) for pid, _ in rows]
        if not hooks.on_profile_activity.deliver(profile_ids=ids):
            logger.warning("pending_process: follow-up of %d profiles not handed on; kept for the sweep", len(ids))
            return done
        # No profile lock is held here. A row another transaction holds is skipped, not waited for:
        # an ingestion or merge marks a batch's rows in several upserts (each merge's pair, then the
        # whole batch), so across its statements it does not take them in id order, and waiting here
        # could close a cycle. The row it holds gets a newer ``queued_at`` (kept for a later round
        # anyway); if that transaction rolls back, the row is done again (the work is idempotent).
        with transaction.atomic(), connection.cursor() as cursor:
            locked = {str(pid) for pid, _ in lock_pending(ids, skip_locked=True)}
            finished = [(pid, q) for pid, q in rows if str(pid) in locked]
            cursor.execute(
                "DELETE FROM profiles_pendingwork p USING unnest(%s::uuid[], %s::timestamptz[]) AS d(id, q) "
                "WHERE p.profile_id = d.id AND p.queued_at = d.q",
                [[pid for pid, _ in finished], [q for _, q in finished]],
            )
        done += len(ids)
    return done
