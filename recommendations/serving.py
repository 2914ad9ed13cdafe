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
import re
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.utils import timezone

from profiles.models import Identifier, Profile
from profiles.normalize import normalize_identifier

from .experiments.strategy import Strategy, strategy_for
from .models import BusinessRule, ModelStatus, ModelVersion, Placement, PlacementKind, Product, RuleKind
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
    placements: dict[str, tuple[str, int | None]] = field(default_factory=dict)  # key -> (kind, default k)


class _Runtime:
    """What one process keeps between requests."""

    def __init__(self) -> None:
        self.model: ActiveModel | None = None
        self.catalog: CatalogArrays | None = None
        self.checked_at = -1e9
        self.lock = threading.Lock()
        self.pinned: dict[int, ActiveModel | None] = {}  # versions a strategy asked for (at most two)

    def reset(self) -> None:
        global _default_read
        self.model = None
        self.catalog = None
        self.checked_at = -1e9
        self.pinned = {}
        _default_read = (-1e9, None)
        for compiled in _compiled:
            compiled.reset()


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
    predictions only lose time handing work to threads, and the process has request threads. And
    glibc's allocator is told to give large blocks back: by default it raises its mmap threshold
    after the first large free (a model load frees hundreds of MB), after which every request's
    temporary arrays come from per-thread heaps that keep their memory for good."""
    global _limited
    if not _limited:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1)
        try:
            import ctypes

            libc = ctypes.CDLL("libc.so.6")
            libc.mallopt(-3, 256 * 1024)  # M_MMAP_THRESHOLD: fixed (no dynamic raise), 256 KB
            libc.mallopt(-8, 2)  # M_ARENA_MAX: request threads share two heaps
        except (OSError, AttributeError):
            pass
        _limited = True


def _load_model(key: str) -> ActiveModel | None:
    from recommendations.engine.bundle import ModelBundle

    version_id = int(key.partition(":")[0])
    row = ModelVersion.objects.filter(pk=version_id).values_list("artifact_token", "context_stats").first()
    if row is None:
        return None
    _one_thread()
    started = time.monotonic()
    files = model_files(version_id=version_id, token=row[0]) if row[0] else None
    if files is not None:
        revision, item, people = files
        bundle = ModelBundle.from_parts(item, people)
    else:  # an artifact stored whole, before models were stored in parts: read into memory
        found = ModelVersion.objects.filter(pk=version_id).values_list("artifact", "artifact_revision").first()
        if found is None or found[0] is None:
            return None
        bundle, revision = ModelBundle.from_bytes(bytes(found[0])), found[1]
    if not settings.RECS_RANKED_HEADS:
        bundle.heads_off()
    _release_freed_memory()
    logger.info("recommendations: loaded model v%s.%s in %.2fs", version_id, revision, time.monotonic() - started)
    return ActiveModel(version_id=version_id, revision=int(revision), bundle=bundle, context_stats=row[1] or {})


def model_cache_dir() -> Path:
    """Where serving processes keep the stored models as files (``RECS_MODEL_CACHE_DIR``)."""
    configured = settings.RECS_MODEL_CACHE_DIR
    return Path(configured) if configured else Path(settings.BASE_DIR) / ".cdp" / "recs-models"


MODEL_FILE_MAX_AGE = 3600.0  # seconds: older files of other artifacts are removed when a model is cached


def model_files(*, version_id: int, token: str) -> tuple[int, str, str] | None:
    """(revision, item file, people file) of a stored model, written once per artifact token to the
    local model cache (a file lock: the first process writes, the others wait and reuse them). The
    processes then map the files' arrays (``ModelBundle.from_parts`` with paths), so the operating
    system holds one copy of the model for every web process, and reads only the pages requests
    touch. None when the version is stored whole (an older artifact) or has none any more."""
    import fcntl

    from recommendations.engine.artifact import write
    from recommendations.engine.bundle import ModelBundle
    from recommendations.selectors import model_parts_read

    directory = model_cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    item, people, done = (directory / f"{token}.{name}" for name in ("item.npz", "people.npz", "revision"))
    if not done.exists():
        with open(directory / f"{token}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not done.exists():
                parts = model_parts_read(version_id=version_id)
                if parts is None or not parts["shards"]:
                    return None
                if parts["token"] != token:  # rewritten since the caller looked: cache that one instead
                    return model_files(version_id=version_id, token=parts["token"])
                item_blob, revision, blobs = parts["item"], parts["revision"], parts["people"]
                del parts
                # an erasure that committed between the two reads changed the token: they may not agree
                now_token = ModelVersion.objects.filter(pk=version_id).values_list("artifact_token", flat=True).first()
                if now_token != token:
                    return model_files(version_id=version_id, token=now_token) if now_token else None
                write(str(item), item_blob)
                write(str(people), ModelBundle.people_concat(blobs) if blobs else _no_people(item_blob))
                del blobs, item_blob
                write(str(done), str(revision).encode())
                _remove_old_model_files(directory, keep=token)
    return int(done.read_text()), str(item), str(people)


def _no_people(item: bytes) -> bytes:
    """A people file for a model of nobody: the item part's own empty rows."""
    from recommendations.engine.artifact import dump
    from recommendations.engine.bundle import ModelBundle

    bundle = ModelBundle.from_parts(item, [])
    return dump({"people": {key: getattr(owner, attr) for key, owner, attr in bundle._people()}}, {})


