"""gunicorn reads this file from the working directory (the Procfile's web line, benchmarks/ingest.py).
Only hooks here: the web line's options stay on the command line."""

import gc


def post_worker_init(worker) -> None:
    """The garbage collector in a web worker (decision 0053), once the app is loaded.

    What the worker loaded at start-up (Django, DRF, Celery, the apps: some 160,000 objects) never
    becomes garbage, so it is frozen out of every collection (a full collection took 20-50 ms: a tail
    in /v1/track's latency). A batch request makes a few thousand containers that die with it, so the
    youngest generation is collected every 50,000 new containers instead of every 700 (three or four
    collections per batch request of 100 calls, each walking the live batch again).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 10)
