"""gunicorn reads this file from the working directory (the Procfile's web line, benchmarks/ingest.py).
Only hooks here: the web line's options stay on the command line."""

import gc


def post_worker_init(worker) -> None:
    """The garbage collector in a web worker (decisions 0053 and 0051), once the app is loaded.

    What the worker loaded at start-up (Django, DRF, Celery, the apps: some 160,000 objects) never
    becomes garbage, so it is frozen out of every collection (a full collection took 20-50 ms: a tail
    in /v1/track's latency). The thresholds stay Python's: every request leaves about 150 objects in
    reference cycles (the request's ``auser``, the view and its request, serializer fields) that only
    the collector frees, and a youngest generation allowed 50,000 containers held some 40,000 of
    them: 36-62 ms per collection, in the p99 of every endpoint (measured under the recommendations
    benchmark's load). Collected every 700, each collection is small.
    """
    gc.collect()
    gc.freeze()
