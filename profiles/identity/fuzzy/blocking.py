"""Blocking: which pairs of records are worth comparing at all.

Comparing every pair is quadratic (5e9 pairs for 100,000 profiles), so only records that share at
least one blocking key are compared. The keys are chosen so that each kind of real change leaves at
least one intact: a typo in the last name (birth date, first name + city), a typo in the postal
code (last name + city, street + city), a move (names, birth date), a married name (birth date,
first name + city, address), a new email (names, address), a swapped first and last name (the
sorted pair of name codes). Decision 0060 adds, for people seen many times with every field noisy: a
name written from another script (the sorted pair of consonant skeletons), a place named at another
level (surname or first name with the place name the data uses most for that area), and a name
mistyped in its first consonants (one name's Soundex with the other's initial).

Bounded blocks: a key shared by more than ``max_block`` records (a very common name in a big city,
a dummy birth date such as 1900-01-01) is not expanded to all its pairs; its records are sorted by
name and birth date and each is paired with its ``window`` neighbours (sorted neighbourhood), so one
huge block costs O(n * window), not O(n^2).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import numpy as np

from .records import RecordTable

MAX_BLOCK = 50
WINDOW = 10

_SOUNDEX = str.maketrans(
    "abcdefghijklmnopqrstuvwxyz", "01230120022455012623010202"
)  # a e i o u y h w -> 0 (h, w handled below)


def soundex(name: str) -> str:
    """American Soundex of a normalised name (letters a-z); other scripts are kept as they are."""
    letters = "".join(c for c in name if "a" <= c <= "z")
    if not letters:
        return name[:6]
    codes = letters.translate(_SOUNDEX)
    out = [letters[0]]
    last = codes[0]
    for char, code in zip(letters[1:], codes[1:], strict=True):
        if char in "hw":
            continue  # h and w do not separate equal codes
        if code != "0" and code != last:
            out.append(code)
        last = code
    return ("".join(out) + "000")[:4]


# Consonant skeletons (``skeleton``): one name written from another script or misheard keeps its
# consonants in order more often than its first letter or vowels (Tchaikovsky / Czajkowski /
# Chaykovsky, Zhang / Chang / Cheung, Ivanov / Iwanow / Ivanoff, Yusuf / Yousef), which Soundex keeps.
_DIGRAPHS = (
    ("tsch", "C"),
    ("sch", "C"),
    ("tch", "C"),
    ("ch", "C"),
    ("cz", "C"),
    ("sh", "C"),
    ("zh", "C"),
    ("kh", "K"),
    ("ph", "F"),
    ("ck", "K"),
    ("qu", "K"),
    ("x", "KS"),
    ("tz", "S"),
    ("ts", "S"),
)  # upper case: a sound already read is not read again as part of another digraph
_SKELETON = str.maketrans(
    {"w": "v", "f": "v", "g": "k", "q": "k", "z": "s", **dict.fromkeys("aeiouyjh", "")}
)  # sounds written with different letters become one; vowels and glides go


def skeleton(name: str) -> str:
    """The consonant skeleton of a normalised name: digraphs read as one sound, vowels and the
    glides y / j / h dropped, w / f read as v, g / q as k, z as s, doubled consonants once."""
    letters = "".join(c for c in name if "a" <= c <= "z")
    for digraph, sound in _DIGRAPHS:
        letters = letters.replace(digraph, sound)
    letters = letters.lower().translate(_SKELETON)
    return "".join(c for n, c in enumerate(letters) if n == 0 or letters[n - 1] != c)


def _coded(values: np.ndarray, code) -> np.ndarray:
    """``code`` of every value of a column ('' for an empty one), each distinct value coded once."""
    cache: dict[str, str] = {}
    out = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        if value not in cache:
            cache[value] = code(value) if value else ""
        out[i] = cache[value]
    return out


def canonical_places(table: RecordTable) -> np.ndarray:
    """Per record, one name for its place whatever level it was written at: of the place names tied
    to its own by a shared postal code (``RecordTable.places``: Clifton, Bristol, Avon), the one most
    records use; a record with a postal code and no place name takes its code's. '' when neither."""
    counts = Counter(table["city"].tolist())
    aliases = table.places
    memo: dict[str, str] = {}

    def most_used(names) -> str:
        return max(names, key=lambda name: (counts.get(name, 0), name))

    def canonical(name: str) -> str:
        if name not in memo:
            memo[name] = most_used({name} | set(aliases.get(name, ())))
        return memo[name]

    out = np.empty(len(table), dtype=object)
    for i, (city, postal) in enumerate(zip(table["city"], table["postal"], strict=True)):
        if city:
            out[i] = canonical(city)
        else:
            names = aliases.get("#" + postal) if postal else None
            out[i] = canonical(most_used(names)) if names else ""
    return out


