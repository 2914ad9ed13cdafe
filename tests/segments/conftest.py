"""Fixtures of the segments tests."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _fresh_segment_caches():
    """Each test starts without in-process caches (percentile cut-offs, the segment index)."""
    from segments import services

    services._THRESHOLDS.clear()
    services._index_changed()
    yield
