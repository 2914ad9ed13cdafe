"""Writes of the recommendations app: the catalog, the model registry and refresh, erasure.

The refresh (``model_refresh_execute``) is the long one: extract interactions from PostgreSQL,
split off a temporal holdout, train a candidate on what comes before it, evaluate it and the
active model's recipe on the same holdout, and promote the candidate only when it is better
(decision 0018). A promoted candidate is retrained on all data before it is published.
Publishing sets ``recs:active`` in Redis; serving processes look at it at most once a second
(``recommendations.serving``) and load the new artifact from PostgreSQL.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterable
from concurrent.futures import wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from cdp.lifecycle import job_lease_claim

from .models import (
    ModelPeopleShard,
    ModelStatus,
    ModelVersion,
    PendingModelErasure,
    Product,
    ProductSource,
    RecommendationServed,
)

logger = logging.getLogger("cdp.recommendations")

ACTIVE_KEY = "recs:active"  # "<version id>:<artifact revision>" of the active model
CATALOG_KEY = "recs:catalog"  # bumped whenever products change; serving reloads its catalog arrays
PRODUCT_FIELDS = ("title", "description", "category", "brand", "price", "attributes", "in_stock")
KEEP_ARTIFACTS = 5  # artifacts of the newest non-active versions kept for rollback; older ones are dropped


# --- catalog ---------------------------------------------------------------------------------------


@dataclass
class UpsertResult:
    created: int = 0
    updated: int = 0
    skus: list[str] = field(default_factory=list)


def catalog_changed() -> None:
    """Tell serving processes the catalog changed (they reload titles and stock within a second)."""
    try:
        try:
            cache.incr(CATALOG_KEY)
        except ValueError:
            cache.set(CATALOG_KEY, 1, timeout=None)
    except Exception as exc:  # Redis down: serving reloads on its own TTL
        logger.warning("could not bump the catalog version: %s", exc)


def product_upsert_many(*, items: list[dict], source: str = ProductSource.API) -> UpsertResult:
    """Create or update products by sku. Fields absent from an item keep their stored value (new
    products get the defaults); ``first_seen_source`` is set once, on creation. Items must be clean
    (the API's and the import's input validation)."""
    result = UpsertResult()
    if not items:
        return result
    by_sku: dict[str, dict] = {}
    for item in items:  # the last occurrence of a sku wins, as if sent one after the other
        by_sku[item["sku"]] = {**by_sku.get(item["sku"], {}), **item}
    existing = set(Product.objects.filter(sku__in=list(by_sku)).values_list("sku", flat=True))
    groups: dict[tuple[str, ...], list[Product]] = {}
    for sku, item in by_sku.items():
        fields = tuple(f for f in PRODUCT_FIELDS if f in item)
        groups.setdefault(fields, []).append(Product(sku=sku, first_seen_source=source, **{f: item[f] for f in fields}))
    with transaction.atomic():
        for fields, products in groups.items():
            if fields:
                Product.objects.bulk_create(
                    products,
                    batch_size=1000,
                    update_conflicts=True,
                    unique_fields=["sku"],
                    update_fields=[*fields, "updated_at"],
                )
            else:
                Product.objects.bulk_create(products, batch_size=1000, ignore_conflicts=True)
        transaction.on_commit(catalog_changed)
    result.created = len(by_sku) - len(existing)
    result.updated = len(existing)
    result.skus = list(by_sku)
    return result


def _decimal(value) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value)).quantize(Decimal("0.01"))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() and abs(number) < Decimal("1e10") else None


def _sku_of(props: dict) -> str | None:
    sku = props.get("product_id") or props.get("sku")
    if sku is None or isinstance(sku, (dict, list, bool)):
        return None
    return str(sku).strip()[:100] or None


def _product_from_properties(props: dict) -> dict | None:
    sku = _sku_of(props)
    if sku is None:
        return None
    return {
        "sku": sku,
        "title": str(props.get("name") or "")[:500],
        "category": str(props.get("category") or "")[:500],
        "brand": str(props.get("brand") or "")[:200],
        "price": _decimal(props.get("price")),
    }


# skus this process has already seen in events (so the common case costs no statement at all)
_seen_skus: set[str] = set()
_SEEN_MAX = 200_000
PRODUCT_EVENTS = ("Product Viewed", "Product Added", "Product Clicked", "Product Removed")
ORDER_EVENTS = ("Order Completed",)


def products_from_events(*, events: Iterable[dict]) -> int:
    """Products first seen in tracking events, created from their properties (one INSERT … ON
    CONFLICT DO NOTHING for the skus this process has not seen). Returns how many were created."""
    found: dict[str, dict] = {}
    for event in events:
        name = event.get("name")
        props = event.get("properties") or {}
        if name in PRODUCT_EVENTS:
            lines = [props]
        elif name in ORDER_EVENTS and isinstance(props.get("products"), list):
            lines = [p for p in props["products"] if isinstance(p, dict)]
        else:
            continue
        for line in lines:
            # the sku first: a product seen before (the common case) is not built again per event
            sku = _sku_of(line)
            if sku is not None and sku not in _seen_skus and sku not in found:
                found[sku] = _product_from_properties(line)
    if not found:
        return 0
    created = products_insert_missing(products=list(found.values()), source=ProductSource.EVENT)
    if len(_seen_skus) > _SEEN_MAX:
        _seen_skus.clear()
    _seen_skus.update(found)
    return created


def products_insert_missing(*, products: list[dict], source: str) -> int:
    """Insert the products whose sku is unknown, in one statement; existing rows are left alone."""
    if not products:
        return 0
    columns = [[] for _ in range(5)]
    for p in products:
        for column, value in zip(
            columns,
            (p["sku"], p.get("title", ""), p.get("category", ""), p.get("brand", ""), p.get("price")),
            strict=True,
        ):
            column.append(value)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO recommendations_product
                (sku, title, description, category, brand, price, attributes, in_stock, first_seen_source,
                 created_at, updated_at)
            SELECT sku, title, '', category, brand, price, '{}'::jsonb, true, %s, now(), now()
            FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::numeric[])
                AS t(sku, title, category, brand, price)
            ON CONFLICT (sku) DO NOTHING
            """,
            [source, *columns],
        )
        created = cursor.rowcount
    if created:
        transaction.on_commit(catalog_changed)
    return created


