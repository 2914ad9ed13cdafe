"""Reads of recommendations.

``interactions_extract`` (RECS-ENGINE) turns stored events into the engine's ``Interactions`` and
``Catalog`` with one set-based query; other selectors of the app follow below it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
from django.db import connection, transaction

from profiles.traits import CART_EVENT, ORDER_EVENT, VIEW_EVENT
from recommendations.engine.data import CART, PURCHASE, VIEW, Catalog, Interactions

assert (VIEW, CART, PURCHASE) == (0, 1, 2)  # the kinds are written into the SQL below

# One row per interaction of a LIVE profile (a merged-away profile's events count for the survivor;
# merged_into is re-pointed on every merge, so one hop reaches the live profile). Order lines come
# from properties.products[] of "Order Completed" (kind 2); views (0) and cart additions (1) from the
# properties.
_INTERACTIONS_SQL = """
WITH ev AS (
    SELECT COALESCE(p.merged_into_id, p.id) AS pid, e.name, e.properties, e.occurred_at
    FROM profiles_event e JOIN profiles_profile p ON p.id = e.profile_id
    WHERE e.type = 'track' AND e.name IN (%(order)s, %(view)s, %(cart)s)
      AND {profile_filter}
      AND (%(since)s::timestamptz IS NULL OR e.occurred_at >= %(since)s::timestamptz)
      AND (%(until)s::timestamptz IS NULL OR e.occurred_at < %(until)s::timestamptz)
      AND (%(sources)s::bigint[] IS NULL OR e.source_id = ANY(%(sources)s::bigint[]))
), line AS (
    SELECT ev.pid, 2 AS kind, COALESCE(NULLIF(x.sku, ''), NULLIF(x.product_id, '')) AS item,
           x.quantity AS quantity, ev.occurred_at, ev.properties ->> 'order_id' AS order_id, x.price AS price
    FROM ev CROSS JOIN LATERAL jsonb_to_recordset(
        CASE WHEN jsonb_typeof(ev.properties -> 'products') = 'array' THEN ev.properties -> 'products'
             ELSE '[]'::jsonb END
    ) AS x(sku text, product_id text, quantity text, price text)
    WHERE ev.name = %(order)s
    UNION ALL
    SELECT ev.pid, CASE WHEN ev.name = %(view)s THEN 0 ELSE 1 END,
           COALESCE(NULLIF(ev.properties ->> 'sku', ''), NULLIF(ev.properties ->> 'product_id', '')),
           ev.properties ->> 'quantity', ev.occurred_at, NULL, ev.properties ->> 'price'
    FROM ev WHERE ev.name IN (%(view)s, %(cart)s)
)
SELECT pid::text, kind, item,
       CASE WHEN quantity ~ '^\\s*[0-9]+(\\.[0-9]+)?\\s*$' THEN quantity::float8 ELSE 1 END AS quantity,
       extract(epoch FROM occurred_at)::float8, COALESCE(order_id, ''),
       CASE WHEN price ~ '^\\s*[0-9]+(\\.[0-9]+)?\\s*$' THEN price::float8 END AS price
FROM line
WHERE item IS NOT NULL AND item <> ''
  AND NOT (kind = 2 AND CASE WHEN quantity ~ '^\\s*-?[0-9]+(\\.[0-9]+)?\\s*$' THEN quantity::float8 <= 0
                             ELSE false END)
