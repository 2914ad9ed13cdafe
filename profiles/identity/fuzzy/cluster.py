"""Decisions: which scored pairs merge, which go to review, and clusters that must stay coherent.

A probability alone is not allowed to merge two people when the records say outright that they are
two: **conflict refusals** (never auto-merged, at most sent to review):

- two independent personal attributes contradict each other: first names that are not the same
  name (no typo, nickname, initial or swap explains them), birth dates that are not a typo of each
  other, or personal contacts (both have emails and none is shared, or both have mobiles and none is
  shared). One contradiction alone is often a data-entry error; two are two people (twins with their
  own emails, a father and son with their own birth dates and emails, spouses);
- a shared mailbox or phone with a different first name or birth date behind it: that identifier is
  a household's (a family mailbox, one landline), not a person's;
- generational suffixes that differ (Jr and Sr);
- one surname and birth date with a different first name, in data where people live together
  (``Parameters.households_seen``): twins (a different first name alone is often a variant or a
  typo, but with the birthday and surname agreeing it is the sibling's; without households, as in
  FEBRL, it is a badly typed record of one person).

**Cluster coherence**: merges are taken strongest first, and two clusters join only if fewer than
``REFUSED_SHARE`` of the pairs across them have a conflict refusal (none by generation), none is a
never-merge pair or carries evidence of two people as
strong as an auto-merge needs for one (a Bayes factor at most (1 - auto) / auto), the pairs across
them on average (mean log2 Bayes factor: average linkage on the evidence, not on posteriors, which
the tiny prior of a random pair would drag down) favour one person at least by the review odds,
and the joined cluster stays within the identifier limits (one user id…). So A~B
and B~C never pull A and C together when A and C are clearly two people: B joins the one it matches
best, and the other pair goes to review. Average rather than complete linkage because pairs of
records that are each a corrupted copy of one person compound their errors (two typos apart), which
a weakest-link rule would read as two people.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from profiles.normalize import limit_for

from .compare import COMPARISONS, DOB, EMAIL, FIRST, LAST, PHONE
from .model import households
from .records import RecordTable

MAX_CLUSTER = 50
# two clusters stay apart when at least this share of the record pairs across them is refused (or any
# by generation): one refused pair among many is two noisy records of one person (a variant first
# name and a mistyped birth date), not two people. Chosen on generated files of seeds 11 and 12
# (benchmarks/README.md "identity at scale"), never on the seeds the figures are measured on.
REFUSED_SHARE = 0.2
BIRTH_EXACT = COMPARISONS[DOB].exact
LAST_CLOSE = COMPARISONS[LAST].levels.index("close")  # a fuzzy cluster larger than this is a data problem, not a person


def conflicts(table: RecordTable, a: np.ndarray, b: np.ndarray, levels: np.ndarray) -> list[list[str]]:
    """Per pair, the contradictions between the two records (see the module docstring)."""
    first = levels[:, FIRST] == 0
    dob = levels[:, DOB] == 0
    kinds = table["phone_kind"]
    mobiles = (kinds[a] == "m") & (kinds[b] == "m")
    contact = (levels[:, EMAIL] == 0) | ((levels[:, PHONE] == 0) & mobiles)
    gen_a, gen_b = table["generation"][a], table["generation"][b]
    generation = (gen_a != "") & (gen_b != "") & (gen_a != gen_b)
    out: list[list[str]] = []
    for k in range(len(a)):
        found = []
        if first[k]:
            found.append("first_name")
        if dob[k]:
            found.append("birth_date")
        if generation[k]:
            found.append("generation")
        if contact[k]:
            found.append("contact")
        out.append(found)
    return out


def refusal(found: list[str], levels_row: np.ndarray, *, households: bool = True) -> str | None:
    """Why a pair must not be merged automatically whatever its score, or None. ``households``:
    the data has family members living together (``Parameters.households_seen``), so twins are
    plausible; without them (FEBRL) one surname and birth date with another first name is a
    badly typed record of one person."""
    if "generation" in found:
        return "generation_differs"
    if len(found) >= 2:
        return "conflicting_" + "_and_".join(found)
    shared = levels_row[EMAIL] == 2 or levels_row[PHONE] == 2
    if shared and found and found[0] in ("first_name", "birth_date"):
        return f"shared_contact_with_different_{found[0]}"
    twins = levels_row[DOB] == BIRTH_EXACT and levels_row[LAST] >= LAST_CLOSE
    if households and found == ["first_name"] and twins:
        return "shared_birth_date_with_different_first_name"  # twins: one surname and birthday, two names
    return None


@dataclass
class Decisions:
    clusters: list[list[int]] = field(default_factory=list)  # record indices, each cluster >= 2
    links: dict[int, int] = field(default_factory=dict)  # record -> the pair (index) that joined it
    review: list[int] = field(default_factory=list)  # pair indices for the review queue
    refused: dict[int, str] = field(default_factory=dict)  # pair index -> why it was not merged


class _Clusters:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))
        self.members: dict[int, list[int]] = {}

    def find(self, x: int) -> int:
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def of(self, root: int) -> list[int]:
        return self.members.get(root, [root])

    def union(self, x: int, y: int) -> None:
        rx, ry = self.find(x), self.find(y)
        if len(self.of(rx)) < len(self.of(ry)):
            rx, ry = ry, rx
        self.members[rx] = self.of(rx) + self.of(ry)
        self.members.pop(ry, None)
        self.parent[ry] = rx


def _logit(p: float) -> float:
    p = min(max(p, 1e-300), 1 - 1e-16)
    return math.log(p) - math.log1p(-p)


def _coherent(verdicts: list[tuple[float, str | None]], *, auto: float, review: float, prior: float) -> bool:
    """Whether two clusters may become one, judged on the evidence (Bayes factors) of the pairs across
    them, not on their posteriors: no pair across is refused or carries evidence of two people as
    strong as an auto-merge needs for one (log2 BF <= -log2(auto / (1 - auto))), and on average
    (average linkage in bits) the pairs across favour one person at least by the review odds.

    Judging posteriors instead (the first version) read every pair of records that share little
    (two records of one person with different fields filled in) as "clearly two people", because
    the prior of a random pair is tiny: a large cluster of one person then refused almost every
    new record. Evidence that is merely missing is neutral here; only contradictions count against.
    """
    refused = [why for _, why in verdicts if why]
    if any(why == "generation_differs" for why in refused) or len(refused) >= REFUSED_SHARE * len(verdicts):
        return False
    prior_logit = _logit(prior)
    bits = [(_logit(p) - prior_logit) / math.log(2) for p, _ in verdicts]
    if min(bits) <= -math.log2(auto / (1 - auto)):
        return False
    return sum(bits) / len(bits) >= math.log2(review / (1 - review))


def _consensus(table: RecordTable, members: list[int], column: str) -> int | None:
    """A record carrying the value most of ``members`` state for ``column`` (an initial is no value),
    if at least two of them state it."""
    values = table[column]
    counts: dict[str, list[int]] = {}
    for i in members:
        if len(values[i]) >= 2:
            counts.setdefault(values[i], []).append(i)
    if not counts:
        return None
    best = max(counts.values(), key=len)
    return best[0] if len(best) >= 2 else None


def consensus_conflict(table: RecordTable, left: list[int], right: list[int]) -> bool:
    """Whether two clusters of several records each say, each by at least two of its records, a birth
    date or a first name the other's contradicts ("different": no typo, nickname, initial or swap
    explains it): two people, whatever the pairs across them add up to (decision 0060). Pairs across
    two clusters weigh one agreement many times (the same name and town crossed); the values each
    cluster's own records repeat are what the person is, and one repeated contradiction outweighs
    them. A lone record has no consensus: its pairs' own conflicts judge it."""
    if len(left) < 2 or len(right) < 2:
        return False
    from .compare import compare

    for column, n in (("dob", DOB), ("first", FIRST)):
        x, y = _consensus(table, left, column), _consensus(table, right, column)
        if x is not None and y is not None and int(compare(table, np.array([x]), np.array([y]))[0, n]) == 0:
            return True
    return False


