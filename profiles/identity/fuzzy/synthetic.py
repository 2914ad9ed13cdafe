"""Generated shop customers with known duplicates, for tests and the 100k benchmark.

People come with what real shops see: common and rare names (Zipf-distributed), households that
share an address and a landline (spouses, children, twins with one birth date, a father and son with
one name), and duplicate records of one person carrying the changes of real life: a typo, a
nickname, a second email, a landline instead of a mobile, a move, a married name, missing fields.
Rows follow the identity CSV of PROTOCOL.md (I); ``entity_id`` is the truth.
"""

from __future__ import annotations

from itertools import pairwise

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


def _email(rng: np.random.Generator, first: str, last: str, used: set | None = None) -> str:
    """A mailbox for this person; with ``used``, never one another person already has (two Harry
    Smiths do not share harry.smith@gmail.com: one of them gets a number, as mail providers insist)."""
    email = _email_once(rng, first, last)
    while used is not None and email in used:
        local, domain = email.split("@")
        email = f"{local}{int(rng.integers(1, 999))}@{domain}"
    if used is not None:
        used.add(email)
    return email


def _email_once(rng: np.random.Generator, first: str, last: str) -> str:
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
    used: set[str] = set()
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
            "email": _email(rng, first, last, used),
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
                person["email"] if rng.random() < 0.15 else _email(rng, other["first"], other["last"], used)
            )  # a family mailbox
            persons.append(other)
    rows: list[dict] = []
    for entity, person in enumerate(persons):
        copies = 1
        while rng.random() < (duplicate_rate if copies == 1 else 0.25) and copies < 5:
            copies += 1
        for copy in range(copies):
            rows.append(_record(rng, person, entity, copy, used))
    order = rng.permutation(len(rows))
    return [rows[i] for i in order]


def _record(rng: np.random.Generator, person: dict, entity: int, copy: int, used: set | None = None) -> dict:
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
            email = _email(rng, first, last, used)
        if rng.random() < 0.35:
            email = _email(rng, first, last, used)  # a second email
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


# --- the two kinds of file of the identity-at-scale benchmark (issue 17) ------------------------------
#
# ``many_records``: registers of people with many records each (a person seen 1 to 30 times), every
# field noisy: names transliterated from other scripts (Muhammad / Mohammed / Mohamed), initials,
# typos, first and last name swapped, birth dates missing, approximate (the year only, stored as
# 1 January; a year off; a digit or day and month wrong), places named at different levels (a
# district, the city or the region; a full postal code or only its outward part), moves. Families
# (one surname, one address, similar given names) are the people that must stay apart.
#
# ``shops``: shop customers (``people`` above) with Jr./Sr. on fathers and sons who share a name.

