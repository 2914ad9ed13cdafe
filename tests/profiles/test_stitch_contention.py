"""A stitch batch does not wait for locks another transaction holds (decision 0069).

The other transaction here is a second PostgreSQL connection holding the lock the way another stitch
worker's batch or an erasure does: an identifier's advisory lock, or a profile row ``FOR UPDATE``.
The calls that need it stay in the intake log, with the later calls that share an identifier with
them; the rest of the batch is stitched; once the lock is gone the next batch stitches what was left,
and the outcome is what stitching in one go gives."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from datetime import UTC, datetime

import psycopg
import pytest
from django.db import connection

from profiles.models import Event, Identifier, IntakeEvent, IntakePoison, Profile
from profiles.services import source_create
from profiles.tracking import intake, stitch
from profiles.tracking.ingest import retry_counts
from profiles.tracking.worker import intake_drain, intake_stitch_batch
from tests.profiles.helpers import batch, deadlocks, person_insert, writer

pytestmark = [pytest.mark.intake_async, pytest.mark.django_db(transaction=True)]

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def _conninfo() -> str:
    db = connection.settings_dict
    return psycopg.conninfo.make_conninfo(
        dbname=db["NAME"], user=db["USER"], host=db["HOST"], port=db["PORT"] or 5432, password=db["PASSWORD"] or None
    )


@contextlib.contextmanager
def held(sql: str, params: list):
    """Another transaction that runs ``sql`` (taking a lock) and holds it until the block ends."""
    with psycopg.connect(_conninfo()) as other:
        other.execute(sql, params)
        try:
            yield other
        finally:
            other.rollback()


def identifier_lock(kind: str, value: str):
    return held("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"{kind}:{value}"])


def waiting_for_a_lock(timeout: float = 20) -> bool:
    """Whether a backend of this database waits for a lock (polled; False after ``timeout``)."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(_conninfo(), autocommit=True) as probe:
        while time.monotonic() < deadline:
            row = probe.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ).fetchone()
            if row[0]:
                return True
            time.sleep(0.05)
    return False


def waiting_ids() -> list[str]:
    return sorted(IntakeEvent.objects.values_list("message_id", flat=True))


@pytest.fixture
def one_partition(settings, monkeypatch):
    settings.CDP_INTAKE_PARTITIONS = 1  # every call in one batch: what is left out is the lock's doing
    settings.CDP_INTAKE_LEASE_SECONDS = 20  # a batch that waited for a lock held here fails, not hangs
    settings.CDP_INTAKE_PAUSE_SECONDS = 0.05
    monkeypatch.setattr(intake, "intake_wake", lambda: None)  # no Celery worker takes part here


def test_calls_needing_an_identifier_lock_held_elsewhere_wait_in_the_log_with_the_calls_after_them(
    write_key, one_partition
):
    client = writer(write_key)
    # given a visitor who browses, logs in as a customer whose identifier another transaction has
    # locked, and browses on; and another customer's call after them
    batch(
        client,
        {"type": "track", "anonymousId": "a-1", "event": "Product Viewed", "messageId": "m-before"},
        {"type": "identify", "anonymousId": "a-1", "userId": "u-busy", "traits": {"first_name": "Bo"},
         "messageId": "m-login"},
        {"type": "track", "anonymousId": "a-1", "event": "Product Added", "messageId": "m-after"},
        {"type": "track", "userId": "u-free", "event": "Product Viewed", "messageId": "m-other"},
    )  # fmt: skip
    contended_before, left_before = retry_counts["AllContended"], retry_counts["left for later"]

    # when a batch is stitched while the lock is held
    with identifier_lock("user_id", "u-busy"):
        stitched = intake_stitch_batch()
        assert retry_counts["left for later"] == left_before + 2

        # then the call before the login and the other customer's call are stitched; the login and
        # the call after it (same browser) wait in the log, and nothing waited for the lock
        assert stitched == 2
        assert waiting_ids() == ["m-after", "m-login"]
        assert sorted(Event.objects.values_list("message_id", flat=True)) == ["m-before", "m-other"]
        assert not Identifier.objects.filter(kind="user_id", value="u-busy").exists()
        assert retry_counts["AllContended"] == contended_before

    # and once the lock is gone the next drain stitches them, in order, on the visitor's profile
    assert intake_drain() == 2
    visitor = Identifier.objects.get(kind="anonymous_id", value="a-1").profile
    assert Identifier.objects.get(kind="user_id", value="u-busy").profile == visitor
    assert visitor.traits == {"first_name": "Bo"}
    assert set(Event.objects.filter(profile=visitor).values_list("message_id", flat=True)) == {
        "m-before",
        "m-login",
        "m-after",
    }
    assert (Profile.objects.count(), IntakeEvent.objects.count()) == (2, 0)
    # stitched in the order they were accepted: the login before the call after it
    stored = list(Event.objects.filter(profile=visitor).order_by("id").values_list("message_id", flat=True))
    assert stored == ["m-before", "m-login", "m-after"]


