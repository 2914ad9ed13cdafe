"""Field-by-field comparison of record pairs: each comparison puts a pair on one of a few levels.

Six comparisons, each with its own levels (stored weakest first; -1 = no evidence because a side
is missing it; listed strongest first here). They are meant to be roughly independent given match
status, as Fellegi-Sunter assumes, so evidence is not counted twice:

- ``first_name``: exact | nickname (two forms of one name: Robert/Bob) | close (Jaro-Winkler >=
  0.92: a typo, or Olivia/Oliver) | similar (JW >= 0.8, an initial, or one a prefix of the other) |
  different. First and last names that were swapped (both, or one while the other changed)
  compare crosswise, never as "exact".
- ``last_name``: exact | close (JW >= 0.92) | similar (JW >= 0.8, or one inside the other, as in a
  double-barrelled name) | different.
- ``birth_date``: exact | near (one digit wrong, two swapped, day and month swapped, the year one off
  with the same day) | year (the same year otherwise: a date known only by its year, often stored as
  1 January) | different.
- ``address``: one comparison for street, postal code and city together, because they move
  together: same (street alike, same house numbers, same locality) | similar street in the same
  locality | street_elsewhere (same street and number, another postal code: a typo, or one street
  name in two districts) | same locality (postal code and city) | same area (one of them, or a
  postal code one digit off) | different.
- ``email``: a shared address | the same local part elsewhere (only when it is not just the
  person's name, which the name comparisons already count) | different.
- ``phone``: a shared number | one digit off | different. A landline is not compared with a
  mobile: someone giving their landline instead of their mobile is no evidence either way.

Everything is vectorised with rapidfuzz's ``process.cpdist`` (both sides of all pairs at once, on
all cores); only rare cases (nicknames, several emails on one profile) take a Python loop.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import numpy as np
from rapidfuzz import fuzz, process
from rapidfuzz.distance import OSA, JaroWinkler, Levenshtein

from .nicknames import nickname_variants
from .records import RecordTable

EPS = 1e-6


@dataclass(frozen=True)
class Comparison:
    name: str
    levels: tuple[str, ...]  # weakest first
    tf_column: str = ""  # the exact level's weight is adjusted by this value's frequency

    @property
    def exact(self) -> int:
        return len(self.levels) - 1


COMPARISONS: tuple[Comparison, ...] = (
    Comparison("first_name", ("different", "similar", "close", "nickname", "exact"), tf_column="first"),
    Comparison("last_name", ("different", "similar", "close", "exact"), tf_column="last"),
    Comparison("birth_date", ("different", "year", "near", "exact"), tf_column="dob"),
    Comparison("address", ("different", "area", "locality", "street_elsewhere", "similar", "same")),
    Comparison("email", ("different", "same_local", "exact")),
    Comparison("phone", ("different", "close", "exact")),
)
INDEX = {c.name: n for n, c in enumerate(COMPARISONS)}
FIRST, LAST, DOB, ADDRESS, EMAIL, PHONE = range(len(COMPARISONS))


def _cpdist(a: np.ndarray, b: np.ndarray, scorer) -> np.ndarray:
    if len(a) == 0:
        return np.empty(0, dtype=np.float32)
    return process.cpdist(list(a), list(b), scorer=scorer, workers=-1, dtype=np.float32)


def _jw(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return _cpdist(a, b, JaroWinkler.normalized_similarity)


def _present(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a != "") & (b != "")


def compare(table: RecordTable, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Levels (n pairs x comparisons, int8, -1 = missing) of the pairs (a[k], b[k])."""
    levels = np.full((len(a), len(COMPARISONS)), -1, dtype=np.int8)
    if len(a) == 0:
        return levels
    _names(table, a, b, levels)
    _birth_dates(table, a, b, levels)
    _addresses(table, a, b, levels)
    _emails(table, a, b, levels)
    _phones(table, a, b, levels)
    return levels


def _name_roles(table: RecordTable) -> tuple[dict, dict]:
    """How often each name is written as a first name and as a last name (computed once per table)."""
    roles = getattr(table, "_name_roles", None)
    if roles is None:
        roles = (Counter(table["first"]), Counter(table["last"]))
        table._name_roles = roles
    return roles


