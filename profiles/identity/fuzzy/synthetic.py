"""Generated shop customers with known duplicates, for tests and the 100k benchmark.

People come with what real shops see: common and rare names (Zipf-distributed), households that
share an address and a landline (spouses, children, twins with one birth date, a father and son with
one name), and duplicate records of one person carrying the changes of real life: a typo, a
nickname, a second email, a landline instead of a mobile, a move, a married name, missing fields.
Rows follow the identity CSV of PROTOCOL.md (I); ``entity_id`` is the truth.
"""

from __future__ import annotations

import numpy as np

from .nicknames import same_person_names


def _words(text: str, sep: str | None = None) -> list[str]:
    return text.split(sep)


FEMALE = _words(
    "olivia emma amelia isla ava mia sophia grace lily freya emily ivy ella rosie evie florence poppy charlotte "
    "sarah susan margaret elizabeth katherine rebecca jennifer victoria samantha patricia deborah hannah lucy "
    "chloe jessica megan laura rachel helen karen julie alison claire joanne nicola"
)
MALE = _words(
    "oliver george noah arthur muhammad leo harry oscar archie henry theodore freddie jack charlie thomas "
    "james william robert john michael david richard daniel matthew andrew christopher joseph anthony steven "
    "paul mark peter stephen edward benjamin samuel alexander jonathan nicholas timothy philip"
)
LAST = _words(
    "smith jones williams taylor brown davies evans wilson thomas johnson roberts robinson thompson wright "
    "walker white edwards hughes green hall lewis harris clarke patel jackson wood turner martin cooper hill "
    "ward morris moore clark lee king baker harrison morgan allen james scott phillips watson davis parker "
    "price bennett young griffiths mitchell kelly cook carter richardson bailey collins bell shaw murphy "
    "miller cox richards khan marshall anderson simpson ellis adams singh begum wilkinson foster chapman "
    "powell webb rogers gray mason ali hunt hussain campbell matthews owen palmer holmes mills barnes knight "
    "lloyd butler russell barker fisher stevens jenkins murray dixon harvey graham pearson ahmed fletcher "
    "walsh kaur gibson howard andrews stewart elliott reynolds saunders payne fox ford pearce day brooks "
    "west lawrence cole atkinson bradley spencer gill dawson ball burton o'brien watts rose booth perry "
    "ryan grant wells armstrong francis rees hayes hart hudson newman barrett webster hunter gregory carr "
    "lowe page marsh riley dunn woods parsons berry stone reid holland hawkins harding porter robertson "
    "newton oliver reed kennedy williamson bird gardner shah dean lane cooke bates henderson parry burgess "
    "bishop walton burns nicholson shepherd ross cross long freeman warren nicholls hamilton byrne sutton "
    "mcdonald yates hodgson robson curtis hopkins o'connor harper coleman watkins moss mccarthy chambers "
    "wojciechowski abernathy featherstonehaugh quigley zielinski okonkwo"
)
NICKNAMES = {
    "robert": "bob",
    "william": "bill",
    "elizabeth": "liz",
    "margaret": "peggy",
    "katherine": "kate",
    "thomas": "tom",
    "james": "jim",
    "richard": "rick",
    "michael": "mike",
    "alexander": "alex",
    "jennifer": "jenny",
    "rebecca": "becky",
    "samuel": "sam",
    "samantha": "sam",
    "christopher": "chris",
    "anthony": "tony",
    "edward": "ted",
    "matthew": "matt",
    "benjamin": "ben",
    "daniel": "dan",
    "victoria": "vicky",
    "patricia": "pat",
    "nicholas": "nick",
    "jonathan": "jon",
    "timothy": "tim",
    "stephen": "steve",
    "andrew": "andy",
    "joseph": "joe",
    "deborah": "debbie",
    "philip": "phil",
}
STREETS = _words(
    "high street,station road,main street,park road,church road,church street,london road,victoria road,"
    "green lane,manor road,church lane,park avenue,the avenue,the crescent,queens road,new road,grange road,"
    "kings road,alexandra road,north street,mill lane,south street,york road,west street,albert road,"
    "elm grove,oak drive,willow close,beech avenue,maple way,cedar court,ash grove,chestnut road,"
    "holly lane,rowan close,birch road,hawthorn drive,laurel gardens,meadow view,orchard way",
    sep=",",
)
CITIES = (
    ("london", "SW1A", "E1", "N7", "SE15", "W3"),
    ("leeds", "LS1", "LS6", "LS11"),
    ("manchester", "M1", "M14", "M20"),
    ("birmingham", "B1", "B15", "B29"),
    ("bristol", "BS1", "BS7", "BS16"),
    ("york", "YO1", "YO10", "YO24"),
    ("norwich", "NR1", "NR2", "NR4"),
    ("exeter", "EX1", "EX2", "EX4"),
    ("derby", "DE1", "DE22", "DE23"),
    ("bath", "BA1", "BA2"),
)
DOMAINS = ("gmail.com", "yahoo.co.uk", "hotmail.com", "outlook.com", "icloud.com", "btinternet.com", "example.org")
LANDLINE_PREFIX = ("+44113496", "+44207946", "+44161496", "+44117496", "+44121496")
MOBILE_PREFIX = ("+447911", "+447912", "+447700", "+447723", "+447890")


