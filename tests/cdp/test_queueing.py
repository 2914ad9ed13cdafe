"""The throttled send of cdp.queueing on the real Redis: one task now and one a second later per
second across processes, and the quiet window that spares a busy process the Redis round trips."""

import time

from django.core.cache import cache

from cdp import queueing


class Sent:
    def __init__(self):
        self.calls = []

    def __call__(self, task, *, countdown=None, **kwargs):
        self.calls.append(countdown)
        return True


def test_one_send_now_one_a_second_later_then_none(monkeypatch):
    sent = Sent()
    monkeypatch.setattr(queueing, "task_send", sent)
    for _ in range(5):
        queueing.task_send_throttled(object(), key="t:plain", copies=2, what="test")
    # two copies now, one delayed by a second, nothing for the other three calls
    assert sent.calls == [None, None, 1]


def test_a_quiet_window_skips_redis_until_it_ends(monkeypatch):
    sent, asked = Sent(), []
    monkeypatch.setattr(queueing, "task_send", sent)
    real_add = cache.add
    monkeypatch.setattr(cache, "add", lambda *a, **k: asked.append(a[0]) or real_add(*a, **k))

    def call():
        queueing.task_send_throttled(object(), key="t:quiet", what="test", quiet=0.3)

    call()  # slot "now" taken: sends
    call()  # slot "later" taken: sends with a countdown
    call()  # both taken: asks Redis twice, then keeps quiet
    assert sent.calls == [None, 1] and len(asked) == 5
    call()
    call()
    assert len(asked) == 5  # inside the window nothing is asked
    time.sleep(1.1)  # both slots have expired and the window has ended
    call()
    assert sent.calls == [None, 1, None] and len(asked) == 6


def test_without_quiet_every_call_asks(monkeypatch):
    sent, asked = Sent(), []
    monkeypatch.setattr(queueing, "task_send", sent)
    real_add = cache.add
    monkeypatch.setattr(cache, "add", lambda *a, **k: asked.append(a[0]) or real_add(*a, **k))
    for _ in range(4):
        queueing.task_send_throttled(object(), key="t:loud", what="test")
    assert len(asked) == 1 + 2 + 2 + 2