def _names(table: RecordTable, a: np.ndarray, b: np.ndarray, levels: np.ndarray) -> None:
    fa, fb, la, lb = table["first"][a], table["first"][b], table["last"][a], table["last"][b]
    has_f, has_l = _present(fa, fb), _present(la, lb)
    jf, jl = _jw(fa, fb), _jw(la, lb)
    exact_f, exact_l = has_f & (fa == fb), has_l & (la == lb)
    # first and last name swapped (a form filled in the wrong order), fully or with one of them changed
    swapped = np.zeros(len(a), dtype=bool)
    ga, gb = table["given"][a], table["given"][b]
    both = np.flatnonzero(has_f & has_l & ~(exact_f & exact_l))
    if len(both):
        cross_fl, cross_lf = _jw(ga[both], lb[both]), _jw(la[both], gb[both])
        better = (np.maximum(cross_fl, cross_lf) >= 0.92 - EPS) & (cross_fl + cross_lf > jf[both] + jl[both] + 0.1)
        rows = both[better]
        swapped[rows] = True
        # which side was swapped is unknown: the closer crosswise pair counts as the first name (a
        # changed last name is the commoner story, and must not read as two people's first names),
        # unless the name they share is written as a surname more often than as a first name in the
        # data ("Wright Ava" / "Thomas Wright": one surname, two first names, as twins)
        high = np.minimum(np.maximum(cross_fl[better], cross_lf[better]), 0.99)
        low = np.minimum(cross_fl[better], cross_lf[better])
        shared = np.where(cross_fl[better] >= cross_lf[better], lb[rows], la[rows])
        as_first, as_last = _name_roles(table)
        surname = np.array([as_last.get(v, 0) > as_first.get(v, 0) for v in shared], dtype=bool)
        jf[rows], jl[rows] = np.where(surname, low, high), np.where(surname, high, low)
        exact_f[rows] = exact_l[rows] = False
    # first name
    level = np.where(jf >= 0.92 - EPS, 2, np.where(jf >= 0.8 - EPS, 1, 0)).astype(np.int8)
    open_rows = has_f & ~exact_f & ~swapped
    ka, kb = table["first_key"][a], table["first_key"][b]
    level[open_rows & (ka == kb)] = 3  # one nickname group (names in no group have themselves as key)
    multi = table["first_multi"]
    for k in np.flatnonzero(open_rows & (level < 3) & (multi[a] | multi[b])):
        if fb[k] in nickname_variants(fa[k]):  # Chris: Christopher or Christine
            level[k] = 3
    # two letters swapped or one mistyped in a short name (Ben / Bne, Amy / Aym), which Jaro-Winkler
    # scores below "similar"
    rows = np.flatnonzero(open_rows & (level < 1) & (np.minimum(table["first_len"][a], table["first_len"][b]) >= 3))
    if len(rows):
        level[rows[_cpdist(fa[rows], fb[rows], OSA.distance) <= 1]] = 1
    # an initial, or a shortened name (Alex / Alexandra)
    short = open_rows & (level < 2) & (table["initial"][a] == table["initial"][b])
    lengths_a, lengths_b = table["first_len"][a], table["first_len"][b]
    level[short & ((lengths_a == 1) | (lengths_b == 1))] = 1
    for k in np.flatnonzero(short & (lengths_a > 1) & (lengths_b > 1) & (level < 1)):
        if fa[k].startswith(fb[k]) or fb[k].startswith(fa[k]):
            level[k] = 1
    level[exact_f] = 4
    # an initial says only which letter the name begins with, also against the same initial ("S" / "S"
    # may be Sophia and Sarah): "similar", never "exact" (whose weight, by how rare the value "s" is
    # among the first names, would read two initials as a rare name shared)
    initials = np.minimum(table["first_len"][a], table["first_len"][b]) == 1
    level[has_f & initials & (table["initial"][a] == table["initial"][b])] = 1
    levels[:, FIRST] = np.where(has_f, level, -1)
    # last name
    level = np.where(jl >= 0.92 - EPS, 2, np.where(jl >= 0.8 - EPS, 1, 0)).astype(np.int8)
    level[exact_l] = 3
    lengths_a, lengths_b = table["last_len"][a], table["last_len"][b]
    rows = np.flatnonzero(
        has_l & (level == 0) & (np.minimum(lengths_a, lengths_b) >= 3) & (np.abs(lengths_a - lengths_b) >= 3)
    )
    if len(rows):  # a double-barrelled name and one of its parts
        level[rows[_cpdist(la[rows], lb[rows], fuzz.partial_ratio) >= 100 - EPS]] = 1
    levels[:, LAST] = np.where(has_l, level, -1)


