"""Fixtures of the consent tests."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _purposes(db):
    """The four standard purposes (seeded by migration; transactional tests flush them)."""
    from consent.services import purposes_ensure

    purposes_ensure()
