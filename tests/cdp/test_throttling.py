"""The per-key rate limit's leases (decision 0057): never above the limit across processes, at most a
lease per process below it, one Redis round trip per lease."""

from __future__ import annotations

import threading
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


@pytest.fixture
def rate(monkeypatch):
    def set_rate(value: str) -> None:
        monkeypatch.setitem(ApiKeyRateThrottle.THROTTLE_RATES, "write_key", value)

    monkeypatch.setattr(throttling, "_leases", throttling._Leases())
    return set_rate


def _admit_by_turns(monkeypatch, processes: list, source_pk: int, requests: int) -> list[int]:
    """Web processes taking turns (each with its own leases, one Redis): admitted per process."""
    admitted = [0] * len(processes)
    for n in range(requests):
        monkeypatch.setattr(throttling, "_leases", processes[n % len(processes)])
        admitted[n % len(processes)] += _admit(source_pk, 1)
    return admitted


def test_processes_taking_turns_admit_the_limit_and_never_more(rate, monkeypatch):
    # given a limit of 1,005 a day (leases of 10, the last one cut to the limit) and four web processes
    rate("1005/d")
    processes = [throttling._Leases() for _ in range(4)]
    # when they are asked 1,600 times in turns
    admitted = _admit_by_turns(monkeypatch, processes, 424242, 1600)
    # then exactly the limit was admitted, and each lease was counted in Redis once (one refusal each)
    assert sum(admitted) == 1005
    assert _window_count("write_key:424242", 86400) == 1010 + 4 * 10


def test_a_lease_not_used_up_is_what_the_limit_loses(rate, monkeypatch):
    # given a limit of 1,000 a day: leases of 10
    rate("1000/d")
    processes = [throttling._Leases() for _ in range(4)]
    # when each of four processes admits three requests
    assert _admit_by_turns(monkeypatch, processes, 434343, 12) == [3, 3, 3, 3]
    # then each holds the rest of its lease: 40 reserved, at most 4 * (10 - 1) unused
    assert _window_count("write_key:434343", 86400) == 40


def test_threads_of_one_process_share_its_leases_without_admitting_more(rate):
    rate("500/d")
    admitted = []
    threads = [threading.Thread(target=lambda: admitted.append(_admit(454545, 200))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sum(admitted) == 500


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