def business_rule_save(*, rule) -> object:
    """Create or change a business rule; serving processes reload rules with the catalog."""
    from .models import BusinessRule

    if rule.kind not in {value for value, _ in BusinessRule._meta.get_field("kind").choices}:
        raise ValueError(f"Unknown rule kind {rule.kind!r}.")
    rule.category = " > ".join(part.strip() for part in rule.category.split(">") if part.strip())
    rule.save()
    transaction.on_commit(catalog_changed)
    return rule


def business_rule_delete(*, rule) -> None:
    rule.delete()
    transaction.on_commit(catalog_changed)


def placement_save(*, placement) -> object:
    """Create or change a placement; serving processes reload placements with the catalog."""
    from .models import PlacementKind

    if placement.kind not in PlacementKind.values:
        raise ValueError(f"Unknown placement kind {placement.kind!r}; allowed: {', '.join(PlacementKind.values)}.")
    placement.full_clean()
    placement.save()
    transaction.on_commit(catalog_changed)
    return placement


def placement_delete(*, placement) -> None:
    placement.delete()
    transaction.on_commit(catalog_changed)


# --- model registry --------------------------------------------------------------------------------


def publish_active(*, version_id: int | None, revision: int = 1) -> None:
    """Set the active version key that serving processes poll (never fails the caller)."""
    try:
        if version_id is None:
            cache.delete(ACTIVE_KEY)
        else:
            cache.set(ACTIVE_KEY, f"{version_id}:{revision}", timeout=None)
    except Exception as exc:  # serving falls back to asking PostgreSQL
        logger.warning("could not publish the active model version: %s", exc)


def _publish_on_commit(version: ModelVersion) -> None:
    version_id, revision = version.pk, version.artifact_revision
    transaction.on_commit(lambda: publish_active(version_id=version_id, revision=revision))


class RegistryError(ValueError):
    """A registry action that cannot be done (the message says why)."""


@transaction.atomic
def model_version_promote(*, version: ModelVersion, by: str, reason: str = "") -> ModelVersion:
    """Make ``version`` the active model (retiring the active one). Works for candidates and, as a
    rollback, for retired versions; needs an artifact."""
    version = ModelVersion.objects.select_for_update().defer("artifact").get(pk=version.pk)
    if version.status == ModelStatus.ACTIVE:
        return version
    if version.status not in (ModelStatus.CANDIDATE, ModelStatus.RETIRED):
        raise RegistryError(
            f"Model v{version.pk} is {version.status}; only candidates and retired versions can go live."
        )
    if not ModelVersion.objects.filter(pk=version.pk, artifact__isnull=False).exists():
        raise RegistryError(f"Model v{version.pk} has no stored artifact any more (only the newest are kept).")
    now = timezone.now()
    ModelVersion.objects.select_for_update().filter(status=ModelStatus.ACTIVE).update(
        status=ModelStatus.RETIRED, retired_at=now
    )
    version.status = ModelStatus.ACTIVE
    version.promoted_at = now
    version.promoted_by = by
    version.retired_at = None
    if reason:
        version.decision = f"{version.decision}\n{now:%Y-%m-%d %H:%M} {by}: {reason}".strip()
    version.save(update_fields=["status", "promoted_at", "promoted_by", "retired_at", "decision"])
    _publish_on_commit(version)
    return version


