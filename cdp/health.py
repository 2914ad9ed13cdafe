"""Liveness (/healthz) and readiness (/readyz) as JSON.

Readiness checks what a web process needs to serve: PostgreSQL, Redis, the Celery broker, and no
pending migrations. Each check reports ok/error with detail and its latency; the overall status
is "ok" (200) only when every check is. The scheduler heartbeat and the intake log's depth and lag
(``info.intake``) are reported but never fail readiness: a web process can serve while beat is
down or the stitch workers catch up.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import redis
from django.conf import settings
from django.core.cache import cache
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor
from django.http import JsonResponse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from .services import HEARTBEAT_CACHE_KEY

CHECK_TIMEOUT_SECONDS = 2.0


def check_database() -> str:
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return "reachable"


def _redis_ping(url: str) -> None:
    client = redis.Redis.from_url(
        url, socket_connect_timeout=CHECK_TIMEOUT_SECONDS, socket_timeout=CHECK_TIMEOUT_SECONDS
    )
    try:
        client.ping()
    finally:
        client.close()


def check_redis() -> str:
    _redis_ping(settings.REDIS_URL)
    return "reachable"


def check_broker() -> str:
    from cdp.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=CHECK_TIMEOUT_SECONDS)
    return "reachable"


def check_migrations() -> str:
    executor = MigrationExecutor(connections[DEFAULT_DB_ALIAS])
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if plan:
        names = ", ".join(f"{m.app_label}.{m.name}" for m, _ in plan[:5])
        raise RuntimeError(f"{len(plan)} pending migration(s): {names}")
    return "none pending"


READINESS_CHECKS: dict[str, Callable[[], str]] = {
    "database": check_database,
    "redis": check_redis,
    "broker": check_broker,
    "migrations": check_migrations,
}


def run_check(check: Callable[[], str]) -> dict:
    started = time.perf_counter()
    try:
        detail = check()
        result = {"status": "ok", "detail": detail}
    except Exception as exc:  # a failed dependency is a result here, not an error
        result = {"status": "error", "detail": f"{type(exc).__name__}: {exc}"}
    result["ms"] = round((time.perf_counter() - started) * 1000, 1)
    return result


def intake_info() -> dict:
    """The tracking API's intake log: calls waiting to be stitched, the oldest's age, calls set aside.
    Reported, never failing readiness: a web process accepts calls while the workers catch up."""
    from profiles.selectors import intake_state

    try:
        state = intake_state()
    except Exception as exc:
        return {"status": "unknown", "detail": f"{type(exc).__name__}: {exc}"}
    lagging = state["lag_seconds"] > settings.CDP_INTAKE_LAG_WARN_SECONDS
    return {
        "status": "lagging" if lagging else "ok",
        "detail": (
            f"{state['depth']} calls waiting, oldest {state['lag_seconds']:.1f} s, {state['set_aside']} set aside"
        ),
        **state,
    }


def scheduler_info() -> dict:
    try:
        last = cache.get(HEARTBEAT_CACHE_KEY)
    except Exception as exc:
        return {"status": "unknown", "detail": f"{type(exc).__name__}: {exc}"}
    if not last:
        return {"status": "unknown", "detail": "no heartbeat yet (celery beat + worker)"}
    age = (timezone.now() - parse_datetime(last)).total_seconds()
    return {"status": "ok" if age < 180 else "stale", "detail": f"last heartbeat {int(age)} s ago"}


@never_cache
@require_GET
def healthz(request):
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def readyz(request):
    checks = {name: run_check(check) for name, check in READINESS_CHECKS.items()}
    overall = "ok" if all(c["status"] == "ok" for c in checks.values()) else "error"
    body = {"status": overall, "checks": checks, "info": {"scheduler": scheduler_info(), "intake": intake_info()}}
    return JsonResponse(body, status=200 if overall == "ok" else 503)