TRANSLITERATED_GIVEN = (
    ("muhammad", "mohammed", "mohamed", "mohammad", "muhammed"),
    ("aleksandr", "alexander", "aleksander", "oleksandr"),
    ("sergei", "sergey", "serguei", "serhiy"),
    ("yuri", "yury", "iouri", "yuriy"),
    ("dmitri", "dmitry", "dmitriy"),
    ("natalia", "natalya", "nataliya", "natalja"),
    ("olga", "olha"),
    ("tatiana", "tatyana", "tatjana"),
    ("ekaterina", "yekaterina", "katerina"),
    ("mikhail", "mihail", "mykhailo"),
    ("andrei", "andrey", "andrii"),
    ("yusuf", "yousef", "youssef", "yousuf"),
    ("ahmed", "ahmad", "ahmet"),
    ("hussein", "husain", "hussain", "husein"),
    ("fatima", "fatimah", "fatma"),
    ("aisha", "ayesha", "aysha"),
    ("yevgeny", "evgeny", "evgeniy", "yevhen"),
    ("nikolai", "nikolay", "mykola"),
    ("anastasia", "anastasiya", "nastassja"),
    ("jurgen", "juergen", "jürgen"),
    ("soren", "søren", "soeren"),
    ("zoltan", "zoltán"),
    ("jose", "josé"),
    ("francois", "françois"),
    ("wei", "wai"),
    ("xiaoming", "hsiao-ming", "xiao-ming"),
    ("jiho", "ji-ho"),
    ("minh", "minh"),
    ("priya", "pria"),
    ("rajesh", "rajeshwar"),
    ("olivia",),
    ("emma",),
    ("grace",),
    ("sarah", "sara"),
    ("catherine", "katherine", "kathryn"),
    ("elizabeth",),
    ("john", "jon"),
    ("james",),
    ("william",),
    ("thomas",),
    ("david",),
    ("peter", "pieter", "piotr", "pyotr"),
    ("michael", "michal", "mikael"),
    ("joseph", "josef", "jozef"),
    ("anna", "ana", "hanna"),
    ("maria", "mariya", "marija"),
    ("helena", "elena", "jelena", "yelena"),
    ("george", "georgi", "jerzy", "yuri"),
)
TRANSLITERATED_FAMILY = (
    ("ivanov", "ivanoff", "iwanow"),
    ("petrov", "petroff", "pietrow"),
    ("smirnov", "smirnoff"),
    ("kuznetsov", "kuznetzov", "kusnezow"),
    ("popov", "popoff", "popow"),
    ("tchaikovsky", "chaykovsky", "tschaikowsky", "czajkowski"),
    ("khrushchev", "khrushchov", "chruschtschow"),
    ("shevchenko", "shevchenco", "schewtschenko"),
    ("zhang", "chang", "cheung"),
    ("wang", "wong"),
    ("li", "lee"),
    ("chen", "chan"),
    ("liu", "lau", "lew"),
    ("huang", "wong", "hwang"),
    ("nguyen", "nguyễn", "ngyuen"),
    ("tran", "trần"),
    ("kim", "gim"),
    ("park", "pak", "bak"),
    ("abdullah", "abdalla", "abdallah"),
    ("rahman", "rehman", "rahmann"),
    ("hosseini", "husseini", "hosseiny"),
    ("mohammadi", "mohammady", "muhammadi"),
    ("khan", "kahn"),
    ("muller", "mueller", "müller"),
    ("schmidt", "schmitt", "schmid"),
    ("sorensen", "sørensen", "soerensen"),
    ("jovanovic", "jovanović", "yovanovich"),
    ("novak", "nowak"),
    ("kowalski", "kovalsky"),
    ("garcia", "garcía"),
    ("smith",),
    ("jones",),
    ("taylor",),
    ("brown",),
    ("wilson",),
    ("walker",),
    ("thompson", "thomson"),
    ("macdonald", "mcdonald"),
    ("oconnor", "o'connor", "o connor"),
    ("white",),
    ("green", "greene"),
    ("martin",),
    ("patel",),
    ("singh",),
    ("hughes",),
    ("wright",),
    ("robinson",),
    ("davies", "davis"),
    ("evans",),
    ("roberts",),
)
# region > city > districts (each with a postal area): places named at one of these levels
PLACES = (
    ("greater london", "london", (("camden", "NW1"), ("hackney", "E8"), ("lambeth", "SE11"), ("ealing", "W5"))),
    ("west yorkshire", "leeds", (("headingley", "LS6"), ("chapel allerton", "LS7"), ("armley", "LS12"))),
    ("west yorkshire", "bradford", (("shipley", "BD18"), ("manningham", "BD8"))),
    ("greater manchester", "manchester", (("didsbury", "M20"), ("rusholme", "M14"), ("ancoats", "M4"))),
    ("greater manchester", "salford", (("eccles", "M30"), ("swinton", "M27"))),
    ("west midlands", "birmingham", (("edgbaston", "B15"), ("moseley", "B13"), ("aston", "B6"))),
    ("west midlands", "coventry", (("earlsdon", "CV5"), ("foleshill", "CV6"))),
    ("avon", "bristol", (("clifton", "BS8"), ("bedminster", "BS3"), ("easton", "BS5"))),
    ("merseyside", "liverpool", (("anfield", "L4"), ("toxteth", "L8"), ("wavertree", "L15"))),
    ("tyne and wear", "newcastle", (("jesmond", "NE2"), ("heaton", "NE6"))),
    ("lothian", "edinburgh", (("leith", "EH6"), ("morningside", "EH10"))),
    ("south glamorgan", "cardiff", (("canton", "CF5"), ("roath", "CF24"))),
)


