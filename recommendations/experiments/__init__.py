"""Experiments and bandits on serving strategies (assignment, exposure, statistics, bandits, off-policy
evaluation). Serving asks this package one question per request: :func:`strategy.strategy_for`."""