def _zipf_choice(rng: np.random.Generator, values: list[str], size: int = 1) -> list[str]:
    ranks = np.arange(1, len(values) + 1, dtype=np.float64)
    weights = 1.0 / ranks
    return list(rng.choice(values, size=size, p=weights / weights.sum()))


def _typo(rng: np.random.Generator, word: str) -> str:
    if len(word) < 3:
        return word
    k = int(rng.integers(1, len(word) - 1))
    kind = rng.integers(0, 3)
    if kind == 0:  # substitution
        return word[:k] + "abcdefghijklmnopqrstuvwxyz"[int(rng.integers(0, 26))] + word[k + 1 :]
    if kind == 1:  # transposition
        return word[: k - 1] + word[k] + word[k - 1] + word[k + 1 :]
    return word[:k] + word[k + 1 :]  # deletion


def _address(rng: np.random.Generator) -> dict:
    city = CITIES[int(rng.integers(0, len(CITIES)))]
    district = city[1 + int(rng.integers(0, len(city) - 1))]
    return {
        "street": f"{int(rng.integers(1, 200))} {STREETS[int(rng.integers(0, len(STREETS)))]}",
        "city": city[0],
        "postal_code": f"{district} {int(rng.integers(1, 10))}{'ABDEFGHJLNPQRSTUWXYZ'[int(rng.integers(0, 20))]}"
        f"{'ABDEFGHJLNPQRSTUWXYZ'[int(rng.integers(0, 20))]}",
    }


def _phone(rng: np.random.Generator, prefixes: tuple[str, ...], digits: int) -> str:
    return prefixes[int(rng.integers(0, len(prefixes)))] + "".join(str(d) for d in rng.integers(0, 10, digits))


def _email(rng: np.random.Generator, first: str, last: str) -> str:
    last = last.replace("'", "")
    style = int(rng.integers(0, 4))
    local = (
        f"{first}.{last}",
        f"{first[0]}{last}{int(rng.integers(1, 99))}",
        f"{first}{int(rng.integers(60, 99))}",
        f"{_zipf_choice(rng, STREETS)[0].split()[0]}{last[:3]}{int(rng.integers(100, 999))}",
    )[style]
    return f"{local}@{DOMAINS[int(rng.integers(0, len(DOMAINS)))]}"


def _date(rng: np.random.Generator, low: int, high: int) -> str:
    return f"{int(rng.integers(low, high))}-{int(rng.integers(1, 13)):02d}-{int(rng.integers(1, 29)):02d}"


