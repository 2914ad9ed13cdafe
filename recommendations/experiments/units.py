"""Per-unit metrics of experiments kept up incrementally, and the per-variant rollups results read.

A results call must not scan the attribution windows of millions of units again. So every unit
(the live profile) of an experiment has an ``ExperimentUnit`` row (first exposure, variant, several
variants seen, consent, and its metric columns in the window), and every (experiment, variant,
multi-variant flag) an ``ExperimentRollup`` row with the consenting units' count and the sums,
squares and cross products the statistics need. Both move together in one statement.

The write is a **recompute per unit, never an increment**: whatever changed for a set of units (an
exposure recorded from the served log, events stored, a consent answer, a merge, an erasure), the
units' rows are computed again from the exposures, the served log and the events, and the rollups
move by (new rows - old rows). A retried, replayed or duplicated batch recomputes the same values,
so nothing counts twice, and the order in which batches arrive does not matter.

Who calls it:

- ``exposures_refresh`` (services; every minute for running experiments, and at each results call):
  first exposures from the served log since the last refresh, then the units those answers touched;
- ``on_events_stored`` (a profiles hook, after commit): the profiles of a batch's clicks and orders
  go to a Redis set in one pipelined round trip; ``units_drain`` (a Celery task, queued at most
  every few seconds, and at each results call) recomputes them;
- consent changes (the same Redis set), merges (``experiments_on_profiles_merged``, at once) and
  erasure (the privacy registry, in the erasure's transaction);
- ``units_rebuild``: everything of one experiment again, in chunks (command
  ``experiments_units_rebuild``; after a bulk import, which fires no hook; when an experiment stops,
  for events that arrived late). ``variant_sums_reference`` is the same arithmetic straight from the
  events with nothing stored: the reference the incremental rows are tested against.

Locking: writers take a transaction advisory lock per experiment (sorted) before reading the old
rows, so two recomputes of one experiment take turns and the rollup delta is exact. A holder of
these locks never waits for a profile lock (the unit rows carry no foreign-key constraint to
profiles), so erasure may take them while it holds its profile locks.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.db import connection, transaction

logger = logging.getLogger("cdp.experiments")

# per unit: e answers served, c clicks on them, o orders, r revenue, v converted (0/1), po / pr orders
# and revenue in the pre-exposure window (CUPED covariates)
COLUMNS = ("e", "c", "o", "r", "v", "po", "pr")
PAIRS = (("c", "e"), ("r", "o"), ("o", "po"), ("r", "pr"))
# the rollup's ``sums`` array, in this order
SUM_KEYS = [*COLUMNS, *(c + c for c in COLUMNS), *(a + b for a, b in PAIRS)]
SUM_EXPRESSIONS = [*COLUMNS, *(f"{c}*{c}" for c in COLUMNS), *(f"{a}*{b}" for a, b in PAIRS)]

CLICK_EVENT = "Product Clicked"
ORDER_EVENT = "Order Completed"
RELEVANT_EVENTS = frozenset({CLICK_EVENT, ORDER_EVENT})

REVENUE_SQL = (
    "coalesce(nullif(ev.properties ->> 'revenue', ''), nullif(ev.properties ->> 'total', ''), "
    "nullif(ev.properties ->> 'value', ''), '0')"
)
# a revenue that is not a number counts 0 (one bad event must not break an experiment's results)
_NUMBER = r"'^\s*-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?\s*$'"
REVENUE_NUMERIC = f"(CASE WHEN {REVENUE_SQL} ~ {_NUMBER} THEN ({REVENUE_SQL})::numeric ELSE 0 END)"

CHUNK = 5_000  # units per recompute statement

# Per unit of the experiments named, from the exposures, the served log and events. {unit_filter}
# restricts the units (a list of profile ids) or is empty (every unit).
_PER_UNIT_SQL = """
WITH unit AS (
    SELECT x.experiment_id, x.profile_id, min(x.first_exposed_at) AS first_at,
           count(DISTINCT x.variant_id) AS nv, min(x.variant_id) AS variant_id
    FROM recommendations_exposure x
    WHERE x.experiment_id = ANY(%(experiments)s::bigint[]) {unit_filter}
    GROUP BY 1, 2
), uw AS MATERIALIZED (
    SELECT u.*, xp.key, xp.cuped_days,
           CASE WHEN xp.stopped_at IS NULL THEN u.first_at + make_interval(hours => xp.attribution_hours)
                ELSE least(u.first_at + make_interval(hours => xp.attribution_hours), xp.stopped_at)
           END AS window_end,
           {consent} AS consented
    FROM unit u JOIN recommendations_experiment xp ON xp.id = u.experiment_id
), member AS (
    -- the unit's own answers and those served to profiles merged into it since
    SELECT experiment_id, profile_id AS unit_id, profile_id AS member_id FROM uw
    UNION ALL
    SELECT uw.experiment_id, uw.profile_id, p.id FROM uw JOIN profiles_profile p ON p.merged_into_id = uw.profile_id
), served AS MATERIALIZED (
    SELECT uw.experiment_id, uw.profile_id, s.id, s.created_at, uw.window_end
    FROM member m
    JOIN uw ON uw.experiment_id = m.experiment_id AND uw.profile_id = m.unit_id
    JOIN recommendations_recommendationserved s ON s.profile_id = m.member_id AND s.experiment = uw.key
     AND s.created_at >= uw.first_at AND s.created_at < uw.window_end
), served_per_unit AS (
    SELECT experiment_id, profile_id, count(*) AS e FROM served GROUP BY 1, 2
), clicks_per_unit AS (
    SELECT s.experiment_id, s.profile_id, count(*) AS c
    FROM served s
    JOIN profiles_event ev ON ev.profile_id = s.profile_id AND ev.name = '{click}'
     AND ev.occurred_at >= s.created_at AND ev.occurred_at < s.window_end
     AND (ev.properties ->> 'recommendation_id') = s.id::text
    GROUP BY 1, 2
), orders_per_unit AS (
    SELECT uw.experiment_id, uw.profile_id,
           count(*) FILTER (WHERE ev.occurred_at >= uw.first_at) AS o,
           sum({revenue}) FILTER (WHERE ev.occurred_at >= uw.first_at) AS r,
           count(*) FILTER (WHERE ev.occurred_at < uw.first_at) AS po,
           sum({revenue}) FILTER (WHERE ev.occurred_at < uw.first_at) AS pr
    FROM uw
    JOIN profiles_event ev ON ev.profile_id = uw.profile_id AND ev.name = '{order}'
     AND ev.occurred_at >= uw.first_at - make_interval(days => uw.cuped_days) AND ev.occurred_at < uw.window_end
    GROUP BY 1, 2
)
SELECT uw.experiment_id, uw.profile_id, uw.variant_id, uw.nv > 1 AS multi, uw.consented,
       uw.first_at, uw.window_end,
       coalesce(spu.e, 0)::int AS e, coalesce(cpu.c, 0)::int AS c, coalesce(opu.o, 0)::int AS o,
       coalesce(opu.r, 0)::float8 AS r, (coalesce(opu.o, 0) > 0)::int AS v,
       coalesce(opu.po, 0)::int AS po, coalesce(opu.pr, 0)::float8 AS pr
