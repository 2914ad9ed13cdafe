"""The serving path: the active model and the catalog, cached in each process, and the ranking.

Per request: at most one Redis round trip a second (the active version key and the catalog
version, one MGET), and a handful of small queries — the profile, consent, the profile's recent
events, its segments, and the insert of the served log. The model is loaded from PostgreSQL only
when the published version changes (a refresh, a rollback, an erasure), by one thread while the
others keep answering with the model they have. With Redis unreachable the active version is read
from PostgreSQL instead (at most once a second).
"""

from __future__ import annotations

import gc
import logging
import math
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.utils import timezone

from profiles.models import Identifier, Profile
from profiles.normalize import normalize_identifier

from .experiments.strategy import strategy_for  # [issue 14]
from .models import BusinessRule, ModelStatus, ModelVersion, Product, RuleKind
from .services import ACTIVE_KEY, CATALOG_KEY, recommendation_served_record

logger = logging.getLogger("cdp.recommendations")

CATALOG_MAX_AGE = 60.0  # seconds: with Redis down (no version to compare), reload the catalog this often
CATALOG_SAFETY_AGE = 900.0  # with Redis up, the version decides; this only bounds a lost bump
RECENT_EVENTS = 200
SESSION_BOOST = 1.3
CONTEXT_CLIP = (0.8, 1.25)
OVERFETCH = 2  # items asked of the model per item shown (filters and diversity drop some)


@dataclass
class ActiveModel:
    version_id: int
    revision: int
    bundle: object
    context_stats: dict


@dataclass
class CatalogArrays:
    version: object
    loaded_at: float
    title: dict[str, str] = field(default_factory=dict)
    category: dict[str, str] = field(default_factory=dict)  # top level
    out_of_stock: set[str] = field(default_factory=set)
    known: set[str] = field(default_factory=set)
    rules: list[tuple[str, str, float, str]] = field(default_factory=list)  # kind, category, factor, placement


class _Runtime:
    """What one process keeps between requests."""

    def __init__(self) -> None:
        self.model: ActiveModel | None = None
        self.catalog: CatalogArrays | None = None
        self.checked_at = -1e9
        self.lock = threading.Lock()

    def reset(self) -> None:
        self.model = None
        self.catalog = None
        self.checked_at = -1e9


runtime = _Runtime()


def _published() -> tuple[str | None, object]:
    """(active key, catalog version) from Redis; the active key from PostgreSQL when Redis fails."""
    try:
        values = cache.get_many([ACTIVE_KEY, CATALOG_KEY])
        active = values.get(ACTIVE_KEY)
        if active is None:
            active = _active_from_db()
            if active is not None:
                cache.set(ACTIVE_KEY, active, timeout=None)
        return active, values.get(CATALOG_KEY, 0)
    except Exception as exc:
        logger.warning("recommendations: Redis unavailable (%s); reading the active model from PostgreSQL", exc)
        return _active_from_db(), None


def _active_from_db() -> str | None:
    row = ModelVersion.objects.filter(status=ModelStatus.ACTIVE).values_list("pk", "artifact_revision").first()
    return f"{row[0]}:{row[1]}" if row else None


_limited = False


def _freeze() -> None:
    """Move what is loaded now (hundreds of thousands of objects: id vocabularies, indexes, catalog
    dicts) out of the cyclic garbage collector's reach: a full collection over them paused every
    thread of the process for about 0.3 s, which was most of the serving p99. Unreferenced objects
    are still freed by reference counting (the bundle has no cycles)."""
    gc.collect()
    gc.freeze()


def _one_thread() -> None:
    """Native thread pools (OpenMP, BLAS) of a web process stay at one thread: a request's small
    predictions only lose time handing work to threads, and the process has request threads."""
    global _limited
    if not _limited:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1)
        _limited = True


def _load_model(key: str) -> ActiveModel | None:
    from recommendations.engine.bundle import ModelBundle

    version_id = key.partition(":")[0]
    row = (
        ModelVersion.objects.filter(pk=int(version_id))
        .values_list("artifact", "artifact_revision", "context_stats")
        .first()
    )
    if row is None or row[0] is None:
        return None
    _one_thread()
    started = time.monotonic()
    bundle = ModelBundle.from_bytes(bytes(row[0]))
    logger.info("recommendations: loaded model v%s.%s in %.2fs", version_id, row[1], time.monotonic() - started)
    return ActiveModel(version_id=int(version_id), revision=int(row[1]), bundle=bundle, context_stats=row[2] or {})