def _join(*columns: np.ndarray) -> np.ndarray:
    """Row-wise 'a|b|…', or '' when any part is missing (a key needs all of its parts)."""
    out = np.empty(len(columns[0]), dtype=object)
    for i, parts in enumerate(zip(*columns, strict=True)):
        out[i] = "|".join(parts) if all(parts) else ""
    return out


def _street_key(table: RecordTable, place_column: str) -> np.ndarray:
    """House number and first street word, in a postal code or a city."""
    out = np.empty(len(table), dtype=object)
    for i, (street, place) in enumerate(zip(table["street"], table[place_column], strict=True)):
        words = [w for w in street.split() if not w.isdigit()]
        number = next((w for w in street.split() if w.isdigit()), "")
        out[i] = f"{number}|{words[0]}|{place}" if words and place else ""
    return out


def prediction_keys(table: RecordTable) -> dict[str, np.ndarray]:
    """The blocking keys whose union gives the candidate pairs."""
    last_code = _coded(table["last"], soundex)
    first_code = _coded(table["first"], soundex)
    names = np.empty(len(table), dtype=object)
    for i, (a, b) in enumerate(zip(first_code, last_code, strict=True)):
        names[i] = "|".join(sorted((a, b))) if a and b else ""
    first_skeleton, last_skeleton = _coded(table["first"], skeleton), _coded(table["last"], skeleton)
    skeletons = np.empty(len(table), dtype=object)
    for i, (a, b) in enumerate(zip(first_skeleton, last_skeleton, strict=True)):
        skeletons[i] = "|".join(sorted((a, b))) if a and b else ""
    place = canonical_places(table)
    first_initial = np.array([f[:1] for f in table["first"]], dtype=object)
    last_initial = np.array([v[:1] for v in table["last"]], dtype=object)
    phone_tail = np.array([p[-7:] if len(p) >= 9 else "" for p in table["phone"]], dtype=object)
    email_local = np.array([e if len(e) >= 4 else "" for e in table["email_local"]], dtype=object)
    return {
        "last_postal": _join(last_code, table["postal"]),
        "last_city": _join(last_code, table["city"]),
        "birth_date": table["dob"],
        "email_local": email_local,
        "phone_tail": phone_tail,
        "first_city": _join(table["first_key"], table["city"]),
        "first_postal": _join(table["first_key"], table["postal"]),
        "names": names,
        # issue 17, decision 0060: names from other scripts, places named at another level, one name
        # mistyped where Soundex keeps its first letter
        "name_skeletons": skeletons,
        "last_place": _join(last_code, place),
        "first_place": _join(table["first_key"], place),
        "last_first_initial": _join(last_code, first_initial),
        "first_last_initial": _join(first_code, last_initial),
        "address": _street_key(table, "postal"),
        "address_city": _street_key(table, "city"),
    }


# Training rules (see model.py): each names the comparisons its EM session leaves out, because they
# agree by construction inside its blocks, or agree among the non-matches of its blocks because those
# are often one household (same last name and postal code, or one phone). The address block is the
# household session: every pair shares a street, and the model learns how household members differ.
TRAINING_RULES: dict[str, tuple[str, ...]] = {
    "names": ("first_name", "last_name"),
    "birth_date": ("birth_date",),
    "last_postal": ("last_name", "address", "phone", "email"),
    "address": ("address",),
    "email_local": ("email", "first_name", "last_name"),
    "phone_tail": ("phone", "address", "last_name", "email"),
}
HOUSEHOLD_RULE = "address"


