"""The schema registry: event names, their property keys and trait keys the shop actually sends.

Ingestion keeps it current without being slowed down: ``on_events_stored`` (a profiles hook, fired
after commit) folds the stored batch into a small summary (names, keys, counts, a few sample
values) and appends it to a Redis list; ``profiles.tasks.schema_drain`` (queued at most every few
seconds) merges the pending summaries and upserts the rows. ``schema_rebuild``
recounts everything from the tables (command ``schema_rebuild``; after bulk imports, which fire no
hook). Trait counts are live profiles having the trait (recounted by the rebuild); between
rebuilds a new trait key appears at once with the profiles of its batch.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from datetime import UTC, datetime

from django.db import connection, transaction
from django.utils import timezone
from rapidfuzz import fuzz, process

from .models import Profile, SchemaItem, SchemaKind

logger = logging.getLogger("cdp.schema")

MAX_SAMPLES = 5
MAX_SAMPLE_CHARS = 60
MAX_KEYS_PER_EVENT = 100


def _sample(value) -> str | int | float | bool | None:
    if isinstance(value, bool | int | float) or value is None:
        return value
    if isinstance(value, str):
        return value[:MAX_SAMPLE_CHARS]
    return None  # lists and objects are described by their keys, not sampled


def _property_keys(properties: dict) -> Iterable[tuple[str, object]]:
    """Top-level keys, and ``list[].key`` for lists of objects (``products[].category``)."""
    for key, value in list(properties.items())[:MAX_KEYS_PER_EVENT]:
        yield key, value
        if isinstance(value, list):
            for item in value[:20]:
                if isinstance(item, dict):
                    for sub, sub_value in list(item.items())[:MAX_KEYS_PER_EVENT]:
                        yield f"{key}[].{sub}", sub_value


def schema_summary(*, events: list[dict]) -> dict:
    """Fold stored events (the ``on_events_stored`` payload) into ``{"at", "items", "trait_profiles"}``.

    On the stitch workers' path for every batch (one item per event name and per property key, in
    the order first seen): counts in one dict, samples only while an item has fewer than
    ``MAX_SAMPLES`` (a full item's values are not looked at), no generator or item dict per key."""
    counts: dict[tuple[str, str, str], int] = {}
    samples: dict[tuple[str, str, str], list] = {}
    trait_profiles: set[str] = set()
    latest = None
    event_kind, property_kind = SchemaKind.EVENT, SchemaKind.PROPERTY

    def note(item: tuple[str, str, str], value) -> None:
        counts[item] = counts.get(item, 0) + 1
        noted = samples.get(item)
        if noted is None:
            noted = samples[item] = []
        if len(noted) < MAX_SAMPLES:
            sample = _sample(value)
            if sample is not None and sample not in noted:
                noted.append(sample)

    for e in events:
        at = e.get("occurred_at")
        if isinstance(at, datetime) and (latest is None or at > latest):
            latest = at
        if e.get("type") == "identify":
            trait_profiles.add(str(e["profile_id"]))
            continue
        name = e.get("name") or ""
        if not name:
            continue
        item = (event_kind, "", name)
        counts[item] = counts.get(item, 0) + 1
        properties = e.get("properties")
        if not isinstance(properties, dict) or not properties:
            continue
        if len(properties) > MAX_KEYS_PER_EVENT:
            for key, value in _property_keys(properties):
                note((property_kind, name, key), value)
            continue
        for key, value in properties.items():  # ``_property_keys``, inlined
            note((property_kind, name, key), value)
            if isinstance(value, list):
                for element in value[:20]:
                    if isinstance(element, dict):
                        for sub, sub_value in list(element.items())[:MAX_KEYS_PER_EVENT]:
                            note((property_kind, name, f"{key}[].{sub}"), sub_value)
    return {
        "at": (latest or timezone.now()).isoformat(),
        "items": [[k, ev, n, count, samples.get((k, ev, n), [])] for (k, ev, n), count in counts.items()],
        "trait_profiles": sorted(trait_profiles),
    }


PENDING_KEY = "cdp:schema:pending"
SCHEDULED_KEY = "cdp:schema:scheduled"
SCHEDULE_EVERY_SECONDS = 5
DRAIN_CHUNK = 500
DRAIN_LOCK_KEY = 7_311_004  # pg_advisory_xact_lock: a drain's take-and-write against erasure's scrub


def _redis():
    from django.core.cache import cache

    return cache._cache.get_client(PENDING_KEY, write=True)  # the raw client: a list and one pipeline


def on_events_stored(*, events: list[dict]) -> None:
    """Hook subscriber, on the request path after commit, so it stays cheap: one pass over the batch
    and one pipelined Redis round trip (append the summary; at most every few seconds, a drain task
    is queued: a Celery publish costs 10-20 ms, too much per request). Never fails ingestion."""
    summary = schema_summary(events=events)
    if not summary["items"] and not summary["trait_profiles"]:
        return
    try:
        pipe = _redis().pipeline()
        pipe.rpush(PENDING_KEY, json.dumps(summary))
        pipe.set(SCHEDULED_KEY, "1", nx=True, ex=SCHEDULE_EVERY_SECONDS)
        _, first = pipe.execute()
        if first:
            from cdp.queueing import task_send

            from .tasks import schema_drain

            # fire and forget (decision 0003): a broker outage never holds ingestion
            task_send(schema_drain, countdown=1)
    except Exception:  # Redis or the broker down must not fail ingestion: the nightly rebuild catches up
        logger.warning("could not queue the schema update", exc_info=True)


def _drain_lock() -> None:
    """Taken (to the end of the transaction) by a drain from the moment it takes a chunk until its
    rows are written, and by erasure before it drains and scrubs the samples: a chunk taken before
    an erasure can never be written after the erasure scrubbed the registry."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [DRAIN_LOCK_KEY])


def schema_drain() -> int:
    """Fold every pending summary into the registry (chunks of ``DRAIN_CHUNK``, one upsert each)."""
    client = _redis()
    written = 0
    while True:
        with transaction.atomic():
            _drain_lock()
            rows = _chunk_take(client)
            if rows:
                written += _chunk_record(rows)
        if rows:
            continue
        # empty: let the next batch schedule a drain again, and take what arrived in between
        client.delete(SCHEDULED_KEY)
        if not client.llen(PENDING_KEY):
            return written


def schema_summaries_merge(*, summaries: list[dict]) -> dict:
    items: dict[tuple[str, str, str], list] = {}
    profiles: set[str] = set()
    latest = ""
    for summary in summaries:
        latest = max(latest, summary.get("at") or "")
        profiles.update(summary.get("trait_profiles") or [])
        for kind, event, name, count, samples in summary.get("items") or []:
            item = items.setdefault((kind, event, name), [0, []])
            item[0] += count
            item[1] = _merge_samples(item[1], samples)
    return {
        "at": latest or timezone.now().isoformat(),
        "items": [[k, e, n, c, s] for (k, e, n), (c, s) in items.items()],
        "trait_profiles": sorted(profiles),
    }


def _merge_samples(old: list, new: list) -> list:
    merged = list(old)
    for value in new:
        if value not in merged and len(merged) < MAX_SAMPLES:
            merged.append(value)
    return merged


@transaction.atomic
def schema_record(*, summary: dict) -> int:
    """Upsert a summary's rows (locks rows in key order, so concurrent batches take turns)."""
    at = datetime.fromisoformat(summary["at"]) if summary.get("at") else timezone.now()
    if timezone.is_naive(at):
        at = timezone.make_aware(at, UTC)
    rows = {(k, ev, n): (count, samples) for k, ev, n, count, samples in summary.get("items", [])}
    if summary.get("trait_profiles"):
        for key, count, samples in _trait_keys(profile_ids=summary["trait_profiles"]):
            rows.setdefault((SchemaKind.TRAIT, "", key), (0, samples))
            rows[(SchemaKind.TRAIT, "", key)] = (count, samples)
    written = 0
    for (kind, event, name), (count, samples) in sorted(rows.items()):
        item = SchemaItem.objects.select_for_update().filter(kind=kind, event=event, name=name).first()
        if item is None:
            SchemaItem.objects.create(
                kind=kind, event=event, name=name, count=count, samples=samples, first_seen_at=at, last_seen_at=at
            )
        else:
            if kind != SchemaKind.TRAIT:  # traits are counted as live profiles by the rebuild
                item.count += count
            item.samples = _merge_samples(item.samples, samples)
            item.first_seen_at = min(item.first_seen_at, at)
            item.last_seen_at = max(item.last_seen_at, at)
            item.save(update_fields=["count", "samples", "first_seen_at", "last_seen_at"])
        written += 1
    return written


def _trait_keys(*, profile_ids: list[str]) -> list[tuple[str, int, list]]:
    found: dict[str, list] = {}
    counts: dict[str, int] = {}
    for traits in Profile.objects.filter(pk__in=profile_ids, merged_into__isnull=True).values_list("traits", flat=True):
        for key, value in (traits or {}).items():
            counts[key] = counts.get(key, 0) + 1
            sample = _sample(value)
            bucket = found.setdefault(key, [])
            if sample is not None and sample not in bucket and len(bucket) < MAX_SAMPLES:
                bucket.append(sample)
    return [(key, counts[key], found[key]) for key in counts]


def schema_rebuild() -> int:
    """Recount everything from the tables: event names and top-level property keys from events,
    trait keys from live profiles. Replaces the registry in one transaction."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT 'event', '', name, count(*), min(occurred_at), max(occurred_at)
            FROM profiles_event WHERE name <> '' AND type <> 'identify' GROUP BY name
            UNION ALL
            SELECT 'property', e.name, k, count(*), min(e.occurred_at), max(e.occurred_at)
            FROM profiles_event e, jsonb_object_keys(CASE WHEN jsonb_typeof(e.properties) = 'object'
                 THEN e.properties ELSE '{}'::jsonb END) k
            WHERE e.name <> '' AND e.type <> 'identify' GROUP BY e.name, k
            UNION ALL
            SELECT 'property', e.name, kv.key || '[].' || sk, count(DISTINCT e.id),
                   min(e.occurred_at), max(e.occurred_at)
            FROM profiles_event e,
                 jsonb_each(CASE WHEN jsonb_typeof(e.properties) = 'object' THEN e.properties ELSE '{}'::jsonb END) kv,
                 jsonb_array_elements(CASE WHEN jsonb_typeof(kv.value) = 'array' THEN kv.value ELSE '[]'::jsonb END) el,
                 jsonb_object_keys(CASE WHEN jsonb_typeof(el) = 'object' THEN el ELSE '{}'::jsonb END) sk
            WHERE e.name <> '' AND e.type <> 'identify' GROUP BY e.name, kv.key || '[].' || sk
            UNION ALL
            SELECT 'trait', '', k, count(*), min(p.first_seen_at), max(p.last_seen_at)
            FROM profiles_profile p, jsonb_object_keys(p.traits) k
            WHERE p.merged_into_id IS NULL AND jsonb_typeof(p.traits) = 'object' GROUP BY k
            """
        )
        rows = cursor.fetchall()
        cursor.execute(
            """
            SELECT DISTINCT ON (e.name, k) e.name, k, e.properties -> k
            FROM (SELECT name, properties FROM profiles_event WHERE name <> '' AND type <> 'identify'
                  ORDER BY id DESC LIMIT 20000) e,
                 jsonb_object_keys(CASE WHEN jsonb_typeof(e.properties) = 'object'
                                   THEN e.properties ELSE '{}'::jsonb END) k
            """
        )
        prop_samples = {(name, key): value for name, key, value in cursor.fetchall()}
    old = {(i.kind, i.event, i.name): i.samples for i in SchemaItem.objects.all()}
    items = []
    for kind, event, name, count, first, last in rows:
        samples = old.get((kind, event, name), [])
        if kind == "property" and (event, name) in prop_samples:
            samples = _merge_samples(samples, [v for v in [_sample(prop_samples[(event, name)])] if v is not None])
        items.append(
            SchemaItem(
                kind=kind, event=event, name=name, count=count, samples=samples, first_seen_at=first, last_seen_at=last
            )
        )
    with transaction.atomic():
        SchemaItem.objects.all().delete()
        SchemaItem.objects.bulk_create(items, batch_size=1000)
    return len(items)