def test_calls_of_a_profile_another_transaction_holds_wait_in_the_log(write_key, one_partition):
    client = writer(write_key)
    # given a known customer
    batch(client, {"type": "identify", "anonymousId": "a-2", "userId": "u-known", "messageId": "m-known"})
    assert intake_drain() == 1
    known = Identifier.objects.get(kind="user_id", value="u-known").profile

    # when their next call and another customer's arrive while another transaction holds their profile
    batch(
        client,
        {"type": "track", "anonymousId": "a-2", "event": "Product Viewed", "messageId": "m-view"},
        {"type": "track", "userId": "u-else", "event": "Product Viewed", "messageId": "m-else"},
    )
    with held("SELECT id FROM profiles_profile WHERE id = %s FOR UPDATE", [known.pk]):
        stitched = intake_stitch_batch()

        # then only the other customer's call is stitched, without waiting for that transaction
        assert stitched == 1
        assert waiting_ids() == ["m-view"]

    # and the known customer's call follows once it is released
    assert intake_drain() == 1
    assert Event.objects.get(message_id="m-view").profile_id == known.pk
    assert Profile.objects.count() == 2


def test_a_batch_whose_every_call_needs_a_held_lock_waits_for_it_instead(write_key, one_partition):
    batch(
        writer(write_key),
        {"type": "identify", "userId": "u-wait", "traits": {"first_name": "Wu"}, "messageId": "m-1"},
        {"type": "track", "userId": "u-wait", "event": "Product Viewed", "messageId": "m-2"},
    )
    contended_before = retry_counts["AllContended"]
    stitched: list = []

    def stitch():
        try:
            stitched.append(intake_stitch_batch())
        finally:
            connection.close()

    # when the only calls waiting need a lock another transaction holds
    with identifier_lock("user_id", "u-wait"):
        thread = threading.Thread(target=stitch)
        thread.start()
        # then the batch, taken again, waits for the lock (leaving them would make no progress)
        assert waiting_for_a_lock()
        assert stitched == []
    thread.join(30)

    # and stitches both calls once it is released
    assert stitched == [2]
    assert retry_counts["AllContended"] == contended_before + 1
    assert Identifier.objects.get(kind="user_id", value="u-wait").profile.traits == {"first_name": "Wu"}
    assert (Event.objects.count(), IntakeEvent.objects.count()) == (2, 0)