def _remove_old_model_files(directory: Path, *, keep: str) -> None:
    """Files of other artifacts not written for an hour go (a process still mapping one keeps its
    pages: the file is only unlinked)."""
    now = time.time()
    for path in directory.iterdir():
        if path.name.startswith(keep):
            continue
        try:
            if now - path.stat().st_mtime > MODEL_FILE_MAX_AGE:
                path.unlink()
        except OSError:
            pass


def _release_freed_memory() -> None:
    """Give the memory freed after a load (the artifact's bytes, temporary arrays) back to the
    operating system: glibc keeps freed heap memory of every thread's arena otherwise."""
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


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
    arrays.placements = {
        key: (kind, default_k)
        for key, kind, default_k in Placement.objects.filter(is_active=True).values_list("key", "kind", "default_k")
    }
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


def version_model(version_id: int) -> ActiveModel | None:
    """A specific registry version a strategy asked for (an experiment's arm), kept loaded beside the
    active one; at most two such versions per process (the oldest loaded is dropped)."""
    rt = runtime
    if rt.model is not None and rt.model.version_id == version_id:
        return rt.model
    if version_id not in rt.pinned:
        with rt.lock:
            if version_id not in rt.pinned:
                row = ModelVersion.objects.filter(pk=version_id).values_list("artifact_revision", flat=True).first()
                loaded = _load_model(f"{version_id}:{row}") if row is not None else None
                if len(rt.pinned) >= 2:
                    rt.pinned.pop(next(iter(rt.pinned)))
                rt.pinned[version_id] = loaded
                _freeze()
    return rt.pinned.get(version_id)


# --- the request ---------------------------------------------------------------------------------


@dataclass
class Query:
    profile_id: str | None = None
    user_id: str | None = None
    anonymous_id: str | None = None
    k: int | None = None  # None: the placement's default k, else RECS_DEFAULT_K
    placement: str = "home"
    product: str = ""
    cart_items: list[str] = field(default_factory=list)
    order_items: list[str] = field(default_factory=list)
    device: str = ""
    local_hour: int | None = None
    session_items: list[str] = field(default_factory=list)
    exclude_categories: list[str] = field(default_factory=list)
    boost_categories: list[str] = field(default_factory=list)
    max_per_category: int | None = None


class UnknownProfile(LookupError):
    pass


class UnknownPlacement(ValueError):
    def __init__(self, key: str, allowed: list[str]) -> None:
        super().__init__(key)
        self.key, self.allowed = key, allowed


NOW_SLOT = datetime(2000, 1, 1, 0, 0, 0, 424242, tzinfo=UTC)  # "now" in a compiled statement, set per run

_default_read: tuple[float, bool | None] = (-1e9, None)