def _load_catalog(version: object) -> CatalogArrays:
    arrays = CatalogArrays(version=version, loaded_at=time.monotonic())
    rows = Product.objects.values_list("sku", "title", "category", "in_stock").iterator(chunk_size=10_000)
    for sku, title, category, in_stock in rows:
        arrays.known.add(sku)
        arrays.title[sku] = title
        arrays.category[sku] = category.split(" > ")[0] if category else ""
        if not in_stock:
            arrays.out_of_stock.add(sku)
    arrays.rules = list(
        BusinessRule.objects.filter(is_active=True).values_list("kind", "category", "factor", "placement")
    )
    return arrays


def current() -> tuple[ActiveModel | None, CatalogArrays]:
    """The active model and the catalog for this request (reloaded when their versions change)."""
    rt = runtime
    now = time.monotonic()
    if now - rt.checked_at >= settings.RECS_VERSION_CHECK_SECONDS or rt.catalog is None:
        rt.checked_at = now
        active, catalog_version = _published()
        model_key = f"{rt.model.version_id}:{rt.model.revision}" if rt.model else None
        stale_catalog = (
            rt.catalog is None
            or (catalog_version is not None and catalog_version != rt.catalog.version)
            or now - rt.catalog.loaded_at > (CATALOG_MAX_AGE if catalog_version is None else CATALOG_SAFETY_AGE)
        )
        # one thread reloads; the others keep answering with what they have (if anything)
        if (active != model_key or stale_catalog) and rt.lock.acquire(blocking=rt.model is None or rt.catalog is None):
            try:
                if stale_catalog:
                    rt.catalog = _load_catalog(catalog_version)
                if active is None:
                    rt.model = None
                elif active != model_key:
                    rt.model = _load_model(active)
                _freeze()
            finally:
                rt.lock.release()
    return rt.model, rt.catalog  # type: ignore[return-value]


# --- the request ---------------------------------------------------------------------------------


@dataclass
class Query:
    profile_id: str | None = None
    user_id: str | None = None
    anonymous_id: str | None = None
    k: int = 10
    placement: str = ""
    device: str = ""
    local_hour: int | None = None
    session_items: list[str] = field(default_factory=list)
    exclude_categories: list[str] = field(default_factory=list)
    boost_categories: list[str] = field(default_factory=list)
    max_per_category: int | None = None


class UnknownProfile(LookupError):
    pass


_consent_q: tuple[float, dict] = (-1e9, {})


def _consent_annotation(profile_field: str):
    """consent.selectors.consent_granted_q as a boolean column, built at most once a second per
    process (building it reads the purpose's default)."""
    global _consent_q
    from django.db.models import BooleanField, ExpressionWrapper

    from consent.selectors import consent_granted_q

    built_at, cached = _consent_q
    now = time.monotonic()
    if now - built_at > 1.0:
        cached = {}
        _consent_q = (now, cached)
    if profile_field not in cached:
        cached[profile_field] = ExpressionWrapper(
            consent_granted_q(purpose="personalisation", profile_field=profile_field), output_field=BooleanField()
        )
    return cached[profile_field]


class _Compiled:
    """An ORM query compiled at most once a second (with placeholder values) and executed as a
    server-side prepared statement with the real ones: the request pays neither the ORM's compiler
    nor PostgreSQL's planner (about 2 ms of a 4 ms look-up on a busy machine)."""

    def __init__(self, build, placeholders: tuple) -> None:
        self.build, self.placeholders = build, placeholders
        self.at = -1e9
        self.sql = ""
        self.params: list = []
        self.slots: list[int] = []

    def _compile(self) -> None:
        sql, params = self.build(*self.placeholders).query.sql_with_params()
        params = list(params)
        self.slots = [params.index(p) for p in self.placeholders]
        self.sql, self.params, self.at = sql, params, time.monotonic()

    def fetch(self, *values, many: bool = False):
        if time.monotonic() - self.at > 1.0:
            self._compile()
        params = list(self.params)
        for slot, value in zip(self.slots, values, strict=True):
            params[slot] = value
        return _prepared(self.sql, params, many=many)