def training_keys(table: RecordTable) -> dict[str, np.ndarray]:
    """The training rules' keys only (building every prediction key here cost the estimate phase
    seconds for keys it never uses)."""
    keys = {
        "names": _join(table["first_key"], table["last"]),
        "birth_date": table["dob"],
        "last_postal": _join(_coded(table["last"], soundex), table["postal"]),
        "address": _join(table["street"], table["postal"]),
        "email_local": np.array([e if len(e) >= 4 else "" for e in table["email_local"]], dtype=object),
        "phone_tail": np.array([p[-7:] if len(p) >= 9 else "" for p in table["phone"]], dtype=object),
    }
    return {name: keys[name] for name in TRAINING_RULES}


def _sort_rank(table: RecordTable) -> np.ndarray:
    sort_key = _join(table["last"], table["first"], table["dob"])
    order = np.argsort(np.array([k or "~" for k in sort_key], dtype=object), kind="stable")
    rank = np.empty(len(table), dtype=np.int64)
    rank[order] = np.arange(len(table))
    return rank


def _groups(keys: np.ndarray) -> Iterator[np.ndarray]:
    present = np.flatnonzero(keys != "")
    if len(present) < 2:
        return
    _, inverse, counts = np.unique(keys[present], return_inverse=True, return_counts=True)
    order = np.argsort(inverse, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    for start, count in zip(starts, counts, strict=True):
        if count >= 2:
            yield present[order[start : start + count]]


def block_pairs(
    keys: np.ndarray,
    rank: np.ndarray,
    *,
    query: np.ndarray | None = None,
    max_block: int = MAX_BLOCK,
    window: int = WINDOW,
) -> np.ndarray:
    """Pairs (i < j) sharing a key, as codes i * n + j; with ``query``, only pairs touching it."""
    n = len(keys)
    found: list[np.ndarray] = []
    small_cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for members in _groups(keys):
        if query is not None and not query[members].any():
            continue
        size = len(members)
        if size <= max_block:
            if size not in small_cache:
                small_cache[size] = np.triu_indices(size, 1)
            ia, ib = small_cache[size]
            a, b = members[ia], members[ib]
        else:
            ordered = members[np.argsort(rank[members], kind="stable")]
            a = np.concatenate([ordered[:-d] for d in range(1, min(window, size - 1) + 1)])
            b = np.concatenate([ordered[d:] for d in range(1, min(window, size - 1) + 1)])
        if query is not None:
            keep = query[a] | query[b]
            a, b = a[keep], b[keep]
        low, high = np.minimum(a, b), np.maximum(a, b)
        found.append(low.astype(np.int64) * n + high)
    if not found:
        return np.empty(0, dtype=np.int64)
    return np.unique(np.concatenate(found))


def decode(codes: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    return (codes // n).astype(np.int64), (codes % n).astype(np.int64)


def candidate_pairs(
    table: RecordTable, *, query: np.ndarray | None = None, max_block: int = MAX_BLOCK, window: int = WINDOW
) -> tuple[np.ndarray, np.ndarray]:
    """The union of all blocking keys' pairs, each once (i < j)."""
    rank = _sort_rank(table)
    codes = [
        block_pairs(keys, rank, query=query, max_block=max_block, window=window)
        for keys in prediction_keys(table).values()
    ]
    union = np.unique(np.concatenate(codes)) if codes else np.empty(0, dtype=np.int64)
    return decode(union, len(table))


def training_pairs(
    table: RecordTable, *, max_pairs: int, rng: np.random.Generator
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Pairs of each training rule, sampled down to ``max_pairs`` per rule."""
    rank = _sort_rank(table)
    out = {}
    for name, keys in training_keys(table).items():
        codes = block_pairs(keys, rank)
        if len(codes) > max_pairs:
            codes = np.sort(rng.choice(codes, size=max_pairs, replace=False))
        out[name] = decode(codes, len(table))
    return out


def random_pairs(n: int, *, max_pairs: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Pairs drawn at random (all pairs when there are few): nearly all of them are different people."""
    total = n * (n - 1) // 2
    if total <= max_pairs:
        a, b = np.triu_indices(n, 1)
        return a.astype(np.int64), b.astype(np.int64)
    a = rng.integers(0, n, size=int(max_pairs * 1.05) + 10)
    b = rng.integers(0, n, size=len(a))
    keep = a != b
    a, b = a[keep][:max_pairs], b[keep][:max_pairs]
    return np.minimum(a, b), np.maximum(a, b)