"""

# what events say of each product: the latest name, category and price seen
_EVENT_CATALOG_SQL = """
WITH ev AS (
    SELECT e.name, e.properties, e.occurred_at FROM profiles_event e
    WHERE e.type = 'track' AND e.name IN (%(order)s, %(view)s, %(cart)s)
), prod AS (
    SELECT COALESCE(NULLIF(x.sku, ''), NULLIF(x.product_id, '')) AS item, x.name, x.category, x.brand, x.price,
           ev.occurred_at
    FROM ev CROSS JOIN LATERAL jsonb_to_recordset(
        CASE WHEN jsonb_typeof(ev.properties -> 'products') = 'array' THEN ev.properties -> 'products'
             ELSE '[]'::jsonb END
    ) AS x(sku text, product_id text, name text, category text, brand text, price text)
    WHERE ev.name = %(order)s
    UNION ALL
    SELECT COALESCE(NULLIF(ev.properties ->> 'sku', ''), NULLIF(ev.properties ->> 'product_id', '')),
           ev.properties ->> 'name', ev.properties ->> 'category', ev.properties ->> 'brand',
           ev.properties ->> 'price', ev.occurred_at
    FROM ev WHERE ev.name IN (%(view)s, %(cart)s)
)
SELECT DISTINCT ON (item) item, COALESCE(name, ''), COALESCE(category, ''), COALESCE(brand, ''),
       CASE WHEN price ~ '^\\s*[0-9]+(\\.[0-9]+)?\\s*$' THEN price::float8 END
FROM prod WHERE item IS NOT NULL AND item <> ''
ORDER BY item, occurred_at DESC
"""

_PRODUCT_CATALOG_SQL = """
SELECT sku, title, description, category, brand, price::float8, in_stock FROM recommendations_product
"""


# Models that serve shoppers learn only from people who allow personalisation (issue 11).
TRAINING_PURPOSE = "personalisation"


def training_consent_condition(*, purpose: str | None = TRAINING_PURPOSE) -> tuple[str, dict]:
    """The SQL condition (on the live profile id ``COALESCE(p.merged_into_id, p.id)``) that keeps
    only people who allow ``purpose``, with named parameters; ``purpose=None``: everyone (offline
    evaluation of an imported data set, which serves nobody). consent owns the condition."""
    if purpose is None:
        return "TRUE", {}
    from consent.selectors import consent_granted_sql

    sql, params = consent_granted_sql(purpose=purpose, profile_column="COALESCE(p.merged_into_id, p.id)")
    names = [f"consent_{n}" for n in range(len(params))]
    for name in names:
        sql = sql.replace("%s", f"%({name})s", 1)
    return sql, dict(zip(names, params, strict=True))


EXTRACT_CHUNK_ROWS = 50_000  # rows per fetch from the server-side cursor


def training_profile_condition(*, purpose: str | None = TRAINING_PURPOSE) -> tuple[str, dict]:
    """The one place that decides whose events train the models: an SQL condition on ``p`` (the
    event's profile row, joined as ``profiles_profile p``) and its parameters: people who allow
    ``purpose`` (personalisation) and nobody else."""
    return training_consent_condition(purpose=purpose)


def interactions_stored() -> bool:
    """Whether any order, view or cart addition is stored at all, whoever's (consent not asked):
    tells "nothing to learn from" apart from "nobody who allows personalisation"."""
    args = {"order": ORDER_EVENT, "view": VIEW_EVENT, "cart": CART_EVENT, "until": None, "sources": None}
    return _latest_interaction(args) is not None


def _latest_interaction(args: dict) -> datetime | None:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT max(occurred_at) FROM profiles_event e
            WHERE e.type = 'track' AND e.name IN (%(order)s, %(view)s, %(cart)s)
              AND (%(until)s::timestamptz IS NULL OR e.occurred_at < %(until)s::timestamptz)
              AND (%(sources)s::bigint[] IS NULL OR e.source_id = ANY(%(sources)s::bigint[]))
            """,
            args,
        )
        return cursor.fetchone()[0]


class _Vocabulary:
    """Ids to dense indexes, as chunks arrive."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}

    def codes(self, values) -> np.ndarray:
        index = self.index
        return np.fromiter((index.setdefault(v, len(index)) for v in values), dtype=np.int64, count=len(values))

    def sorted(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(vocabulary sorted by id, codes renumbered into it)."""
        ids = np.array(list(self.index), dtype=object)
        order = np.argsort(ids.astype(str), kind="stable")
        remap = np.empty(len(ids), dtype=np.int64)
        remap[order] = np.arange(len(ids))
        return ids[order], remap[codes] if len(codes) else codes