def _birth_dates(table: RecordTable, a: np.ndarray, b: np.ndarray, levels: np.ndarray) -> None:
    da, db = table["dob"][a], table["dob"][b]
    has = _present(da, db)
    exact = has & (da == db)
    level = np.zeros(len(a), dtype=np.int8)
    rest = np.flatnonzero(has & ~exact)
    if len(rest):
        year_a = np.array([int(d[:4]) for d in da[rest]], dtype=np.int64)  # dates are YYYYMMDD
        year_b = np.array([int(d[:4]) for d in db[rest]], dtype=np.int64)
        day_a = np.array([d[4:] for d in da[rest]], dtype=object)
        day_b = np.array([d[4:] for d in db[rest]], dtype=object)
        near = _cpdist(da[rest], db[rest], OSA.distance) <= 1  # one digit wrong, or two swapped
        near |= da[rest] == table["dob_swapped"][b[rest]]  # day and month swapped
        near |= (np.abs(year_a - year_b) == 1) & (day_a == day_b)  # a year off (a date from an age)
        level[rest[year_a == year_b]] = 1  # the same year: an approximate date (1 January), or a wrong day
        level[rest[near]] = 2
    level[exact] = 3
    levels[:, DOB] = np.where(has, level, -1)


def _addresses(table: RecordTable, a: np.ndarray, b: np.ndarray, levels: np.ndarray) -> None:
    sa, sb = table["street"][a], table["street"][b]
    pa, pb = table["postal"][a], table["postal"][b]
    ca, cb = table["city"][a], table["city"][b]
    has_street, has_postal, has_city = _present(sa, sb), _present(pa, pb), _present(ca, cb)
    anything_a = (sa != "") | (pa != "") | (ca != "")
    anything_b = (sb != "") | (pb != "") | (cb != "")
    street = np.zeros(len(a), dtype=np.float32)
    rows = np.flatnonzero(has_street)
    street[rows] = _cpdist(sa[rows], sb[rows], fuzz.token_set_ratio) / 100.0
    na, nb = table["street_nums"][a], table["street_nums"][b]
    numbers_differ = _present(na, nb) & (na != nb)
    postal_same = has_postal & (pa == pb)
    postal_near = np.zeros(len(a), dtype=bool)
    rows = np.flatnonzero(has_postal & ~postal_same)
    if len(rows):
        close = _cpdist(pa[rows], pb[rows], OSA.distance) <= 1
        la, lb = table["postal_len"][a[rows]], table["postal_len"][b[rows]]
        postal_near[rows] = close & (la == lb) & (la >= 3)
        # a postal code given at another level: only its outward part (EH6 / EH6 4LT, 12345 / 12345-6789)
        short = np.minimum(la, lb) >= 2
        prefix = np.array([x.startswith(y) or y.startswith(x) for x, y in zip(pa[rows], pb[rows], strict=True)])
        postal_near[rows] |= short & prefix & (la != lb)
    city_same = np.zeros(len(a), dtype=bool)
    rows = np.flatnonzero(has_city)
    city_same[rows] = _jw(ca[rows], cb[rows]) >= 0.92 - EPS
    postal_differs = has_postal & ~postal_same & ~postal_near
    area = postal_same | postal_near | city_same | _place_aliases(table, pa, pb, ca, cb, has_city & ~city_same)
    locality = (postal_same & (city_same | ~has_city)) | (city_same & ~has_postal)
    no_place = ~(has_postal | has_city)
    alike, same = has_street & (street >= 0.75), has_street & (street >= 0.9) & ~numbers_differ
    level = np.zeros(len(a), dtype=np.int8)
    level[area] = 1
    level[locality] = 2
    # the same street and number with another postal code: a typing error, or one street name in two
    # districts (Church Road); a level of its own, whose weight the data decides
    level[same & postal_differs & (city_same | ~has_city)] = 3
    level[alike & (area | no_place) & ~postal_differs] = 4
    level[same & (area | no_place) & ~postal_differs] = 5
    levels[:, ADDRESS] = np.where(anything_a & anything_b, level, -1)