def _records_per_person(rng: np.random.Generator, mean_extra: float) -> int:
    """1 + a geometric number of further records, heavy enough that some people have 20-30."""
    return int(min(1 + rng.geometric(1.0 / (1.0 + mean_extra)) - 1, 30))


def _mangle_name(rng: np.random.Generator, variants: tuple[str, ...], canonical: str, p_variant: float) -> str:
    name = variants[int(rng.integers(0, len(variants)))] if rng.random() < p_variant else canonical
    roll = rng.random()
    if roll < 0.12:
        name = _typo(rng, name)
    elif roll < 0.15 and len(name) > 5:
        name = name[: int(rng.integers(3, len(name) - 1))]  # cut short (a full form field)
    return name


def _place(rng: np.random.Generator) -> dict:
    region, city, districts = PLACES[int(rng.integers(0, len(PLACES)))]
    district, area = districts[int(rng.integers(0, len(districts)))]
    letters = "ABDEFGHJLNPQRSTUWXYZ"
    postal = f"{area} {int(rng.integers(1, 10))}{letters[int(rng.integers(0, 20))]}{letters[int(rng.integers(0, 20))]}"
    street = f"{int(rng.integers(1, 200))} {STREETS[int(rng.integers(0, len(STREETS)))]}"
    return {"region": region, "city": city, "district": district, "postal": postal, "street": street}


def many_records(n_records: int, *, seed: int = 0, mean_extra: float = 3.0, family_rate: float = 0.2) -> list[dict]:
    """About ``n_records`` rows of the identity CSV: people with many noisy records each (see above)."""
    rng = np.random.default_rng(seed)
    used: set[str] = set()
    rows: list[dict] = []
    entity = 0
    while len(rows) < n_records:
        family = [_many_person(rng, None, used)]
        if rng.random() < family_rate:  # spouses, siblings, a parent: one surname and address, other people
            for _ in range(int(rng.integers(1, 4))):
                family.append(_many_person(rng, family[0], used))
        for person in family:
            for copy in range(_records_per_person(rng, mean_extra)):
                rows.append(_many_record(rng, person, entity, copy))
            entity += 1
    rows = rows[:n_records]
    order = rng.permutation(len(rows))
    return [rows[i] for i in order]


def _many_person(rng: np.random.Generator, relative: dict | None, used: set) -> dict:
    given = TRANSLITERATED_GIVEN[int(rng.integers(0, len(TRANSLITERATED_GIVEN)))]
    family = TRANSLITERATED_FAMILY[int(rng.integers(0, len(TRANSLITERATED_FAMILY)))]
    if rng.random() < 0.5:  # half the people have the common (Zipf-distributed) names of the shop files
        first = _zipf_choice(rng, FEMALE + MALE)[0]
        given = (first, NICKNAMES[first]) if first in NICKNAMES else (first,)
        family = (_zipf_choice(rng, LAST)[0],)
    year = int(rng.integers(1930, 2006))
    person = {
        "given": given,
        "first": given[int(rng.integers(0, len(given)))],
        "family": family,
        "last": family[int(rng.integers(0, len(family)))],
        "dob": f"{year}-{int(rng.integers(1, 13)):02d}-{int(rng.integers(1, 29)):02d}",
        "places": [_place(rng) for _ in range(int(rng.integers(1, 4)))],  # where they lived
        "email": "",
        "phone": _phone(rng, MOBILE_PREFIX, 6) if rng.random() < 0.5 else "",
    }
    if relative is not None:
        person.update(family=relative["family"], last=relative["last"], places=list(relative["places"]))
        while person["given"] == relative["given"] or person["first"] in relative["given"]:
            person["given"] = TRANSLITERATED_GIVEN[int(rng.integers(0, len(TRANSLITERATED_GIVEN)))]
            person["first"] = person["given"][0]
        if rng.random() < 0.1:  # twins: one birth date
            person["dob"] = relative["dob"]
    person["email"] = _email(rng, person["first"], person["last"], used) if rng.random() < 0.6 else ""
    return person


