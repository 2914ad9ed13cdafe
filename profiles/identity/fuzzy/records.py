"""Profiles as comparable records: the person's name, birth date, address, emails and phones, normalised.

A ``RecordTable`` is columnar (one numpy object array per field) so that comparisons can gather both
sides of a million pairs at once and hand them to rapidfuzz's vectorised ``cpdist``. It is built from
``.values_list()`` rows read in chunks: no model instances, a few hundred bytes per profile.

Traits are read under the names shops send (Segment's spec and its common variants): ``first_name`` /
``firstName``, ``last_name`` / ``lastName``, ``name``, ``birthday`` / ``birth_date``, an ``address``
object (``street``, ``city``, ``postal_code`` / ``postalCode``, ``state``) or the same keys flat.
Emails and phones come from the profile's identifiers and from its traits: a profile whose shared
mailbox stayed with someone else (a contradiction at ingestion) still states it in its traits.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import phonenumbers

from profiles.normalize import normalize_email, normalize_phone

from .nicknames import nickname_canonical, nickname_groups

TITLES = frozenset(
    {"mr", "mrs", "ms", "miss", "mx", "dr", "prof", "sir", "dame", "rev", "madam", "mme", "herr", "frau"}
)
GENERATIONS = {"jr": "jr", "junior": "jr", "sr": "sr", "senior": "sr", "ii": "ii", "iii": "iii", "iv": "iv"}
STREET_WORDS = {
    "st": "street",
    "str": "street",
    "rd": "road",
    "ave": "avenue",
    "av": "avenue",
    "dr": "drive",
    "ln": "lane",
    "ct": "court",
    "cres": "crescent",
    "cr": "crescent",
    "pl": "place",
    "blvd": "boulevard",
    "hwy": "highway",
    "sq": "square",
    "tce": "terrace",
    "ter": "terrace",
    "pde": "parade",
    "cct": "circuit",
    "cl": "close",
    "gdns": "gardens",
    "apt": "apartment",
    "flt": "flat",
    "bldg": "building",
}
FIRST_NAME_KEYS = ("first_name", "firstName", "given_name", "givenName", "firstname")
LAST_NAME_KEYS = ("last_name", "lastName", "surname", "family_name", "familyName", "lastname")
BIRTH_KEYS = ("birthday", "birth_date", "birthDate", "date_of_birth", "dateOfBirth", "dob")
STREET_KEYS = ("street", "street1", "line1", "address1", "address_line1", "addressLine1", "street_address")
STREET2_KEYS = ("street2", "line2", "address2", "address_line2", "addressLine2")
CITY_KEYS = ("city", "town", "locality", "suburb")
POSTAL_KEYS = ("postal_code", "postalCode", "postcode", "zip", "zipcode", "zip_code", "zipCode")
STATE_KEYS = ("state", "region", "province", "county")

_NON_WORD = re.compile(r"[\W_]+")
_DIGITS = re.compile(r"\d+")
_ISO_DATE = re.compile(r"^(\d{4})-?(\d{1,2})-?(\d{1,2})")
_DMY_DATE = re.compile(r"^(\d{1,2})[./-](\d{1,2})[./-](\d{4})$")

FIELDS = (
    "first",
    "given",
    "first_key",
    "last",
    "generation",
    "dob",
    "street",
    "street_nums",
    "postal",
    "city",
    "state",
    "email",
    "email_local",
    "phone",
    "phone_kind",
)


def text(value) -> str:
    """Lower case, accents removed, anything that is not a letter or digit becomes one space."""
    if value is None or isinstance(value, (dict, list, bool)):
        return ""
    folded = unicodedata.normalize("NFKD", str(value))
    folded = "".join(c for c in folded if not unicodedata.combining(c)).casefold()
    return _NON_WORD.sub(" ", folded).strip()


def _first_of(traits: dict, keys: Iterable[str]):
    for key in keys:
        value = traits.get(key)
        if value not in (None, "") and not isinstance(value, (dict, list)):
            return value
    return None


def split_name(first_raw, last_raw, full_raw) -> tuple[str, str, str, str]:
    """(first given name, all given names without spaces, family name without spaces, generation
    suffix) from whatever was stated."""
    generation = ""

    def without_generation(tokens: list[str]) -> list[str]:
        nonlocal generation
        while tokens and tokens[-1] in GENERATIONS:
            generation = GENERATIONS[tokens.pop()]
        return tokens

    first_tokens = without_generation([t for t in text(first_raw).split() if t not in TITLES])
    last_tokens = without_generation(text(last_raw).split())
    if (not first_tokens or not last_tokens) and full_raw:  # Segment's "name": "Ann Lee"
        tokens = without_generation([t for t in text(full_raw).split() if t not in TITLES])
        if len(tokens) >= 2:  # given names first, the family name last (middle names are not compared)
            first_tokens = first_tokens or tokens[:-1]
            last_tokens = last_tokens or tokens[-1:]
        elif not first_tokens and not last_tokens:
            first_tokens = tokens
    # a middle name given with the first name is not compared: the first given name is the one people use
    first = first_tokens[0] if first_tokens else ""
    return first, "".join(first_tokens), "".join(last_tokens), generation


def birth_date(value) -> str:
    """YYYYMMDD, or '' when there is no date. Out-of-range parts are kept (a typo still compares)."""
    if value in (None, "") or isinstance(value, (dict, list, bool)):
        return ""
    raw = str(value).strip()
    match = _ISO_DATE.match(raw)
    if match:
        year, month, day = match.groups()
    else:
        match = _DMY_DATE.match(raw)
        if not match:
            return ""
        day, month, year = match.groups()
    digits = f"{int(year):04d}{int(month):02d}{int(day):02d}"
    return "" if int(digits) == 0 or int(year) < 1800 else digits


def street_text(value) -> str:
    tokens = text(value).split()
    return " ".join(STREET_WORDS.get(t, t) if n else t for n, t in enumerate(tokens))


def postal_text(value) -> str:
    return text(value).replace(" ", "")


def phone_kind(e164: str) -> str:
    """'m' mobile, 'f' landline, 'u' either or unknown: a landline and a mobile are not compared.

    The type is read once per leading digits (country code and the first national digits decide
    it in practice): asking libphonenumber for each of 100,000 numbers would take seconds."""
    prefix = e164[:8]
    if prefix not in _PHONE_KINDS:
        _PHONE_KINDS[prefix] = _phone_kind(e164)
    return _PHONE_KINDS[prefix]


_PHONE_KINDS: dict[str, str] = {}


def _phone_kind(e164: str) -> str:
    try:
        kind = phonenumbers.number_type(phonenumbers.parse(e164, None))
    except phonenumbers.NumberParseException:
        return "u"
    if kind == phonenumbers.PhoneNumberType.MOBILE:
        return "m"
    if kind == phonenumbers.PhoneNumberType.FIXED_LINE:
        return "f"
    return "u"


def email_local(email: str) -> str:
    return re.sub(r"[\W_]+", "", email.rpartition("@")[0]) if email else ""


@dataclass
class Record:
    """One person as the matcher sees them (a row of a RecordTable)."""

    first: str = ""
    given: str = ""  # all given names, no spaces (to catch first and last name swapped)
    last: str = ""
    generation: str = ""
    dob: str = ""
    street: str = ""
    postal: str = ""
    city: str = ""
    state: str = ""
    emails: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()


def record_from(traits: dict, emails: Iterable[str] = (), phones: Iterable[str] = ()) -> Record:
    """A record from a profile's traits and (already normalised) identifier values."""
    traits = traits if isinstance(traits, dict) else {}
    first, given, last, generation = split_name(
        _first_of(traits, FIRST_NAME_KEYS), _first_of(traits, LAST_NAME_KEYS), traits.get("name")
    )
    address = traits.get("address")
    if isinstance(address, str):
        address = {"street": address}
    if not isinstance(address, dict):
        address = {}
    street = _first_of(address, STREET_KEYS) or _first_of(traits, STREET_KEYS)
    street2 = _first_of(address, STREET2_KEYS) or _first_of(traits, STREET2_KEYS)
    found_emails = list(dict.fromkeys(emails))
    stated = _first_of(traits, ("email",))
    if stated and str(stated).strip().lower() not in found_emails:  # else it is an identifier already
        normalised = normalize_email(str(stated))
        if normalised and normalised not in found_emails:
            found_emails.insert(0, normalised)
    found_phones = list(dict.fromkeys(phones))
    stated = _first_of(traits, ("phone", "phone_number", "phoneNumber", "mobile"))
    if stated and "+" + "".join(c for c in str(stated) if c.isdigit()) not in found_phones:
        normalised = normalize_phone(str(stated))
        if normalised and normalised not in found_phones:
            found_phones.insert(0, normalised)
    return Record(
        first=first,
        given=given,
        last=last,
        generation=generation,
        dob=birth_date(_first_of(traits, BIRTH_KEYS)),
        street=street_text(" ".join(str(s) for s in (street, street2) if s)),
        postal=postal_text(_first_of(address, POSTAL_KEYS) or _first_of(traits, POSTAL_KEYS)),
        city=text(_first_of(address, CITY_KEYS) or _first_of(traits, CITY_KEYS)),
        state=text(_first_of(address, STATE_KEYS) or _first_of(traits, STATE_KEYS)),
        emails=tuple(found_emails),
        phones=tuple(found_phones),
    )