def _prepared(sql: str, params: list, *, many: bool = False):
    """Run a statement prepared on this (pooled, long-lived) connection."""
    import psycopg

    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(sql, params, prepare=True)
        return cursor.fetchall() if many else cursor.fetchone()


_UUID_SLOT = uuid.UUID(int=0xC0FFEE)
_profile_query = _Compiled(
    lambda pk: (
        Profile.objects.filter(pk=pk)
        .annotate(ok=_consent_annotation("pk"))
        .values_list("pk", "merged_into_id", "ok")[:1]
    ),
    (_UUID_SLOT,),
)
_identifier_query = _Compiled(
    lambda kind, value: (
        Identifier.objects.filter(kind=kind, value=value)
        .annotate(ok=_consent_annotation("profile_id"))
        .values_list("profile_id", "profile__merged_into_id", "ok")[:1]
    ),
    ("\x01kind", "\x01value"),
)


def resolve_profile(query: Query) -> tuple[str | None, bool]:
    """The live profile the query names and whether it may be personalised (its personalisation
    consent, ``consent_granted_q``), in one query in the usual case. (None, False): nobody named or
    an unknown user/anonymous id (an anonymous shopper); UnknownProfile: a profile_id that does not
    exist."""
    if query.profile_id:
        row = _profile_query.fetch(uuid.UUID(str(query.profile_id)))
        if row is None:
            raise UnknownProfile(query.profile_id)
    else:
        row = None
        for kind, value in (("user_id", query.user_id), ("anonymous_id", query.anonymous_id)):
            normalised = normalize_identifier(kind, value) if value else None
            if normalised is None:
                continue
            row = _identifier_query.fetch(kind, normalised)
            if row is not None:
                break
        if row is None:
            return None, False
    pk, merged_into, ok = row
    if merged_into is not None:  # a merged-away id: the survivor's consent decides
        return str(merged_into), personalisation_allowed(str(merged_into))
    return str(pk), bool(ok)


def personalisation_allowed(profile_id: str) -> bool:
    from consent.selectors import consent_granted

    return bool(consent_granted(profile_id=profile_id, purpose="personalisation"))


def _segments_of(profile_id):
    from segments.selectors import segments_active

    return (
        segments_active()
        .filter(memberships__profile_id=profile_id, memberships__exited_at__isnull=True)
        .values_list("slug", "name")
        .distinct()
    )


_segments_query = _Compiled(_segments_of, (_UUID_SLOT,))


def profile_segments(profile_id: str) -> list[tuple[str, str]]:
    """(slug, name) of the active segments the live profile is in (``segments_active`` and the open
    memberships; one prepared query, the id is already live)."""
    try:
        import segments.selectors  # noqa: F401
    except ImportError:
        return []
    return list(_segments_query.fetch(uuid.UUID(profile_id), many=True))


@dataclass
class History:
    bought: dict[str, float] = field(default_factory=dict)  # sku -> epoch seconds of the latest purchase
    session_items: list[str] = field(default_factory=list)  # most recent first
    session_category: str = ""
    device: str = ""
    local_hour: int | None = None


def recent_history(profile_id: str, catalog: CatalogArrays) -> History:
    """One query: the profile's latest product events (purchases in the recent window, the current
    session's items and category, its device and local hour)."""
    now = timezone.now()
    since = now - timedelta(days=settings.RECS_RECENT_PURCHASE_DAYS)
    rows = _prepared(
        """
        SELECT name, occurred_at, device_type, local_hour,
               CASE WHEN name = 'Order Completed' AND jsonb_typeof(properties -> 'products') = 'array' THEN
                   ARRAY(SELECT coalesce(line ->> 'product_id', line ->> 'sku')
                         FROM jsonb_array_elements(properties -> 'products') AS line
                         WHERE jsonb_typeof(line) = 'object')
               END,
               coalesce(properties ->> 'product_id', properties ->> 'sku'), properties ->> 'category'
        FROM profiles_event
        WHERE profile_id = %s AND occurred_at >= %s
          AND name IN ('Order Completed', 'Product Viewed', 'Product Added', 'Product Clicked')
        ORDER BY occurred_at DESC LIMIT %s
        """,
        [uuid.UUID(profile_id), since, RECENT_EVENTS],
        many=True,
    )
    history = History()
    gap = timedelta(minutes=settings.RECS_SESSION_MINUTES)
    in_session = bool(rows) and now - rows[0][1] <= gap
    previous = rows[0][1] if rows else None
    categories: dict[str, int] = {}
    for name, at, device, hour, bought, sku, category in rows:
        if in_session and previous - at > gap:
            in_session = False
        previous = at
        if name == "Order Completed":
            for line_sku in bought or ():
                if line_sku:
                    history.bought.setdefault(line_sku, at.timestamp())
        elif in_session:
            if sku and sku not in history.session_items:
                history.session_items.append(sku)
                top = catalog.category.get(sku) or (category or "").split(" > ")[0]
                if top:
                    categories[top] = categories.get(top, 0) + 1
            if not history.device and device:
                history.device = device
            if history.local_hour is None and hour is not None:
                history.local_hour = hour
    if categories:
        history.session_category = max(categories, key=categories.get)
    return history


