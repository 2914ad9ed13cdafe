"""The per-key rate limit's leases (decision 0057): never above the limit across processes, at most a
lease per process below it, one Redis round trip per lease."""

from __future__ import annotations

import multiprocessing
import time

import pytest
from django.core.cache import cache

from cdp.api import throttling
from cdp.api.throttling import ApiKeyRateThrottle
from profiles.models import Source


class _Request:
    def __init__(self, auth) -> None:
        self.auth = auth


def _window_count(budget: str, duration: int) -> int:
    key = cache.make_and_validate_key(f"throttle:{budget}:{int(time.time() // duration)}")
    return int(cache._cache.get_client(key).get(key) or 0)


def _admit(source_pk: int, requests: int) -> int:
    throttle = ApiKeyRateThrottle()
    request = _Request(Source(pk=source_pk, name="x"))
    return sum(throttle.allow_request(request, None) for _ in range(requests))


def _admit_in_child(source_pk: int, requests: int, results) -> None:
    results.put(_admit(source_pk, requests))


@pytest.fixture
def rate(monkeypatch):
    def set_rate(value: str) -> None:
        monkeypatch.setitem(ApiKeyRateThrottle.THROTTLE_RATES, "write_key", value)

    monkeypatch.setattr(throttling, "_leases", throttling._Leases())
    return set_rate


def test_processes_admit_no_more_than_the_limit_and_at_most_a_lease_each_less(rate):
    # given a limit of 1,000 a day (leases of 10) and four web processes asking 400 times each
    rate("1000/d")
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    day = int(time.time() // 86400)
    children = [context.Process(target=_admit_in_child, args=(424242, 400, results)) for _ in range(4)]
    for child in children:
        child.start()
    admitted = sum(results.get(timeout=60) for _ in children)
    for child in children:
        child.join(10)
    if int(time.time() // 86400) != day:
        pytest.skip("the day's window ended during the test")
    # then never above the limit, and at most 4 * (10 - 1) below it
    assert 1000 - 4 * 9 <= admitted <= 1000
    # and each lease is counted in Redis once: the counter stops within a lease per process of the limit
    assert 1000 <= _window_count("write_key:424242", 86400) <= 1000 + 4 * 10


def test_a_process_takes_one_round_trip_per_lease(rate):
    # given a limit of 5,000 a day: leases of 50
    rate("5000/d")
    # when one process admits 120 requests
    assert _admit(515151, 120) == 120
    # then Redis was asked three times (50 + 50 + 50 reserved)
    assert _window_count("write_key:515151", 86400) == 150


def test_small_limits_are_exact_and_a_spent_limit_asks_redis_no_more(rate):
    rate("3/d")
    assert _admit(616161, 5) == 3
    assert _window_count("write_key:616161", 86400) == 4  # the refusal counted once, then no more asking
    assert _admit(616161, 5) == 0
    assert _window_count("write_key:616161", 86400) == 4


def test_a_new_window_gives_a_new_budget(rate, monkeypatch):
    rate("2/s")
    now = [1_000_000.2]
    monkeypatch.setattr(throttling.time, "time", lambda: now[0])
    assert _admit(717171, 3) == 2
    now[0] += 1.0
    assert _admit(717171, 3) == 2


def test_the_limit_is_left_open_when_redis_is_down(rate, monkeypatch):
    rate("1/d")

    def down(*args, **kwargs):
        raise ConnectionError("redis down")

    monkeypatch.setattr(cache._cache, "get_client", down)
    assert _admit(818181, 3) == 3