def _many_record(rng: np.random.Generator, person: dict, entity: int, copy: int) -> dict:
    first = _mangle_name(rng, person["given"], person["first"], 0.45)
    last = _mangle_name(rng, person["family"], person["last"], 0.35)
    if rng.random() < 0.08:
        first = first[0] + ("." if rng.random() < 0.5 else "")  # an initial
    if rng.random() < 0.06:
        first, last = last, first  # swapped in the form
    dob = person["dob"]
    roll = rng.random()
    if roll < 0.3:
        dob = ""
    elif roll < 0.4:
        dob = dob[:4] + "-01-01"  # only the year was known
    elif roll < 0.47:
        dob = f"{int(dob[:4]) + (1 if rng.random() < 0.5 else -1)}{dob[4:]}"  # a year off (from an age)
    elif roll < 0.52:
        dob = f"{dob[:4]}-{dob[8:10]}-{dob[5:7]}" if int(dob[8:10]) <= 12 else _typo_digits(rng, dob)
    elif roll < 0.56:
        dob = _typo_digits(rng, dob)
    place = person["places"][0 if rng.random() < 0.6 else int(rng.integers(0, len(person["places"])))]
    level = rng.random()
    city = place["city"] if level < 0.55 else place["district"] if level < 0.75 else place["region"]
    city = "" if rng.random() < 0.1 else city
    postal_roll = rng.random()
    postal = place["postal"] if postal_roll < 0.45 else place["postal"].split()[0] if postal_roll < 0.6 else ""
    street = place["street"] if rng.random() < 0.4 else ""
    if street and rng.random() < 0.3:
        street = street.replace("road", "rd").replace("street", "st").replace("avenue", "ave")
    return {
        "record_id": f"m{entity}-{copy}",
        "entity_id": str(entity),
        "first_name": first.title(),
        "last_name": last.title(),
        "email": person["email"] if person["email"] and rng.random() < 0.25 else "",
        "phone": person["phone"] if person["phone"] and rng.random() < 0.25 else "",
        "street": street.title(),
        "city": city.title(),
        "postal_code": postal,
        "state": "",
        "birth_date": dob,
    }


def _typo_digits(rng: np.random.Generator, dob: str) -> str:
    positions = [k for k, c in enumerate(dob) if c.isdigit() and k >= 2]
    k = positions[int(rng.integers(0, len(positions)))]
    return dob[:k] + str(int(rng.integers(0, 10))) + dob[k + 1 :]


def shops(n_entities: int, *, seed: int = 0) -> list[dict]:
    """Shop customers (``people``) where fathers and sons who share a name sometimes carry Jr./Sr."""
    rows = people(n_entities, seed=seed, duplicate_rate=0.35, household_rate=0.2)
    by_entity: dict[str, list[dict]] = {}
    for row in rows:
        by_entity.setdefault(row["entity_id"], []).append(row)
    rng = np.random.default_rng(seed + 1)
    # people() appends a son right after his father: consecutive entities with one first and last name
    ids = sorted(by_entity, key=int)
    for father, son in pairwise(ids):
        f, s = by_entity[father][0], by_entity[son][0]
        same = f["first_name"] and f["first_name"] == s["first_name"] and f["last_name"] == s["last_name"]
        if same and f["street"] == s["street"] and f["birth_date"][:4] < s["birth_date"][:4]:
            for rows_of, suffix in ((by_entity[father], "Sr."), (by_entity[son], "Jr.")):
                for row in rows_of:
                    if rng.random() < 0.6:
                        row["last_name"] = f"{row['last_name']} {suffix}"
    return rows


GENERATORS = {"many_records": many_records, "shops": shops}


def write_csv(path, rows: list[dict]) -> None:
    import csv

    columns = ("record_id", "entity_id", *COLUMNS)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in columns})


COLUMNS = ("first_name", "last_name", "email", "phone", "street", "city", "postal_code", "state", "birth_date")