def _daypart(hour: int | None) -> str:
    if hour is None:
        return ""
    return "night" if hour < 6 else "morning" if hour < 12 else "afternoon" if hour < 18 else "evening"


def _matches(category: str, patterns: list[str]) -> bool:
    return any(category == p or category.startswith(p + " > ") for p in patterns)


def explanation(reason: dict, catalog: CatalogArrays, personalised: bool) -> str:
    kind = reason.get("type")
    title = catalog.title.get(str(reason.get("item_id", ""))) or "an item"
    if kind == "bought":
        return f"Because you bought {title}"
    if kind == "similar_to":
        return f"Similar to {title} you viewed"
    if kind == "popular_in_segment":
        return f"Popular with {reason.get('name') or reason.get('segment')}"
    if kind == "trending":
        return "Trending now"
    if kind == "popular":
        return "Popular in our shop"
    return "Picked for you" if personalised else "Popular in our shop"


@dataclass
class Answer:
    recommendation_id: str
    model_version: int | None
    personalised: bool
    profile_id: str | None
    placement: str
    items: list[dict]
    context: dict
    experiment: str | None = None  # [issue 14] the experiment and variant that chose this answer
    variant: str | None = None  # [issue 14]


def recommend(query: Query) -> Answer:
    """Rank products for the shopper the query names: consent, filters, business rules, context
    re-ranking, diversity; the answer is logged as served."""
    model, catalog = current()
    profile_id, personalised = resolve_profile(query)
    history = History()
    segments: list[tuple[str, str]] = []
    if personalised:
        history = recent_history(profile_id, catalog)
        segments = profile_segments(profile_id)
    # [issue 14] the experiment / bandit strategy for this shopper (recommendations.experiments.strategy)
    strategy = strategy_for(
        profile_id=profile_id,
        placement=query.placement,
        device=query.device or history.device,
        segments=[slug for slug, _ in segments],
        personalisation_consent=personalised,
    )
    if not strategy.personalised:  # the non-personalised list, as for a shopper without consent
        personalised, segments, history = False, [], History(device=history.device, local_hour=history.local_hour)
    # [/issue 14]
    device = query.device or history.device
    hour = query.local_hour if query.local_hour is not None else history.local_hour
    # explicit session items are the page's context (allowed without consent); stored ones need it
    session_items = list(dict.fromkeys([*query.session_items, *history.session_items]))[:20]
    session_category = history.session_category or (
        catalog.category.get(query.session_items[0], "") if query.session_items else ""
    )
    exclude_categories = list(query.exclude_categories)
    boosts = [(c, settings.RECS_BOOST_FACTOR) for c in query.boost_categories]
    for kind, category, factor, placement in catalog.rules:
        if placement and placement != query.placement:
            continue
        if kind == RuleKind.EXCLUDE:
            exclude_categories.append(category)
        else:
            boosts.append((category, factor))
    repeat = set(settings.RECS_REPEAT_CATEGORIES)
    exclude = {sku for sku in history.bought if catalog.category.get(sku, "") not in repeat}
    exclude.update(query.session_items)

    items: list[dict] = []
    if model is not None:
        bundle = model.bundle
        context = {
            "segments": [slug for slug, _ in segments],
            "device": device,
            "local_hour": hour,
            "session_category": session_category,
            "placement": query.placement,
        }
        fetch = query.k * OVERFETCH
        while True:
            recs = bundle.recommend(
                user_id=profile_id if personalised else None,
                session_items=session_items,
                k=fetch,
                exclude=exclude,
                context=context,
            )
            items = _rank(
                recs, query, catalog, model, exclude_categories, boosts, device, hour, session_category, personalised
            )
            # filters and the diversity cap left too few: ask the model for more (rare)
            if len(items) >= query.k or len(recs) < fetch or fetch >= query.k * 20:
                break
            fetch *= 4
    answer = Answer(
        recommendation_id=str(uuid.uuid4()),
        model_version=model.version_id if model else None,
        personalised=personalised,
        profile_id=profile_id,
        placement=query.placement,
        items=items,
        context={"device": device, "local_hour": hour, "session_category": session_category},
        experiment=strategy.experiment,  # [issue 14]
        variant=strategy.variant,  # [issue 14]
    )
    recommendation_served_record(
        id=answer.recommendation_id,
        profile_id=profile_id,
        model_version_id=answer.model_version,
        placement=query.placement,
        personalised=personalised,
        items=[item["sku"] for item in items],
        strategy=strategy,  # [issue 14] experiment, variant, policy, propensity go in the served log
    )
    return answer


