#!/usr/bin/env python
"""Privacy benchmark: erasure and export of one person with three merged profiles and 10,000 events.

    python benchmarks/privacy.py [--events 10000] [--background 100000] [--repeat 3]

What it does, on this machine:

1. Creates a scratch database ``cdp_bench_privacy`` on the PostgreSQL server of ``DATABASE_URL`` (or
   ``.cdp/env``, or ``postgres://postgres@127.0.0.1:5432``), migrates it, and fills it with background
   data: ``--background`` events of 1,000 other people (so deletes hit real indexes, not empty tables).
2. Per repetition, builds the person: three profiles (user id + e-mail + name; phone; anonymous
   browser), ``--events`` events spread over them (with IPs and user agents in context), consent
   answers on each, then two real merges (``profile_merge``: undo snapshots, moved events).
3. Times ``privacy_export_build`` (every registry entry's export -> gzip JSON archive, as the rq job
   does) and ``privacy_erase`` (every registry entry's eraser in one transaction, ledger
   anonymised, suppression entries, cache purge on commit).
4. Baseline in the same run: the same person built again, then a plain ``DELETE`` of the same rows
   (events, identifiers, merges, consent state, profiles) in one transaction — the floor for
   removing this much data, without the registry, anonymisation or suppression.
5. The cost of consent on the ingestion path (``--ingest-batches``): batches of 100 tracking events
   (returning and new people, a tenth carrying ``context.consent``) through ``events_ingest`` with
   consent's two ingestion filters subscribed and unsubscribed, alternating batch by batch in the
   same process, so machine load affects both sides alike.

With ``--model-users`` (default 200,000) and ``--model-items`` (50,000) a recommendation model of
that size (the speed benchmark's catalog; its people and the benchmark's persons) is trained first
and stored twice (the active version and a retired one kept for rollback), so erasure also removes
the person from stored models: inside its transaction it only records them as pending, and the
follow-up right after the commit rewrites the shard of each model's per-person part that holds
them (timed apart; ``privacy_erase`` returns when both are done). The models are stored as a
refresh stores them (the item part, and the per-person part in shards). ``--model-users 0``: no
model.

Targets (issue #7): erasure < 2 s, export < 5 s. Prints a markdown table and drops the database.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from cdp.envfiles import SERVICES_ENV_FILE, parse_env_file  # noqa: E402

DB_NAME = os.environ.get("PRIVACY_BENCH_DATABASE", "cdp_bench_privacy")  # a private name when several run
DEFAULT_SERVER = "postgres://postgres@127.0.0.1:5432"


def server_url() -> str:
    url = os.environ.get("DATABASE_URL") or parse_env_file(SERVICES_ENV_FILE).get("DATABASE_URL") or DEFAULT_SERVER
    return urlunsplit(urlsplit(url)._replace(path=""))


def admin_sql(statement: str) -> None:
    import psycopg

    with psycopg.connect(server_url() + "/postgres", autocommit=True) as conn:
        conn.execute(statement)


def setup_django(redis_db: int) -> None:
    os.environ["DATABASE_URL"] = f"{server_url()}/{DB_NAME}"
    redis = (
        os.environ.get("REDIS_URL") or parse_env_file(SERVICES_ENV_FILE).get("REDIS_URL") or "redis://127.0.0.1:6379"
    )
    os.environ["REDIS_URL"] = urlunsplit(urlsplit(redis)._replace(path=f"/{redis_db}"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cdp.settings")
    os.environ.setdefault("DEBUG", "false")
    os.environ.setdefault("SECRET_KEY", "benchmark-only-secret-key-0123456789abcdef")
    os.environ.setdefault("CONSENT_HASH_SALT", "benchmark-only-consent-salt-0123456789")
    os.environ.setdefault("ALLOWED_HOSTS", "localhost")
    os.environ["DB_POOL"] = "false"
    os.environ.setdefault("DB_STATEMENT_TIMEOUT_MS", "0")  # storing a model of realistic size takes seconds
    import django

    django.setup()


EVENTS_SQL = """
INSERT INTO profiles_event (source_id, message_id, profile_id, type, name, user_id, anonymous_id, properties, traits,
                            context, occurred_at, received_at, device_type, local_hour)
SELECT %(source)s, %(tag)s || '-' || g, (%(profiles)s::uuid[])[1 + g %% array_length(%(profiles)s::uuid[], 1)],
       'track', CASE WHEN g %% 20 = 0 THEN 'Order Completed' ELSE 'Product Viewed' END, '', '',
       jsonb_build_object('product_id', 'sku-' || (g %% 700), 'price', 9.99 + g %% 50, 'category', 'outdoor'),
       '{}'::jsonb,
       jsonb_build_object('ip', '198.51.100.' || (g %% 250), 'userAgent', 'Mozilla/5.0 (bench)', 'page',
                          jsonb_build_object('url', 'https://shop.example/p/' || (g %% 700))),
       now() - g * interval '37 seconds', now(), 'desktop', (g %% 24)