def model_version_rollback(*, version: ModelVersion, by: str) -> ModelVersion:
    """Re-activate a retired version (the active one is retired)."""
    if version.status != ModelStatus.RETIRED:
        raise RegistryError(f"Model v{version.pk} is {version.status}; rollback re-activates a retired version.")
    return model_version_promote(version=version, by=by, reason="rolled back to this version")


def model_refresh_start(*, requested_by: str, params: dict | None = None, queue: bool = True) -> ModelVersion:
    """Record a refresh (a version in status training) and queue the Celery task on commit."""
    with transaction.atomic():
        version = ModelVersion.objects.create(
            kind="hybrid",
            params={**settings.RECS_TRAIN_PARAMS, **(params or {})},
            created_by=requested_by,
            progress_message="queued",
        )
        if queue:
            from .tasks import ml_model_refresh

            version_id = version.pk
            transaction.on_commit(lambda: _queue(ml_model_refresh, version_id))
    return version


def _queue(task, version_id: int) -> None:
    try:
        task.apply_async(args=[version_id], retry=False)
    except Exception as exc:
        logger.warning("could not queue model refresh %s: %s", version_id, exc)
        ModelVersion.objects.filter(pk=version_id, status=ModelStatus.TRAINING).update(
            status=ModelStatus.FAILED, error=f"could not queue the refresh: {exc}", finished_at=timezone.now()
        )


LEASE_KIND = "model-refresh"


def model_refresh_requeue(version_id) -> None:
    """cdp.lifecycle's sweep: the training worker died; queue the refresh again (after commit)."""
    from .tasks import ml_model_refresh

    if ModelVersion.objects.filter(pk=version_id, status=ModelStatus.TRAINING).update(
        progress=0.0, progress_message="requeued: its worker was lost"
    ):
        transaction.on_commit(lambda: _queue(ml_model_refresh, int(version_id)))


def model_refresh_fail(version_id, reason: str) -> None:
    """cdp.lifecycle's sweep: the training worker died too often; the refresh failed."""
    ModelVersion.objects.filter(pk=version_id, status=ModelStatus.TRAINING).update(
        status=ModelStatus.FAILED, error=reason[:4000], finished_at=timezone.now()
    )


class _Progress:
    """Writes progress to the version row at most every half second (visible in admin)."""

    def __init__(self, version: ModelVersion, start: float, end: float) -> None:
        self.version, self.start, self.end = version, start, end
        self.last = 0.0
        self.message = ""

    def span(self, start: float, end: float) -> _Progress:
        return _Progress(self.version, start, end)

    def __call__(self, fraction: float, message: str) -> None:
        now = time.monotonic()
        if now - self.last < 0.5 and fraction < 1.0 and message == self.message:
            return
        self.last, self.message = now, message
        value = self.start + (self.end - self.start) * max(0.0, min(1.0, fraction))
        ModelVersion.objects.filter(pk=self.version.pk).update(progress=round(value, 3), progress_message=message[:200])


def _ts(epoch: float) -> datetime:
    return datetime.fromtimestamp(float(epoch), tz=UTC)


def model_refresh_execute(*, version_id: int) -> ModelVersion:
    """Run a queued refresh; idempotent (a version that is no longer training is returned as is)."""
    with transaction.atomic():
        claimed = ModelVersion.objects.filter(pk=version_id, status=ModelStatus.TRAINING, progress=0).update(
            progress=0.01, progress_message="starting"
        )
        # cdp's lifecycle: a lease renewed by a heartbeat; a dead worker's refresh is requeued by the sweep
        lease = job_lease_claim(kind=LEASE_KIND, object_id=version_id) if claimed else None
    version = ModelVersion.objects.get(pk=version_id)
    if not claimed:
        return version
    try:
        with lease:
            return _refresh(version)
    except Exception as exc:
        logger.exception("model refresh %s failed", version_id)
        ModelVersion.objects.filter(pk=version_id).update(
            status=ModelStatus.FAILED, error=f"{type(exc).__name__}: {exc}"[:4000], finished_at=timezone.now()
        )
        version.refresh_from_db()
        return version