def _personalisation_default() -> bool:
    """The personalisation purpose's default (``consent.selectors.purpose_default``), read at most
    once a second per process: a compiled look-up is built again only when it changes."""
    global _default_read
    from consent.selectors import purpose_default

    read_at, value = _default_read
    now = time.monotonic()
    if value is None or now - read_at > 1.0:
        value = purpose_default(purpose="personalisation")
        _default_read = (now, value)
    return value


def _consent_annotation(profile_field: str):
    """consent.selectors.consent_granted_q as a boolean column, at the time ``NOW_SLOT`` (each run of
    the compiled statement puts the current time in its place)."""
    from django.db.models import BooleanField, ExpressionWrapper

    from consent.selectors import consent_granted_q

    return ExpressionWrapper(
        consent_granted_q(purpose="personalisation", profile_field=profile_field, now=NOW_SLOT),
        output_field=BooleanField(),
    )


class _Compiled:
    """An ORM query compiled once (with placeholder values) and executed as a server-side prepared
    statement with the real ones: the request pays neither the ORM's compiler nor PostgreSQL's
    planner (about 2 ms of a 4 ms look-up on a busy machine). ``depends`` (looked at once a second)
    returns what the statement's shape depends on, e.g. the consent purpose's default: the query is
    compiled again when that changes. The current time goes wherever the query has ``NOW_SLOT``.
    (It used to be compiled again every second to move "now" on: 1.5-3 ms of CPU on one request a
    second in every web process, about 1 % of the requests at 300/s, where the p99 is read.)"""

    def __init__(self, build, placeholders: tuple, depends=None) -> None:
        self.build, self.placeholders, self.depends = build, placeholders, depends
        self.reset()
        _compiled.append(self)

    def reset(self) -> None:
        self.at = -1e9
        self.key: object = None
        # (sql, params, the placeholders' slots, the slots of NOW_SLOT), replaced whole: a thread
        # that compiles never leaves another reading one compile's SQL with another's slots
        self.compiled: tuple[str, list, list[int], list[int]] | None = None
        self._combined: tuple | None = None  # (key, the combined statement of fetch_with_context)

    @property
    def sql(self) -> str:
        return self.compiled[0] if self.compiled else ""

    @property
    def params(self) -> list:
        return self.compiled[1] if self.compiled else []

    @property
    def slots(self) -> list[int]:
        return self.compiled[2] if self.compiled else []

    def _compile(self, key: object) -> None:
        sql, params = self.build(*self.placeholders).query.sql_with_params()
        params = list(params)
        slots = [params.index(p) for p in self.placeholders]
        now_slots = [n for n, p in enumerate(params) if isinstance(p, datetime) and p == NOW_SLOT]
        self.compiled, self.key = (sql, params, slots, now_slots), key

    def ready(self) -> tuple[str, list, list[int], list[int]]:
        """The compiled statement, for what ``depends`` says now (asked at most once a second)."""
        now = time.monotonic()
        if self.compiled is None or now - self.at > 1.0:
            self.at = now
            key = self.depends() if self.depends is not None else None
            if self.compiled is None or key != self.key:
                self._compile(key)
        return self.compiled  # type: ignore[return-value]

    @staticmethod
    def _params(base: list, slots: list[int], now_slots: list[int], values) -> list:
        params = list(base)
        for slot, value in zip(slots, values, strict=True):
            params[slot] = value
        if now_slots:
            current_time = timezone.now()
            for slot in now_slots:
                params[slot] = current_time
        return params

    def fetch(self, *values, many: bool = False):
        sql, base, slots, now_slots = self.ready()
        return _prepared(sql, self._params(base, slots, now_slots, values), many=many)

    def fetch_with_context(self, *values, since):
        """This look-up of a profile (its id, merged_into, consent) and, in the same statement, what a
        personalised answer reads next when consent allows and the profile is not merged away: its
        active segments (``profile_segments``) and recent product events (``recent_history``), as
        JSON. One round trip instead of three."""
        sql, base, slots, now_slots = self.ready()
        segments = _segments_sql()
        key = (sql, segments)
        combined = self._combined
        if combined is None or combined[0] != key:
            combined = self._combined = (key, _with_context(sql, base, slots, segments))
        sql, head, base, slots = combined[1]
        return _prepared(sql, [*head, since, RECENT_EVENTS, *self._params(base, slots, now_slots, values)])