def _within_limits(table: RecordTable, members: list[int]) -> bool:
    totals: dict[str, int] = {}
    for i in members:
        for kind, n in table.identifier_counts[i].items():
            totals[kind] = totals.get(kind, 0) + n
    return all(n <= limit_for(kind) for kind, n in totals.items())


def decide(
    table: RecordTable,
    a: np.ndarray,
    b: np.ndarray,
    levels: np.ndarray,
    p: np.ndarray,
    *,
    auto: float,
    review: float,
    never: set[tuple[int, int]],
    prior: float,
    score: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
    households: bool = True,
    evidence: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None,
    m: list[np.ndarray] | None = None,
) -> Decisions:
    """Auto-merge clusters and the review queue from scored pairs (indices into ``table``).

    ``score(x, y)`` scores pairs that blocking did not propose (needed to check a cluster's
    coherence); ``never`` holds index pairs (low, high) a reviewer rejected. ``evidence(x, y)``, the
    pairs' levels and evidence per comparison (``model.field_bits``), lets clusters join on what all the pairs
    across them say together (``cluster_bits``), after the pairs sure on their own have merged;
    with ``m`` (``Parameters.m``) a lone record joining a cluster is credited the cluster's several
    tries to agree with it (``cluster_bits``, decision 0056).
    """
    decisions = Decisions()
    likely = np.flatnonzero(p >= review)
    pair_of = {(int(a[k]), int(b[k])): int(k) for k in likely}  # unlikely pairs never join a cluster
    refusals: dict[int, str] = {}
    for k, found in zip(likely, conflicts(table, a[likely], b[likely], levels[likely]), strict=True):
        why = refusal(found, levels[k], households=households)
        if why:
            refusals[int(k)] = why
    cache: dict[tuple[int, int], tuple[float, str | None]] = {}

    def verdicts(pairs: list[tuple[int, int]]) -> list[tuple[float, str | None]]:
        # pairs below the review threshold are scored again (rare: clusters are small)
        missing = [pq for pq in pairs if pq not in pair_of and pq not in cache]
        if missing:
            xs = np.array([x for x, _ in missing], dtype=np.int64)
            ys = np.array([y for _, y in missing], dtype=np.int64)
            extra_levels, extra_p = score(xs, ys)
            extra_found = conflicts(table, xs, ys, extra_levels)
            for n, pq in enumerate(missing):
                cache[pq] = (float(extra_p[n]), refusal(extra_found[n], extra_levels[n], households=households))
        out = []
        for pq in pairs:
            if pq in pair_of:
                k = pair_of[pq]
                out.append((float(p[k]), refusals.get(k)))
            else:
                out.append(cache[pq])
        return out

    clusters = _Clusters(len(table))
    for k in sorted(np.flatnonzero(p >= auto), key=lambda k: -p[k]):
        k = int(k)
        x, y = int(a[k]), int(b[k])
        if (x, y) in never:
            decisions.refused[k] = "never_merge"
            continue
        if k in refusals:
            decisions.refused[k] = refusals[k]
            continue
        rx, ry = clusters.find(x), clusters.find(y)
        if rx == ry:
            continue
        left, right = clusters.of(rx), clusters.of(ry)
        joined = left + right
        if len(joined) > MAX_CLUSTER:
            decisions.refused[k] = "cluster_too_large"
            continue
        if not _within_limits(table, joined):
            decisions.refused[k] = "identifier_limit"
            continue
        if consensus_conflict(table, left, right):
            decisions.refused[k] = "incoherent_birth_dates"
            continue
        cross = [(min(i, j), max(i, j)) for i in left for j in right]
        if any(pq in never for pq in cross):
            decisions.refused[k] = "incoherent_never_merge"
            continue
        if not _coherent(verdicts(cross), auto=auto, review=review, prior=prior):
            decisions.refused[k] = "incoherent_cluster"
            continue
        clusters.union(x, y)
        # edges come strongest first: a record's first accepted edge is its best link
        decisions.links.setdefault(x, k)
        decisions.links.setdefault(y, k)
    if evidence is not None:
        _join_on_cluster_evidence(
            table, a, b, p, clusters, decisions, refusals, never, verdicts, evidence,
            auto=auto, review=review, prior=prior, m=m,
        )  # fmt: skip
    decisions.clusters = [sorted(m) for m in clusters.members.values() if len(m) >= 2]
    for k in np.flatnonzero(p >= review):
        k = int(k)
        x, y = int(a[k]), int(b[k])
        if (x, y) in never or clusters.find(x) == clusters.find(y):
            continue
        decisions.review.append(k)
        if p[k] < auto:
            continue
        decisions.refused.setdefault(k, refusals.get(k, "incoherent_cluster"))
    return decisions


