"""Blocking keys kept per live profile, so an incremental run reads its candidates, not everyone (decision 0065).

A run that reads every live profile (a full run, or the first incremental run on a database without
keys) writes one ``BlockingKeys`` row per profile: the 64-bit hashes of the keys the record states on
its own (``blocking.record_keys``) under a GIN index, and the few normalised values an incremental
run needs about the whole population: first and last name, birth date (term frequencies), postal
code and place name (place aliases, canonical places, place frequencies), the name codes (the
place keys) and the order of a bounded block (``blocking.sort_keys``).

An incremental run (``candidates_load``) then:

1. refreshes the rows of the profiles it queries and of every live profile whose row is missing or
   older than the profile (``updated_at``), and deletes the rows of profiles merged away since;
2. reads the population's aggregates from the rows: (postal code, place name) counts, and the counts
   of its own records' names and birth dates;
3. reads the rows that share a stored key with a queried profile, and for the two place keys the rows
   that could share one (same name code, and a place name tied to the canonical place, or no place
   name and a postal code tied to it); the place keys of those are computed as a full run would;
4. builds each block that holds a queried profile exactly as ``blocking.block_pairs`` would over all
   live profiles (all its pairs up to ``MAX_BLOCK`` members, else the sorted neighbourhood in the
   full block's order), keeps the pairs touching the queried profiles, and reads and normalises only
   the profiles of those pairs.

The same pairs, comparison levels, term frequencies, place aliases and name roles as the present
path give the same merges, review candidates and refusals (tests/profiles/test_incremental_keys.py).
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np
import psycopg
from django.db import connection, transaction
from django.utils import timezone

from . import blocking, model
from .records import RecordTable, place_aliases, records_load

COLUMNS = (
    "profile_id", "stamp", "keys", "first", "last", "dob", "postal", "city", "last_code", "first_key", "sort_key",
)  # fmt: skip
COUNTED = ("first", "last", "dob")
GIN_INDEX = "blocking_keys_gin"
# refreshing more than this share of the live profiles costs about what reading all of them does
REFRESH_MAX_SHARE = 0.25


def key_hash(family: str, value: str) -> int:
    """A key as a signed 64-bit integer (collisions: about one in 10^19 per pair of keys)."""
    return int.from_bytes(hashlib.blake2b(f"{family}\x1f{value}".encode(), digest_size=8).digest(), "big", signed=True)


def _hashes(keys: dict[str, np.ndarray], n: int) -> list[list[int]]:
    """Per record, the hashes of its non-empty stored keys (each distinct key hashed once)."""
    out: list[list[int]] = [[] for _ in range(n)]
    for family in blocking.RECORD_FAMILIES:
        memo: dict[str, int] = {}
        for i, value in enumerate(keys[family]):
            if value:
                h = memo.get(value)
                if h is None:
                    h = memo[value] = key_hash(family, value)
                out[i].append(h)
    return out


def _cursor():
    connection.ensure_connection()
    return psycopg.Cursor(connection.connection)


def _rows(sql: str, params: list | None = None) -> list[tuple]:
    with _cursor() as cursor:
        cursor.execute(sql, params or [])
        return cursor.fetchall() if cursor.description else []


def keys_write(
    table: RecordTable, keys: dict[str, np.ndarray], codes: dict[str, np.ndarray], *, stamp, replace: bool
) -> int:
    """Write the rows of ``table``'s records (every live profile with ``replace``: the table is
    emptied first; else those profiles' rows are replaced). ``stamp``: when the records were read."""
    hashes = _hashes(keys, len(table))
    sort = blocking.sort_keys(table)
    with transaction.atomic():
        if replace:
            # TRUNCATE (no dead rows left behind) refuses a table with deferred foreign-key checks
            # pending in the transaction: run them first
            _rows("SET CONSTRAINTS ALL IMMEDIATE")
            _rows("TRUNCATE profiles_blockingkeys")
            _rows("SET CONSTRAINTS ALL DEFERRED")
            # one bulk build of the GIN index after the COPY, not an insert per row's 13 keys
            _rows(f"DROP INDEX IF EXISTS {GIN_INDEX}")
        else:
            _rows("DELETE FROM profiles_blockingkeys WHERE profile_id = ANY(%s)", [list(table.ids)])
        with _cursor() as cursor, cursor.copy(f"COPY profiles_blockingkeys ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for i, pid in enumerate(table.ids):
                copy.write_row(
                    (
                        pid,
                        stamp,
                        hashes[i],
                        table["first"][i],
                        table["last"][i],
                        table["dob"][i],
                        table["postal"][i],
                        table["city"][i],
                        codes["last"][i],
                        table["first_key"][i],
                        sort[i],
                    )
                )
        if replace:  # (the COPY's deferred foreign-key checks run first here too)
            _rows("SET CONSTRAINTS ALL IMMEDIATE")
            _rows(f"CREATE INDEX {GIN_INDEX} ON profiles_blockingkeys USING gin (keys)")  # as migration 0014
            _rows("SET CONSTRAINTS ALL DEFERRED")
    return len(table)


def keys_refresh(profile_ids, *, gone=()) -> int:
    """Rows of these profiles read again (after a run merged into them); rows of ``gone`` deleted."""
    if gone:
        _rows("DELETE FROM profiles_blockingkeys WHERE profile_id = ANY(%s)", [list(gone)])
    if not profile_ids:
        return 0
    stamp = timezone.now()
    table = records_load(only=set(profile_ids))
    codes = blocking.name_codes(table)
    return keys_write(table, blocking.record_keys(table, codes), codes, stamp=stamp, replace=False)


def keys_present() -> bool:
    return bool(_rows("SELECT 1 FROM profiles_blockingkeys LIMIT 1"))


def _stale() -> tuple[list, list]:
    """(live profiles whose row is missing or older than the profile, profiles merged away that still
    have a row). One join on the server; nothing of the profiles is sent but these ids."""
    rows = _rows(
        """SELECT p.id, p.merged_into_id IS NULL
            FROM profiles_profile p LEFT JOIN profiles_blockingkeys k ON k.profile_id = p.id
            WHERE (p.merged_into_id IS NULL AND (k.profile_id IS NULL OR p.updated_at > k.stamp))
               OR (p.merged_into_id IS NOT NULL AND k.profile_id IS NOT NULL)"""
    )
    return [pid for pid, live in rows if live], [pid for pid, live in rows if not live]


MEMBERS = """SELECT k.profile_id, k.keys, k.last_code, k.first_key, k.city, k.postal, k.sort_key,
                     p.first_seen_at, p.created_at
              FROM profiles_blockingkeys k JOIN profiles_profile p ON p.id = k.profile_id AND p.merged_into_id IS NULL
              """


@dataclass
class Candidates:
    table: RecordTable  # the queried profiles and their candidates, in a full run's order
    query: np.ndarray  # rows of the queried profiles
    a: np.ndarray  # candidate pairs (rows, a < b), as ``blocking.candidate_pairs`` orders them
    b: np.ndarray
    population: int  # live profiles
    freq: model.Frequencies
    refreshed: int  # rows written again before reading
    key_rows: int  # blocking-keys rows read
    profiles_read: int  # profiles read and normalised (refreshed + candidates)


def candidates_load(profile_ids: set, *, max_block: int = blocking.MAX_BLOCK, window: int = blocking.WINDOW):
    """The queried profiles, their candidate pairs and what scoring needs of the whole population,
    read through the stored keys; None when there are no keys yet or too many rows are stale (then
    the caller reads every live profile, and writes the keys)."""
    if not keys_present():
        return None
    population = _rows("SELECT count(*) FROM profiles_profile WHERE merged_into_id IS NULL")[0][0]
    stale, gone = _stale()
    refresh = set(stale) | set(profile_ids)
    if len(refresh) > REFRESH_MAX_SHARE * max(population, 1):
        return None
    refreshed = keys_refresh(refresh, gone=gone)

    # the population's places: (postal code, place name) -> records
    pairs_count = _rows("SELECT postal, city, count(*) FROM profiles_blockingkeys GROUP BY postal, city")
    postal_counts: Counter = Counter()
    city_counts: Counter = Counter()
    for postal, city, n in pairs_count:
        if postal:
            postal_counts[postal] += n
        if city:
            city_counts[city] += n
    aliases = place_aliases([row[0] for row in pairs_count], [row[1] for row in pairs_count])
    codes_of: dict[str, set] = defaultdict(set)  # place name -> postal codes it is tied to by aliases
    for name, others in aliases.items():
        if name.startswith("#"):
            for other in others:
                codes_of[other].add(name[1:])

    # the queried profiles' keys
    query_rows = _rows(
        "SELECT k.profile_id, k.keys, k.last_code, k.first_key, k.city, k.postal FROM profiles_blockingkeys k "
        "JOIN profiles_profile p ON p.id = k.profile_id AND p.merged_into_id IS NULL WHERE k.profile_id = ANY(%s)",
        [list(profile_ids)],
    )
    wanted: set[int] = set()
    place_wanted: set[tuple[str, str]] = set()
    lookups: set[int] = set()
    no_city: tuple[set, set, set] = (set(), set(), set())  # postal codes, surname codes, first-name keys
    for _, hashes, last_code, first_key, city, postal in query_rows:
        wanted.update(hashes)
        place = blocking.places_canonical([city], [postal], city_counts, aliases)[0]
        if not place:
            continue
        tied = {place} | set(aliases.get(place, ()))
        for family, code in (("last", last_code), ("first", first_key)):
            if not code:
                continue
            place_wanted.add((f"{family}_place", f"{code}|{place}"))
            # a record naming one of the tied places (its city key), or naming none with a postal
            # code tied to one of them (read apart: a big city's codes are thousands of keys)
            lookups.update(key_hash(f"{family}_city", f"{code}|{name}") for name in tied)
            no_city[1 if family == "last" else 2].add(code)
        for name in tied:
            no_city[0].update(codes_of[name])
    members = _rows(
        MEMBERS + "WHERE k.keys && %s::bigint[]",
        [sorted(wanted | lookups)],
    )
    if no_city[0]:
        seen = {row[0] for row in members}
        more = _rows(
            MEMBERS + "WHERE k.city = '' AND k.postal = ANY(%s) AND (k.last_code = ANY(%s) OR k.first_key = ANY(%s))",
            [sorted(no_city[0]), sorted(no_city[1]), sorted(no_city[2])],
        )
        members += [row for row in more if row[0] not in seen]

    # blocks holding a queried profile, each with all its live members
    blocks: dict = defaultdict(list)
    places = blocking.places_canonical([r[4] for r in members], [r[5] for r in members], city_counts, aliases)
    for row, place in zip(members, places, strict=True):
        for h in row[1]:
            if h in wanted:
                blocks[h].append(row)
        if place:
            for family, code in (("last_place", row[2]), ("first_place", row[3])):
                if code and (family, f"{code}|{place}") in place_wanted:
                    blocks[(family, f"{code}|{place}")].append(row)
    queried = {r[0] for r in query_rows}
    order = {}  # profile -> its place in a full run's table (first seen, created, id)
    for row in members:
        order[row[0]] = (row[7], row[8], row[0])
    found: set[tuple] = set()  # pairs of profiles, either way round
    for rows in blocks.values():
        if len(rows) < 2:
            continue
        if len(rows) > max_block:  # the sorted neighbourhood of the whole block
            rows = sorted(rows, key=lambda r: (r[6], order[r[0]]))
            reach = window
        else:
            reach = len(rows)
        ids = [r[0] for r in rows]
        for x, pid in enumerate(ids):
            if pid in queried:
                found.update((pid, ids[y]) for y in range(max(0, x - reach), min(len(ids), x + reach + 1)) if y != x)

    needed = queried | {pid for pair in found for pid in pair}
    table = records_load(only=needed)
    index = {pid: i for i, pid in enumerate(table.ids)}
    n = len(table)
    live_pairs = [(index[x], index[y]) for x, y in found if x in index and y in index]
    pair_codes = sorted({min(i, j) * n + max(i, j) for i, j in live_pairs})
    codes = np.array(pair_codes, dtype=np.int64)
    a, b = codes // n, codes % n
    query = np.zeros(n, dtype=bool)
    query[[index[pid] for pid in queried if pid in index]] = True
    table.places = aliases  # the population's, as a full read would build them
    freq, roles = _frequencies(table, population, postal_counts, city_counts)
    table._name_roles = roles
    return Candidates(
        table=table,
        query=query,
        a=a,
        b=b,
        population=population,
        freq=freq,
        refreshed=refreshed,
        key_rows=len(members) + len(query_rows),
        profiles_read=refreshed + n,
    )


def _counts(column: str, values: set) -> Counter:
    """How many live profiles write each of these values in ``column`` (a hash join on the server)."""
    if not values:
        return Counter()
    assert column in COUNTED
    sql = (
        "SELECT k.{0}, count(*) FROM profiles_blockingkeys k JOIN unnest(%s::text[]) AS v(x) ON k.{0} = v.x "
        "GROUP BY k.{0}"
    )
    rows = _rows(sql.format(column), [sorted(values)])  # a column of COUNTED
    return Counter(dict(rows))


def _frequencies(table: RecordTable, population: int, postal_counts: Counter, city_counts: Counter):
    """``model.Frequencies.of`` and ``compare._name_roles`` of the whole population, for the values
    this table's records hold (the only ones a comparison of its pairs looks up)."""
    names = {v for v in table["first"] if v} | {v for v in table["last"] if v}
    as_first, as_last = _counts("first", names), _counts("last", names)
    first = Counter({v: n for v, n in as_first.items() if n})
    last = Counter({v: n for v, n in as_last.items() if n})
    for mine, other in ((first, last), (last, first)):
        for value in [v for v in mine if other.get(v, 0) > mine[v]]:
            mine[value] = other[value]
    counts = {"first": first, "last": last, "dob": _counts("dob", {v for v in table["dob"] if v})}
    counts["place"] = model.place_counts_of(postal_counts, city_counts)
    return model.Frequencies(counts=counts, records=population), (as_first, as_last)