def test_a_call_left_out_holds_back_the_later_calls_of_the_same_person_from_other_browsers_and_sources(
    write_key, one_partition
):
    client = writer(write_key)
    # given a known customer with two browsers, and a second source (the shop's backend)
    batch(
        client,
        {"type": "identify", "anonymousId": "phone", "userId": "u-two", "messageId": "m-known-1"},
        {"type": "identify", "anonymousId": "laptop", "userId": "u-two", "messageId": "m-known-2"},
    )
    assert intake_drain() == 2
    person = Identifier.objects.get(kind="user_id", value="u-two").profile
    _, backend_key = source_create(name="backend")

    # when, while another transaction holds the lock of an email they are about to give, they give it
    # on the phone, then browse on the laptop, the backend reports their order, and someone else browses
    batch(
        client,
        {"type": "identify", "anonymousId": "phone", "traits": {"email": "two@example.org"}, "messageId": "m-email"},
    )
    batch(client, {"type": "track", "anonymousId": "laptop", "event": "Product Viewed", "messageId": "m-laptop"})
    batch(writer(backend_key), {"type": "track", "userId": "u-two", "event": "Order Completed", "messageId": "m-order"})
    batch(client, {"type": "track", "userId": "u-else", "event": "Product Viewed", "messageId": "m-else"})
    contended_before = retry_counts["AllContended"]
    with identifier_lock("email", "two@example.org"):
        stitched = intake_stitch_batch()

        # then only the other person's call is stitched: the laptop's call (same profile) and the
        # backend's (same person, another source) wait behind the email, without any wait
        assert stitched == 1
        assert waiting_ids() == ["m-email", "m-laptop", "m-order"]
        assert retry_counts["AllContended"] == contended_before

    # and all three follow once it is released, on the person's profile
    assert intake_drain() == 3
    assert set(Event.objects.filter(profile=person).values_list("message_id", flat=True)) == {
        "m-known-1",
        "m-known-2",
        "m-email",
        "m-laptop",
        "m-order",
    }
    assert Identifier.objects.get(kind="email", value="two@example.org").profile == person


def test_a_drain_does_not_end_with_calls_left_for_a_lock_it_looks_again_until_it_is_released(write_key, one_partition):
    batch(
        writer(write_key),
        {"type": "identify", "userId": "u-held", "traits": {"first_name": "He"}, "messageId": "m-held"},
        {"type": "track", "userId": "u-free", "event": "Product Viewed", "messageId": "m-free"},
    )
    released = threading.Event()

    def hold_then_release(ready: threading.Event):
        with identifier_lock("user_id", "u-held"):
            ready.set()
            time.sleep(1.0)
        released.set()

    ready = threading.Event()
    holder = threading.Thread(target=hold_then_release, args=(ready,))
    holder.start()
    assert ready.wait(10)

    # when a drain (as a command or a wake runs it, not lingering) runs while the lock is held
    stitched = intake_drain()
    holder.join(30)

    # then it stitched the free call, came back for the held one and took it once it was released
    assert released.is_set()
    assert stitched == 2
    assert (Event.objects.count(), IntakeEvent.objects.count()) == (2, 0)


def test_an_owner_that_appears_after_the_first_read_and_is_held_elsewhere_is_not_waited_for(
    write_key, one_partition, monkeypatch
):
    batch(
        writer(write_key),
        {"type": "identify", "anonymousId": "a-late", "userId": "u-late", "messageId": "m-late"},
        {"type": "track", "userId": "u-else", "event": "Product Viewed", "messageId": "m-else"},
    )
    # given another transaction that, after the batch read the owners (nobody owned u-late), creates
    # u-late's profile, commits, and then holds that profile's row
    others: list = []
    real = stitch.lock_identifier_keys

    def another_batch_meanwhile(identifiers, **options):
        if not others:
            other = psycopg.connect(_conninfo(), autocommit=True)
            late = person_insert(other, "user_id", "u-late")
            other.autocommit = False
            other.execute("SELECT id FROM profiles_profile WHERE id = %s FOR UPDATE", [late])
            others.append((other, late))
        return real(identifiers, **options)

    monkeypatch.setattr(stitch, "lock_identifier_keys", another_batch_meanwhile)

    # when the batch is stitched while that row is held
    try:
        stitched = intake_stitch_batch()
    finally:
        for other, _ in others:
            other.rollback()
            other.close()

    # then the call of the profile that appeared waited in the log, without the batch waiting for it
    assert stitched == 1
    assert waiting_ids() == ["m-late"]
    late = others[0][1]

    # and once it is released the call joins that profile
    assert intake_drain() == 1
    assert Identifier.objects.get(kind="anonymous_id", value="a-late").profile_id == late