@dataclass
class RecordTable:
    """Records column by column; ``ids[i]`` is the profile behind row i."""

    ids: list
    columns: dict[str, np.ndarray]
    emails: list[tuple[str, ...]]
    phones: list[tuple[str, ...]]
    first_groups: list[frozenset]
    identifier_counts: list[dict[str, int]] = field(default_factory=list)
    # place names written with one postal code somewhere in the data (Didsbury / Manchester / Greater
    # Manchester for M20 1SX): one area named at different levels; see ``place_aliases``
    places: dict[str, frozenset] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]

    @classmethod
    def build(cls, ids: list, records: list[Record], identifier_counts: list[dict] | None = None) -> RecordTable:
        cols: dict[str, list] = {name: [] for name in FIELDS}
        for r in records:
            cols["first"].append(r.first)
            cols["given"].append(r.given)
            cols["first_key"].append(nickname_canonical(r.first) if r.first else "")
            cols["last"].append(r.last)
            cols["generation"].append(r.generation)
            cols["dob"].append(r.dob)
            cols["street"].append(r.street)
            cols["street_nums"].append(" ".join(sorted(set(_DIGITS.findall(r.street)))))
            cols["postal"].append(r.postal)
            cols["city"].append(r.city)
            cols["state"].append(r.state)
            email = r.emails[0] if r.emails else ""
            cols["email"].append(email)
            cols["email_local"].append(email_local(email))
            phone = r.phones[0] if r.phones else ""
            cols["phone"].append(phone)
            cols["phone_kind"].append(phone_kind(phone) if phone else "")
        columns = {name: _object_array(values) for name, values in cols.items()}
        # helpers that let compare.py stay vectorised
        groups = [nickname_groups(r.first) for r in records]
        columns["first_multi"] = np.array([len(g) > 1 for g in groups], dtype=bool)
        columns["initial"] = _object_array([r.first[:1] for r in records])
        for name in ("first", "last", "postal", "email_local"):
            columns[f"{name}_len"] = np.array([len(v) for v in cols[name]], dtype=np.int32)
        columns["dob_swapped"] = _object_array([d[:4] + d[6:8] + d[4:6] if d else "" for d in cols["dob"]])
        columns["n_emails"] = np.array([len(r.emails) for r in records], dtype=np.int32)
        columns["n_phones"] = np.array([len(r.phones) for r in records], dtype=np.int32)
        return cls(
            ids=list(ids),
            columns=columns,
            emails=[r.emails for r in records],
            phones=[r.phones for r in records],
            first_groups=groups,
            identifier_counts=identifier_counts or [{} for _ in records],
            places=place_aliases(cols["postal"], cols["city"]),
        )

    def record(self, i: int) -> dict:
        """Row i as plain values (for evidence shown to reviewers)."""
        return {
            "first_name": self.columns["first"][i],
            "last_name": self.columns["last"][i],
            "birth_date": _date_display(self.columns["dob"][i]),
            "street": self.columns["street"][i],
            "postal_code": self.columns["postal"][i],
            "city": self.columns["city"][i],
            "emails": list(self.emails[i]),
            "phones": list(self.phones[i]),
        }