def _refresh(version: ModelVersion) -> ModelVersion:
    from recommendations.engine.bundle import train_bundle
    from recommendations.engine.evaluate import evaluate_bundle, holdout_split
    from recommendations.selectors import interactions_extract, interactions_stored

    progress = _Progress(version, 0.0, 1.0)
    started = time.monotonic()
    timings: dict[str, float] = {}
    metric = settings.RECS_PRIMARY_METRIC
    k = _metric_k(metric)

    progress(0.02, "extracting interactions")
    t0 = time.monotonic()
    data, catalog = interactions_extract(window_days=settings.RECS_TRAIN_WINDOW_DAYS or None)
    timings["extract"] = round(time.monotonic() - t0, 3)
    if len(data) == 0:
        if interactions_stored():
            raise RegistryError(
                "No interactions to train on: orders, views or carts are stored, but none of people who allow "
                "personalisation (models learn only from them; imported customers need their consent "
                "recorded, docs/privacy.md)."
            )
        raise RegistryError("No interactions to train on yet (no orders, views or carts).")
    created = _products_from_catalog(catalog)
    now = float(data.ts.max())

    progress(0.1, "splitting the temporal holdout")
    train, truth = holdout_split(data, settings.RECS_HOLDOUT_DAYS)
    if len(train) == 0:
        raise RegistryError(
            f"All interactions fall in the {settings.RECS_HOLDOUT_DAYS}-day holdout; nothing to train on."
        )
    t0 = time.monotonic()
    candidate = train_bundle(
        data=train, catalog=catalog, params=version.params, now=truth.cutoff, progress=progress.span(0.1, 0.4)
    )
    timings["train_candidate"] = round(time.monotonic() - t0, 3)
    # the candidate is what serves unless a promotion retrains on all the data: then the heads of the
    # rankings are computed for that final model instead (decision 0058)
    heads_now = not settings.RECS_RETRAIN_ON_ALL_DATA
    with _heads_alongside(candidate, timings, enabled=heads_now):
        progress(0.4, "evaluating the candidate" + (" (ranking known people alongside)" if heads_now else ""))
        t0 = time.monotonic()
        cand_metrics = evaluate_bundle(candidate, truth, k)
        timings["evaluate"] = round(time.monotonic() - t0, 3)
        promote, decision, baseline = _against_active(version, cand_metrics, train, catalog, truth, progress)
        progress(0.6, "segment popularity and context statistics")
        segments = _segment_popularity(candidate)
        context_stats = context_stats_compute(since=_ts(float(data.ts.min())))

    if _forget_erased(candidate) and heads_now:  # people left the model: everyone's heads again
        _rank_heads(candidate, timings)
    t0 = time.monotonic()
    parts = candidate.to_parts()
    timings["encode"] = round(time.monotonic() - t0, 3)
    with transaction.atomic():
        model_artifact_store(version_id=version.pk, parts=parts)
        ModelVersion.objects.filter(pk=version.pk).update(
            kind=str(candidate.params.get("primary", "hybrid"))[:32],
            params=version.params,
            data_since=_ts(float(data.ts.min())),
            data_until=_ts(truth.cutoff),
            holdout_since=_ts(truth.cutoff),
            metrics={**cand_metrics, "train": candidate.metrics},
            baseline_metrics=baseline,
            decision=decision,
            data_stats={
                "users": int(data.n_users),
                "items": int(data.n_items),
                "interactions": len(data),
                "holdout_users": len(truth),
                "products_created": created,
                "segments": segments,
                "seconds": timings,
                "artifact_data": "the training window (before the holdout)",
            },
            context_stats=context_stats,
            status=ModelStatus.CANDIDATE,
            progress=1.0 if not promote else 0.65,
            progress_message="candidate (not promoted)" if not promote else "active; retraining on all data",
            finished_at=timezone.now(),
        )
        version = ModelVersion.objects.defer("artifact").get(pk=version.pk)
        if promote:
            version = model_version_promote(version=version, by="refresh", reason=decision)
    timings["published"] = round(time.monotonic() - started, 3)
    del candidate, parts
    if promote and settings.RECS_RETRAIN_ON_ALL_DATA:
        # the evaluated model is live; now the same recipe on all the data (holdout included) replaces it
        t0 = time.monotonic()
        final = train_bundle(
            data=data, catalog=catalog, params=version.params, now=now, progress=progress.span(0.65, 0.95)
        )
        timings["train_final"] = round(time.monotonic() - t0, 3)
        _segment_popularity(final)
        _forget_erased(final)
        _rank_heads(final, timings)
        version = model_version_republish(version=version, bundle=final, data_until=_ts(now))
    timings["total"] = round(time.monotonic() - started, 3)
    stats = {**version.data_stats, "seconds": timings}
    if promote and settings.RECS_RETRAIN_ON_ALL_DATA:
        stats["artifact_data"] = "all the data (retrained after the evaluation)"
    ModelVersion.objects.filter(pk=version.pk).update(progress=1.0, progress_message=version.status, data_stats=stats)
    version = ModelVersion.objects.defer("artifact").get(pk=version.pk)
    _drop_old_artifacts()
    return version


