"""The web process's plumbing (decision 0053): one Redis client per cache connection pool instead of one
per cache call, and the garbage collector set up in each gunicorn worker once the app is loaded."""

from __future__ import annotations

import gc
import importlib.util
import threading
from pathlib import Path

from django.core.cache import cache, caches

from cdp.cache import RedisCache


def test_the_cache_reuses_one_redis_client_and_still_works_across_threads():
    # given the project's cache backend
    assert isinstance(caches["default"], RedisCache)
    first = cache._cache.get_client("k", write=True)

    # when it is used again, from this thread and from others
    assert cache._cache.get_client("k2", write=True) is first
    results: list = []

    def work(n: int) -> None:
        cache.set(f"cdp-test-cache-{n}", n, timeout=5)
        results.append(cache.get(f"cdp-test-cache-{n}"))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    # then every value came back (each thread's cache has its own client and pool, as Django's)
    assert sorted(results) == list(range(8))
    assert cache.add("cdp-test-cache-add", 1, timeout=5) is True
    assert cache.add("cdp-test-cache-add", 2, timeout=5) is False
    assert cache.incr("cdp-test-cache-add") == 2


def test_a_gunicorn_worker_freezes_what_it_loaded_and_collects_less_often():
    path = Path(__file__).resolve().parents[2] / "gunicorn.conf.py"
    spec = importlib.util.spec_from_file_location("gunicorn_conf", path)
    conf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conf)
    before = gc.get_threshold()
    try:
        # when a worker has loaded the app
        conf.post_worker_init(worker=None)

        # then start-up's objects are out of every collection and the youngest generation waits longer
        assert gc.get_freeze_count() > 10_000
        assert gc.get_threshold() == (50_000, 20, 10)
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