def _value_keys(table: RecordTable) -> list[np.ndarray]:
    """Per comparison, the value each record is compared on (to count distinct values)."""
    address = np.array(
        [f"{s}|{p}|{c}" for s, p, c in zip(table["street"], table["postal"], table["city"], strict=True)], dtype=object
    )
    return [table["first"], table["last"], table["dob"], address, table["email"], table["phone"]]


def cluster_bits(
    keys: list[np.ndarray],
    cross: list[tuple[int, int]],
    levels: np.ndarray,
    rows: np.ndarray,
    m: list[np.ndarray] | None = None,
) -> float:
    """log2 Bayes factor of two clusters being one person, from all the record pairs across them.

    Field by field, the strongest agreement any pair across shows (a record with a name and a town
    can match one member on the name and another on the town: a person's records are noisy in
    different places). Finding an agreement among k distinct value pairs is k times likelier by chance
    than in one, so an agreement counts log2(k) bits less (never below nothing).

    ``m`` (per comparison, the chance of each level for one person's two records, ``Parameters.m``)
    credits one person's several tries as well: the k tries agree at that level at least once with
    probability 1 - (1 - m)^k, not m, so the agreement counts that much more (at most the log2(k)
    taken). The caller passes it only for a lone record against a cluster (decision 0056): there each
    of the cluster's records is the person's own independent try at the lone record's values. Between
    two clusters of several records the k value pairs are the same few values crossed, not k tries,
    and crediting them joined mixed clusters and families (decision 0052).

    A field on which every pair disagrees counts as one pair's disagreement. When any pair across
    shares a street, every field is read against household members (a surname agreeing elsewhere is
    still the family's). ``levels`` and ``rows``: the pairs' comparison levels and their evidence per
    comparison (``model.field_bits``).
    """
    reading = 1 if bool(households(levels).any()) else 0
    total = 0.0
    for n, key in enumerate(keys):
        column = rows[:, n, reading]
        present = np.flatnonzero(~np.isnan(column))
        if not len(present):
            continue
        strongest = present[int(np.argmax(column[present]))]
        best = float(column[strongest])
        if best > 0:
            combos = len({(key[cross[k][0]], key[cross[k][1]]) for k in present})
            credit = 0.0
            if m is not None and combos > 1:
                one = float(m[n][levels[strongest, n]])
                credit = math.log2(1.0 - (1.0 - one) ** combos) - math.log2(one)
            best = max(best - math.log2(combos) + credit, 0.0)
        total += best
    return total