def _rank(recs, query, catalog, model, exclude_categories, boosts, device, hour, session_category, personalised):
    stats = model.context_stats or {}
    device_lift = (stats.get("device") or {}).get(device) or {}
    hour_lift = (stats.get("daypart") or {}).get(_daypart(hour)) or {}
    low, high = CONTEXT_CLIP
    scored = []
    # the bundle's order is the ranking (its tiers: the person's model, the session, segment and global
    # popularity, have scores on different scales); re-ranking works on a rank-based score
    for rank, rec in enumerate(recs):
        sku = rec.item_id
        if sku in catalog.out_of_stock or (catalog.known and sku not in catalog.known):
            continue
        category = catalog.category.get(sku, "")
        if exclude_categories and _matches(category, exclude_categories):
            continue
        factor = 1.0
        for pattern, boost in boosts:
            if _matches(category, [pattern]):
                factor *= boost
        if category:
            factor *= min(high, max(low, device_lift.get(category, 1.0)))
            factor *= min(high, max(low, hour_lift.get(category, 1.0)))
            if session_category and category == session_category:
                factor *= SESSION_BOOST
        scored.append((factor / math.log2(rank + 2), rec, category))
    scored.sort(key=lambda row: -row[0])
    cap = query.max_per_category or settings.RECS_MAX_PER_CATEGORY
    per_category: dict[str, int] = {}
    out: list[dict] = []
    for score, rec, category in scored:
        if per_category.get(category, 0) >= cap and category:
            continue
        per_category[category] = per_category.get(category, 0) + 1
        out.append(
            {
                "sku": rec.item_id,
                "title": catalog.title.get(rec.item_id, ""),
                "category": category,
                "score": round(score, 6),
                "recommender": rec.recommender,
                "reason": rec.reason,
                "explanation": explanation(rec.reason, catalog, personalised),
            }
        )
        if len(out) >= query.k:
            break
    return out


def similar(*, sku: str, k: int) -> Answer | None:
    """Items similar to ``sku`` (in stock), logged as served; None for an unknown product."""
    model, catalog = current()
    if sku not in catalog.known and not Product.objects.filter(sku=sku).exists():
        return None
    items: list[dict] = []
    if model is not None:
        for rec in model.bundle.similar(item_id=sku, k=k * OVERFETCH):
            if rec.item_id in catalog.out_of_stock:
                continue
            items.append(
                {
                    "sku": rec.item_id,
                    "title": catalog.title.get(rec.item_id, ""),
                    "category": catalog.category.get(rec.item_id, ""),
                    "score": round(float(rec.score), 6),
                    "recommender": rec.recommender,
                    "reason": rec.reason,
                    "explanation": explanation(rec.reason, catalog, False).replace(" you viewed", ""),
                }
            )
            if len(items) >= k:
                break
    answer = Answer(
        recommendation_id=str(uuid.uuid4()),
        model_version=model.version_id if model else None,
        personalised=False,
        profile_id=None,
        placement="similar",
        items=items,
        context={},
    )
    recommendation_served_record(
        id=answer.recommendation_id,
        profile_id=None,
        model_version_id=answer.model_version,
        placement="similar",
        personalised=False,
        items=[item["sku"] for item in items],
    )
    return answer
