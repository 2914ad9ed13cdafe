"""The one interface between serving and experiments.

Serving calls :func:`strategy_for` once per request, after it has resolved the shopper's profile and
consent, and serves what the returned :class:`Strategy` says. The experiments package owns how a
strategy is chosen (running experiments by layer, bandits); serving owns how a strategy is carried out.
Neither imports the other's internals: serving imports only this module, and this module imports
serving's nothing.

What serving must honour (and record in the served log, so that exposures come from what was served):

- ``personalised=False``: the non-personalised list, whatever the shopper's consent.
  ``personalised=True`` never overrides a missing personalisation consent: serving still refuses.
- ``model_version``: serve this registry version instead of the active one (``None`` = the active).
- ``rerank=False``: no context re-ranking (device, hour, session category).
- ``rule_set``: apply only the business rules of this named set (``None`` = the shop's rules).
- ``experiment`` / ``variant`` / ``propensity`` / ``policy``: named in the API answer and stored on
  the served record (the propensity is the probability with which this variant was chosen, for
  off-policy evaluation; 1.0 for a deterministic choice).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Strategy:
    experiment: str | None = None  # experiment key, or None when no experiment applies
    variant: str | None = None  # variant key within the experiment (or bandit arm)
    policy: str | None = None  # bandit policy key when a bandit chose the variant
    propensity: float = 1.0  # probability of this choice under the policy that made it
    personalised: bool = True
    model_version: int | None = None
    rerank: bool = True
    rule_set: str | None = None


DEFAULT = Strategy()


def strategy_for(
    *,
    profile_id: str | None,
    placement: str,
    device: str,
    segments: list[str],
    personalisation_consent: bool,
) -> Strategy:
    """The serving strategy for this shopper and placement. Cheap: called on every request (no
    database or network round trip; the running experiments and bandits are cached per process).

    A shopper without a profile or without personalisation consent is in no experiment and no bandit
    (the shop's default strategy, or a shipped winner). Otherwise: the first running experiment on
    this placement whose layer share and segment targeting hold the shopper (its variant from the
    salted hash of the profile id, or the profile's override after a merge), then a shipped winner,
    then a running bandit policy (Thompson sampling per segment x placement x device; the propensity
    of the arm drawn comes back). ``policy`` is ``"<policy key>@<context>"``."""
    from .assignment import choose

    return choose(
        profile_id=profile_id,
        placement=placement,
        device=device,
        segments=segments,
        personalisation_consent=personalisation_consent,
    )