CLUSTER_ROUNDS = 3
PREFETCH_PAIRS = 2_000_000


def _join_on_cluster_evidence(
    table: RecordTable,
    a: np.ndarray,
    b: np.ndarray,
    p: np.ndarray,
    clusters: _Clusters,
    decisions: Decisions,
    refusals: dict[int, str],
    never: set[tuple[int, int]],
    verdicts: Callable,
    evidence: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
    *,
    auto: float,
    review: float,
    prior: float,
    m: list[np.ndarray] | None = None,
) -> None:
    """Transitive support: a pair in the review band joins its two clusters (one of them at least two
    records) when all the pairs across them together (``cluster_bits``) reach the auto-merge
    probability and the clusters stay coherent. Strongest pairs first, a few rounds (a join can give
    a later pair the support it lacked). A lone record against a cluster is credited the cluster's
    several tries (``m``); two clusters of several records are not."""
    keys = _value_keys(table)
    needed = (_logit(auto) - _logit(prior)) / math.log(2)
    cache: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def fill(pairs) -> None:
        missing = [pq for pq in pairs if pq not in cache]
        if missing:
            xs = np.array([x for x, _ in missing], dtype=np.int64)
            ys = np.array([y for _, y in missing], dtype=np.int64)
            found_levels, found_bits = evidence(xs, ys)
            for n, pq in enumerate(missing):
                cache[pq] = (found_levels[n], found_bits[n])

    def rows_of(pairs: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
        fill(pairs)
        return np.array([cache[pq][0] for pq in pairs]), np.array([cache[pq][1] for pq in pairs])

    band = [
        int(k)
        for k in sorted(np.flatnonzero((p >= review) & (p < auto)), key=lambda k: -p[k])
        if int(k) not in refusals and (int(a[k]), int(b[k])) not in never
    ]
    tried: set[tuple[int, int, int, int]] = set()  # cluster pairs (roots and sizes) already judged

    def key_of(k: int) -> tuple[int, int, int, int]:
        rx, ry = clusters.find(int(a[k])), clusters.find(int(b[k]))
        rx, ry = min(rx, ry), max(rx, ry)
        return rx, ry, len(clusters.of(rx)), len(clusters.of(ry))

    def open_pairs() -> dict[tuple[int, int, int, int], list[int]]:
        out: dict[tuple[int, int, int, int], list[int]] = {}
        for k in band:
            key = rx, ry, nx, ny = key_of(k)
            if rx == ry or (nx == 1 and ny == 1) or nx + ny > MAX_CLUSTER:
                continue  # a pair alone says only what its own probability says
            if key not in tried:
                out.setdefault(key, []).append(k)
        return out

    for _ in range(CLUSTER_ROUNDS):
        todo = open_pairs()
        if not todo:
            break
        # every pair across the open cluster pairs compared at once (vectorised), not one call each
        if sum(nx * ny for _, _, nx, ny in todo) <= PREFETCH_PAIRS:
            fill({(min(i, j), max(i, j)) for rx, ry, _, _ in todo for i in clusters.of(rx) for j in clusters.of(ry)})
        for key, ks in todo.items():
            if key_of(ks[0]) != key:
                continue  # changed by a join earlier in this round: judged again in the next
            rx, ry = key[0], key[1]
            left, right = clusters.of(rx), clusters.of(ry)
            tried.add(key)
            joined = left + right
            if not _within_limits(table, joined) or consensus_conflict(table, left, right):
                continue
            cross = [(min(i, j), max(i, j)) for i in left for j in right]
            if any(pq in never for pq in cross):
                continue
            tries = m if min(len(left), len(right)) == 1 else None
            if cluster_bits(keys, cross, *rows_of(cross), m=tries) < needed:
                continue
            if not _coherent(verdicts(cross), auto=auto, review=review, prior=prior):
                continue
            k = ks[0]  # the strongest pair between them
            x, y = int(a[k]), int(b[k])
            clusters.union(x, y)
            decisions.links.setdefault(x, k)
            decisions.links.setdefault(y, k)