def schema_samples_forget(*, profile_ids: list[str]) -> int:
    """Erasure: drop every sample value that is one of the person's values (traits, identifiers,
    event properties of the given profiles), so that a sample never keeps an erased person's email
    or name. Runs before the person's rows are deleted (it reads them). Returns the rows changed.

    Summaries still waiting in Redis carry samples too (a person erased within seconds of their
    calls): they are drained into the registry first, under the drain's lock, and scrubbed with it."""
    with transaction.atomic():
        _drain_lock()
        _drain_pending_locked()
        return _samples_forget(profile_ids)


def _drain_pending_locked() -> None:
    client = _redis()
    while rows := _chunk_take(client):
        _chunk_record(rows)


def _chunk_take(client) -> list:
    pipe = client.pipeline()  # MULTI/EXEC: take a chunk and remove it atomically
    pipe.lrange(PENDING_KEY, 0, DRAIN_CHUNK - 1)
    pipe.ltrim(PENDING_KEY, DRAIN_CHUNK, -1)
    rows, _ = pipe.execute()
    return rows


def _chunk_record(rows: list) -> int:
    return schema_record(summary=schema_summaries_merge(summaries=[json.loads(row) for row in rows]))


def _samples_forget(profile_ids: list[str]) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT left(v, %s) FROM (
                SELECT t.value AS v FROM profiles_profile p, jsonb_each_text(
                    CASE WHEN jsonb_typeof(p.traits) = 'object' THEN p.traits ELSE '{}'::jsonb END) t
                WHERE p.id = ANY(%s::uuid[])
                UNION SELECT i.value FROM profiles_identifier i WHERE i.profile_id = ANY(%s::uuid[])
                UNION SELECT kv.value FROM profiles_event e, jsonb_each_text(
                    CASE WHEN jsonb_typeof(e.properties) = 'object' THEN e.properties ELSE '{}'::jsonb END) kv
                WHERE e.profile_id = ANY(%s::uuid[])
            ) values_of_the_person WHERE v IS NOT NULL
            """,
            [MAX_SAMPLE_CHARS, profile_ids, profile_ids, profile_ids],
        )
        theirs = {row[0] for row in cursor.fetchall()}
    if not theirs:
        return 0
    changed = []
    for item in SchemaItem.objects.select_for_update().exclude(samples=[]).order_by("pk"):
        kept = [v for v in item.samples if not (isinstance(v, str) and v in theirs)]
        if len(kept) != len(item.samples):
            item.samples = kept
            changed.append(item)
    SchemaItem.objects.bulk_update(changed, ["samples"])
    return len(changed)


# --- reads ---------------------------------------------------------------------------------------


def schema_names(*, kind: str, event: str = "") -> list[str]:
    return list(
        SchemaItem.objects.filter(kind=kind, event=event).order_by("-count", "name").values_list("name", flat=True)
    )


def schema_catalog() -> dict:
    """Everything the segment builder offers: events with their properties, traits; counts and samples."""
    events: dict[str, dict] = {}
    traits = []
    for item in SchemaItem.objects.order_by("-count", "name"):
        row = {"name": item.name, "count": item.count, "samples": item.samples}
        if item.kind == SchemaKind.EVENT:
            events.setdefault(item.name, {"properties": []}).update(row)
        elif item.kind == SchemaKind.PROPERTY:
            events.setdefault(item.event, {"name": item.event, "count": 0, "samples": [], "properties": []})[
                "properties"
            ].append(row)
        else:
            traits.append(row)
    return {"events": list(events.values()), "traits": traits}


def schema_suggest(*, name: str, choices: list[str]) -> str | None:
    """The closest known name to a misspelt one (rapidfuzz), if it is close enough to be meant."""
    if not choices:
        return None
    match = process.extractOne(name, choices, scorer=fuzz.WRatio, processor=str.casefold, score_cutoff=80)
    return match[0] if match else None