def model_artifact_store(*, version_id: int, parts: tuple, revise: bool = False) -> None:
    """Store a model's parts (``ModelBundle.to_parts``): the item part in ``ModelVersion.artifact``,
    the per-person part as ``ModelPeopleShard`` rows; ``revise``: a new revision of an artifact.
    The bytes are bound in binary on the server side (``selectors._binary_cursor``)."""
    from recommendations.selectors import _binary_cursor

    item, shards, people = parts
    versions, shard_table = ModelVersion._meta.db_table, ModelPeopleShard._meta.db_table
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL statement_timeout = 0")  # a large model may take longer than requests may
        with _binary_cursor() as binary:
            binary.execute(f"DELETE FROM {shard_table} WHERE version_id = %s", [version_id])  # noqa: S608
            binary.executemany(
                f"INSERT INTO {shard_table} (version_id, shard, people, data) VALUES (%s, %s, %s, %b)",  # noqa: S608
                [(version_id, n, count, blob) for n, count, blob in people],
            )
            binary.execute(
                f"UPDATE {versions} SET artifact = %b, artifact_bytes = %s, people_shards = %s, "  # noqa: S608
                "artifact_token = %s, artifact_revision = artifact_revision + %s WHERE id = %s",
                [
                    item,
                    len(item) + sum(len(blob) for _, _, blob in people),
                    shards,
                    uuid.uuid4().hex,
                    1 if revise else 0,
                    version_id,
                ],
            )


def model_version_republish(*, version: ModelVersion, bundle, data_until: datetime | None = None) -> ModelVersion:
    """Replace a version's artifact (a new revision); when it is the active one, servers reload it."""
    parts = bundle.to_parts()
    with transaction.atomic():
        locked = ModelVersion.objects.select_for_update().defer("artifact").get(pk=version.pk)
        model_artifact_store(version_id=locked.pk, parts=parts, revise=True)
        if data_until is not None:
            ModelVersion.objects.filter(pk=locked.pk).update(data_until=data_until)
        locked = ModelVersion.objects.defer("artifact").get(pk=locked.pk)
        if locked.status == ModelStatus.ACTIVE:
            _publish_on_commit(locked)
    return locked


def _against_active(
    version: ModelVersion, cand_metrics: dict, train, catalog, truth, progress
) -> tuple[bool, str, dict]:
    """(promote, decision, baseline metrics): the candidate against the active model's recipe refitted
    on the same window (or its own metrics when the recipe is the same) on the same holdout."""
    from recommendations.engine.bundle import train_bundle
    from recommendations.engine.evaluate import evaluate_bundle

    metric = settings.RECS_PRIMARY_METRIC
    k = _metric_k(metric)
    active = ModelVersion.objects.filter(status=ModelStatus.ACTIVE).defer("artifact").first()
    baseline: dict = {}
    if active is None:
        promote, decision = True, "no active model: the first model is promoted"
    else:
        same_recipe = _recipe(active.params) == _recipe(version.params)
        if same_recipe:
            baseline = {**cand_metrics, "recipe": "same as the candidate"}
        else:
            progress(0.45, f"re-fitting the active model v{active.pk}'s recipe on the same window")
            champion = train_bundle(
                data=train, catalog=catalog, params=active.params, now=truth.cutoff, progress=progress.span(0.45, 0.6)
            )
            baseline = evaluate_bundle(champion, truth, k)
            del champion
        baseline["active_version"] = active.pk
        # the stored artifact itself, for information: it has seen part of this holdout in training
        if ModelVersion.objects.filter(pk=active.pk, artifact__isnull=False).exists():
            from recommendations.selectors import model_bundle_load

            try:
                stored = evaluate_bundle(model_bundle_load(version_id=active.pk), truth, k)
                baseline["stored_artifact"] = {key: stored[key] for key in stored if "@" in key}
            except Exception as exc:  # an artifact of an older format: informative only
                baseline["stored_artifact_error"] = str(exc)[:200]
        ours, theirs = float(cand_metrics.get(metric, 0.0)), float(baseline.get(metric, 0.0))
        if same_recipe:
            promote = ours >= theirs
            decision = (
                f"same recipe as the active v{active.pk}: retrained on fresher data "
                f"({metric} {ours:.4f} on the holdout)"
            )
        else:
            promote = ours > theirs
            verb = "beats" if promote else "does not beat"
            decision = f"{metric} {ours:.4f} {verb} the active v{active.pk}'s recipe {theirs:.4f} on the same holdout"
    if len(truth) == 0 and active is not None:
        promote, decision = False, "the holdout has no customers to evaluate on: nothing promoted"
    return promote, decision, baseline


def _rank_heads(bundle, timings: dict) -> None:
    """The head of every known person's ranking, kept with the model (``engine/ranked.py``)."""
    from recommendations.engine.ranked import precompute

    t0 = time.monotonic()
    precompute(bundle)
    timings["rank_heads"] = round(timings.get("rank_heads", 0.0) + time.monotonic() - t0, 3)