FROM uw
LEFT JOIN served_per_unit spu ON spu.experiment_id = uw.experiment_id AND spu.profile_id = uw.profile_id
LEFT JOIN clicks_per_unit cpu ON cpu.experiment_id = uw.experiment_id AND cpu.profile_id = uw.profile_id
LEFT JOIN orders_per_unit opu ON opu.experiment_id = uw.experiment_id AND opu.profile_id = uw.profile_id
"""

_UNIT_COLUMNS = "experiment_id, profile_id, variant_id, multi, consented, first_exposed_at, window_end, " + ", ".join(
    COLUMNS
)
_SIGNED_SUMS = ", ".join(f"sum(sign * ({x})::float8)" for x in SUM_EXPRESSIONS)
_ZERO_SUMS = "ARRAY[" + ", ".join(["0::float8"] * len(SUM_KEYS)) + "]"

# Recompute the units, write the rows that changed, move the rollups by (new - old).
_APPLY_SQL = """
WITH new AS MATERIALIZED ({per_unit}),
old AS MATERIALIZED (
    SELECT * FROM recommendations_experimentunit
    WHERE experiment_id = ANY(%(experiments)s::bigint[]) {old_filter}
), gone AS (
    DELETE FROM recommendations_experimentunit t USING old
    WHERE t.id = old.id
      AND NOT EXISTS (SELECT 1 FROM new WHERE new.experiment_id = old.experiment_id AND new.profile_id = old.profile_id)
), written AS (
    INSERT INTO recommendations_experimentunit AS t ({unit_columns}, updated_at)
    SELECT experiment_id, profile_id, variant_id, multi, consented, first_at, window_end, {columns}, now() FROM new
    ON CONFLICT (experiment_id, profile_id) DO UPDATE SET
        variant_id = excluded.variant_id, multi = excluded.multi, consented = excluded.consented,
        first_exposed_at = excluded.first_exposed_at, window_end = excluded.window_end,
        {set_columns}, updated_at = excluded.updated_at
    WHERE (t.variant_id, t.multi, t.consented, t.first_exposed_at, t.window_end, {t_columns})
          IS DISTINCT FROM (excluded.variant_id, excluded.multi, excluded.consented, excluded.first_exposed_at,
                            excluded.window_end, {excluded_columns})
), delta AS (
    SELECT experiment_id, variant_id, multi, sum(sign)::bigint AS n, ARRAY[{signed_sums}] AS sums
    FROM (
        SELECT 1 AS sign, experiment_id, variant_id, multi, {columns} FROM new WHERE consented
        UNION ALL
        SELECT -1 AS sign, experiment_id, variant_id, multi, {columns} FROM old WHERE consented
    ) d
    GROUP BY 1, 2, 3
)
INSERT INTO recommendations_experimentrollup AS t (experiment_id, variant_id, multi, n, sums)
SELECT experiment_id, variant_id, multi, n, sums FROM delta
WHERE n <> 0 OR sums <> {zero_sums}
ON CONFLICT (experiment_id, variant_id, multi) DO UPDATE SET
    n = t.n + excluded.n,
    sums = ARRAY(
        SELECT coalesce(a, 0) + coalesce(b, 0)
        FROM unnest(t.sums, excluded.sums) WITH ORDINALITY AS z(a, b, i) ORDER BY i
    )