def known_people(*people: tuple[int, str, str]) -> list[uuid.UUID]:
    """Profiles with chosen ids (``uuid.UUID(int=n)``: their order is the lock order), one identifier
    each, from (n, kind, value); returns their ids."""
    ids = [uuid.UUID(int=n) for n, _, _ in people]
    Profile.objects.bulk_create([Profile(id=pid, first_seen_at=T0, last_seen_at=T0) for pid in ids])
    Identifier.objects.bulk_create(
        [
            Identifier(kind=kind, value=value, profile_id=pid, last_seen_at=T0)
            for pid, (_, kind, value) in zip(ids, people, strict=True)
        ]
    )
    return ids


@pytest.fixture
def three_people(db):
    """Three known people in id order R < M < P: two visitors (R: a-r, M: a-m) and a customer (P: u-p)."""
    return known_people((1, "anonymous_id", "a-r"), (2, "anonymous_id", "a-m"), (3, "user_id", "u-p"))


def fails_on_its_own(monkeypatch, picked) -> None:
    """Stitching raises for the calls ``picked(event)`` chooses, whether in their group or alone: a
    call that fails on its own (its source group rolls back, then it is set aside one by one)."""
    real = stitch.profiles_update

    def update(events, assigned, seen):
        if any(picked(events[i]) for i in assigned):
            raise ValueError("this call fails on its own")
        return real(events, assigned, seen)

    monkeypatch.setattr(stitch, "profiles_update", update)


class Interleaving:
    """Other transactions at chosen moments of a stitch batch (``stitch._profiles_try_lock`` wrapped):
    before the batch try-locks a profile of ``merges``, that profile is merged (committed) into
    another; right after the try-lock that includes ``then_take[0]``'s trigger, a third transaction
    takes ``then_take[1]`` and asks for ``then_take[2]`` (in the one lock order; it waits, the batch
    holding that one). A batch that then waited for the third's profile would close a cycle.

    The batch's next try-lock (its retry) first waits for the third transaction to end, so the retry
    meets no lock of it. ``ready`` tells whether the third was seen waiting."""

    def __init__(self, monkeypatch, *, merges: dict, then_take: tuple) -> None:
        self.merges = dict(merges)  # trigger profile id -> (loser, winner)
        self.trigger, self.first, self.second = then_take
        self.real = stitch._profiles_try_lock
        self.errors: list = []
        self.ready = False
        self.thread: threading.Thread | None = None
        self.taken = threading.Event()
        monkeypatch.setattr(stitch, "_profiles_try_lock", self)

    def _third(self) -> None:
        with psycopg.connect(_conninfo()) as other:
            other.execute("SELECT id FROM profiles_profile WHERE id = %s FOR UPDATE", [self.first])
            self.taken.set()
            try:
                other.execute("SELECT id FROM profiles_profile WHERE id = %s FOR UPDATE", [self.second])
            except psycopg.errors.DeadlockDetected as exc:
                self.errors.append(exc)
            other.rollback()

    def __call__(self, ids):
        if self.thread is not None:
            self.thread.join(20)
        for trigger in [t for t in self.merges if t in ids]:
            loser, winner = self.merges.pop(trigger)
            with psycopg.connect(_conninfo(), autocommit=True) as merger:
                merger.execute("UPDATE profiles_identifier SET profile_id = %s WHERE profile_id = %s", [winner, loser])
                merger.execute("UPDATE profiles_profile SET merged_into_id = %s WHERE id = %s", [winner, loser])
        busy = self.real(ids)
        if self.thread is None and self.trigger in ids:
            self.thread = threading.Thread(target=self._third)
            self.thread.start()
            self.ready = self.taken.wait(10) and waiting_for_a_lock()
        return busy

    def stitch_one_batch(self) -> int:
        """One stitch batch with these transactions about; asserts the third was seen waiting and no
        deadlock formed (PostgreSQL's count, and the third's own error). Returns the calls taken."""
        before = deadlocks()
        stitched = intake_stitch_batch()
        if self.thread is not None:
            self.thread.join(20)
        assert self.ready
        assert deadlocks() - before == 0 and self.errors == []
        return stitched