def people(n_entities: int, *, seed: int = 0, duplicate_rate: float = 0.3, household_rate: float = 0.15) -> list[dict]:
    """Rows of the identity CSV: ``n_entities`` people, some with duplicate records."""
    rng = np.random.default_rng(seed)
    persons: list[dict] = []
    while len(persons) < n_entities:
        female = bool(rng.random() < 0.5)
        first = _zipf_choice(rng, FEMALE if female else MALE)[0]
        last = _zipf_choice(rng, LAST)[0]
        person = {
            "first": first,
            "last": last,
            "female": female,
            "dob": _date(rng, 1940, 2006),
            "address": _address(rng),
            "email": _email(rng, first, last),
            "mobile": _phone(rng, MOBILE_PREFIX, 6),
            "landline": _phone(rng, LANDLINE_PREFIX, 4) if rng.random() < 0.3 else "",
        }
        persons.append(person)
        if rng.random() < household_rate and len(persons) < n_entities:
            kind = rng.random()
            other_female = bool(rng.random() < 0.5)
            other = dict(person)
            other.update(
                female=other_female,
                first=_zipf_choice(rng, FEMALE if other_female else MALE)[0],
                dob=_date(rng, 1940, 2006),
                mobile=_phone(rng, MOBILE_PREFIX, 6),
                landline=person["landline"] or _phone(rng, LANDLINE_PREFIX, 4),
            )
            person["landline"] = other["landline"]
            if kind < 0.04:  # twins: one birth date
                other["dob"] = person["dob"]
            elif kind < 0.08 and not female:  # father and son with one name
                other.update(first=person["first"], female=False, dob=_date(rng, 1985, 2006))
            while other["dob"] == person["dob"] and same_person_names(other["first"], person["first"]):
                other["first"] = _zipf_choice(rng, FEMALE if other_female else MALE)[0]
            other["email"] = (
                person["email"] if rng.random() < 0.15 else _email(rng, other["first"], other["last"])
            )  # a family mailbox
            persons.append(other)
    rows: list[dict] = []
    for entity, person in enumerate(persons):
        copies = 1
        while rng.random() < (duplicate_rate if copies == 1 else 0.25) and copies < 5:
            copies += 1
        for copy in range(copies):
            rows.append(_record(rng, person, entity, copy))
    order = rng.permutation(len(rows))
    return [rows[i] for i in order]


def _record(rng: np.random.Generator, person: dict, entity: int, copy: int) -> dict:
    first, last, dob = person["first"], person["last"], person["dob"]
    address, email = dict(person["address"]), person["email"]
    phone = person["mobile"] if rng.random() < 0.8 else (person["landline"] or person["mobile"])
    if copy:
        if rng.random() < 0.12:
            first = _typo(rng, first)
        elif rng.random() < 0.15 and first in NICKNAMES:
            first = NICKNAMES[first]
        if rng.random() < 0.12:
            last = _typo(rng, last)
        if person["female"] and rng.random() < 0.08:
            last = _zipf_choice(rng, LAST)[0]  # married name
            email = _email(rng, first, last)
        if rng.random() < 0.35:
            email = _email(rng, first, last)  # a second email
        if rng.random() < 0.12:
            address = _address(rng)  # moved
            phone = person["mobile"]
        elif rng.random() < 0.1:
            address["street"] = _typo(rng, address["street"])
        if rng.random() < 0.15 and person["landline"]:
            phone = person["landline"]  # a landline instead of the mobile
        if rng.random() < 0.05:
            dob = dob[:3] + str(int(rng.integers(0, 10))) + dob[4:]
    drop = rng.random(4)
    return {
        "record_id": f"r{entity}-{copy}",
        "entity_id": str(entity),
        "first_name": first.title() if drop[0] > 0.03 else "",
        "last_name": last.title(),
        "email": email if drop[1] > 0.15 else "",
        "phone": phone if drop[2] > 0.2 else "",
        "street": address["street"].title(),
        "city": address["city"].title(),
        "postal_code": address["postal_code"],
        "state": "",
        "birth_date": dob if drop[3] > 0.3 else "",
    }