_compiled: list[_Compiled] = []


PREPARE_ONLY_WHEN_ASKED = 1 << 30  # a threshold no statement reaches by repetition alone


def _prepared(sql: str, params: list, *, many: bool = False):
    """Run a statement prepared on this (pooled, long-lived) connection.

    Django opens psycopg connections with ``prepare_threshold=None``, and psycopg then ignores
    ``prepare=True``: every execution was parsed and planned again (0.3-0.8 ms of PostgreSQL's CPU
    for the combined look-up, which executes in 0.05-0.2 ms). While this statement runs the
    connection's threshold is one that repetition never reaches, so only statements that ask
    (``prepare=True``, here) are prepared; the ORM's client-side cursors never prepare anything."""
    import psycopg

    connection.ensure_connection()
    conn = connection.connection
    saved = conn.prepare_threshold
    if saved is None:
        conn.prepare_threshold = PREPARE_ONLY_WHEN_ASKED
    try:
        with psycopg.Cursor(conn) as cursor:
            cursor.execute(sql, params, prepare=True)
            return cursor.fetchall() if many else cursor.fetchone()
    finally:
        if saved is None:
            conn.prepare_threshold = None


_UUID_SLOT = uuid.UUID(int=0xC0FFEE)
_profile_query = _Compiled(
    lambda pk: (
        Profile.objects.filter(pk=pk)
        .annotate(ok=_consent_annotation("pk"))
        .values_list("pk", "merged_into_id", "ok")[:1]
    ),
    (_UUID_SLOT,),
    depends=_personalisation_default,
)
_identifier_query = _Compiled(
    lambda kind, value: (
        Identifier.objects.filter(kind=kind, value=value)
        .annotate(ok=_consent_annotation("profile_id"))
        .values_list("profile_id", "profile__merged_into_id", "ok")[:1]
    ),
    ("\x01kind", "\x01value"),
    depends=_personalisation_default,
)


def resolve_profile(query: Query) -> tuple[str | None, bool]:
    """The live profile the query names and whether it may be personalised (its personalisation
    consent, ``consent_granted_q``), in one query in the usual case. (None, False): nobody named or
    an unknown user/anonymous id (an anonymous shopper); UnknownProfile: a profile_id that does not
    exist."""
    profile_id, consent, _ = _resolve(query, context=False)
    return profile_id, consent


def _resolve(query: Query, *, context: bool) -> tuple[str | None, bool, tuple | None]:
    """``resolve_profile``; with ``context``, also the profile's (segments, history rows) read in the
    same statement when consent allows (None when they were not read: no consent, a merged-away id)."""
    since = _history_since() if context else None

    def look(compiled: _Compiled, *values):
        if not context:
            row = compiled.fetch(*values)
            return row if row is None else (*row, None, None)
        return compiled.fetch_with_context(*values, since=since)

    if query.profile_id:
        row = look(_profile_query, uuid.UUID(str(query.profile_id)))
        if row is None:
            raise UnknownProfile(query.profile_id)
    else:
        row = None
        for kind, value in (("user_id", query.user_id), ("anonymous_id", query.anonymous_id)):
            normalised = normalize_identifier(kind, value) if value else None
            if normalised is None:
                continue
            row = look(_identifier_query, kind, normalised)
            if row is not None:
                break
        if row is None:
            return None, False, None
    pk, merged_into, ok, segments, history = row
    if merged_into is not None:  # a merged-away id: the survivor's consent decides
        return str(merged_into), personalisation_allowed(str(merged_into)), None
    read = (list(map(tuple, segments)), history) if ok and history is not None else None
    return str(pk), bool(ok), read


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
    last_order: list[str] = field(default_factory=list)  # the skus of the latest order
    session_items: list[str] = field(default_factory=list)  # most recent first
    session_category: str = ""
    device: str = ""
    local_hour: int | None = None