def interactions_extract(
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    source_ids: list[int] | None = None,
    catalog: bool = True,
    window_days: float | None = None,
    chunk_rows: int = EXTRACT_CHUNK_ROWS,
    consent_purpose: str | None = TRAINING_PURPOSE,
) -> tuple[Interactions, Catalog]:
    """Interactions of live profiles from stored events, and the catalog of their items.

    Kinds: ``Order Completed`` products[] are purchases (one row per line, with the order id and its
    price), ``Product Viewed`` views, ``Product Added`` cart additions. ``window_days``: only the last
    that many days before the latest interaction (``since`` wins when later). Rows come through a
    server-side cursor, ``chunk_rows`` at a time, straight into arrays (memory grows with the
    interactions as arrays, never with a list of every row as Python objects). The catalog comes from
    the Product table where it has the item, else from what the events said of it (name, category,
    price). ``source_ids`` restricts to events of those sources (an evaluation reads only what it
    imported). ``consent_purpose``: only people who allow it (default personalisation: nobody who did
    not agree is learnt from); None only for offline evaluation of imported data.
    """
    args = {
        "order": ORDER_EVENT,
        "view": VIEW_EVENT,
        "cart": CART_EVENT,
        "since": since,
        "until": until,
        "sources": list(source_ids) if source_ids is not None else None,
    }
    if window_days:
        latest = _latest_interaction(args)
        if latest is not None:
            start = latest - timedelta(days=float(window_days))
            args["since"] = max(since, start) if since is not None else start
    condition, condition_args = training_profile_condition(purpose=consent_purpose)
    users, items, orders = _Vocabulary(), _Vocabulary(), _Vocabulary()
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("user", "item", "kind", "quantity", "ts", "order", "price")}
    with transaction.atomic(), connection.chunked_cursor() as cursor:
        cursor.execute(_INTERACTIONS_SQL.replace("{profile_filter}", condition), {**args, **condition_args})
        while True:
            rows = cursor.fetchmany(chunk_rows)
            if not rows:
                break
            pid, kind, item, quantity, ts, order, price = zip(*rows, strict=True)
            del rows
            parts["user"].append(users.codes(pid))
            parts["item"].append(items.codes(item))
            parts["kind"].append(np.array(kind, dtype=np.int8))
            parts["quantity"].append(np.array(quantity, dtype=np.float32))
            parts["ts"].append(np.array(ts, dtype=np.float64))
            parts["order"].append(orders.codes(order))
            parts["price"].append(np.array([np.nan if p is None else p for p in price], dtype=np.float32))
    cols = {k: (np.concatenate(v) if v else np.empty(0)) for k, v in parts.items()}
    user_ids, user = users.sorted(cols["user"].astype(np.int64))
    item_ids, item = items.sorted(cols["item"].astype(np.int64))
    data = Interactions(
        users=user_ids,
        items=item_ids,
        user=user.astype(np.int32),
        item=item.astype(np.int32),
        kind=cols["kind"].astype(np.int8),
        quantity=cols["quantity"].astype(np.float32),
        ts=cols["ts"].astype(np.float64),
        order=cols["order"].astype(np.int64),
        price=cols["price"].astype(np.float32),
    )
    return data, (catalog_extract(items=data.items) if catalog else Catalog(items=data.items))