"""


def _consent_sql() -> str:
    """Whether the unit may be analysed: its personalisation consent now (consent's one condition)."""
    import psycopg

    from consent.selectors import consent_granted_sql

    sql, params = consent_granted_sql(purpose="personalisation", profile_column="u.profile_id")
    connection.ensure_connection()
    return psycopg.ClientCursor(connection.connection).mogrify(sql, params)


def per_unit_sql(*, subset: bool) -> str:
    """The per-unit query (parameters ``experiments`` and, with ``subset``, ``profiles``)."""
    return _PER_UNIT_SQL.format(
        unit_filter="AND x.profile_id = ANY(%(profiles)s::uuid[])" if subset else "",
        consent=_consent_sql(),
        click=CLICK_EVENT,
        order=ORDER_EVENT,
        revenue=REVENUE_NUMERIC,
    )


def _apply_sql(*, subset: bool) -> str:
    return _APPLY_SQL.format(
        per_unit=per_unit_sql(subset=subset),
        old_filter="AND profile_id = ANY(%(profiles)s::uuid[])" if subset else "",
        unit_columns=_UNIT_COLUMNS,
        columns=", ".join(COLUMNS),
        set_columns=", ".join(f"{c} = excluded.{c}" for c in COLUMNS),
        t_columns=", ".join(f"t.{c}" for c in COLUMNS),
        excluded_columns=", ".join(f"excluded.{c}" for c in COLUMNS),
        signed_sums=_SIGNED_SUMS,
        zero_sums=_ZERO_SUMS,
    )


class ExperimentsBusy(Exception):
    """Another transaction holds an experiment's lock (a rebuild); try again later."""


def _lock_experiments(cursor, experiment_ids: Iterable[int], *, wait: bool = True) -> None:
    ids = sorted({int(i) for i in experiment_ids})
    if wait:
        cursor.execute(
            "SELECT count(pg_advisory_xact_lock(hashtextextended('cdp:experiment-units:' || k, 0))) "
            "FROM unnest(%s::bigint[]) WITH ORDINALITY AS t(k, n)",
            [ids],
        )
        return
    cursor.execute(
        "SELECT bool_and(pg_try_advisory_xact_lock(hashtextextended('cdp:experiment-units:' || k, 0))) "
        "FROM unnest(%s::bigint[]) WITH ORDINALITY AS t(k, n)",
        [ids],
    )
    if not cursor.fetchone()[0]:
        raise ExperimentsBusy(ids)


def experiments_of(*, profile_ids: list[str]) -> list[int]:
    """Experiments in which any of these profiles is (or was, until now) a unit."""
    if not profile_ids:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT experiment_id FROM recommendations_exposure WHERE profile_id = ANY(%(p)s::uuid[]) "
            "UNION SELECT experiment_id FROM recommendations_experimentunit WHERE profile_id = ANY(%(p)s::uuid[])",
            {"p": profile_ids},
        )
        return sorted(row[0] for row in cursor.fetchall())


