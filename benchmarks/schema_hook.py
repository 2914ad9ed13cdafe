"""What the schema registry costs ingestion: the ``on_events_stored`` subscriber (one pass over the
stored batch and one queued task) measured against ``events_ingest`` of the same batches, in the same
run, with the subscriber on and off in alternation.

    python benchmarks/schema_hook.py [--batches 60] [--size 100]

Runs in a scratch database ``cdp_bench_schema`` (created and dropped) on the server of DATABASE_URL;
the Celery broker is REDIS_URL (use a Redis database of your own). Prints per-batch medians and the
ratio. Figures in benchmarks/README.md ("schema registry").
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.scratch import scratch_database_create, scratch_database_drop

NAME = "cdp_bench_schema"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--size", type=int, default=100)
    args = parser.parse_args()
    os.environ["DATABASE_URL"] = scratch_database_create(NAME)
    os.environ.setdefault("DEBUG", "true")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cdp.settings")
    try:
        import django

        django.setup()
        from django.core.management import call_command
        from django.utils import timezone

        from profiles import hooks, schema
        from profiles.services import events_ingest, source_create
        from profiles.tracking.validate import clean_event

        call_command("migrate", verbosity=0)
        source, _ = source_create(name="bench")
        categories = ["outdoor", "kitchen", "books", "toys", "beauty"]

        def batch(i: int) -> list:
            now = timezone.now()
            calls = []
            for j in range(args.size):
                user = f"u{(i * args.size + j) % 5000}"
                calls.append(
                    {
                        "type": "track",
                        "userId": user,
                        "event": ["Product Viewed", "Product Added", "Order Completed"][j % 3],
                        "messageId": uuid.uuid4().hex,
                        "properties": {
                            "sku": f"SKU-{j}",
                            "category": categories[j % 5],
                            "price": 10 + j,
                            "products": [{"sku": f"SKU-{j}", "category": categories[j % 5]}],
                        },
                    }
                )
            return [clean_event(c, received_at=now) for c in calls]

        on, off, hook_only = [], [], []
        for i in range(args.batches):
            events = batch(i)
            subscribed = i % 2 == 0
            if subscribed:
                hooks.on_events_stored.subscribe(schema.on_events_stored)
            else:
                hooks.on_events_stored.unsubscribe(schema.on_events_stored)
            start = time.perf_counter()
            events_ingest(source=source, events=events)
            (on if subscribed else off).append(time.perf_counter() - start)
            payload = [
                {
                    "profile_id": "p",
                    "type": e.type,
                    "name": e.name,
                    "properties": e.properties,
                    "occurred_at": e.occurred_at,
                }
                for e in events
            ]
            start = time.perf_counter()
            schema.on_events_stored(events=payload)
            hook_only.append(time.perf_counter() - start)
        hooks.on_events_stored.subscribe(schema.on_events_stored)
        load = os.getloadavg()
        med_on, med_off, med_hook = (statistics.median(x) * 1000 for x in (on, off, hook_only))
        print(f"batches of {args.size}, {args.batches} batches, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
        print(f"events_ingest, subscriber off: median {med_off:.1f} ms per batch")
        print(f"events_ingest, subscriber on:  median {med_on:.1f} ms per batch")
        print(f"the subscriber alone (summary + queued task): median {med_hook:.2f} ms per batch")
        print(f"ratio subscriber / ingest: {med_hook / med_off:.3f}")
    finally:
        from django.db import connections

        connections.close_all()
        scratch_database_drop(NAME)
    return 0


if __name__ == "__main__":
    sys.exit(main())
