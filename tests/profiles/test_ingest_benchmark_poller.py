"""The ingest benchmark's lag poller counts every stitched event once, whatever order batches commit in."""

from __future__ import annotations

import sys


def _newly_seen():
    sys.path.insert(0, "benchmarks")
    try:
        from benchmarks.ingest import newly_seen
    finally:
        sys.path.remove("benchmarks")
    return newly_seen


def test_rows_committed_after_rows_with_higher_ids_are_still_seen_once():
    newly_seen = _newly_seen()
    holes: dict[int, float] = {}
    # given worker B's batch (ids 4-6) commits before worker A's (ids 1-3), which took its ids first
    since = newly_seen([(4,), (5,), (6,)], 0, holes, now=0.0)
    assert (since, sorted(holes)) == (6, [1, 2, 3])
    # when A commits: the poll reads id > 6 or an id among the holes
    since = newly_seen([(1,), (2,), (3,), (7,)], since, holes, now=0.1)
    # then A's rows are seen (once: they are no longer holes) and nothing is missing
    assert (since, holes) == (7, {})


def test_a_gap_of_the_sequence_is_given_up_after_a_while():
    newly_seen = _newly_seen()
    holes: dict[int, float] = {}
    since = newly_seen([(2,)], 0, holes, now=0.0)  # id 1 was taken by a batch that rolled back
    assert holes == {1: 0.0}
    assert newly_seen([], since, holes, now=30.0) == 2 and holes == {1: 0.0}
    assert newly_seen([], since, holes, now=61.0) == 2 and holes == {}