@contextmanager
def _heads_alongside(bundle, timings: dict, *, enabled: bool):
    """Rank the heads (``_rank_heads``) on other threads while the block runs, and wait for them at
    its end. The block is the evaluation, the comparison with the active model and the segment and
    context statistics: one thread of numpy, scipy and PostgreSQL round trips, which leaves the
    second core of a two-core machine idle; the heads' threads (numpy, hnswlib and the compiled tree
    walk, the GIL released) use it, within their own time bound. What both read and cache on first
    use is built here first (``ranked.prepare``), so neither thread writes what the other reads."""
    if not enabled:
        yield
        return
    from concurrent.futures import ThreadPoolExecutor

    from recommendations.engine.ranked import prepare

    prepare(bundle)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rank-heads")
    heads = pool.submit(_rank_heads, bundle, timings)
    pool.shutdown(wait=False)
    try:
        yield
    except BaseException:
        wait([heads])  # the refresh fails; the heads' thread ends first (its own error is not the cause)
        raise
    heads.result()  # re-raises the heads' error


def _forget_erased(bundle) -> int:
    """People erased (or merged away), or who withdrew personalisation consent, while the model
    trained leave it before it is stored. Returns how many left."""
    from recommendations.selectors import training_consent_condition

    users = [str(u) for u in bundle.state.users]
    if not users:
        return 0
    consent_sql, consent_args = training_consent_condition()
    live: set[str] = set()
    with connection.cursor() as cursor:
        for start in range(0, len(users), 50_000):
            cursor.execute(  # consent_sql: consent's condition (code), values are parameters
                "SELECT p.id::text FROM profiles_profile p WHERE p.id = ANY(%(ids)s::uuid[]) "  # noqa: S608
                f"AND p.merged_into_id IS NULL AND {consent_sql}",
                {"ids": users[start : start + 50_000], **consent_args},
            )
            live.update(row[0] for row in cursor.fetchall())
    gone = [u for u in users if u not in live]
    if gone:
        bundle.forget_users(gone)
    return len(gone)


def _metric_k(metric: str) -> int:
    try:
        return int(metric.split("@", 1)[1])
    except (IndexError, ValueError):
        return 10


def _recipe(params: dict) -> str:
    from recommendations.engine.params import merge_params

    return json.dumps(merge_params(params), sort_keys=True, default=str)


def _products_from_catalog(catalog) -> int:
    """Products that orders imported in bulk (no hooks) know about but the catalog does not."""
    if catalog is None or len(catalog) == 0:
        return 0
    known = set(Product.objects.filter(sku__in=list(catalog.items)).values_list("sku", flat=True))
    missing = [
        {
            "sku": str(sku)[:100],
            "title": str(catalog.title[n])[:500],
            "category": str(catalog.category[n])[:500],
            "brand": str(catalog.brand[n])[:200],
            "price": _decimal(None if catalog.price[n] != catalog.price[n] else catalog.price[n]),
        }
        for n, sku in enumerate(catalog.items)
        if sku not in known and str(sku).strip()
    ]
    return products_insert_missing(products=missing, source=ProductSource.IMPORT)


def _segment_popularity(bundle) -> int:
    """Popularity among the members of each active segment (needs the segments app's selectors)."""
    try:
        from segments.selectors import segment_member_ids, segments_active
    except ImportError:  # segments not there (yet)
        return 0
    count = 0
    for segment in segments_active():
        bundle.segment_popularity_set(
            slug=segment.slug, name=segment.name, user_ids=segment_member_ids(segment=segment)
        )
        count += 1
    return count


def context_stats_compute(*, since: datetime) -> dict:
    """How each top category's share of product interest changes with the device and the hour of
    day: ``{"device": {"mobile": {"fashion": 1.3, …}}, "daypart": {"evening": {…}}}`` (lifts,
    1.0 = as usual). One aggregate over the events; serving multiplies scores by these lifts."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT device_type,
                   CASE WHEN local_hour IS NULL THEN ''
                        WHEN local_hour < 6 THEN 'night' WHEN local_hour < 12 THEN 'morning'
                        WHEN local_hour < 18 THEN 'afternoon' ELSE 'evening' END AS daypart,
                   split_part(coalesce(properties->>'category', ''), ' > ', 1) AS category,
                   count(*)
            FROM profiles_event
            WHERE name IN ('Product Viewed', 'Product Added') AND occurred_at >= %s
              AND properties ? 'category'
            GROUP BY 1, 2, 3
            """,
            [since],
        )
        rows = cursor.fetchall()
    total: dict[str, float] = {}
    by: dict[str, dict[str, dict[str, float]]] = {"device": {}, "daypart": {}}
    for device, daypart, category, n in rows:
        if not category:
            continue
        total[category] = total.get(category, 0) + n
        if device:
            by["device"].setdefault(device, {}).setdefault(category, 0)
            by["device"][device][category] += n
        if daypart:
            by["daypart"].setdefault(daypart, {}).setdefault(category, 0)
            by["daypart"][daypart][category] += n
    grand = sum(total.values())
    out: dict[str, dict] = {"device": {}, "daypart": {}}
    if not grand:
        return out
    for dimension, values in by.items():
        for value, counts in values.items():
            n = sum(counts.values())
            if n < 50:  # too few to say anything
                continue
            out[dimension][value] = {
                category: round((counts.get(category, 0) / n) / (total[category] / grand), 3) for category in total
            }
    return out