def from_two_sources(write_key: str, backend_call: dict, shop_call: dict) -> None:
    """One call from a second source (the shop's backend), then one from the shop's pages: one batch,
    two source groups, in that order."""
    _, backend_key = source_create(name="backend")
    batch(writer(backend_key), backend_call)
    batch(writer(write_key), shop_call)


def test_an_owner_a_merge_moved_is_not_waited_for_below_a_profile_the_batch_holds_for_a_call_left_out(
    write_key, one_partition, monkeypatch, three_people
):
    r, m, p = three_people
    # given a batch with the customer stating a new email (another transaction holds its identifier
    # lock: the call is left for later, after the batch locked P) and a page view of visitor R
    batch(
        writer(write_key),
        {"type": "identify", "userId": "u-p", "traits": {"email": "new@x.io"}, "messageId": "m-p"},
        {"type": "track", "anonymousId": "a-r", "event": "Product Viewed", "messageId": "m-r"},
    )
    # and R merged into M after the batch read the owners, and M taken by a transaction that wants P
    meanwhile = Interleaving(monkeypatch, merges={r: (r, m)}, then_take=(r, m, p))

    # when the batch is stitched: the page view's owner moved to M, which the batch must now lock
    with identifier_lock("email", "new@x.io"):
        # then no deadlock formed: M, below P, was taken without waiting (the batch was retried), and
        # the other transaction got P; the page view is on M, the customer's call waits in the log
        assert meanwhile.stitch_one_batch() == 1
        assert waiting_ids() == ["m-p"]
        assert Event.objects.get(message_id="m-r").profile_id == m
    assert intake_drain() == 1
    assert Identifier.objects.get(kind="email", value="new@x.io").profile_id == p


def test_a_profile_a_merge_moved_a_call_to_is_not_waited_for_below_one_an_earlier_source_group_holds(
    write_key, one_partition, monkeypatch, three_people
):
    r, m, p = three_people
    # given a batch of two sources: the backend reports the customer's order (P), then the shop's
    # pages report a page view of visitor R
    from_two_sources(
        write_key,
        {"type": "track", "userId": "u-p", "event": "Order Completed", "messageId": "m-p"},
        {"type": "track", "anonymousId": "a-r", "event": "Product Viewed", "messageId": "m-r"},
    )
    # and R merged into M after the second group read its owners, M taken by a transaction that wants P
    meanwhile = Interleaving(monkeypatch, merges={r: (r, m)}, then_take=(r, m, p))

    # when the batch is stitched: the first group holds P, the second finds R merged into M
    # then no deadlock formed (M, below P, was taken without waiting; the batch was retried), and both
    # calls are stored: the order on P, the page view on M
    stitched = meanwhile.stitch_one_batch() + intake_drain()
    assert stitched == 2
    assert Event.objects.get(message_id="m-p").profile_id == p
    assert Event.objects.get(message_id="m-r").profile_id == m


def test_a_profile_an_earlier_source_group_waited_for_counts_as_held(write_key, one_partition, monkeypatch):
    # given four visitors R < B < M < Z (ids 1, 2, 5, 9), the backend reporting R's call and the
    # shop's pages B's; R merged into Z before the first group's locks, B into M before the second's
    r, b, m, z = known_people(
        (1, "anonymous_id", "a-r"), (2, "anonymous_id", "a-b"), (5, "anonymous_id", "a-m"), (9, "anonymous_id", "a-z")
    )
    from_two_sources(
        write_key,
        {"type": "track", "anonymousId": "a-r", "event": "Order Completed", "messageId": "m-r"},
        {"type": "track", "anonymousId": "a-b", "event": "Product Viewed", "messageId": "m-b"},
    )
    # and, once the second group holds B, a transaction that takes M and asks for Z
    meanwhile = Interleaving(monkeypatch, merges={r: (r, z), b: (b, m)}, then_take=(b, m, z))

    # when the batch is stitched: the first group follows R to Z (waiting for it: above all it held),
    # the second follows B to M, below Z
    # then no deadlock formed: Z counted as held, so M was taken without waiting (the batch was
    # retried) and the other transaction got Z; both calls are stored on the profiles they moved to
    stitched = meanwhile.stitch_one_batch() + intake_drain()
    assert stitched == 2
    assert Event.objects.get(message_id="m-r").profile_id == z
    assert Event.objects.get(message_id="m-b").profile_id == m