def units_apply(*, profile_ids: list[str] | None, experiment_ids: list[int] | None = None, wait: bool = True) -> int:
    """Recompute these units (``None``: every unit of ``experiment_ids``, one statement) and move the
    rollups; one transaction per chunk of ``CHUNK`` units. Returns the units recomputed. With
    ``wait=False`` an experiment whose lock is held (a rebuild) raises ``ExperimentsBusy`` at once."""
    if profile_ids is not None:
        profile_ids = sorted({str(p) for p in profile_ids})
        if not profile_ids:
            return 0
        if experiment_ids is None:
            experiment_ids = experiments_of(profile_ids=profile_ids)
    if not experiment_ids:
        return 0
    chunks = [None] if profile_ids is None else [profile_ids[i : i + CHUNK] for i in range(0, len(profile_ids), CHUNK)]
    for chunk in chunks:
        with transaction.atomic(), connection.cursor() as cursor:
            _lock_experiments(cursor, experiment_ids, wait=wait)
            cursor.execute(
                _apply_sql(subset=chunk is not None), {"experiments": list(experiment_ids), "profiles": chunk}
            )
    return len(profile_ids) if profile_ids is not None else -1


REBUILD_IN_ONE_STATEMENT = 200_000  # more units: one set-based statement (hash joins) instead of chunks


def units_rebuild(*, experiment, progress=None) -> int:
    """Every unit of one experiment again from the events (the repair), then the rollups checked
    against the unit rows. Up to ``REBUILD_IN_ONE_STATEMENT`` units in chunks of indexed lookups;
    more in one set-based statement (10 M units: minutes instead of hours), during which the
    drains and the exposure refresh find the experiment busy and come back later."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM recommendations_experimentunit WHERE experiment_id = %s", [experiment.pk])
        stored = cursor.fetchone()[0]
    if stored > REBUILD_IN_ONE_STATEMENT:
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE recommendations_exposure")
        units_apply(profile_ids=None, experiment_ids=[experiment.pk])
        if progress is not None:
            progress(stored, stored)
        rollup_verify(experiment=experiment, fix=True)
        return stored
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT profile_id FROM recommendations_exposure WHERE experiment_id = %(x)s "
            "UNION SELECT profile_id FROM recommendations_experimentunit WHERE experiment_id = %(x)s ORDER BY 1",
            {"x": experiment.pk},
        )
        ids = [str(row[0]) for row in cursor.fetchall()]
    done = 0
    step = CHUNK * 4
    for i in range(0, len(ids), step):
        units_apply(profile_ids=ids[i : i + step], experiment_ids=[experiment.pk])
        done += len(ids[i : i + step])
        if progress is not None:
            progress(done, len(ids))
    rollup_verify(experiment=experiment, fix=True)
    return len(ids)


def rollup_from_units(*, experiment) -> list[dict]:
    """The per-variant sums aggregated from the stored unit rows (what the rollups must equal)."""
    sums = ", ".join(f"sum(({x})::float8)" for x in SUM_EXPRESSIONS)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT variant_id, multi, count(*), {sums} FROM recommendations_experimentunit "  # noqa: S608
            "WHERE experiment_id = %s AND consented GROUP BY 1, 2",
            [experiment.pk],
        )
        return [_row(r) for r in cursor.fetchall()]


def rollup_verify(*, experiment, fix: bool = False) -> bool:
    """Whether the rollups equal the sums over the unit rows (within float rounding); with ``fix``,
    set them from the unit rows under the experiment's lock."""
    with transaction.atomic(), connection.cursor() as cursor:
        _lock_experiments(cursor, [experiment.pk])
        truth = {(r["variant_id"], r["multi"]): r for r in rollup_from_units(experiment=experiment)}
        stored = {(r["variant_id"], r["multi"]): r for r in variant_sums_stored(experiment=experiment)}
        same = sums_equal(list(truth.values()), list(stored.values()))
        if fix and not same:
            from .models import ExperimentRollup

            ExperimentRollup.objects.filter(experiment_id=experiment.pk).delete()
            ExperimentRollup.objects.bulk_create(
                ExperimentRollup(
                    experiment_id=experiment.pk,
                    variant_id=variant_id,
                    multi=multi,
                    n=row["n"],
                    sums=[row[k] for k in SUM_KEYS],
                )
                for (variant_id, multi), row in truth.items()
            )
        return same