PLACE_POSTAL_MIN = 4  # shorter codes (an outward part, a region's digits) name too large an area
PLACE_NAMES_MAX = 8  # a postal code written with more place names than this is noise, not a place


def place_aliases(postals: list[str], cities: list[str]) -> dict[str, frozenset]:
    """Per place name, the other place names written with the same postal code in some record, and
    per postal code the place names written with it (``"#" + code``). People name one place at
    different levels (district, town, county) and shops do not normalise it; the postal code beside
    it ties the names together, learnt from the data itself (no gazetteer)."""
    by_code: dict[str, set] = defaultdict(set)
    for postal, city in zip(postals, cities, strict=True):
        if city and len(postal) >= PLACE_POSTAL_MIN:
            by_code[postal].add(city)
    aliases: dict[str, set] = defaultdict(set)
    for code, names in by_code.items():
        if len(names) > PLACE_NAMES_MAX:
            continue
        aliases["#" + code] |= names
        if len(names) > 1:
            for name in names:
                aliases[name] |= names - {name}
    return {name: frozenset(others) for name, others in aliases.items()}


def _object_array(values: list) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def _date_display(digits: str) -> str:
    return f"{digits[:4]}-{digits[4:6]}-{digits[6:]}" if digits else ""


# --- loading from the database ---------------------------------------------------------------------