# the profile's latest product events, newest first: (name, epoch seconds, device, local hour, the
# skus of an order, the sku and the category of a product event); ``{profile}`` is the profile id
_HISTORY_SQL = """
    SELECT name, extract(epoch FROM occurred_at)::float8, device_type, local_hour,
           CASE WHEN name = 'Order Completed' AND jsonb_typeof(properties -> 'products') = 'array' THEN
               ARRAY(SELECT coalesce(line ->> 'product_id', line ->> 'sku')
                     FROM jsonb_array_elements(properties -> 'products') AS line
                     WHERE jsonb_typeof(line) = 'object')
           END,
           coalesce(properties ->> 'product_id', properties ->> 'sku'), properties ->> 'category'
    FROM profiles_event
    WHERE profile_id = {profile} AND occurred_at >= %s
      AND name IN ('Order Completed', 'Product Viewed', 'Product Added', 'Product Clicked')
    ORDER BY occurred_at DESC LIMIT %s
"""


def _segments_sql() -> tuple[str, tuple, int] | None:
    """The compiled segments look-up (sql, params, the profile id's slot); None without the app."""
    try:
        import segments.selectors  # noqa: F401
    except ImportError:
        return None
    sql, params, slots, _ = _segments_query.ready()
    return sql, tuple(params), slots[0]


def _with_context(sql: str, params: list, slots: list[int], segments) -> tuple[str, list, list, list[int]]:
    """The combined statement of ``fetch_with_context``: (sql, the parameters of the segments part,
    the look-up's parameters, the look-up's slots). The look-up is a derived table ``p``; the
    segments and history parts read ``p.pk`` where their own queries take the profile id."""
    if segments is None:
        segment_part, head = "'[]'::json", []
    else:
        seg_sql, seg_params, seg_slot = segments
        pieces = re.split(r"(%%|%s)", seg_sql)
        n, out = 0, []
        for piece in pieces:
            if piece == "%s":
                piece = "p.pk" if n == seg_slot else piece
                n += 1
            out.append(piece)
        head = [v for i, v in enumerate(seg_params) if i != seg_slot]
        # compiled SQL and constants only (here and below): every value is a bound parameter
        aggregate = "coalesce(json_agg(json_build_array(s.slug, s.name)), '[]'::json)"
        segment_part = f"(SELECT {aggregate} FROM ({''.join(out)}) AS s(slug, name))"  # noqa: S608
    history = _HISTORY_SQL.format(profile="p.pk")
    combined = f"""
        SELECT p.pk, p.merged, p.ok,
               CASE WHEN p.ok AND p.merged IS NULL THEN {segment_part} END,
               CASE WHEN p.ok AND p.merged IS NULL THEN
                   (SELECT coalesce(json_agg(json_build_array(h.name, h.at, h.device, h.hour, h.bought, h.sku,
                                                              h.category) ORDER BY h.at DESC), '[]'::json)
                    FROM ({history}) AS h(name, at, device, hour, bought, sku, category))
               END
        FROM ({sql}) AS p(pk, merged, ok)
    """  # noqa: S608
    return combined, head, list(params), list(slots)


def recent_history(profile_id: str, catalog: CatalogArrays) -> History:
    """One query: the profile's latest product events (purchases in the recent window, the current
    session's items and category, its device and local hour)."""
    rows = _prepared(
        _HISTORY_SQL.format(profile="%s"), [uuid.UUID(profile_id), _history_since(), RECENT_EVENTS], many=True
    )
    return history_of(rows, catalog)


def _history_since():
    return timezone.now() - timedelta(days=settings.RECS_RECENT_PURCHASE_DAYS)