def _row(values) -> dict:
    variant_id, multi, n = values[:3]
    entry = {"variant_id": variant_id, "multi": bool(multi), "n": int(n)}
    for key, value in zip(SUM_KEYS, values[3:], strict=True):
        entry[key] = float(value or 0)
    return entry


def variant_sums_stored(*, experiment) -> list[dict]:
    """Per variant and multi-variant flag: consenting units and sums, from the rollups (what a
    results call reads: a handful of rows whatever the number of units)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT variant_id, multi, n, sums FROM recommendations_experimentrollup "
            "WHERE experiment_id = %s AND n <> 0 ORDER BY variant_id, multi",
            [experiment.pk],
        )
        rows = cursor.fetchall()
    out = []
    for variant_id, multi, n, sums in rows:
        padded = list(sums or []) + [0.0] * (len(SUM_KEYS) - len(sums or []))
        out.append(_row((variant_id, multi, n, *padded)))
    return out


def variant_sums_reference(*, experiment) -> list[dict]:
    """The same sums computed from the exposures, served log and events with nothing stored (the
    full recompute the incremental rows are checked against)."""
    sums = ", ".join(f"sum(({x})::float8)" for x in SUM_EXPRESSIONS)
    per_unit = per_unit_sql(subset=False)
    sql = f"SELECT variant_id, multi, count(*), {sums} FROM ({per_unit}) pu WHERE consented GROUP BY 1, 2"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, {"experiments": [experiment.pk]})
        return [_row(r) for r in cursor.fetchall()]


def sums_equal(a: list[dict], b: list[dict], *, rel: float = 1e-9) -> bool:
    """Two per-variant sum lists agree (same groups with units, same counts, sums within ``rel``)."""

    def index(rows):
        return {(r["variant_id"], r["multi"]): r for r in rows if r["n"]}

    ia, ib = index(a), index(b)
    if ia.keys() != ib.keys():
        return False
    for key, ra in ia.items():
        rb = ib[key]
        if ra["n"] != rb["n"]:
            return False
        for k in SUM_KEYS:
            x, y = ra[k], rb[k]
            if abs(x - y) > rel * max(1.0, abs(x), abs(y)):
                return False
    return True


# --- the ingestion side: cheap on the request path, recomputed by a worker ------------------------

PENDING_KEY = "cdp:experiments:units:pending"
SCHEDULED_KEY = "cdp:experiments:units:scheduled"
SCHEDULE_EVERY_SECONDS = 5
DRAIN_BATCH = 2_000
BUSY_RETRY_SECONDS = 60


def _redis():
    from django.core.cache import cache

    return cache._cache.get_client(PENDING_KEY, write=True)


def _any_running() -> bool:
    from .assignment import live_config

    try:
        config = live_config.get()
    except Exception:  # cannot tell: do the work (it is idempotent)
        return True
    return any(not e.shipped for experiments in config.by_placement.values() for e in experiments)


def units_mark(*, profile_ids: Iterable[str]) -> bool:
    """Queue these profiles' units for a recompute: one pipelined Redis round trip, and a drain task
    at most every few seconds. False when Redis or the broker is down (the nightly rebuild and the
    next results call's refresh catch up)."""
    ids = sorted({str(p) for p in profile_ids if p})
    if not ids:
        return True
    try:
        pipe = _redis().pipeline(transaction=False)
        pipe.sadd(PENDING_KEY, *ids)
        pipe.set(SCHEDULED_KEY, "1", nx=True, ex=SCHEDULE_EVERY_SECONDS)
        _, first = pipe.execute()
    except Exception:
        logger.warning("experiments: could not mark %d units for a recompute", len(ids), exc_info=True)
        return False
    if first:
        from cdp.queueing import task_send

        from .tasks import experiments_units_drain

        task_send(experiments_units_drain, countdown=1)
    return True


def on_events_stored(*, events: list[dict]) -> None:
    """Profiles hook (after commit, on the ingesting path): the profiles of the batch's clicks and
    orders, while any experiment runs, go to the pending set. One pass and one round trip."""
    ids = {e["profile_id"] for e in events if e.get("name") in RELEVANT_EVENTS and e.get("profile_id")}
    if ids and _any_running():
        units_mark(profile_ids=ids)


def on_consent_changed(*, profile_ids: list[str], purposes: list[str] | None = None, **_) -> None:
    if profile_ids and (purposes is None or "personalisation" in purposes):
        units_mark(profile_ids=profile_ids)


def on_profiles_unmerged(*, winner_id, loser_id, **_) -> None:
    units_mark(profile_ids=[str(winner_id), str(loser_id)])


def units_drain(*, limit: int | None = None) -> int:
    """Recompute every pending unit (batches popped atomically; a batch that fails goes back)."""
    try:
        client = _redis()
    except Exception:
        logger.warning("experiments: Redis unavailable, pending units wait", exc_info=True)
        return 0
    done = 0
    while limit is None or done < limit:
        ids = [i.decode() if isinstance(i, bytes) else str(i) for i in client.spop(PENDING_KEY, DRAIN_BATCH) or []]
        if not ids:
            client.delete(SCHEDULED_KEY)
            if not client.scard(PENDING_KEY):
                return done
            continue
        try:
            units_apply(profile_ids=ids, wait=False)
        except ExperimentsBusy:  # a rebuild holds the experiment: put them back, come back later
            client.sadd(PENDING_KEY, *ids)
            client.delete(SCHEDULED_KEY)
            _drain_later()
            return done
        except Exception:
            client.sadd(PENDING_KEY, *ids)
            raise
        done += len(ids)
    return done


def _drain_later() -> None:
    from cdp.queueing import task_send

    from .tasks import experiments_units_drain

    task_send(experiments_units_drain, countdown=BUSY_RETRY_SECONDS)


def units_erase(profile_ids: list[str]) -> None:
    """Privacy registry (inside the erasure's transaction, profile locks held): the people's exposures
    and unit rows go, and the rollups lose what they added. Safe under the profile locks: holders of
    the experiment locks never wait for a profile lock."""
    from .models import ExperimentOverride, Exposure

    ids = [str(p) for p in profile_ids]
    experiments = experiments_of(profile_ids=ids)
    Exposure.objects.filter(profile_id__in=ids).delete()
    ExperimentOverride.objects.filter(profile_id__in=ids).delete()
    units_apply(profile_ids=ids, experiment_ids=experiments)


def units_export(profile_ids: list[str]) -> dict:
    from .models import ExperimentUnit

    rows = ExperimentUnit.objects.filter(profile_id__in=profile_ids).select_related("experiment", "variant")
    return {
        "experiment_units": [
            {
                "experiment": u.experiment.key,
                "variant": u.variant.key,
                "first_exposed_at": u.first_exposed_at.isoformat(),
                "several_variants": u.multi,
                **{c: getattr(u, c) for c in COLUMNS},
            }
            for u in rows
        ]
    }


def register() -> None:
    """Subscribe to the lower layers' hooks (called from the recommendations app's ready())."""
    from consent import hooks as consent_hooks
    from profiles import hooks

    from . import tasks  # noqa: F401  (the drain task, for the worker)

    hooks.on_events_stored.subscribe(on_events_stored)
    hooks.on_profiles_unmerged.subscribe(on_profiles_unmerged)
    consent_hooks.on_consent_changed.subscribe(on_consent_changed)
    try:
        from consent.privacy import privacy_register
    except ImportError:
        return
    from .models import ExperimentUnit

    # after recommendations' own entry (90), which removes the exposures too
    privacy_register(name="experiments", models=[ExperimentUnit], export=units_export, erase=units_erase, order=85)