def test_a_profile_a_failed_source_group_locked_no_longer_counts_as_held(write_key, one_partition, monkeypatch):
    # given a customer S and a visitor C (ids 1 < 3); the backend reports a call of S that fails on
    # its own (its source group rolls back to its savepoint, giving S's lock back, and the call is
    # set aside), and the shop's pages a call of C, whom a merge moves into S meanwhile
    s_, c = known_people((1, "user_id", "u-s"), (3, "anonymous_id", "a-c"))
    from_two_sources(
        write_key,
        {"type": "track", "userId": "u-s", "event": "Order Completed", "messageId": "m-s"},
        {"type": "track", "anonymousId": "a-c", "event": "Product Viewed", "messageId": "m-c"},
    )
    fails_on_its_own(monkeypatch, lambda event: ("user_id", "u-s") in event.identifiers)
    # and, once the second group holds C, a transaction that takes S and asks for C
    meanwhile = Interleaving(monkeypatch, merges={c: (c, s_)}, then_take=(c, s_, c))

    # when the batch is stitched
    # then no deadlock formed: S, given back by the failed group, was not counted as held, so it was
    # taken without waiting below C (the batch was retried); C's call is on S, S's call set aside
    stitched = meanwhile.stitch_one_batch() + intake_drain()
    assert stitched == 2
    assert Event.objects.get(message_id="m-c").profile_id == s_
    assert IntakePoison.objects.filter(message_id="m-s").exists()


def test_a_failed_source_groups_calls_one_by_one_do_not_wait_below_a_profile_an_earlier_group_holds(
    write_key, one_partition, monkeypatch
):
    # given a visitor L, a visitor X and a customer P (ids 1 < 5 < 9); the backend reports P's order,
    # then the shop's pages a call of X that fails on its own and a page view of L
    low, x, p = known_people((1, "anonymous_id", "a-l"), (5, "anonymous_id", "a-x"), (9, "user_id", "u-p"))
    _, backend_key = source_create(name="backend")
    batch(writer(backend_key), {"type": "track", "userId": "u-p", "event": "Order Completed", "messageId": "m-p"})
    batch(
        writer(write_key),
        {"type": "track", "anonymousId": "a-x", "event": "Product Viewed", "messageId": "m-x"},
        {"type": "track", "anonymousId": "a-l", "event": "Product Viewed", "messageId": "m-l"},
    )
    fails_on_its_own(monkeypatch, lambda event: ("anonymous_id", "a-x") in event.identifiers)
    errors: list = []
    asked: list[threading.Thread] = []
    ready: list[bool] = []
    real_try_lock = stitch._profiles_try_lock

    # and another transaction that holds L and, once the batch holds P, asks for P
    with held("SELECT id FROM profiles_profile WHERE id = %s FOR UPDATE", [low]) as other:

        def ask_for_p():
            try:
                other.execute("SELECT id FROM profiles_profile WHERE id = %s FOR UPDATE", [p])
            except psycopg.errors.DeadlockDetected as exc:
                errors.append(exc)

        def try_lock(ids):
            busy = real_try_lock(ids)
            if p in ids and p not in busy and not asked:
                asked.append(threading.Thread(target=ask_for_p))
                asked[0].start()
                ready.append(waiting_for_a_lock())
            return busy

        monkeypatch.setattr(stitch, "_profiles_try_lock", try_lock)
        before = deadlocks()

        # when the batch is stitched: the shop's group fails and is taken again call by call
        stitched = intake_stitch_batch()
        asked[0].join(20)
        assert ready == [True]

        # then no deadlock formed: the page view of L, below P, was not waited for but left in the
        # log; the order is on P and X's call is set aside
        assert deadlocks() - before == 0 and errors == []
        assert stitched == 2
        assert waiting_ids() == ["m-l"]
        assert Event.objects.get(message_id="m-p").profile_id == p
        assert IntakePoison.objects.filter(message_id="m-x").exists()
        assert not Event.objects.filter(profile_id=x).exists()

    # and once L is free the page view follows, on L
    assert intake_drain() == 1
    assert Event.objects.get(message_id="m-l").profile_id == low


