"""Probabilistic identity resolution: the same person behind different identifiers.

``identity_match`` (service.py) is the entry point; records.py turns profiles into comparable
records, blocking.py proposes pairs, compare.py puts each pair on comparison levels, model.py is the
Fellegi-Sunter model estimated from the data, cluster.py decides merges and the review queue.
The matcher modules need no database; only service.py reads and writes models (imported lazily).
"""

from __future__ import annotations

__all__ = ["MatchReport", "identity_match"]


def __getattr__(name: str):
    if name in __all__:
        from . import service

        return getattr(service, name)
    raise AttributeError(name)