FROM generate_series(1, %(n)s) g
"""


def insert_events(source_id: int, tag: str, profile_ids: list[str], n: int) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(EVENTS_SQL, {"source": source_id, "tag": tag, "profiles": profile_ids, "n": n})


def build_person(tag: str, source_id: int, events: int) -> str:
    """Three profiles of one person with PII, events, consent answers; merged into the first."""
    from django.utils import timezone

    from consent.services import consent_record
    from profiles.identity.merge import profile_merge
    from profiles.models import Identifier, Profile

    now = timezone.now()
    a = Profile.objects.create(
        traits={"email": f"{tag}@example.org", "name": f"Person {tag}", "address": {"street": "1 Bench Road"}},
        first_seen_at=now,
        last_seen_at=now,
    )
    b = Profile.objects.create(traits={"phone": "+447911123456"}, first_seen_at=now, last_seen_at=now)
    c = Profile.objects.create(traits={}, first_seen_at=now, last_seen_at=now)
    for profile, kind, value in (
        (a, "user_id", f"user-{tag}"),
        (a, "email", f"{tag}@example.org"),
        (b, "phone", f"+4479111{abs(hash(tag)) % 100000:05d}"),
        (b, "anonymous_id", f"anon-b-{tag}"),
        (c, "anonymous_id", f"anon-c-{tag}"),
    ):
        Identifier.objects.create(profile=profile, kind=kind, value=value, last_seen_at=now)
    insert_events(source_id, tag, [str(a.pk), str(b.pk), str(c.pk)], events)
    for profile in (a, b, c):
        consent_record(
            profile_id=profile.pk,
            choices={"analytics": True, "personalisation": True, "marketing": False},
            source="banner",
            evidence={"banner_id": "bench", "ip_hash": "0" * 64, "user_agent": "Mozilla/5.0 (bench)"},
        )
    for loser in (b, c):
        profile_merge(winner=Profile.objects.get(pk=a.pk), loser=Profile.objects.get(pk=loser.pk), reason="manual")
    return str(a.pk)


def plain_delete(group: list[str]) -> None:
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM profiles_event WHERE profile_id = ANY(%s::uuid[])", [group])
        cursor.execute("DELETE FROM profiles_identifier WHERE profile_id = ANY(%s::uuid[])", [group])
        cursor.execute(
            "DELETE FROM profiles_merge WHERE winner_id = ANY(%s::uuid[]) OR loser_id = ANY(%s::uuid[])", [group, group]
        )
        cursor.execute("DELETE FROM consent_consentstate WHERE profile_id = ANY(%s::uuid[])", [group])
        cursor.execute("DELETE FROM profiles_pendingwork WHERE profile_id = ANY(%s::uuid[])", [group])
        cursor.execute("UPDATE profiles_profile SET merged_into_id = NULL WHERE id = ANY(%s::uuid[])", [group])
        cursor.execute("DELETE FROM profiles_profile WHERE id = ANY(%s::uuid[])", [group])


def ingest_overhead(source, batches: int) -> tuple[float, float]:
    """Median ms per 100-event batch through events_ingest with and without consent's filters."""
    import random
    import uuid

    from django.utils import timezone

    from consent import ingest
    from profiles import hooks
    from profiles.services import events_ingest
    from profiles.tracking.validate import clean_event

    rng = random.Random(7)

    def make_batch() -> list:
        now = timezone.now()
        events = []
        for _ in range(100):
            user = f"shopper-{rng.randrange(3000)}"
            payload = {
                "type": "track",
                "event": "Product Viewed",
                "userId": user,
                "messageId": str(uuid.uuid4()),
                "properties": {"product_id": f"sku-{rng.randrange(500)}"},
                "context": {"ip": "203.0.113.5", "userAgent": "Mozilla/5.0 (bench)"},
            }
            if rng.random() < 0.1:  # a shopper's answer is stable (it changes rarely, as on a real banner)
                n = int(user.rsplit("-", 1)[1])
                payload["context"]["consent"] = {
                    "categoryPreferences": {"Analytics": n % 20 != 0, "Advertising": n % 3 != 0}
                }
            events.append(clean_event(payload, received_at=now))
        return events

    with_f, without_f = [], []
    for i in range(batches * 2):
        subscribed = i % 2 == 0
        if subscribed:
            hooks.ingest_filter_identifiers.subscribe(ingest.filter_suppressed)
            hooks.ingest_filter_profiles.subscribe(ingest.filter_consent)
        else:
            hooks.ingest_filter_identifiers.unsubscribe(ingest.filter_suppressed)
            hooks.ingest_filter_profiles.unsubscribe(ingest.filter_consent)
        batch = make_batch()
        t0 = time.perf_counter()
        events_ingest(source=source, events=batch)
        (with_f if subscribed else without_f).append((time.perf_counter() - t0) * 1000)
    hooks.ingest_filter_identifiers.subscribe(ingest.filter_suppressed)
    hooks.ingest_filter_profiles.subscribe(ingest.filter_consent)
    warm = max(1, batches // 10)  # the first batches create most people
    return statistics.median(with_f[warm:]), statistics.median(without_f[warm:])


def store_model(args, people: list[str]) -> dict | None:
    """Train a recommendation model of ``--model-users`` x ``--model-items`` (synthetic orders and
    views with skewed popularity, ``people`` among the users) and store it twice: active and retired."""
    if not args.model_users:
        return None
    import numpy as np
    from django.utils import timezone

    from recommendations.engine.bundle import train_bundle
    from recommendations.engine.data import PURCHASE, VIEW, Catalog, Interactions
    from recommendations.models import ModelStatus, ModelVersion
    from recommendations.services import model_artifact_store

    rng = np.random.default_rng(42)
    n_users, n_items = args.model_users + len(people), args.model_items
    users = np.array([*people, *(f"00000000-0000-0000-0000-{n:012d}" for n in range(args.model_users))], dtype=object)
    per_user = rng.integers(1, 8, n_users)
    user = np.repeat(np.arange(n_users), per_user)
    item = np.minimum((n_items * rng.random(len(user)) ** 2.5).astype(np.int64), n_items - 1)
    kind = np.where(rng.random(len(user)) < 0.4, PURCHASE, VIEW)
    now = timezone.now().timestamp()
    ts = now - rng.random(len(user)) * 90 * 86400
    items = np.array([f"P{n:06d}" for n in range(n_items)], dtype=object)
    data = Interactions(
        users=users, items=items, user=user, item=item, kind=kind, quantity=np.ones(len(user)), ts=ts,
        order=np.where(kind == PURCHASE, user * 10 + rng.integers(0, 2, len(user)), -1),
    )  # fmt: skip
    catalog = Catalog(
        items=items,
        title=[f"Product {n}" for n in range(n_items)],
        category=[f"cat{n % 40} > sub{n % 7}" for n in range(n_items)],
        brand=[f"brand{n % 300}" for n in range(n_items)],
        price=[5.0 + (n * 7919) % 500 for n in range(n_items)],
    )
    started = time.perf_counter()
    # the served recipe's components without the ranker's label-window refits (the ranker adds ~5 % to
    # the artifact; what an erasure rewrites is dominated by the per-person matrices and the factors)
    recipe = {
        "primary": "als",
        "recommenders": [
            "popularity", "trending", "buy_again", "als", "item_item", "item_item_bm25", "content", "session",
            "repeat_knn",
        ],
    }  # fmt: skip
    bundle = train_bundle(data=data, catalog=catalog, params=recipe, now=now)
    train_seconds = time.perf_counter() - started
    parts = bundle.to_parts()  # stored as a refresh stores it: the item part, the per-person shards
    for status in (ModelStatus.RETIRED, ModelStatus.ACTIVE):
        version = ModelVersion.objects.create(status=status, progress=1.0, created_by="benchmark")
        model_artifact_store(version_id=version.pk, parts=parts)
    item, shards, people = parts
    return {
        "users": n_users,
        "items": n_items,
        "interactions": len(data),
        "artifact_mb": round((len(item) + sum(len(b) for _, _, b in people)) / 1e6, 1),
        "item_part_mb": round(len(item) / 1e6, 1),
        "people_shards": shards,
        "shard_mb_max": round(max((len(b) for _, _, b in people), default=0) / 1e6, 2),
        "train_seconds": round(train_seconds, 1),
        "recommenders": sorted(bundle.recommenders),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000, help="events of the person (default 10,000)")
    parser.add_argument("--background", type=int, default=100_000, help="events of 1,000 other people")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--redis-db", type=int, default=13, help="Redis database number for the cache purge")
    parser.add_argument("--ingest-batches", type=int, default=200, help="batches per side of the ingest comparison")
    parser.add_argument("--model-users", type=int, default=200_000, help="people in the stored model (0: none)")
    parser.add_argument("--model-items", type=int, default=50_000, help="products in the stored model")
    args = parser.parse_args()
    if args.events < 3 or args.repeat < 1:
        parser.error("--events must be at least 3 and --repeat at least 1")

    admin_sql(f"DROP DATABASE IF EXISTS {DB_NAME}")
    admin_sql(f"CREATE DATABASE {DB_NAME}")
    try:
        setup_django(args.redis_db)
        from django.core.management import call_command
        from django.db import connection
        from django.utils import timezone

        from consent.requests import privacy_erase, privacy_export_build
        from consent.selectors import profile_group_ids
        from consent.services import purposes_ensure
        from profiles.models import Event, Profile
        from profiles.services import source_create

        call_command("migrate", verbosity=0)
        purposes_ensure()
        source, _ = source_create(name="bench")
        now = timezone.now()
        others = Profile.objects.bulk_create(
            [
                Profile(traits={"email": f"other{i}@example.net"}, first_seen_at=now, last_seen_at=now)
                for i in range(1000)
            ]
        )
        if args.background:
            insert_events(source.pk, "bg", [str(p.pk) for p in others], args.background)
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")

        persons = [build_person(f"p{r}", source.pk, args.events) for r in range(args.repeat)]
        model = store_model(args, [g for live in persons for g in profile_group_ids(profile_id=live)])
        erase_s, export_s, delete_s, archive_bytes, followup_s = [], [], [], [], []
        for r in range(args.repeat):
            live = persons[r]
            group = profile_group_ids(profile_id=live)
            assert len(group) == 3 and Event.objects.filter(profile_id__in=group).count() == args.events
            t0 = time.perf_counter()
            archive = privacy_export_build(profile_ids=group)
            export_s.append(time.perf_counter() - t0)
            archive_bytes.append(len(archive))
            t0 = time.perf_counter()
            result = privacy_erase(profile_id=live)
            erase_s.append(time.perf_counter() - t0)
            done = result.get("followups", {}).get("recommendations") or {}
            if model:
                assert len(done.get("models_updated", [])) == 2, done
            followup_s.append(float(done.get("seconds", 0.0)))
            assert not Profile.objects.filter(pk__in=group).exists()

            live = build_person(f"d{r}", source.pk, args.events)
            group = profile_group_ids(profile_id=live)
            t0 = time.perf_counter()
            plain_delete(group)
            delete_s.append(time.perf_counter() - t0)

        erase, export, delete = (statistics.median(x) for x in (erase_s, export_s, delete_s))
        load = os.getloadavg()[0]
        print(
            f"\nperson: 3 merged profiles, {args.events:,} events; background: {args.background:,} events of "
            f"1,000 people; {args.repeat} repetitions (median); load average {load:.1f}\n"
        )
        if model:
            print(f"stored model: {model}\n")
        print("| measure | median s | runs (s) | x baseline | target |")
        print("|---|---:|---|---:|---|")
        fmt = ", ".join
        runs = fmt(f"{x:.3f}" for x in delete_s)
        print(f"| baseline: plain DELETE of the same rows | {delete:.3f} | {runs} | 1.0 | |")
        print(
            f"| erasure (`privacy_erase`: every registry entry, ledger anonymised, suppression) | {erase:.3f} | "
            f"{fmt(f'{x:.3f}' for x in erase_s)} | {erase / delete:.1f} | < 2 s: {'met' if erase < 2 else 'MISSED'} |"
        )
        if model:
            follow = statistics.median(followup_s)
            inside = [e - f for e, f in zip(erase_s, followup_s, strict=True)]
            print(
                f"| … of which the erasure transaction | {statistics.median(inside):.3f} | "
                f"{fmt(f'{x:.3f}' for x in inside)} | {statistics.median(inside) / delete:.1f} | |"
            )
            print(
                f"| … of which the follow-up (the people's shards of the 2 stored models rewritten) | {follow:.3f} | "
                f"{fmt(f'{x:.3f}' for x in followup_s)} | {follow / delete:.1f} | |"
            )
        print(
            f"| export (`privacy_export_build`, gzip JSON, {statistics.median(archive_bytes) / 1e6:.2f} MB) | "
            f"{export:.3f} | {fmt(f'{x:.3f}' for x in export_s)} | {export / delete:.1f} | "
            f"< 5 s: {'met' if export < 5 else 'MISSED'} |"
        )
        if args.ingest_batches:
            with_ms, without_ms = ingest_overhead(source, args.ingest_batches)
            print(
                f"\ningest, 100-event batches, {args.ingest_batches} per side, alternating (median): "
                f"with consent filters {with_ms:.1f} ms, without {without_ms:.1f} ms, "
                f"ratio {with_ms / without_ms:.2f} ({(with_ms - without_ms) / 100 * 1000:.0f} µs per event)"
            )
    finally:
        try:
            from django.db import connections

            connections.close_all()
        except Exception:  # noqa: S110 - Django was never set up
            pass
        admin_sql(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