def catalog_extract(*, items: np.ndarray) -> Catalog:
    """Catalog rows aligned on ``items``: the Product table first, the events' product properties after."""
    known: dict[str, tuple] = {}
    with connection.cursor() as cursor:
        cursor.execute(_PRODUCT_CATALOG_SQL)
        products = cursor.fetchall()
        complete = {sku for sku, title, _, category, brand, price, _ in products if title and category and brand}
        complete &= {sku for sku, *_, price, _ in products if price is not None}
        # what events said of products fills only what the Product table lacks: read them (every
        # order's lines) only when some item lacks a name, category, brand or price there
        if any(str(sku) not in complete for sku in items):
            cursor.execute(_EVENT_CATALOG_SQL, {"order": ORDER_EVENT, "view": VIEW_EVENT, "cart": CART_EVENT})
            for sku, name, category, brand, price in cursor.fetchall():
                known[sku] = (name, "", category, brand, price, True)
        for sku, title, description, category, brand, price, in_stock in products:
            old = known.get(sku, ("", "", "", "", None, True))
            known[sku] = (
                title or old[0],
                description or "",
                category or old[2],
                brand or old[3],
                price if price is not None else old[4],
                bool(in_stock),
            )
    empty = ("", "", "", "", None, True)
    values = [known.get(str(sku), empty) for sku in items]
    return Catalog(
        items=items,
        title=[v[0] for v in values],
        description=[v[1] for v in values],
        category=[v[2] for v in values],
        brand=[v[3] for v in values],
        price=[v[4] for v in values],
        in_stock=[v[5] for v in values],
    )


def _binary_cursor():
    """A cursor on the request's own connection (its transaction) that binds parameters on the
    server and reads results in binary: a model's bytes go over the wire as they are, instead of
    as hex text twice their size that both sides escape and parse."""
    import psycopg

    connection.ensure_connection()
    return psycopg.Cursor(connection.connection)


MODEL_READ_CHUNK = 4 * 1024 * 1024  # bytes of a stored model per row read


def model_parts_read(*, version_id: int) -> dict | None:
    """A stored model's parts as bytes: {item, people: [shard bytes, in shard order], token,
    revision, shards}; None when the version has no artifact (any more).

    The item part (over 100 MB at catalog size) is read as rows of ``MODEL_READ_CHUNK`` bytes, one
    row at a time (single-row mode), in one statement (one snapshot): libpq keeps its input buffer
    as large as the largest message it has received for the life of the connection, and a pooled
    connection lives as long as the process, so a part read as one value stayed resident in every
    web worker that had read it (measured: 126 MB per connection, also after the bytes were freed)."""
    from recommendations.models import ModelPeopleShard, ModelVersion

    with _binary_cursor() as cursor:
        item = bytearray()
        meta = None
        for at, chunk, token, revision, shards in cursor.stream(
            f"SELECT g, substring(artifact FROM g::int FOR %s::int), artifact_token, artifact_revision, people_shards "  # noqa: S608
            f"FROM {ModelVersion._meta.db_table}, "
            "generate_series(1::bigint, greatest(octet_length(artifact), 1)::bigint, %s::bigint) g "
            "WHERE id = %s AND artifact IS NOT NULL ORDER BY g",
            [MODEL_READ_CHUNK, MODEL_READ_CHUNK, version_id],
            binary=True,
        ):
            if at != len(item) + 1:  # never expected: the rows come in order
                raise RuntimeError("A stored model was read out of order.")
            item += chunk
            meta = (token, revision, shards)
        if meta is None:  # no such version, or no artifact (generate_series of NULL has no rows)
            return None
        people = []
        if meta[2]:
            cursor.execute(
                f"SELECT data FROM {ModelPeopleShard._meta.db_table} WHERE version_id = %s ORDER BY shard",  # noqa: S608
                [version_id],
                binary=True,
            )
            people = [bytes(blob) for (blob,) in cursor.fetchall()]
    return {"item": bytes(item), "people": people, "token": meta[0], "revision": meta[1], "shards": meta[2]}


def model_bundle_load(*, version_id: int):
    """A stored model version as a ``ModelBundle`` (its item part and its per-person shards), or
    None when it has no artifact any more."""
    from recommendations.engine.bundle import ModelBundle

    parts = model_parts_read(version_id=version_id)
    if parts is None:
        return None
    if not parts["shards"]:
        return ModelBundle.from_bytes(parts["item"])
    return ModelBundle.from_parts(parts["item"], parts["people"])