def records_load(
    *,
    chunk_size: int = 5000,
    progress: Callable[[int, int], None] | None = None,
    only: set | None = None,
) -> RecordTable:
    """Every live profile (or the live ones among ``only``) as a record, read in chunks (values only)."""
    from django.db.models import Count

    from profiles.models import Identifier, Profile

    contacts: dict = defaultdict(lambda: ([], []))
    identifiers = Identifier.objects.filter(profile__merged_into__isnull=True)
    live = Profile.objects.filter(merged_into__isnull=True)
    if only is not None:
        identifiers = identifiers.filter(profile_id__in=list(only))
        live = live.filter(pk__in=list(only))
    contact_rows = (
        identifiers.filter(kind__in=("email", "phone"))
        .order_by("profile_id", "created_at", "id")
        .values_list("profile_id", "kind", "value")
    )
    for pid, kind, value in contact_rows.iterator(chunk_size=20000):
        contacts[pid][0 if kind == "email" else 1].append(value)
    counts: dict = defaultdict(dict)  # identifiers per kind, for the merge guard's limits
    per_kind = identifiers.order_by().values_list("profile_id", "kind").annotate(n=Count("id"))
    for pid, kind, n in per_kind.iterator(chunk_size=20000):
        counts[pid][kind] = n
    total = live.count()
    ids: list = []
    records: list[Record] = []
    rows = live.order_by("first_seen_at", "created_at", "id").values_list("id", "traits")
    for pid, traits in rows.iterator(chunk_size=chunk_size):
        emails, phones = contacts.get(pid, ((), ()))
        ids.append(pid)
        records.append(record_from(traits, emails, phones))
        if progress and len(ids) % chunk_size == 0:
            progress(len(ids), total)
    if progress:
        progress(len(ids), total)
    return RecordTable.build(ids, records, [counts.get(pid, {}) for pid in ids])