def history_of(rows, catalog: CatalogArrays) -> History:
    """The History of a profile's latest product events (``_HISTORY_SQL``'s rows, newest first)."""
    now = time.time()
    history = History()
    gap = settings.RECS_SESSION_MINUTES * 60.0
    in_session = bool(rows) and now - rows[0][1] <= gap
    previous = rows[0][1] if rows else None
    categories: dict[str, int] = {}
    for name, at, device, hour, bought, sku, category in rows:
        if in_session and previous - at > gap:
            in_session = False
        previous = at
        if name == "Order Completed":
            if not history.last_order:
                history.last_order = [line for line in bought or () if line]
            for line_sku in bought or ():
                if line_sku:
                    history.bought.setdefault(line_sku, at)
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
    """The sentence for the shopper; it names what really led to the item (``reason``)."""
    kind = reason.get("type")
    title = catalog.title.get(str(reason.get("item_id", ""))) or "an item"
    if kind == "bought":
        return "You bought this before"
    if kind == "viewed":
        return "You viewed this"
    if kind == "because_bought":
        return f"Because you bought {title}"
    if kind == "because_viewed":
        return f"Because you viewed {title}"
    if kind == "similar_to":
        return f"Similar to {title} you viewed"
    if kind == "similar_product":
        return f"Similar to {title}"
    if kind == "bought_with":
        return f"Often bought with {title}"
    if kind == "bought_with_cart":
        return f"Often bought with {title} in your cart"
    if kind == "bought_with_order":
        return f"Often bought with {title}, which you just bought"
    if kind == "similar_shoppers":
        return "Popular with shoppers like you"
    if kind == "popular_in_segment":
        return f"Popular with {reason.get('name') or reason.get('segment')}"
    if kind == "trending":
        return "Trending now"
    if kind == "popular":
        return "Popular in our shop"
    return "Picked for you" if personalised else "Popular in our shop"


SCORE_TYPES = {"popularity": "popularity", "segment_popularity": "popularity", "trending": "popularity"}


def score_type(recommender: str) -> str:
    if recommender in SCORE_TYPES:
        return SCORE_TYPES[recommender]
    if recommender in ("session", "similar", "complements", "content", "item_item"):
        return "similarity"
    return "probability" if recommender == "hybrid" else "score"


@dataclass
class Answer:
    recommendation_id: str
    model_version: int | None
    personalised: bool
    profile_id: str | None
    placement: str
    items: list[dict]
    context: dict
    experiment: str | None = None
    variant: str | None = None
    propensity: float = 1.0
    policy: str | None = None


def placement_kind(catalog: CatalogArrays, key: str) -> tuple[str, int | None]:
    """(kind, default k) of an active placement; UnknownPlacement (with the allowed keys) otherwise."""
    placements = catalog.placements or {kind: (kind, None) for kind in PlacementKind.values}
    found = placements.get(key)
    if found is None:
        raise UnknownPlacement(key, sorted(placements))
    return found


