"""Writes of experiments and bandits (keyword-only, ``<entity>_<action>``). Every change that serving
must see is published on commit (``assignment.publish``)."""

from __future__ import annotations

import secrets
from datetime import datetime

from django.db import connection, transaction
from django.utils import timezone

from . import assignment
from .models import (
    BUCKETS,
    BanditPolicy,
    BanditStatus,
    Experiment,
    ExperimentOverride,
    ExperimentStatus,
    Metric,
    Variant,
)

VARIANT_FIELDS = ("key", "name", "weight", "is_control", "personalised", "model_version", "rerank", "rule_set")
EDITABLE = (
    "name",
    "hypothesis",
    "placements",
    "layer",
    "layer_start",
    "layer_end",
    "target_segments",
    "primary_metric",
    "guardrail_metrics",
    "attribution_hours",
    "cuped_days",
    "alpha",
    "sequential",
    "sequential_tuning",
)
# what may change while an experiment runs (anything else would change who is in it or what it measures)
EDITABLE_RUNNING = ("name", "hypothesis", "guardrail_metrics", "variants.weight")


class ExperimentInvalid(ValueError):
    """Bad input; ``errors`` maps field paths to messages (the API answers 400 with them)."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items()))
        self.errors = errors


def _db_now() -> datetime:
    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        return cursor.fetchone()[0]


def known_placements() -> list[str]:
    """The active placements (recommendations.Placement), as serving accepts them; with none
    defined, the placement kinds (home, product, cart, post_purchase), as serving does."""
    from recommendations.models import Placement, PlacementKind

    keys = list(Placement.objects.filter(is_active=True).order_by("key").values_list("key", flat=True))
    return keys or list(PlacementKind.values)


def _publish() -> None:
    assignment.live_config.invalidate()  # this process at once (tests, admin), every process on commit
    transaction.on_commit(assignment.publish)


def _audit(experiment: Experiment, *, action: str, by: str, detail: dict | None = None) -> None:
    experiment.history = [
        *experiment.history,
        {"action": action, "by": by, "at": timezone.now().isoformat(), **({"detail": detail} if detail else {})},
    ]


# --- validation ----------------------------------------------------------------------------------


def _validate(fields: dict, variants: list[dict], *, pk: int | None, status: str) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    placements = fields.get("placements") or []
    known = known_placements()
    if not placements:
        errors["placements"] = ["Name at least one placement."]
    unknown = [p for p in placements if p not in known]
    if unknown:
        errors["placements"] = [f"Unknown placement {p!r}; known: {', '.join(known)}." for p in unknown]
    start, end = fields.get("layer_start", 0), fields.get("layer_end", BUCKETS)
    if not 0 <= start < end <= BUCKETS:
        errors["layer_end"] = [f"The layer share must satisfy 0 <= layer_start < layer_end <= {BUCKETS}."]
    for name in ("primary_metric",):
        if fields.get(name) not in Metric.values:
            errors[name] = [f"Choose one of {', '.join(Metric.values)}."]
    bad = [m for m in fields.get("guardrail_metrics") or [] if m not in Metric.values]
    if bad:
        errors["guardrail_metrics"] = [f"Unknown metric {m!r}." for m in bad]
    if not 0 < float(fields.get("alpha", 0.05)) < 0.5:
        errors["alpha"] = ["alpha must be between 0 and 0.5."]
    if len(variants) < 2:
        errors["variants"] = ["An experiment needs at least two variants."]
    else:
        keys = [v.get("key") for v in variants]
        if len(set(keys)) != len(keys):
            errors["variants"] = ["Variant keys must be unique."]
        total = sum(int(v.get("weight") or 0) for v in variants)
        if total != 100:
            errors["variants.weight"] = [f"Variant weights must sum to 100 (percent); they sum to {total}."]
        for i, v in enumerate(variants):
            if int(v.get("weight") or 0) < 1:
                errors[f"variants.{i}.weight"] = ["Each variant needs a weight of at least 1."]
        controls = sum(1 for v in variants if v.get("is_control"))
        if controls != 1:
            errors["variants.is_control"] = [f"Exactly one variant is the control ({controls} marked)."]
    if "placements" not in errors and "layer_end" not in errors:
        layer = fields.get("layer") or "default"
        others = Experiment.objects.filter(
            layer=layer, status__in=[ExperimentStatus.DRAFT, ExperimentStatus.RUNNING]
        ).exclude(pk=pk)
        if status in (ExperimentStatus.DRAFT, ExperimentStatus.RUNNING):
            clash = [
                o.key
                for o in others.filter(layer_start__lt=end, layer_end__gt=start)
                if o.status == ExperimentStatus.RUNNING or status == ExperimentStatus.RUNNING
            ]
            if clash:
                errors["layer"] = [
                    f"Buckets {start}-{end} of layer {layer!r} overlap running experiment(s) {', '.join(clash)}; "
                    "give this one another share of the layer (layer_start/layer_end) or another layer."
                ]
    return errors


def _set_variants(experiment: Experiment, variants: list[dict]) -> None:
    existing = {v.key: v for v in experiment.variants.all()}
    keep = set()
    for position, item in enumerate(variants):
        values = {f: item[f] for f in VARIANT_FIELDS if f in item and f != "key"}
        variant = existing.get(item["key"]) or Variant(experiment=experiment, key=item["key"])
        for name, value in values.items():
            setattr(variant, name, value)
        variant.position = position
        variant.save()
        keep.add(item["key"])
    experiment.variants.exclude(key__in=keep).delete()
    experiment.allocation = assignment.reallocate(experiment.allocation, {v["key"]: int(v["weight"]) for v in variants})


# --- experiments ---------------------------------------------------------------------------------


@transaction.atomic
def experiment_create(*, key: str, variants: list[dict], by: str = "api", **fields) -> Experiment:
    values = {f: fields[f] for f in EDITABLE if f in fields}
    values.setdefault("primary_metric", Metric.CONVERSION)
    errors = _validate(values, variants, pk=None, status=ExperimentStatus.DRAFT)
    if Experiment.objects.filter(key=key).exists():
        errors["key"] = [f"An experiment {key!r} already exists."]
    if errors:
        raise ExperimentInvalid(errors)
    experiment = Experiment.objects.create(key=key, salt=secrets.token_hex(8), **values)
    _set_variants(experiment, variants)
    _audit(experiment, action="create", by=by)
    experiment.save()
    return experiment


def _variants_of(experiment: Experiment) -> list[dict]:
    return [{f: getattr(v, f) for f in VARIANT_FIELDS} for v in experiment.variants.all()]


@transaction.atomic
def experiment_update(*, experiment: Experiment, variants: list[dict] | None = None, by: str = "api", **fields):
    experiment = Experiment.objects.select_for_update().get(pk=experiment.pk)
    if experiment.status in (ExperimentStatus.SHIPPED, ExperimentStatus.STOPPED):
        raise ExperimentInvalid(
            {"status": [f"A {experiment.status} experiment cannot be edited; create a new experiment instead."]}
        )
    changed = {f: v for f, v in fields.items() if f in EDITABLE and getattr(experiment, f) != v}
    current = _variants_of(experiment)
    if experiment.status == ExperimentStatus.RUNNING:
        locked = sorted(f for f in changed if f not in EDITABLE_RUNNING)
        errors = {f: ["This cannot change while the experiment runs; stop it and start a new one."] for f in locked}
        if variants is not None:
            if sorted(v["key"] for v in variants) != sorted(v["key"] for v in current):
                errors["variants"] = ["Variants cannot be added or removed while the experiment runs."]
            else:
                by_key = {v["key"]: v for v in current}
                for i, v in enumerate(variants):
                    for f in VARIANT_FIELDS:
                        if f not in ("weight", "key", "name") and f in v and v[f] != by_key[v["key"]][f]:
                            errors[f"variants.{i}.{f}"] = ["Only a variant's weight can change while it runs."]
        if errors:
            raise ExperimentInvalid(errors)
    merged = {f: getattr(experiment, f) for f in EDITABLE} | changed
    new_variants = variants if variants is not None else current
    errors = _validate(merged, new_variants, pk=experiment.pk, status=experiment.status)
    if errors:
        raise ExperimentInvalid(errors)
    for f, v in changed.items():
        setattr(experiment, f, v)
    if variants is not None:
        before = list(experiment.allocation)
        _set_variants(experiment, variants)
        changed["buckets_moved"] = assignment.moved(before, experiment.allocation)
    _audit(experiment, action="edit", by=by, detail={k: v for k, v in changed.items() if k != "hypothesis"})
    experiment.save()
    _publish()
    return experiment


@transaction.atomic
def experiment_delete(*, experiment: Experiment) -> None:
    if experiment.status != ExperimentStatus.DRAFT:
        raise ExperimentInvalid({"status": ["Only a draft can be deleted; stop a running experiment instead."]})
    experiment.delete()


def _rebuild_on_commit(experiment: Experiment) -> None:
    """After a stop the windows end at ``stopped_at``: recompute every unit once (a worker; events
    that arrive late for the time before the stop are counted by it)."""

    def send() -> None:
        from cdp.queueing import task_send

        from .tasks import heavy_experiment_units_rebuild

        task_send(heavy_experiment_units_rebuild, args=[experiment.pk], countdown=60)

    transaction.on_commit(send)


def _transition(experiment: Experiment, *, to: str, allowed: tuple[str, ...], by: str) -> Experiment:
    experiment = Experiment.objects.select_for_update().get(pk=experiment.pk)
    if experiment.status not in allowed:
        raise ExperimentInvalid({"status": [f"A {experiment.status} experiment cannot be {to}."]})
    return experiment


@transaction.atomic
def experiment_start(*, experiment: Experiment, by: str = "api") -> Experiment:
    experiment = _transition(experiment, to="started", allowed=(ExperimentStatus.DRAFT,), by=by)
    errors = _validate(
        {f: getattr(experiment, f) for f in EDITABLE},
        _variants_of(experiment),
        pk=experiment.pk,
        status=ExperimentStatus.RUNNING,
    )
    if errors:
        raise ExperimentInvalid(errors)
    experiment.status = ExperimentStatus.RUNNING
    experiment.started_at = _db_now()  # the served log's clock (its created_at is PostgreSQL's now())
    _audit(experiment, action="start", by=by)
    experiment.save()
    _publish()
    return experiment


@transaction.atomic
def experiment_stop(*, experiment: Experiment, by: str = "api") -> Experiment:
    experiment = _transition(experiment, to="stopped", allowed=(ExperimentStatus.RUNNING,), by=by)
    experiment.status = ExperimentStatus.STOPPED
    experiment.stopped_at = _db_now()
    _audit(experiment, action="stop", by=by)
    experiment.save()
    _publish()
    _rebuild_on_commit(experiment)
    return experiment


@transaction.atomic
def experiment_ship(*, experiment: Experiment, variant: str, by: str = "api") -> Experiment:
    """Serve ``variant`` to everybody on the experiment's placements (from now on, no assignment)."""
    experiment = _transition(
        experiment, to="shipped", allowed=(ExperimentStatus.RUNNING, ExperimentStatus.STOPPED), by=by
    )
    if not experiment.variants.filter(key=variant).exists():
        raise ExperimentInvalid({"variant": [f"No variant {variant!r} in this experiment."]})
    # one shipped winner per placement: an older one on the same placement gives way
    if experiment.stopped_at is None:
        experiment.stopped_at = _db_now()
        _rebuild_on_commit(experiment)
    experiment.status = ExperimentStatus.SHIPPED
    experiment.shipped_variant = variant
    _audit(experiment, action="ship", by=by, detail={"variant": variant})
    experiment.save()
    _publish()
    return experiment