def test_a_call_that_fails_on_its_own_is_set_aside_even_if_a_later_call_of_its_browser_waits_for_a_lock(
    write_key, one_partition, monkeypatch
):
    # given a known visitor Q, whose browser sends a call that fails on its own, then logs in with an
    # email another transaction holds the lock of; and another customer's call
    known_people((1, "anonymous_id", "a-q"))
    batch(
        writer(write_key),
        {"type": "track", "anonymousId": "a-q", "event": "Boom", "messageId": "m-x"},
        {"type": "identify", "anonymousId": "a-q", "traits": {"email": "q@x.io"}, "messageId": "m-y"},
        {"type": "track", "userId": "u-o", "event": "Product Viewed", "messageId": "m-o"},
    )
    fails_on_its_own(monkeypatch, lambda event: event.name == "Boom")

    # when a batch is stitched while the email's lock is held: the group fails, and is taken call by call
    with identifier_lock("email", "q@x.io"):
        stitched = intake_stitch_batch()

        # then the failing call is set aside at once (it comes before the login: the login's lock does
        # not hold it back), the login waits in the log, the other customer's call is stored
        assert IntakePoison.objects.filter(message_id="m-x").exists()
        assert waiting_ids() == ["m-y"]
        assert stitched == 2
        assert Event.objects.filter(message_id="m-o").exists()

    # and once the lock is gone the login follows
    assert intake_drain() == 1
    assert Identifier.objects.get(kind="email", value="q@x.io").profile_id == uuid.UUID(int=1)


def test_a_call_that_failed_on_its_own_in_the_one_by_one_retry_gives_its_profile_back(
    write_key, one_partition, monkeypatch
):
    # given a customer S and a visitor C (ids 1 < 3); one source group: a call of S that fails on its
    # own, then a call of C
    s_, c = known_people((1, "user_id", "u-s"), (3, "anonymous_id", "a-c"))
    batch(
        writer(write_key),
        {"type": "track", "userId": "u-s", "event": "Order Completed", "messageId": "m-s"},
        {"type": "track", "anonymousId": "a-c", "event": "Product Viewed", "messageId": "m-c"},
    )
    fails_on_its_own(monkeypatch, lambda event: ("user_id", "u-s") in event.identifiers)
    # and, when the one-by-one retry comes to C's call alone: C merged into S just before it locks C,
    # then a transaction that takes S and asks for C
    meanwhile = Interleaving(monkeypatch, merges={c: (c, s_)}, then_take=(c, s_, c))
    monkeypatch.setattr(
        stitch,
        "_profiles_try_lock",
        lambda ids: meanwhile(ids) if ids == {c} or meanwhile.thread is not None else meanwhile.real(ids),
    )

    # when the batch is stitched
    # then no deadlock formed: S, given back when S's call failed on its own, was not counted as held,
    # so the batch did not wait for it while holding C; C's call is on S, S's call set aside
    stitched = meanwhile.stitch_one_batch() + intake_drain()
    assert stitched == 2
    assert Event.objects.get(message_id="m-c").profile_id == s_
    assert IntakePoison.objects.filter(message_id="m-s").exists()