def recommend(query: Query) -> Answer:
    """Rank products for the shopper the query names at the placement it names: consent, the
    experiment strategy, the placement's kind, filters, business rules, context re-ranking,
    diversity; the answer is logged as served."""
    model, catalog = current()
    kind, default_k = placement_kind(catalog, query.placement)
    if not query.k:
        query = replace(query, k=default_k or settings.RECS_DEFAULT_K)
    profile_id, consent, read = _resolve(query, context=True)
    if read is not None:  # read with the profile, in the same statement
        segments, history_rows = read
    else:
        segments, history_rows = (profile_segments(profile_id) if consent else []), None
    strategy: Strategy = strategy_for(
        profile_id=profile_id,
        placement=query.placement,
        device=query.device,
        segments=[slug for slug, _ in segments],
        personalisation_consent=consent,
    )
    personalised = consent and strategy.personalised  # a strategy never overrides a missing consent
    if not personalised:
        segments = []
    if strategy.model_version is not None:
        model = version_model(strategy.model_version) or model
    if not personalised:
        history = History()
    elif history_rows is not None:
        history = history_of(history_rows, catalog)
    else:
        history = recent_history(profile_id, catalog)
    device = query.device or history.device
    hour = query.local_hour if query.local_hour is not None else history.local_hour
    # explicit session items are the page's context (allowed without consent); stored ones need it
    session_items = list(dict.fromkeys([*query.session_items, *history.session_items]))[:20]
    session_category = history.session_category or (
        catalog.category.get(query.session_items[0], "") if query.session_items else ""
    )
    exclude_categories = list(query.exclude_categories)
    boosts = [(c, settings.RECS_BOOST_FACTOR) for c in query.boost_categories]
    for rule in catalog.rules:
        rule_kind, category, factor, placement = rule[:4]
        rule_set = rule[4] if len(rule) > 4 else ""
        if placement and placement != query.placement:
            continue
        if strategy.rule_set is not None and rule_set != strategy.rule_set:
            continue
        if rule_kind == RuleKind.EXCLUDE:
            exclude_categories.append(category)
        else:
            boosts.append((category, factor))
    repeat = set(settings.RECS_REPEAT_CATEGORIES)
    exclude = {sku for sku in history.bought if catalog.category.get(sku, "") not in repeat}
    exclude.update(query.session_items)

    # the anchors of the non-home placements: the product shown, the cart, the order just placed
    anchors: list[str] = []
    anchor_reason = ""
    if kind == PlacementKind.PRODUCT:
        anchors = [query.product] if query.product else query.session_items[:1]
    elif kind == PlacementKind.CART:
        anchors, anchor_reason = list(query.cart_items or query.session_items), "bought_with_cart"
    elif kind == PlacementKind.POST_PURCHASE:
        anchors, anchor_reason = list(query.order_items or history.last_order), "bought_with_order"
    exclude.update(anchors)

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
            if kind == PlacementKind.PRODUCT and anchors:
                recs = bundle.for_product(item_id=anchors[0], k=fetch, exclude=exclude)
            elif anchors and kind in (PlacementKind.CART, PlacementKind.POST_PURCHASE):
                recs = bundle.complements(items=anchors, k=fetch, exclude=exclude, reason=anchor_reason)
            else:
                recs = []
            if len(recs) < fetch:  # home, or too few related items: the personal list fills up
                taken = exclude | {r.item_id for r in recs}
                recs += bundle.recommend(
                    user_id=profile_id if personalised else None,
                    session_items=session_items,
                    k=fetch - len(recs),
                    exclude=taken,
                    context=context,
                )
            items = _rank(
                recs,
                query,
                catalog,
                model,
                exclude_categories,
                boosts,
                device if strategy.rerank else "",
                hour if strategy.rerank else None,
                session_category if strategy.rerank else "",
                personalised,
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
        experiment=strategy.experiment,
        variant=strategy.variant,
        propensity=strategy.propensity,
        policy=strategy.policy,
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
    """Filters, business rules, context re-ranking and the diversity cap. The order starts from the
    model's (its tiers have scores on different scales, so re-ranking multiplies a rank discount);
    the ``score`` shown is the model's own score (``score_type`` says its scale)."""
    stats = model.context_stats or {}
    device_lift = (stats.get("device") or {}).get(device) or {}
    hour_lift = (stats.get("daypart") or {}).get(_daypart(hour)) or {}
    low, high = CONTEXT_CLIP
    scored = []
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
    for _, rec, category in scored:
        if per_category.get(category, 0) >= cap and category:
            continue
        per_category[category] = per_category.get(category, 0) + 1
        out.append(_item(rec, catalog, personalised, category))
        if len(out) >= query.k:
            break
    return out


def _item(rec, catalog: CatalogArrays, personalised: bool, category: str) -> dict:
    return {
        "sku": rec.item_id,
        "title": catalog.title.get(rec.item_id, ""),
        "category": category,
        "score": round(float(rec.score), 6),
        "score_type": score_type(rec.recommender),
        "recommender": rec.recommender,
        "reason": rec.reason,
        "explanation": explanation(rec.reason, catalog, personalised),
    }


def similar(*, sku: str, k: int) -> Answer | None:
    """Items similar to ``sku`` (in stock), logged as served; None for an unknown product. Similar
    means the same kind of product: co-purchase neighbours within its top category, content
    (category, brand, price band, text) where co-purchases are thin."""
    model, catalog = current()
    if sku not in catalog.known and not Product.objects.filter(sku=sku).exists():
        return None
    items: list[dict] = []
    if model is not None:
        for rec in model.bundle.similar(item_id=sku, k=k * OVERFETCH):
            if rec.item_id in catalog.out_of_stock:
                continue
            items.append(_item(rec, catalog, False, catalog.category.get(rec.item_id, "")))
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
