"""The Fellegi-Sunter model: how much each comparison level says about two records being one person.

For each comparison level ``m = P(level | same person)`` and ``u = P(level | different people)``;
a pair's Bayes factor is the product of ``m/u`` over its comparisons (missing fields say nothing),
and its match probability follows from the prior ``lambda``, the probability that two records drawn
at random are one person. Nothing is tuned per data set; every number is estimated from the data:

- **u** from random pairs (splink's method): almost every random pair is two different people, so
  the level frequencies among random pairs are u. In a small, dense file one random pair in a
  thousand is a true pair, as often as two strangers share a birth date, which would make the rare
  levels' u several times too large: a second EM pass over the random pairs (m fixed) weighs them
  out. Counts are smoothed with general-population defaults (``PRIOR_U``) worth ``U_PRIOR_PAIRS``
  pairs, which only matter for small data sets.
- **Households** (``h``): different people at one address are not strangers. They share the last
  name, the landline, sometimes the mailbox, and twins a birth date, so once the street agrees those
  agreements are no longer independent evidence (counting them would count the address again). For
  pairs whose street agrees, every other comparison is weighed against ``h = P(level | different
  people at one address)`` instead of u, learnt by EM inside the address block (m fixed), where the
  two classes are "the same person" and "a household member". First name and birth date are weighed
  jointly there (a father and son share a name, twins a birth date, nobody both). Without household
  members in the data (FEBRL), h falls back to u.
- **m** by expectation-maximisation, one EM session per training blocking rule (names, birth date,
  last name + postal code, email local part, phone). Inside a block the rule's own fields agree by
  construction (or, in a household, agree anyway), so each session leaves those comparisons out and
  learns m for the others; the sessions' expected counts are pooled. Defaults (``PRIOR_M``) worth
  ``M_PRIOR_PAIRS`` pairs keep small data sensible. Estimation runs twice: u, m, u without the true
  pairs among the random ones, m again.
- **Reviewers' decisions** refine both: a pair a reviewer approved adds ``LABEL_WEIGHT`` pairs' worth
  of counts to m, a rejected pair (or an undone fuzzy merge) to u (to h when their address agrees).
- **Term frequency**: an exact first name, last name or birth date is weighed by how common the
  value is (two Smiths agree more often by chance than two Wojciechowskis): for the exact level u is
  the value's frequency among records, smoothed towards the average. The address's area and
  locality levels likewise by the place the pair agrees on (a full postal code of a few records, a
  town of thousands); a place as rare as a street is read as a family's (the surname against h).
- **lambda** from the expected number of true pairs among the candidate pairs (a fixed point of the
  model's own posteriors), kept as matches per record so that it scales with the data set's size.
  This is the calibration: without it the threshold would be read against a wrong prior.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from .compare import ADDRESS, COMPARISONS, DOB, FIRST, INDEX, LAST

M_PRIOR_PAIRS = 20.0
U_PRIOR_PAIRS = 2000.0
H_PRIOR_PAIRS = 10.0
LABEL_WEIGHT = 10.0
TF_SMOOTHING = 20.0
# a place value (a postal code) that at most this share of the records could agree on is a street or a
# building: two different people agreeing on it are mostly one family, so the surname is read against
# household members there, as at a shared street. Full postal codes are far below it, outward codes and
# towns far above (on the tuning files of seeds 11 and 12, 0.001 and 0.003 gave the same merges).
PLACE_HOUSEHOLD_SHARE = 0.001
MU_PRIOR = 0.05  # true pairs per record before seeing data
MU_PRIOR_RECORDS = 100.0
MAX_EM_ITERATIONS = 200
EM_TOLERANCE = 1e-6
HOUSEHOLD_SHARE = 0.05
HOUSEHOLD_LEVEL = COMPARISONS[ADDRESS].levels.index("similar")  # the street agrees from here up

# General-population starting values (weakest level first), used as starting points and as
# smoothing for small data; data sets of any size quickly outweigh them.
PRIOR_M: dict[str, tuple[float, ...]] = {
    "first_name": (0.04, 0.04, 0.05, 0.03, 0.84),
    "last_name": (0.05, 0.03, 0.07, 0.85),
    "birth_date": (0.03, 0.02, 0.05, 0.90),
    "address": (0.08, 0.04, 0.06, 0.01, 0.11, 0.70),
    "email": (0.6, 0.1, 0.3),
    "phone": (0.4, 0.05, 0.55),
}
PRIOR_U: dict[str, tuple[float, ...]] = {
    "first_name": (0.954, 0.03, 0.005, 0.001, 0.01),
    "last_name": (0.975, 0.015, 0.004, 0.006),
    "birth_date": (0.985, 0.01396, 0.001, 0.00004),
    "address": (0.95, 0.04, 0.0098, 0.00005, 0.0001, 0.0001),
    "email": (0.99998, 0.00001, 0.00001),
    "phone": (0.99997, 0.00002, 0.00001),
}
# Different people at one address (spouses, children, twins, a father and son with one name; the
# shared landline and the family mailbox): only where EM starts in the address block. The estimate is
# smoothed towards u, so a file without households (no non-matches at one address) keeps u.
PRIOR_H: dict[str, tuple[float, ...]] = {
    "first_name": (0.85, 0.06, 0.04, 0.002, 0.048),
    "last_name": (0.3, 0.02, 0.03, 0.65),
    "birth_date": (0.93, 0.02, 0.02, 0.03),
    "address": PRIOR_U["address"],  # not used: the address is what makes the pair a household
    "email": (0.85, 0.02, 0.13),
    "phone": (0.5, 0.01, 0.49),
}


def blocking_household_rule() -> str:
    from .blocking import HOUSEHOLD_RULE

    return HOUSEHOLD_RULE


def _normalised(values) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    return array / array.sum()


def _smoothed(counts: np.ndarray, prior, strength: float) -> np.ndarray:
    return (counts + strength * _normalised(prior)) / (counts.sum() + strength)


def _zeros() -> list[np.ndarray]:
    return [np.zeros(len(c.levels)) for c in COMPARISONS]


def level_counts(levels: np.ndarray, weights: np.ndarray | None = None) -> list[np.ndarray]:
    """Per comparison, the (weighted) number of pairs on each level (missing ones not counted)."""
    out = []
    for n, comparison in enumerate(COMPARISONS):
        column = levels[:, n]
        present = column >= 0
        w = None if weights is None else weights[present]
        out.append(np.bincount(column[present], weights=w, minlength=len(comparison.levels)).astype(np.float64))
    return out


def _added(left: list[np.ndarray], right: list[np.ndarray], factor: float = 1.0) -> list[np.ndarray]:
    return [a + factor * b for a, b in zip(left, right, strict=True)]


def _joint_zeros() -> np.ndarray:
    return np.zeros((len(COMPARISONS[FIRST].levels), len(COMPARISONS[DOB].levels)))


def joint_counts(levels: np.ndarray, weights: np.ndarray | None = None, joint: np.ndarray | None = None) -> np.ndarray:
    """(first name level x birth date level) counts. Pairs with only one of the two are spread over
    its row (or column) as ``joint`` says (the E-step for a missing value); without ``joint`` only
    pairs that have both count."""
    out = _joint_zeros()
    w = np.ones(len(levels)) if weights is None else weights
    f, d = levels[:, FIRST], levels[:, DOB]
    both = (f >= 0) & (d >= 0)
    np.add.at(out, (f[both], d[both]), w[both])
    if joint is not None:
        for rows, index, axis in (((f >= 0) & (d < 0), f, 1), ((f < 0) & (d >= 0), d, 0)):
            if not rows.any():
                continue
            per_level = np.bincount(index[rows], weights=w[rows], minlength=joint.shape[1 - axis])
            shares = joint / joint.sum(axis=axis, keepdims=True)
            out += shares * (per_level[:, None] if axis == 1 else per_level[None, :])
    return out


def _agree_both() -> np.ndarray:
    agree_first = np.arange(len(COMPARISONS[FIRST].levels)) >= COMPARISONS[FIRST].levels.index("close")
    agree_dob = np.arange(len(COMPARISONS[DOB].levels)) >= COMPARISONS[DOB].levels.index("near")
    return np.outer(agree_first, agree_dob)


def fit_joint(counts: np.ndarray, u: list[np.ndarray]) -> np.ndarray:
    """P(first name level, birth date level | two people of one household).

    Within a household first name and birth date are what tells people apart, and they are far
    from independent: a father and son share a name, twins a birth date, nobody both. So the cells
    where both agree are fixed at the strangers' chance (u x u) and never learnt (left free, EM
    would happily explain weak duplicates as such "household members"); the other cells are learnt,
    smoothed towards independence (u x u), which is what a file without households keeps."""
    product = np.outer(u[FIRST], u[DOB])
    fixed = _agree_both()
    free = (counts + H_PRIOR_PAIRS * product) * ~fixed
    joint = free / free.sum() * (1 - product[fixed].sum())
    joint[fixed] = product[fixed]
    return joint


def households(levels: np.ndarray) -> np.ndarray:
    """Pairs whose street agrees: their other comparisons are weighed against h, not u."""
    return levels[:, ADDRESS] >= HOUSEHOLD_LEVEL


@dataclass
class Parameters:
    """Estimated m, u and h per comparison level, the prior, and how they were obtained."""

    m_counts: list[np.ndarray] = field(default_factory=_zeros)
    u_counts: list[np.ndarray] = field(default_factory=_zeros)
    h_counts: list[np.ndarray] = field(default_factory=_zeros)
    h_joint_counts: np.ndarray = field(default_factory=_joint_zeros)
    matches_per_record: float = MU_PRIOR
    records: int = 0
    random_pairs: int = 0
    sessions: dict = field(default_factory=dict)
    labelled: dict = field(default_factory=lambda: {"approved": 0, "rejected": 0})
    m: list[np.ndarray] = field(default_factory=list)
    u: list[np.ndarray] = field(default_factory=list)
    h: list[np.ndarray] = field(default_factory=list)
    h_joint: np.ndarray = field(default_factory=_joint_zeros)

    def __post_init__(self) -> None:
        self.refit()

    def refit(self) -> None:
        """m, u and h from the pooled counts and the smoothing defaults."""
        self.m = [_smoothed(k, PRIOR_M[c.name], M_PRIOR_PAIRS) for c, k in zip(COMPARISONS, self.m_counts, strict=True)]
        self.u = [_smoothed(k, PRIOR_U[c.name], U_PRIOR_PAIRS) for c, k in zip(COMPARISONS, self.u_counts, strict=True)]
        # without household members in the data, h falls back to u (independent fields)
        self.h = [_smoothed(k, u, H_PRIOR_PAIRS) for k, u in zip(self.h_counts, self.u, strict=True)]
        self.h[ADDRESS] = self.u[ADDRESS]
        self.h_joint = fit_joint(self.h_joint_counts, self.u)
        self.h[FIRST], self.h[DOB] = self.h_joint.sum(axis=1), self.h_joint.sum(axis=0)

    def weights(self, *, household: bool = False) -> list[np.ndarray]:
        """log2(m/u) per level (log2(m/h) for a pair at one address): the evidence in bits."""
        against = self.h if household else self.u
        return [np.log2(m) - np.log2(u) for m, u in zip(self.m, against, strict=True)]

    def households_seen(self) -> bool:
        """Whether the data has different people living together: at least ``HOUSEHOLD_SHARE`` of
        the pairs sharing a street and postal code (the household training session) are not one
        person. FEBRL's are all one person; shop customers and family files are not."""
        session = self.sessions.get(blocking_household_rule(), {})
        pairs = session.get("pairs") or 0
        return pairs > 0 and 1 - session.get("matches", pairs) / pairs >= HOUSEHOLD_SHARE

    def prior(self, records: int) -> float:
        """lambda: the probability that two records drawn at random are one person."""
        return min(0.5, 2.0 * self.matches_per_record / max(records - 1, 1))

    def as_dict(self) -> dict:
        weights, household = self.weights(), self.weights(household=True)
        return {
            "comparisons": {
                c.name: {
                    level: {
                        "m": round(float(self.m[n][k]), 6),
                        "u": float(f"{self.u[n][k]:.6g}"),
                        "bits": round(float(weights[n][k]), 3),
                        **(
                            {}
                            if n == ADDRESS
                            else {"h": float(f"{self.h[n][k]:.6g}"), "household_bits": round(float(household[n][k]), 3)}
                        ),
                    }
                    for k, level in enumerate(c.levels)
                }
                for n, c in enumerate(COMPARISONS)
            },
            "matches_per_record": round(self.matches_per_record, 6),
            "prior": float(f"{self.prior(self.records):.6g}") if self.records else None,
            "records": self.records,
            "random_pairs": self.random_pairs,
            "sessions": self.sessions,
            "labelled": self.labelled,
        }

    def state(self) -> dict:
        """Everything needed to rebuild the parameters (kept in the cache between runs)."""
        return {
            "m_counts": [c.tolist() for c in self.m_counts],
            "u_counts": [c.tolist() for c in self.u_counts],
            "h_counts": [c.tolist() for c in self.h_counts],
            "h_joint_counts": self.h_joint_counts.tolist(),
            "matches_per_record": self.matches_per_record,
            "records": self.records,
            "random_pairs": self.random_pairs,
            "sessions": self.sessions,
            "labelled": self.labelled,
            "levels": [list(c.levels) for c in COMPARISONS],
        }

    @classmethod
    def from_state(cls, state: dict) -> Parameters | None:
        if state.get("levels") != [list(c.levels) for c in COMPARISONS]:
            return None  # estimated by another version of the comparisons
        return cls(
            m_counts=[np.asarray(c, dtype=np.float64) for c in state["m_counts"]],
            u_counts=[np.asarray(c, dtype=np.float64) for c in state["u_counts"]],
            h_counts=[np.asarray(c, dtype=np.float64) for c in state["h_counts"]],
            h_joint_counts=np.asarray(state["h_joint_counts"], dtype=np.float64),
            matches_per_record=float(state["matches_per_record"]),
            records=int(state["records"]),
            random_pairs=int(state["random_pairs"]),
            sessions=state.get("sessions", {}),
            labelled=state.get("labelled", {"approved": 0, "rejected": 0}),
        )


