"""benchmarks/serving_cpu.py: its arithmetic, and the request mix it shares with recommendations_speed."""

from __future__ import annotations

import os

from benchmarks import recommendations_speed as speed
from benchmarks import serving_cpu


def test_the_request_mix_is_the_benchmarks_fixed_one():
    trivial, recs = speed.request_paths(50_000, 200_000)
    again = speed.request_paths(50_000, 200_000)

    assert (trivial, recs) == again  # a fixed seed: every run and every commit sends the same requests
    assert len(trivial) == len(recs) == 5000
    assert all(p.startswith("/api/v1/products/P") for p in trivial)
    known = sum("user_id=u" in p for p in recs)
    assert 0.83 < known / len(recs) < 0.87  # 85 % known shoppers' home lists
    assert sum("anonymous_id=visitor-" in p and "session_items=P" in p for p in recs) == len(recs) - known


def test_cpu_per_request_sums_workers_and_backends_over_rounds():
    before = {"workers": {1: 10.0, 2: 5.0}, "pg": {7: 1.0}, "self": 2.0, "machine": 100.0, "wall": 0.0}
    after = {"workers": {1: 11.0, 2: 6.0}, "pg": {7: 1.2, 8: 0.1}, "self": 2.1, "machine": 102.6, "wall": 4.0}
    rounds = [serving_cpu.phase_cost(before, after, 500), serving_cpu.phase_cost(before, after, 500)]

    out = serving_cpu.summary(rounds, [0.001] * 990 + [0.05] * 10)

    cpu = out["cpu_ms_per_request"]
    assert cpu["gunicorn_workers"] == 4.0  # 2 s of worker CPU per 500 requests, twice
    assert cpu["postgresql_backends"] == 0.6  # a backend that appeared meanwhile counts from zero
    assert cpu["server_side"] == 4.6
    assert cpu["load_generator"] == 0.2
    assert cpu["machine"] == 5.2
    assert cpu["rest_of_machine"] == 0.4
    assert out["closed_loop_rate"] == 125.0
    assert out["latency_ms"]["p50"] == 1.0 and out["latency_ms"]["max"] == 50.0


def test_process_cpu_reads_this_process():
    spent = serving_cpu.process_cpu(os.getpid())
    assert spent > 0
    assert serving_cpu.process_cpu(2**22 + 12345) == 0.0  # no such process