# --- exposures (from the served log) -------------------------------------------------------------

TOUCHED_BY_NAME = 200_000  # more units touched by one refresh: recompute the experiment in one statement
EXPOSURE_LAG_SECONDS = 5  # the served-log writer inserts up to 50 ms late: re-read a margin


def exposures_refresh(*, experiment: Experiment, until: datetime | None = None) -> int:
    """Record first exposures per unit and variant from what was actually served, incrementally
    (set-based, idempotent), then recompute the units those answers touched (``units``). The unit
    is the live profile (a merged-away profile counts as its survivor). Returns the units touched."""
    from .units import ExperimentsBusy, units_apply

    until = until or timezone.now()
    since = experiment.exposures_until
    with transaction.atomic(), connection.cursor() as cursor:
        # dropped at commit; inside a caller's transaction a second refresh finds it: empty it
        cursor.execute("CREATE TEMP TABLE IF NOT EXISTS experiment_touched (unit_id uuid) ON COMMIT DROP")
        cursor.execute("TRUNCATE experiment_touched")
        cursor.execute(
            """
            WITH batch AS MATERIALIZED (
                SELECT v.id AS variant_id, coalesce(p.merged_into_id, p.id) AS unit_id, min(s.created_at) AS first_at
                FROM recommendations_recommendationserved s
                JOIN profiles_profile p ON p.id = s.profile_id
                JOIN recommendations_variant v ON v.experiment_id = %(experiment)s AND v.key = s.variant
                WHERE s.experiment = %(key)s AND s.created_at <= %(until)s AND s.created_at >= %(started)s
                  AND (%(since)s::timestamptz IS NULL
                       OR s.created_at > %(since)s::timestamptz - make_interval(secs => %(lag)s))
                GROUP BY 1, 2
            ), recorded AS (
                INSERT INTO recommendations_exposure AS x (experiment_id, variant_id, profile_id, first_exposed_at)
                SELECT %(experiment)s, variant_id, unit_id, first_at FROM batch
                ON CONFLICT (experiment_id, profile_id, variant_id)
                DO UPDATE SET first_exposed_at = excluded.first_exposed_at
                WHERE excluded.first_exposed_at < x.first_exposed_at
            )
            INSERT INTO experiment_touched SELECT DISTINCT unit_id FROM batch
            """,
            {
                "experiment": experiment.pk,
                "key": experiment.key,
                "until": until,
                "since": since,
                "lag": EXPOSURE_LAG_SECONDS,
                # a key reused after its draft was deleted: answers served before this start are not its own
                "started": experiment.started_at or until,
            },
        )
        count = cursor.rowcount
        touched = None  # too many to name (a first refresh of a large experiment): every unit at once
        if count <= TOUCHED_BY_NAME:
            cursor.execute("SELECT unit_id FROM experiment_touched")
            touched = [str(row[0]) for row in cursor.fetchall()]
        else:  # the planner must know the exposures just written, or it joins them row by row
            cursor.execute("ANALYZE recommendations_exposure")
    if count:
        try:
            units_apply(profile_ids=touched, experiment_ids=[experiment.pk], wait=False)
        except ExperimentsBusy:  # a rebuild runs: it recomputes them; the next refresh reads this range again
            return count
    Experiment.objects.filter(pk=experiment.pk).update(exposures_until=until)
    experiment.exposures_until = until
    return count