def _drop_old_artifacts() -> None:
    keep = list(
        ModelVersion.objects.exclude(status=ModelStatus.ACTIVE)
        .filter(artifact__isnull=False)
        .order_by("-created_at")
        .values_list("pk", flat=True)[:KEEP_ARTIFACTS]
    )
    old = ModelVersion.objects.exclude(status=ModelStatus.ACTIVE).exclude(pk__in=keep).filter(artifact__isnull=False)
    ModelPeopleShard.objects.filter(version__in=old).delete()
    old.update(artifact=None, people_shards=0, artifact_token="")


# --- served log and erasure ------------------------------------------------------------------------


def recommendation_served_record(
    *,
    id,
    profile_id,
    model_version_id: int | None,
    placement: str,
    personalised: bool,
    items: list[str],
    strategy=None,
) -> None:
    """Log one answer of the serving API: at once (one INSERT), or handed to this process's log
    writer (``RECS_SERVED_LOG_ASYNC``), which inserts the answers of the last 50 ms in one statement.
    ``strategy`` (experiments.strategy.Strategy) names the experiment, variant, bandit policy and
    propensity that chose the answer; its ``policy`` is ``"<policy key>@<context>"``."""
    policy, _, arm_context = ((strategy.policy if strategy else None) or "").partition("@")
    row = (
        str(id),
        str(profile_id) if profile_id else None,
        model_version_id,
        placement,
        personalised,
        items,
        (strategy.experiment if strategy else None) or "",
        (strategy.variant if strategy else None) or "",
        policy,
        arm_context,
        float(strategy.propensity) if strategy else 1.0,
    )
    if settings.RECS_SERVED_LOG_ASYNC:
        served_log_writer.add(row)
    else:
        recommendations_served_insert(rows=[row])


def recommendations_served_insert(*, rows: list[tuple]) -> int:
    """Insert served-log rows in one statement. Rows of people erased meanwhile are dropped."""
    columns: list[list] = [[] for _ in range(11)]
    for row in rows:
        row = tuple(row) + ("", "", "", "", 1.0)[len(row) - 6 :] if len(row) < 11 else row
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    columns[5] = [json.dumps(items) for items in columns[5]]
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO recommendations_recommendationserved
                (id, profile_id, model_version_id, placement, personalised, items,
                 experiment, variant, policy, arm_context, propensity, created_at)
            SELECT t.id, t.profile_id, t.model_version_id, t.placement, t.personalised, t.items::jsonb,
                   t.experiment, t.variant, t.policy, t.arm_context, t.propensity, now()
            FROM unnest(%s::uuid[], %s::uuid[], %s::bigint[], %s::text[], %s::bool[], %s::text[],
                        %s::text[], %s::text[], %s::text[], %s::text[], %s::float8[])
                AS t(id, profile_id, model_version_id, placement, personalised, items,
                     experiment, variant, policy, arm_context, propensity)
            WHERE t.profile_id IS NULL OR EXISTS (SELECT 1 FROM profiles_profile p WHERE p.id = t.profile_id)
            """,
            columns,
        )
        return cursor.rowcount


class ServedLogWriter:
    """Per process: answers wait here for at most ``interval`` seconds, then one INSERT writes them
    (from a daemon thread with its own database connection). Flushed at exit; a crash loses at most
    the last interval's rows of that process."""

    def __init__(self, interval: float = 0.05) -> None:
        import threading

        self.interval = interval
        self.rows: list[tuple] = []
        self.lock = threading.Lock()
        self.writing = threading.Lock()  # one INSERT at a time: flush() returns once earlier rows are in
        self.wake = threading.Event()
        self.thread: threading.Thread | None = None
        self.pid = 0

    def add(self, row: tuple) -> None:
        import os

        with self.lock:
            self.rows.append(row)
            if self.thread is None or self.pid != os.getpid():  # started lazily, again after a fork
                self._start()

    def _start(self) -> None:
        import atexit
        import os
        import threading

        self.pid = os.getpid()
        self.thread = threading.Thread(target=self._run, name="recs-served-log", daemon=True)
        self.thread.start()
        atexit.register(self.flush)

    def _run(self) -> None:
        while True:
            time.sleep(self.interval)
            if self.flush():
                connection.close()  # this thread's connection goes back to the pool

    def flush(self) -> int:
        """Write the rows added so far. Returns after they (and any rows the writer thread was
        writing at the call) are in the database, so a caller that flushes sees the whole log."""
        with self.writing:
            with self.lock:
                rows, self.rows = self.rows, []
            if not rows:
                return 0
            try:
                return recommendations_served_insert(rows=rows)
            except Exception:  # never kill the writer; the rows of this interval are lost, and logged
                logger.exception("recommendations: could not write %d served-log rows", len(rows))
                return 0


