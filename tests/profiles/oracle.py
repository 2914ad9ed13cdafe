"""A call-by-call reference for the intake path's stitching (decision 0039).

``reference_run`` ingests every call on its own, in order, as the tracking API did before the intake
log (one call, one transaction). ``intake_run`` sends the same calls through the accept path and
lets ``intake_stitch_batch`` stitch them, batch after batch. ``outcome`` describes what either left
behind without database ids, so the two can be compared:

- the partition of identifiers into live profiles, and each live profile's traits;
- which profile (by its identifiers) each event is on;
- the Merge rows (merged and refused), each described by its status, reason and the identifiers of
  the loser it moved (for a refusal: the loser's identifiers).

The rule on merges (decision 0039): a batch creates people who are new within it and share
identifiers as one profile, with no Merge row, where calls one by one would create two and merge
them. So Merge rows are compared only for merges whose loser existed before the batch (call by
call: before the calls of that batch); a merge whose loser was created within the same batch is
internal to the batch and is left out on both sides, as the rule says. Everything else (partition,
traits, events) must be equal.
"""

from __future__ import annotations

from collections import Counter

from django.db import connection
from django.utils import timezone

from profiles.models import Event, Identifier, Merge, MergeStatus, Profile
from profiles.tracking.ingest import events_ingest
from profiles.tracking.intake import events_accept
from profiles.tracking.validate import clean_event
from profiles.tracking.worker import intake_stitch_batch

TABLES = (
    "profiles_event",
    "profiles_identifier",
    "profiles_merge",
    "profiles_matchcandidate",
    "profiles_pendingwork",
    "profiles_intakeevent",
    "profiles_intakepoison",
    "profiles_profile",
)


def wipe() -> None:
    """Forget every profile (between the reference run and the intake run, in one test)."""
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # deferred foreign-key checks first
        cursor.execute(f"TRUNCATE {', '.join(TABLES)} CASCADE")
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")


def _internal_merges(before: set, merges_before: set) -> set:
    """Merges recorded since ``merges_before`` whose loser did not exist in ``before``."""
    return set(Merge.objects.exclude(pk__in=merges_before).exclude(loser_id__in=before).values_list("pk", flat=True))


def reference_run(source, payloads: list[dict], *, batch_size: int) -> set:
    """Every call on its own, in order. Returns the ids of merges internal to a batch (by the rule):
    batches are the consecutive ``batch_size`` calls the intake path stitches together."""
    now = timezone.now()
    internal: set = set()
    for begin in range(0, len(payloads), batch_size):
        before = set(Profile.objects.values_list("pk", flat=True))
        merges_before = set(Merge.objects.values_list("pk", flat=True))
        for payload in payloads[begin : begin + batch_size]:
            events_ingest(source=source, events=[clean_event(payload, received_at=now)])
        internal |= _internal_merges(before, merges_before)
    return internal


def intake_run(source, payloads: list[dict], *, request_size: int = 7) -> set:
    """The calls accepted in requests of ``request_size``, then stitched batch by batch. Returns the
    ids of merges internal to a batch (loser created within it)."""
    now = timezone.now()
    for begin in range(0, len(payloads), request_size):
        events_accept(
            source=source, events=[clean_event(p, received_at=now) for p in payloads[begin : begin + request_size]]
        )
    internal: set = set()
    while True:
        before = set(Profile.objects.values_list("pk", flat=True))
        merges_before = set(Merge.objects.values_list("pk", flat=True))
        if intake_stitch_batch() is None:
            break
        internal |= _internal_merges(before, merges_before)
    return internal


def outcome(*, internal_merges: set) -> dict:
    """What the run left behind, without database ids."""
    identifiers: dict = {}
    for kind, value, profile_id in Identifier.objects.values_list("kind", "value", "profile_id"):
        identifiers.setdefault(profile_id, set()).add((kind, value))
    key = {pid: frozenset(ids) for pid, ids in identifiers.items()}
    profiles = {
        key.get(pid, frozenset()): traits
        for pid, traits in Profile.objects.filter(merged_into__isnull=True).values_list("pk", "traits")
    }
    events = {mid: key.get(pid, frozenset()) for mid, pid in Event.objects.values_list("message_id", "profile_id")}
    values = dict(Identifier.objects.values_list("pk", "value"))
    merges: Counter = Counter()
    for merge in Merge.objects.exclude(pk__in=internal_merges):
        if merge.status == MergeStatus.MERGED:
            moved = frozenset(values[i] for i in merge.moved_identifier_ids or [] if i in values)
        else:
            moved = frozenset(value for _, value in key.get(merge.loser_id, frozenset()))
        merges[(merge.status, merge.reason, moved)] += 1
    return {"profiles": profiles, "events": events, "merges": merges}


def source_for_examples():
    """One source for every example of a property test (examples share the test's transaction)."""
    from profiles.models import Source
    from profiles.services import source_create

    return Source.objects.filter(name="generated").first() or source_create(name="generated")[0]