def _place_aliases(table: RecordTable, pa, pb, ca, cb, differ: np.ndarray) -> np.ndarray:
    """One area named at different levels: two place names written with one postal code somewhere in
    the data, or a place name written with the other side's postal code (``RecordTable.places``)."""
    out = np.zeros(len(pa), dtype=bool)
    places = table.places
    if not places:
        return out
    for k in np.flatnonzero(differ):
        out[k] = cb[k] in places.get(ca[k], ())
    one_sided = np.flatnonzero(((ca != "") & (pa == "") & (pb != "")) | ((cb != "") & (pb == "") & (pa != "")))
    for k in one_sided:
        city, code = (ca[k], pb[k]) if pa[k] == "" else (cb[k], pa[k])
        out[k] |= city in places.get("#" + code, ())
    return out


def _name_derived(local: str, first: str, last: str) -> bool:
    """Whether an email's local part is (nearly) just the person's name: then it is no new evidence."""
    letters = re.sub(r"\d", "", local)
    tokens = {last, *(nickname_variants(first) if first else ())}
    for token in sorted((t for t in tokens if len(t) >= 2), key=len, reverse=True):
        letters = letters.replace(token, "")
    return len(letters) <= 2


def _emails(table: RecordTable, a: np.ndarray, b: np.ndarray, levels: np.ndarray) -> None:
    ea, eb = table["email"][a], table["email"][b]
    has = _present(ea, eb)
    level = np.zeros(len(a), dtype=np.int8)
    shared = has & (ea == eb)
    emails, counts = table.emails, table["n_emails"]
    for k in np.flatnonzero(has & ~shared & ((counts[a] > 1) | (counts[b] > 1))):
        if set(emails[a[k]]) & set(emails[b[k]]):
            shared[k] = True
    rest = np.flatnonzero(has & ~shared)
    if len(rest):
        loc_a, loc_b = table["email_local"][a[rest]], table["email_local"][b[rest]]
        shortest = np.minimum(table["email_local_len"][a[rest]], table["email_local_len"][b[rest]])
        alike = (_jw(loc_a, loc_b) >= 0.92 - EPS) & (shortest >= 3)
        first, last = table["first"], table["last"]
        for n in np.flatnonzero(alike):
            i, j = a[rest[n]], b[rest[n]]
            if _name_derived(loc_a[n], first[i], last[i]) or _name_derived(loc_b[n], first[j], last[j]):
                level[rest[n]] = -1  # the names already say this
            else:
                level[rest[n]] = 1
    level[shared] = 2
    levels[:, EMAIL] = np.where(has, level, -1)


def _compatible(kind_a: str, kind_b: str) -> bool:
    return kind_a == kind_b or "u" in (kind_a, kind_b)


def _phones(table: RecordTable, a: np.ndarray, b: np.ndarray, levels: np.ndarray) -> None:
    from .records import phone_kind

    pa, pb = table["phone"][a], table["phone"][b]
    ka, kb = table["phone_kind"][a], table["phone_kind"][b]
    has = _present(pa, pb)
    level = np.zeros(len(a), dtype=np.int8)
    shared = has & (pa == pb)
    comparable = has & ((ka == kb) | (ka == "u") | (kb == "u"))
    phones, counts = table.phones, table["n_phones"]
    for k in np.flatnonzero(has & ~shared & ((counts[a] > 1) | (counts[b] > 1))):
        i, j = a[k], b[k]
        if set(phones[i]) & set(phones[j]):
            shared[k] = True
        elif not comparable[k]:
            comparable[k] = any(_compatible(phone_kind(x), phone_kind(y)) for x in phones[i] for y in phones[j])
    rows = np.flatnonzero(comparable & ~shared)
    if len(rows):
        level[rows[_cpdist(pa[rows], pb[rows], Levenshtein.distance) <= 1]] = 1
    level[shared] = 2
    levels[:, PHONE] = np.where(shared | comparable, level, -1)


def level_names(row: np.ndarray) -> dict[str, str | None]:
    return {c.name: (c.levels[row[n]] if row[n] >= 0 else None) for n, c in enumerate(COMPARISONS)}