@transaction.atomic
def experiments_on_profiles_merged(*, winner_id: str, loser_id: str) -> int:
    """The unit is the profile; when two merge the survivor keeps the assignment of whichever was
    exposed first, per running experiment (an override), and the loser's exposures become the
    survivor's (a survivor exposed to two variants is then reported and left out of the analysis)."""
    fixed = 0
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO recommendations_exposure (experiment_id, variant_id, profile_id, first_exposed_at)
            SELECT experiment_id, variant_id, %(winner)s, first_exposed_at FROM recommendations_exposure
            WHERE profile_id = %(loser)s
            ON CONFLICT (experiment_id, profile_id, variant_id)
            DO UPDATE SET first_exposed_at = least(recommendations_exposure.first_exposed_at, excluded.first_exposed_at)
            """,
            {"winner": winner_id, "loser": loser_id},
        )
        cursor.execute("DELETE FROM recommendations_exposure WHERE profile_id = %s", [loser_id])
        cursor.execute(
            """
            SELECT DISTINCT ON (e.experiment_id) e.experiment_id, v.key
            FROM recommendations_exposure e
            JOIN recommendations_variant v ON v.id = e.variant_id
            JOIN recommendations_experiment x ON x.id = e.experiment_id AND x.status = 'running'
            WHERE e.profile_id = %s
            ORDER BY e.experiment_id, e.first_exposed_at, e.id
            """,
            [winner_id],
        )
        earliest = cursor.fetchall()
    for experiment_id, variant in earliest:
        ExperimentOverride.objects.update_or_create(
            experiment_id=experiment_id,
            profile_id=winner_id,
            defaults={"variant": variant, "reason": f"merge of {loser_id}: the earlier exposure wins"},
        )
        fixed += 1
    if fixed:
        _publish()
    from .units import units_apply

    units_apply(profile_ids=[winner_id, loser_id])  # the loser's rows go, the survivor's are recomputed
    return fixed


@transaction.atomic
def demo_objects_discard(*, experiment_keys: list[str], bandit_keys: list[str]) -> None:
    """`make demo` only: remove the demo's own experiment and bandit (whatever their status) so that a
    second run starts clean. Their rows in the served log stay (they are the log)."""
    Experiment.objects.filter(key__in=experiment_keys).delete()
    BanditPolicy.objects.filter(key__in=bandit_keys).delete()
    _publish()


# --- bandits -------------------------------------------------------------------------------------

ARM_FIELDS = ("key", "personalised", "model_version", "rerank", "rule_set")


def _validate_bandit(fields: dict, arms: list[dict], *, pk: int | None) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    known = known_placements()
    placements = fields.get("placements") or []
    if not placements:
        errors["placements"] = ["Name at least one placement."]
    elif any(p not in known for p in placements):
        errors["placements"] = [
            f"Unknown placement {p!r}; known: {', '.join(known)}." for p in placements if p not in known
        ]
    else:
        clash = BanditPolicy.objects.filter(status=BanditStatus.RUNNING, placements__overlap=placements).exclude(pk=pk)
        if clash.exists():
            errors["placements"] = [f"A running bandit already serves {', '.join(placements)}: {clash.first().key}."]
    keys = [a.get("key") for a in arms]
    if len(arms) < 2 or len(set(keys)) != len(keys) or not all(keys):
        errors["arms"] = ["A bandit needs at least two arms with unique keys."]
    floor = float(fields.get("floor", 0.01))
    if not 0 <= floor * max(len(arms), 1) < 1:
        errors["floor"] = ["floor x arms must be below 1."]
    return errors


def bandit_validate(*, fields: dict, arms: list[dict], pk: int | None, running: bool = True) -> dict[str, list[str]]:
    """Field messages for a bandit as the admin form holds it (empty: valid). A stopped bandit may
    share placements with a running one."""
    errors = _validate_bandit(fields, arms, pk=pk)
    if not running and any(m.startswith("A running bandit already serves") for m in errors.get("placements", [])):
        errors.pop("placements")
    return errors


@transaction.atomic
def bandit_create(*, key: str, arms: list[dict], placements: list[str], **fields) -> BanditPolicy:
    errors = _validate_bandit({"placements": placements, **fields}, arms, pk=None)
    if BanditPolicy.objects.filter(key=key).exists():
        errors["key"] = [f"A bandit {key!r} already exists."]
    if errors:
        raise ExperimentInvalid(errors)
    clean = [
        {
            f: a.get(f, None if f == "model_version" else (True if f in ("personalised", "rerank") else ""))
            for f in ARM_FIELDS
        }
        for a in arms
    ]
    policy = BanditPolicy.objects.create(key=key, arms=clean, placements=placements, **fields)
    _publish()
    return policy


@transaction.atomic
def bandit_set_status(*, policy: BanditPolicy, status: str) -> BanditPolicy:
    if status == BanditStatus.RUNNING:
        errors = _validate_bandit({"placements": policy.placements, "floor": policy.floor}, policy.arms, pk=policy.pk)
        if errors:
            raise ExperimentInvalid(errors)
    policy.status = status
    policy.save(update_fields=["status"])
    _publish()
    return policy