# --- evidence of level patterns ---------------------------------------------------------------------


def _bits(levels: np.ndarray, m: list, u: list, h: list, free: list[int], joint: np.ndarray | None) -> np.ndarray:
    """log2 Bayes factor of each row over the ``free`` comparisons. At one address the others are
    weighed against h, and first name and birth date together against their joint household
    distribution."""
    total = np.zeros(len(levels))
    at_home = households(levels)
    for n in free:
        column = levels[:, n]
        for rows, against in ((at_home, h if n != ADDRESS else u), (~at_home, u)):
            present = rows & (column >= 0)
            total[present] += np.log2(m[n][column[present]]) - np.log2(against[n][column[present]])
    if joint is not None and FIRST in free and DOB in free:
        rows = at_home & (levels[:, FIRST] >= 0) & (levels[:, DOB] >= 0)
        f, d = levels[rows, FIRST], levels[rows, DOB]
        total[rows] += np.log2(h[FIRST][f]) + np.log2(h[DOB][d]) - np.log2(joint[f, d])
    return total


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -700, 700)))


def _patterns(levels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct level vectors, which one each pair has, and how many pairs have each."""
    if len(levels) == 0:
        return np.empty((0, len(COMPARISONS)), dtype=np.int8), np.empty(0, dtype=np.int64), np.empty(0)
    patterns, inverse, counts = np.unique(levels, axis=0, return_inverse=True, return_counts=True)
    return patterns, inverse.ravel(), counts.astype(np.float64)


# --- estimation -------------------------------------------------------------------------------------


def em_session(params: Parameters, levels: np.ndarray, *, exclude: tuple[str, ...], household: bool = False) -> dict:
    """EM over one training rule's pairs: m for the comparisons the rule leaves free, u fixed.

    With ``household`` (the address block, where every pair shares a street), the non-matches are
    household members: m stays as the other sessions estimated it (in the block the two classes
    are both alike, and letting m move too makes EM trade weak duplicates for household members)
    and h, their level frequencies, is learnt. Works on distinct level patterns (a few thousand rows
    whatever the number of pairs). Returns the expected level counts among true pairs (m, not for
    the household session) and among the others (h), the share of true pairs, the iterations.
    """
    free = [n for n, c in enumerate(COMPARISONS) if c.name not in exclude]
    patterns, _, counts = _patterns(levels)
    if counts.sum() == 0:
        return {"pairs": 0, "matches": 0.0, "iterations": 0, "m": {}, "h": {}}
    m = [a.copy() for a in params.m]
    h = [_normalised(PRIOR_H[c.name]) for c in COMPARISONS] if household else [a.copy() for a in params.h]
    joint = fit_joint(_joint_zeros(), params.u) if household else params.h_joint
    if household:
        h[FIRST], h[DOB] = joint.sum(axis=1), joint.sum(axis=0)
    share, iterations = 0.5 if household else 0.1, 0
    responsibility = np.zeros(len(patterns))
    for iterations in range(1, MAX_EM_ITERATIONS + 1):  # noqa: B007 (reported below)
        logit = math.log(share / (1 - share)) + _bits(patterns, m, params.u, h, free, joint) * math.log(2)
        responsibility = _sigmoid(logit)
        new_share = float(np.clip((counts * responsibility).sum() / counts.sum(), 1e-9, 1 - 1e-9))
        matched = level_counts(patterns, counts * responsibility)
        others = level_counts(patterns, counts * (1 - responsibility))
        change = abs(new_share - share)
        for n in free:
            if household and n in (FIRST, DOB):
                continue  # from the joint below
            if household:
                fitted = _smoothed(others[n], params.u[n], H_PRIOR_PAIRS)
                change = max(change, float(np.abs(fitted - h[n]).max()))
                h[n] = fitted
            else:
                fitted = _smoothed(matched[n], PRIOR_M[COMPARISONS[n].name], M_PRIOR_PAIRS)
                change = max(change, float(np.abs(fitted - m[n]).max()))
                m[n] = fitted
        if household:
            fitted = fit_joint(joint_counts(patterns, counts * (1 - responsibility), joint), params.u)
            change = max(change, float(np.abs(fitted - joint).max()))
            joint = fitted
            h[FIRST], h[DOB] = joint.sum(axis=1), joint.sum(axis=0)
        share = new_share
        if change < EM_TOLERANCE:
            break
    matched = level_counts(patterns, counts * responsibility)
    others = level_counts(patterns, counts * (1 - responsibility))
    return {
        "pairs": int(counts.sum()),
        "matches": float((counts * responsibility).sum()),
        "iterations": iterations,
        "m": {} if household else {COMPARISONS[n].name: matched[n] for n in free},
        "h": {COMPARISONS[n].name: others[n] for n in free} if household else {},
        "h_joint": joint_counts(patterns, counts * (1 - responsibility), joint) if household else None,
    }


def estimate_m(params: Parameters, sessions: dict, approved: np.ndarray | None, rejected: np.ndarray | None) -> None:
    """Pool the EM sessions' expected counts into m (and h from the household session); approved
    pairs add ``LABEL_WEIGHT`` each to m, rejected ones at one address to h."""
    pooled_m, pooled_h, pooled_joint = _zeros(), _zeros(), _joint_zeros()
    report = {}
    # m first (every session but the household one), then h against that m
    for household_pass in (False, True):
        for name, (levels, exclude, household) in sessions.items():
            if household != household_pass:
                continue
            result = em_session(params, levels, exclude=exclude, household=household)
            for comparison, counts in result["m"].items():
                pooled_m[INDEX[comparison]] += counts
            for comparison, counts in result["h"].items():
                pooled_h[INDEX[comparison]] += counts
            if result.get("h_joint") is not None:
                pooled_joint += result["h_joint"]
            report[name] = {
                "pairs": result["pairs"],
                "matches": round(result["matches"], 1),
                "iterations": result["iterations"],
            }
        if not household_pass:
            if approved is not None and len(approved):
                pooled_m = _added(pooled_m, level_counts(approved), LABEL_WEIGHT)
            params.m_counts = pooled_m
            params.refit()
    if rejected is not None and len(rejected):
        at_home = rejected[households(rejected)]
        pooled_h = _added(pooled_h, level_counts(at_home), LABEL_WEIGHT)
        pooled_joint = pooled_joint + LABEL_WEIGHT * joint_counts(at_home)
    params.m_counts, params.h_counts, params.h_joint_counts = pooled_m, pooled_h, pooled_joint
    params.sessions = report
    params.refit()


def estimate_u(params: Parameters, random_levels: np.ndarray, rejected: np.ndarray | None, *, weights=None) -> None:
    """u from random pairs (each weighed by how sure it is two different people, when ``weights``
    are given); rejected pairs and undone merges add ``LABEL_WEIGHT`` each."""
    counts = level_counts(random_levels, weights)
    if rejected is not None and len(rejected):
        counts = _added(counts, level_counts(rejected), LABEL_WEIGHT)
    params.u_counts = counts
    params.random_pairs = len(random_levels)
    params.refit()


def true_pair_weights(params: Parameters, random_levels: np.ndarray, iterations: int = 30) -> tuple[np.ndarray, float]:
    """EM on the random pairs with m fixed: how likely each is two different people, and the share
    of true pairs among them (an estimate of lambda)."""
    patterns, inverse, counts = _patterns(random_levels)
    free = list(range(len(COMPARISONS)))
    share = 1e-3
    responsibility = np.zeros(len(patterns))
    raw = level_counts(patterns, counts)
    labels = [k - r for k, r in zip(params.u_counts, raw, strict=True)]  # what rejected pairs added
    u = [a.copy() for a in params.u]
    for _ in range(iterations):
        logit = math.log(share / (1 - share)) + _bits(patterns, params.m, u, params.h, free, params.h_joint) * math.log(
            2
        )
        responsibility = _sigmoid(logit)
        new_share = float(np.clip((counts * responsibility).sum() / counts.sum(), 1e-12, 0.5))
        others = _added(level_counts(patterns, counts * (1 - responsibility)), labels)
        u = [_smoothed(k, PRIOR_U[c.name], U_PRIOR_PAIRS) for c, k in zip(COMPARISONS, others, strict=True)]
        converged = abs(new_share - share) < 1e-9
        share = new_share
        if converged:
            break
    return (1 - responsibility)[inverse], share


def estimate(
    table,
    *,
    rng: np.random.Generator,
    approved: np.ndarray | None = None,
    rejected: np.ndarray | None = None,
    random_pairs: int,
    training_pairs: int,
) -> Parameters:
    """The whole estimation: u from random pairs, m and h by EM per training rule, u again without
    the true pairs among the random ones, m and h again with that u."""
    from . import blocking
    from .compare import compare

    params = Parameters(records=len(table))
    ra, rb = blocking.random_pairs(len(table), max_pairs=random_pairs, rng=rng)
    random_levels = compare(table, ra, rb)
    estimate_u(params, random_levels, rejected)
    sessions = {
        name: (compare(table, x, y), blocking.TRAINING_RULES[name], name == blocking.HOUSEHOLD_RULE)
        for name, (x, y) in blocking.training_pairs(table, max_pairs=training_pairs, rng=rng).items()
    }
    estimate_m(params, sessions, approved, rejected)
    weights, share = true_pair_weights(params, random_levels)
    estimate_u(params, random_levels, rejected, weights=weights)
    estimate_m(params, sessions, approved, rejected)
    params.labelled = {
        "approved": 0 if approved is None else len(approved),
        "rejected": 0 if rejected is None else len(rejected),
    }
    params.sessions["random"] = {"pairs": len(random_levels), "true_share": float(f"{share:.3g}")}
    return params


# --- scoring ------------------------------------------------------------------------------------------


@dataclass
class Frequencies:
    """How common each first name, last name and birth date is among the records (for TF weights)."""

    counts: dict[str, Counter]
    records: int

    @classmethod
    def of(cls, table) -> Frequencies:
        counts = {c.tf_column: Counter(v for v in table[c.tf_column] if v) for c in COMPARISONS if c.tf_column}
        # a name is as common as it is in either name field: "Smith" typed as the first name (names
        # swapped in a form) is a common name, not a rare first name
        first, last = counts.get("first"), counts.get("last")
        if first is not None and last is not None:
            for mine, other in ((first, last), (last, first)):
                for value in [v for v in mine if other.get(v, 0) > mine[v]]:
                    mine[value] = other[value]
        counts["place"] = place_counts(table["postal"], table["city"])
        return cls(counts=counts, records=len(table))


def place_counts(postals, cities) -> Counter:
    """How many records each place value could agree with: a postal code (``"p:"`` + code) counts the
    records written with it, and also those written with a longer code it begins (``EH6`` is the
    outward part of ``EH6 4LT``); a place name (``"c:"`` + name) the records written with it."""
    exact = Counter(v for v in postals if v)
    out = Counter({"p:" + code: n for code, n in exact.items()})
    for code, n in exact.items():
        for length in range(2, len(code)):
            prefix = code[:length]
            if prefix in exact:
                out["p:" + prefix] += n
    out.update("c:" + v for v in cities if v)
    return out


def place_values(table, a: np.ndarray, b: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The place value two records agree on (``place_counts``' keys), or "": their postal code when it
    is the same, the shorter one when one begins the other, else their place name when it is the same.
    Other agreements (a code one character off, two names tied by a postal code) have none."""
    pa, pb = table["postal"][a[rows]], table["postal"][b[rows]]
    ca, cb = table["city"][a[rows]], table["city"][b[rows]]
    out = np.empty(len(rows), dtype=object)
    for k, (x, y, u, v) in enumerate(zip(pa, pb, ca, cb, strict=True)):
        if x and y and (x.startswith(y) or y.startswith(x)) and min(len(x), len(y)) >= 2:
            out[k] = "p:" + (x if len(x) <= len(y) else y)
        elif u and u == v:
            out[k] = "c:" + u
        else:
            out[k] = ""
    return out


def log2_bayes_factors(
    params: Parameters, levels: np.ndarray, table, a: np.ndarray, freq: Frequencies | None, b: np.ndarray | None = None
) -> np.ndarray:
    """Evidence (bits) of each pair. Pairs at one address are weighed against households (h); the
    others' exact first name, last name and birth date are weighed by how common the value is, and
    (with ``b``, the pairs' other side) their shared place too (``_add_term_frequency``)."""
    free = list(range(len(COMPARISONS)))
    total = _bits(levels, params.m, params.u, params.h, free, params.h_joint)
    if freq is None:
        return total

    def add(rows: np.ndarray, n: int, bits: np.ndarray) -> None:
        total[rows] += bits

    _add_term_frequency(params, levels, table, a, freq, ~households(levels), add, b=b)
    return total


def _add_term_frequency(params: Parameters, levels, table, a, freq: Frequencies, rows_mask, add, b=None) -> None:
    """``add(rows, n, bits)``: the term-frequency adjustment of comparison n's exact level on those rows,
    and (with ``b``) of the address's area and locality levels by the place value the pair agrees on
    (``place_values``): one full postal code is shared by a few records, one city by thousands.

    A place so rare that at most ``PLACE_HOUSEHOLD_SHARE`` of the records could agree on it (a full
    postal code) is read like a shared street: two different people there are mostly one family, so
    the surname is weighed against household members (h) and names and birth dates get no
    term-frequency bonus. Without that reading the postal code and the family's surname were counted
    as independent evidence and siblings merged (tuning seed 11: precision 0.984)."""
    household_place = np.zeros(len(levels), dtype=bool) if b is not None else None
    if b is not None and "place" in freq.counts:
        area = COMPARISONS[ADDRESS].levels.index("area")
        locality = COMPARISONS[ADDRESS].levels.index("locality")
        column = levels[:, ADDRESS]
        for level in (area, locality):
            rows = np.flatnonzero((column == level) & rows_mask)
            if not len(rows):
                continue
            values = place_values(table, a, b, rows)
            known = np.flatnonzero(values != "")
            if not len(known):
                continue
            counter = freq.counts["place"]
            average_u = params.u[ADDRESS][level]
            others = np.array([max(counter.get(v, 1) - 1, 0) for v in values[known]], dtype=np.float64)
            tf_u = (others + TF_SMOOTHING * average_u) / (max(freq.records - 1, 1) + TF_SMOOTHING)
            add(rows[known], ADDRESS, np.log2(average_u) - np.log2(tf_u))
            household_place[rows[known][tf_u <= PLACE_HOUSEHOLD_SHARE]] = True
    if household_place is not None and household_place.any():
        rows = np.flatnonzero(household_place & (levels[:, LAST] >= 0))
        lv = levels[rows, LAST]
        add(rows, LAST, np.log2(params.u[LAST][lv]) - np.log2(params.h[LAST][lv]))
        rows_mask = rows_mask & ~household_place
    for n, comparison in enumerate(COMPARISONS):
        if not comparison.tf_column:
            continue
        exact = np.flatnonzero((levels[:, n] == comparison.exact) & rows_mask)
        if not len(exact):
            continue
        counter = freq.counts[comparison.tf_column]
        values = table[comparison.tf_column][a[exact]]
        average_u = params.u[n][comparison.exact]
        others = np.array([max(counter.get(v, 1) - 1, 0) for v in values], dtype=np.float64)
        tf_u = (others + TF_SMOOTHING * average_u) / (max(freq.records - 1, 1) + TF_SMOOTHING)
        add(exact, n, np.log2(average_u) - np.log2(tf_u))


def field_bits(
    params: Parameters, levels: np.ndarray, table, a: np.ndarray, freq: Frequencies | None, b: np.ndarray | None = None
) -> np.ndarray:
    """Evidence (bits) of each pair per comparison, read two ways (pairs x comparisons x 2; NaN where
    a side is missing): [..., 0] against strangers (u, exact names and birth dates by their term
    frequency), [..., 1] against household members (h; the address against u either way). Used to
    add up what several pairs between two clusters say field by field (``cluster.cluster_bits``),
    which must read all of them one way: an agreeing surname from one pair and a shared street from
    another are a household's, not a stranger's. The pairs' own correction of first name and birth
    date taken jointly in a household is left out (it only ever adds evidence)."""
    out = np.full((*levels.shape, 2), np.nan, dtype=np.float64)
    for n in range(len(COMPARISONS)):
        column = levels[:, n]
        present = column >= 0
        m, u = params.m[n], params.u[n]
        h = u if n == ADDRESS else params.h[n]
        out[present, n, 0] = np.log2(m[column[present]]) - np.log2(u[column[present]])
        out[present, n, 1] = np.log2(m[column[present]]) - np.log2(h[column[present]])
    if freq is not None:

        def add(rows: np.ndarray, n: int, bits: np.ndarray) -> None:
            out[rows, n, 0] += bits

        _add_term_frequency(params, levels, table, a, freq, np.ones(len(levels), dtype=bool), add, b=b)
    return out


def probabilities(log2_bf: np.ndarray, prior: float) -> np.ndarray:
    return _sigmoid(math.log(prior / (1 - prior)) + log2_bf * math.log(2))


def estimate_matches_per_record(
    params: Parameters, log2_bf: np.ndarray, records: int, *, query_records: int | None = None
) -> float:
    """Fixed point: the prior implied by the expected number of true pairs among the candidates.

    With ``query_records`` (an incremental run), the candidates are only the pairs touching those
    records, which hold about ``q(2 - q)`` of all true pairs for a share q of the records.
    """
    mu = params.matches_per_record
    share = 1.0 if query_records is None else min(1.0, query_records / max(records, 1))
    reach = share * (2 - share)
    for _ in range(100):
        prior = min(0.5, 2.0 * mu / max(records - 1, 1))
        expected = float(probabilities(log2_bf, prior).sum()) / reach
        new_mu = (expected + MU_PRIOR_RECORDS * MU_PRIOR) / (records + MU_PRIOR_RECORDS)
        converged = abs(new_mu - mu) < 1e-7
        mu = new_mu
        if converged:
            break
    return mu