served_log_writer = ServedLogWriter()


def recommendations_erase(*, profile_ids: list[str]) -> dict:
    """Erasure, inside the erasure's transaction: the served log of these people goes, and they are
    recorded as pending for the stored models. Rewriting the artifacts (hundreds of MB at catalog
    size) is the follow-up ``model_erasures_apply``, run right after the commit."""
    deleted, _ = RecommendationServed.objects.filter(profile_id__in=profile_ids).delete()
    pending = False
    if profile_ids and ModelVersion.objects.filter(artifact__isnull=False).exists():
        PendingModelErasure.objects.create(profile_ids=[str(p) for p in profile_ids])
        pending = True
    return {"served_deleted": deleted, "models_pending": pending}


def _artifact_users(blob: bytes) -> set[str]:
    """The user ids a stored artifact holds, read without loading the rest of it."""
    from recommendations.engine.bundle import ModelBundle

    return ModelBundle.users_of(blob)


def model_erasures_apply() -> dict:
    """Remove every pending erased person from every stored model that holds them: only the shards
    of the per-person part where their ids fall are read and rewritten (a new revision of the model
    each; the active one is republished so servers reload it within a second), then the pending
    rows go. Idempotent; safe to run concurrently (the pending rows are claimed)."""
    from recommendations.engine.bundle import ModelBundle, shard_of

    started = time.monotonic()
    with transaction.atomic():
        claimed = list(PendingModelErasure.objects.select_for_update(skip_locked=True).values_list("pk", "profile_ids"))
        if not claimed:
            return {"people": 0, "models_updated": []}
        people = sorted({str(p) for _, ids in claimed for p in ids})
        gone = set(people)
        forgotten: list[int] = []
        stored = ModelVersion.objects.filter(artifact__isnull=False).values_list("pk", "people_shards")
        for version_id, shards in stored:
            if shards == 0:  # an artifact stored whole (before the per-person part was kept apart)
                changed = _erase_whole_artifact(version_id, people)
            else:
                changed = 0
                wanted = sorted(set(shard_of(people, shards).tolist()))
                rows = ModelPeopleShard.objects.select_for_update().filter(version_id=version_id, shard__in=wanted)
                for row in rows:
                    data, left, removed = ModelBundle.shard_forget(bytes(row.data), gone)
                    if removed:
                        ModelPeopleShard.objects.filter(pk=row.pk).update(data=data, people=left)
                        changed += removed
                if changed:
                    ModelVersion.objects.filter(pk=version_id).update(
                        artifact_revision=F("artifact_revision") + 1, artifact_token=uuid.uuid4().hex
                    )
            if not changed:
                continue
            forgotten.append(version_id)
            row = ModelVersion.objects.filter(pk=version_id).values_list("status", "artifact_revision").first()
            if row and row[0] == ModelStatus.ACTIVE:
                transaction.on_commit(lambda v=version_id, r=row[1]: publish_active(version_id=v, revision=r))
        PendingModelErasure.objects.filter(pk__in=[pk for pk, _ in claimed]).delete()
    return {"people": len(people), "models_updated": forgotten, "seconds": round(time.monotonic() - started, 3)}


def _erase_whole_artifact(version_id: int, people: list[str]) -> int:
    """The people out of an artifact stored whole: it is read, and stored again in parts."""
    from recommendations.engine.bundle import ModelBundle

    with connection.cursor() as cursor:  # rewriting a large artifact may take longer than requests may
        cursor.execute("SET LOCAL statement_timeout = 0")
    blob = ModelVersion.objects.filter(pk=version_id).values_list("artifact", flat=True).first()
    if blob is None:
        return 0
    blob = bytes(blob)
    if not set(people) & _artifact_users(blob):
        return 0
    bundle = ModelBundle.from_bytes(blob)
    del blob
    before = bundle.state.n_users
    bundle.forget_users(people)
    model_artifact_store(version_id=version_id, parts=bundle.to_parts(), revise=True)
    return before - bundle.state.n_users


def recommendations_consent_withdrawn(*, profile_ids: list[str]) -> list[int]:
    """Those of these people who do not allow personalisation now (a withdrawal, consent's hook) are
    forgotten by every stored model, as erasure forgets them (the same pending rows and follow-up);
    their served log stays (it is the shop's record of what was shown). Returns the versions
    rewritten. Safe to run twice."""
    from consent.selectors import consent_granted

    withdrawn = [str(p) for p in profile_ids if not consent_granted(profile_id=p, purpose="personalisation")]
    if not withdrawn or not ModelVersion.objects.filter(artifact__isnull=False).exists():
        return []
    PendingModelErasure.objects.create(profile_ids=withdrawn)
    return model_erasures_apply()["models_updated"]
