"""Fire-and-forget task queueing that never makes a caller wait on Redis (decision 0003).

``task_send`` publishes a Celery task with no result-backend subscription (``ignore_result``: the
web process never enters the result backend's reconnect loop), no publish retries and a connection
check that fails at once when the broker is unreachable. It answers whether the broker took the
task; callers that must not lose the follow-up keep their durable mark (``PendingWork``) until it
says yes. After a failure every send fails fast for ``QUEUE_BACKOFF_SECONDS`` so that a burst of
requests during an outage costs nothing; the first send after that tries the broker again.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings

logger = logging.getLogger("cdp.queueing")

_state = {"down_until": 0.0}
_quiet_until: dict[str, float] = {}


def broker_marked_down() -> bool:
    return time.monotonic() < _state["down_until"]


def broker_mark_down() -> None:
    """Record that Redis did not answer (e.g. the cache, on the same server): sends fail fast a while."""
    _state["down_until"] = time.monotonic() + settings.CDP_QUEUE_BACKOFF_SECONDS


def broker_mark_up() -> None:
    """Forget a recorded outage (tests, and the sweep that proves the broker answers again)."""
    _state["down_until"] = 0.0


def throttles_forget() -> None:
    """Forget this process's quiet windows of ``task_send_throttled`` (tests, with the cache cleared)."""
    _quiet_until.clear()


def task_send(task, *, args: list | tuple = (), kwargs: dict | None = None, countdown: float | None = None) -> bool:
    """Queue ``task`` if the broker answers at once; True when it took it, False (logged) otherwise."""
    if broker_marked_down():
        return False
    from cdp.celery import app

    try:
        with app.pool.acquire(block=True, timeout=settings.CDP_QUEUE_TIMEOUT_SECONDS) as conn:
            conn.ensure_connection(max_retries=0, timeout=settings.CDP_QUEUE_TIMEOUT_SECONDS)
            task.apply_async(
                args=list(args),
                kwargs=kwargs or {},
                countdown=countdown,
                connection=conn,
                retry=False,
                ignore_result=True,
            )
    except Exception as exc:  # broker down, pool exhausted, timeout: the caller's durable mark stays
        broker_mark_down()
        logger.warning("could not queue %s (%s: %s); it is caught up later", task.name, type(exc).__name__, exc)
        return False
    return True


def task_send_throttled(task, *, key: str, copies: int = 1, what: str, quiet: float = 0.0) -> None:
    """Queue ``task`` at most once now and once a second later per second, across processes.

    The first caller in a second sends ``copies`` tasks now; the next sends one with a one-second
    countdown (its cache key lives exactly until that task is due, so anything later asks again);
    the rest send nothing: the running or delayed task picks their work up. Never fails: with Redis
    gone (the cache is the same server as the broker) it marks the broker down and returns, and the
    caller's durable rows wait for the beat sweep. ``what`` names the work in that warning.

    ``quiet``: after finding both slots taken, this process does not ask Redis again for that many
    seconds (for work whose task keeps looking for more after it finds some, such as the intake's
    lingering drains: a busy web worker otherwise pays two Redis round trips on every call).
    """
    from django.core.cache import cache

    if broker_marked_down():  # failed a moment ago: do not add latency to every call
        return
    if quiet and time.monotonic() < _quiet_until.get(key, 0.0):
        return
    try:
        now = cache.add(f"{key}:now", 1, timeout=1)
        later = not now and cache.add(f"{key}:later", 1, timeout=1)
    except Exception as exc:
        broker_mark_down()
        logger.warning("could not queue %s (%s); the sweep will pick it up", what, type(exc).__name__)
        return
    if now:
        for _ in range(copies):
            task_send(task)
    elif later:
        task_send(task, countdown=1)
    elif quiet:
        _quiet_until[key] = time.monotonic() + quiet
