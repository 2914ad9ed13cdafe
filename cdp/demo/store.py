"""The demo store: a simulated shop's event history, sent through the real ingestion path.

Why a simulator and not fixtures: demos, segment and recommendation work and identity resolution
all need data with the shape of real traffic — sessions at local hours on phones, laptops and
tablets, searches, abandoned carts, campaigns, the same person on two devices, a second account
with a typo'd name, a household sharing a landline, a family sharing a mailbox. Every call is a
Segment-style payload passed through ``clean_event`` and ``events_ingest`` exactly as the tracking
API does, so the demo exercises the same identity and trait code as production traffic.

Determinism: the plan of customers comes from ``random.Random(seed)``; each customer's sessions
from a ``Random`` seeded with (seed, customer number); message ids are uuid5 of (seed, customer,
event number). Re-running with the same seed stores nothing twice (ingestion skips known
messageIds). Only timestamps move with ``now``.

The catalog does not depend on the seed: ``demo_catalog()`` is the one list of products the events
refer to (``product_id`` equals ``sku``), so other apps can create their products from it.
"""

from __future__ import annotations

import math
import random
import time
import unicodedata
import uuid
from collections import Counter
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from urllib.parse import quote_plus
from zoneinfo import ZoneInfo

import phonenumbers
from django.db.models import Count
from django.utils import timezone
from tqdm import tqdm

from profiles.models import Event, MatchCandidate, Merge, Profile, Source
from profiles.normalize import normalize_email, normalize_phone
from profiles.services import SourceNameTaken, events_ingest, source_create, traits_recompute_all
from profiles.tracking.validate import clean_event

SOURCE_NAME = "demo-store"
STORE_URL = "https://shop.example.com"
CURRENCY = "EUR"
BATCH_SIZE = 200
SESSION_SPACING = timedelta(minutes=45)
CART_TTL = timedelta(days=7)
_VIRTUAL_LAST_DAY = datetime(2001, 1, 1)  # naive: the simulation's own local calendar
LOGIN_FLAGS = frozenset({"phone", "landline", "variant_email"})  # what a scripted login sends
_MESSAGE_NAMESPACE = uuid.UUID("6f1c2d1e-5b7a-4c7e-9a51-0d3c3f2b9e41")

# --- catalog -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _CategorySpec:
    name: str
    prefix: str
    brands: tuple[str, ...]
    adjectives: tuple[str, ...]
    items: tuple[tuple[str, int, int], ...]  # (product type, lowest price, highest price)
    attributes: dict[str, tuple[str, ...]]


_CATEGORIES: tuple[_CategorySpec, ...] = (
    _CategorySpec(
        "outdoor",
        "OUT",
        ("Trailhead", "Northpeak", "Fjellro", "Canyon Ridge"),
        ("Ultralight", "Alpine", "All-Season", "Trail"),
        (
            ("Hiking Backpack 35L", 60, 180),
            ("Two-Person Tent", 90, 420),
            ("Sleeping Bag", 45, 260),
            ("Trekking Poles", 25, 110),
            ("Headlamp", 15, 70),
            ("Insulated Water Bottle", 15, 45),
            ("Rain Jacket", 70, 320),
            ("Camping Stove", 35, 140),
            ("Hiking Boots", 90, 260),
            ("Camping Chair", 25, 90),
        ),
        {"color": ("olive", "black", "orange", "navy", "sand"), "material": ("nylon", "polyester", "ripstop")},
    ),
    _CategorySpec(
        "home decor",
        "HOM",
        ("Maison Lumen", "Nordlys Home", "Casa Terra", "Willow & Oak"),
        ("Handmade", "Minimalist", "Vintage", "Coastal"),
        (
            ("Ceramic Vase", 20, 90),
            ("Linen Cushion Cover", 15, 45),
            ("Round Wall Mirror", 60, 260),
            ("Scented Candle", 12, 48),
            ("Table Lamp", 40, 220),
            ("Woven Rug", 80, 480),
            ("Picture Frame Set", 20, 70),
            ("Throw Blanket", 35, 140),
            ("Wall Clock", 25, 120),
            ("Plant Pot", 12, 60),
        ),
        {
            "color": ("ivory", "terracotta", "sage", "charcoal", "mustard"),
            "material": ("ceramic", "linen", "wool", "glass", "oak"),
            "style": ("scandi", "boho", "industrial", "classic"),
        },
    ),
    _CategorySpec(
        "kitchen",
        "KIT",
        ("Chef's Edge", "Cucina Viva", "Kaltmann", "Copperleaf"),
        ("Professional", "Classic", "Compact", "Premium"),
        (
            ("Chef's Knife", 35, 180),
            ("Cast Iron Skillet", 30, 120),
            ("Espresso Machine", 120, 900),
            ("Stand Mixer", 180, 650),
            ("Non-Stick Pan Set", 50, 220),
            ("Cutting Board", 18, 75),
            ("French Press", 20, 60),
            ("Knife Block Set", 80, 400),
            ("Dutch Oven", 60, 320),
            ("Digital Kitchen Scale", 15, 50),
        ),
        {"color": ("black", "red", "cream", "steel"), "material": ("stainless steel", "cast iron", "bamboo", "copper")},
    ),
    _CategorySpec(
        "fashion",
        "FAS",
        ("Atelier Nove", "Urban Thread", "Marlow & Finch", "Solvik"),
        ("Relaxed", "Slim-Fit", "Organic", "Classic"),
        (
            ("Merino Sweater", 60, 180),
            ("Chinos", 45, 120),
            ("Denim Jacket", 70, 190),
            ("Leather Belt", 25, 90),
            ("Silk Scarf", 30, 150),
            ("White Sneakers", 60, 180),
            ("Wool Coat", 150, 480),
            ("Linen Shirt", 40, 110),
            ("Midi Dress", 50, 200),
            ("Baseball Cap", 15, 45),
        ),
        {
            "color": ("black", "navy", "camel", "white", "forest green"),
            "size": ("XS", "S", "M", "L", "XL"),
            "material": ("cotton", "merino", "linen", "leather", "silk"),
        },
    ),
    _CategorySpec(
        "electronics",
        "ELE",
        ("Voltix", "Sonora", "Pixelon", "Arcwave"),
        ("Pro", "Lite", "Max", "Studio"),
        (
            ("Wireless Headphones", 60, 380),
            ("Bluetooth Speaker", 30, 250),
            ("Smartwatch", 120, 450),
            ("4K Monitor", 250, 700),
            ("Mechanical Keyboard", 60, 200),
            ("Wireless Mouse", 20, 90),
            ("USB-C Charger", 20, 70),
            ("10-inch Tablet", 200, 800),
            ("E-Reader", 90, 250),
            ("Action Camera", 150, 450),
        ),
        {"color": ("black", "silver", "white", "graphite"), "warranty_years": ("1", "2", "3")},
    ),
    _CategorySpec(
        "beauty",
        "BEA",
        ("Lumiere Skin", "Botanica Lab", "Velvet & Rose", "Aqua Pura"),
        ("Hydrating", "Radiance", "Gentle", "Intense"),
        (
            ("Vitamin C Serum", 18, 65),
            ("Face Cream", 15, 90),
            ("Lipstick", 12, 40),
            ("Eau de Parfum", 45, 180),
            ("Hair Dryer", 40, 280),
            ("Mascara", 10, 35),
            ("Sunscreen SPF 50", 10, 35),
            ("Face Cleanser", 9, 30),
            ("Nail Polish Set", 12, 35),
            ("Hair Oil", 15, 55),
        ),
        {"skin_type": ("all", "dry", "oily", "sensitive"), "volume_ml": ("30", "50", "100")},
    ),
    _CategorySpec(
        "toys",
        "TOY",
        ("Bricktopia", "Little Explorers", "Kiddo Labs", "Plushville"),
        ("Deluxe", "Starter", "Rainbow", "Adventure"),
        (
            ("Building Block Set", 20, 160),
            ("Wooden Train Set", 30, 120),
            ("Plush Bear", 12, 45),
            ("Remote Control Car", 30, 150),
            ("Board Game", 20, 60),
            ("Science Kit", 20, 70),
            ("1000-Piece Puzzle", 12, 35),
            ("Dollhouse", 60, 220),
            ("Art & Craft Box", 15, 50),
            ("Kids Scooter", 40, 130),
        ),
        {"age_range": ("3+", "5+", "8+", "12+")},
    ),
    _CategorySpec(
        "luxury watches",
        "LXW",
        ("Valmont Geneve", "Hartmann & Soehne", "Aurele", "Kronborg"),
        ("Heritage", "Limited Edition", "Classic", "Sport"),
        (
            ("Automatic Dive Watch", 1800, 9500),
            ("Chronograph", 2500, 14000),
            ("Dress Watch", 1500, 8000),
            ("GMT Watch", 3000, 12000),
            ("Pilot Watch", 1900, 7000),
            ("Moonphase Watch", 4000, 18000),
        ),
        {
            "case_mm": ("36", "38", "40", "42"),
            "movement": ("automatic", "manual", "quartz"),
            "strap": ("steel", "leather", "rubber"),
        },
    ),
    _CategorySpec(
        "luxury bags",
        "LXB",
        ("Maison Verlaine", "Castellane", "Orsini Milano", "Belmont Paris"),
        ("Signature", "Quilted", "Monogram", "Heritage"),
        (
            ("Leather Tote", 900, 4500),
            ("Crossbody Bag", 700, 3200),
            ("Evening Clutch", 500, 2600),
            ("Weekender", 1200, 5200),
            ("Shoulder Bag", 1100, 5800),
            ("Mini Top-Handle Bag", 1400, 6200),
        ),
        {"color": ("black", "cognac", "ivory", "burgundy"), "material": ("calfskin", "lambskin", "canvas", "suede")},
    ),
    _CategorySpec(
        "sports",
        "SPO",
        ("Stride", "Apex Motion", "Ironform", "Kinetica"),
        ("Performance", "Everyday", "Pro", "Eco"),
        (
            ("Running Shoes", 70, 180),
            ("Yoga Mat", 20, 80),
            ("Adjustable Dumbbells", 80, 350),
            ("Cycling Helmet", 40, 200),
            ("Resistance Bands", 12, 35),
            ("Foam Roller", 15, 45),
            ("Sports Bottle", 8, 25),
            ("Fitness Tracker", 50, 200),
        ),
        {"color": ("black", "blue", "coral", "lime"), "level": ("beginner", "intermediate", "advanced")},
    ),
)

# Books are titles, not (brand, type) pairs: (title, author, genre); the brand is the publisher.
_BOOKS: tuple[tuple[str, str, str], ...] = (
    ("The Quiet Harbour", "Elin Marsh", "literary fiction"),
    ("Salt and Cedar", "Jonah Reyes", "literary fiction"),
    ("The Last Lighthouse Keeper", "Maud Ellery", "historical fiction"),
    ("A Winter in Bruges", "Pieter Laan", "historical fiction"),
    ("Murder at Millbrook Hall", "Agnes Thorne", "crime"),
    ("The Ninth Witness", "Carl Brenner", "crime"),
    ("Cold Tide", "Signe Alm", "thriller"),
    ("Orbit of Ash", "Kai Navarro", "science fiction"),
    ("The Glass Cartographer", "Ines Volk", "fantasy"),
    ("Dragons of the Northern Reach", "Tomas Hale", "fantasy"),
    ("Small Habits, Big Life", "Dr. Rhea Kapoor", "self-help"),
    ("The Money Garden", "Owen Pike", "personal finance"),
    ("Slow Cooking for Busy People", "Lotte Brandt", "cookbook"),
    ("One Pan Italian", "Marco Bellini", "cookbook"),
    ("Trails of Europe", "Hanna Berg", "travel"),
    ("The Curious Fox", "Molly Park", "children"),
    ("Goodnight, Little Comet", "Ravi Sen", "children"),
    ("Empires of Trade", "Prof. Alan Wright", "history"),
    ("The Brain at Rest", "Dr. Nora Lind", "popular science"),
    ("Learn Python in a Weekend", "Sam Osei", "technology"),
)
_PUBLISHERS = ("Harbor Press", "Quill & Ink", "Lantern Books", "Meridian Publishing")
CATEGORIES: tuple[str, ...] = (*(c.name for c in _CATEGORIES), "books")
LUXURY = ("luxury watches", "luxury bags")


def _price(rng: random.Random, low: int, high: int) -> Decimal:
    """Shop-like prices: 24.99 under 100, 149.00/149.99 under 1000, round fifties above."""
    raw = math.exp(rng.uniform(math.log(low), math.log(high)))
    if raw < 100:
        return Decimal(f"{max(math.floor(raw), 1)}.99")
    if raw < 1000:
        return Decimal(f"{int(raw / 5) * 5 + 4}.{rng.choice(('00', '99'))}")
    return Decimal(f"{int(raw / 50) * 50}.00")


def _slug(text: str) -> str:
    return "-".join("".join(ch if ch.isalnum() else " " for ch in _ascii(text).lower()).split())


@lru_cache(maxsize=1)
def _catalog() -> tuple[dict, ...]:
    rng = random.Random("cdp-demo-catalog-v1")  # fixed: the catalog is the same for every seed
    products: list[dict] = []
    for spec in _CATEGORIES:
        number = 0
        for position, (kind, low, high) in enumerate(spec.items):
            for variant in range(2):
                number += 1
                brand = spec.brands[(position + variant) % len(spec.brands)]
                adjective = spec.adjectives[(position * 2 + variant) % len(spec.adjectives)]
                attributes = {key: rng.choice(options) for key, options in spec.attributes.items()}
                attributes["type"] = kind
                title = f"{brand} {adjective} {kind}"
                details = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in attributes.items() if k != "type")
                products.append(
                    {
                        "sku": f"{spec.prefix}-{number:03d}",
                        "title": title,
                        "description": f"{adjective} {kind.lower()} by {brand} ({details}).",
                        "category": spec.name,
                        "brand": brand,
                        "price": _price(rng, low, high),
                        "attributes": attributes,
                    }
                )
    for number, (title, author, genre) in enumerate(_BOOKS, start=1):
        book_format = rng.choice(("paperback", "paperback", "hardcover"))
        products.append(
            {
                "sku": f"BOO-{number:03d}",
                "title": title,
                "description": f"{title} by {author}: {genre}, {book_format}.",
                "category": "books",
                "brand": _PUBLISHERS[number % len(_PUBLISHERS)],
                "price": _price(rng, 9, 16 if book_format == "paperback" else 32),
                "attributes": {"type": "book", "author": author, "genre": genre, "format": book_format},
            }
        )
    return tuple(products)


def demo_catalog() -> list[dict]:
    """The demo store's products: sku, title, description, category, brand, price (Decimal, EUR),
    attributes. Event ``product_id`` values are these skus; the list is the same for every seed."""
    return [{**p, "attributes": dict(p["attributes"])} for p in _catalog()]


@lru_cache(maxsize=1)
def _by_category() -> dict[str, tuple[dict, ...]]:
    grouped: dict[str, list[dict]] = {}
    for product in _catalog():
        grouped.setdefault(product["category"], []).append(product)
    return {k: tuple(v) for k, v in grouped.items()}


# --- people, places, devices ---------------------------------------------------------------------


def _words(text: str, sep: str | None = None) -> tuple[str, ...]:
    return tuple(text.split(sep))


_COUNTRIES: dict[str, dict] = {
    "GB": {
        "weight": 30,
        "locale": "en-GB",
        "first": _words(
            "Oliver Amelia George Isla Harry Ava Jack Emily Charlie Sophie Thomas Grace James Lily "
            "William Chloe Ann Tom Sarah David Hannah Daniel Lucy Matthew"
        ),
        "last": _words(
            "Lee Smith Jones Taylor Brown Williams Wilson Evans Roberts Walker Wright Robinson Thompson "
            "Hughes Green Miller Clarke Patel Khan Turner"
        ),
        "cities": (
            ("London", "Europe/London", "SW{d} {d}{L}{L}", "020 7946 0{d3}"),
            ("Manchester", "Europe/London", "M{d} {d}{L}{L}", "0161 496 0{d3}"),
            ("Leeds", "Europe/London", "LS{d} {d}{L}{L}", "0113 496 0{d3}"),
            ("Bristol", "Europe/London", "BS{d} {d}{L}{L}", "0117 496 0{d3}"),
            ("Edinburgh", "Europe/London", "EH{d} {d}{L}{L}", "0131 496 0{d3}"),
        ),
        "mobile": "07{m}{d2} {d6}",
        "domains": (("gmail.com", 40), ("outlook.com", 15), ("hotmail.com", 15), ("icloud.com", 12), ("yahoo.com", 8)),
    },
    "US": {
        "weight": 25,
        "locale": "en-US",
        "first": _words(
            "Liam Olivia Noah Emma Ethan Mia Mason Harper Logan Abigail Lucas Ella Jacob Madison Aiden "
            "Avery Ryan Nora Tyler Zoe"
        ),
        "last": _words(
            "Johnson Garcia Martinez Davis Rodriguez Anderson Jackson White Harris Martin Moore Clark "
            "Lewis Hall Young King Nguyen Kim Scott Baker"
        ),
        "cities": (
            ("New York", "America/New_York", "100{d2}", "+1 212-555-01{d2}"),
            ("Boston", "America/New_York", "021{d2}", "+1 617-555-01{d2}"),
            ("Chicago", "America/Chicago", "606{d2}", "+1 312-555-01{d2}"),
            ("Austin", "America/Chicago", "787{d2}", "+1 512-555-01{d2}"),
            ("Denver", "America/Denver", "802{d2}", "+1 303-555-01{d2}"),
            ("Seattle", "America/Los_Angeles", "981{d2}", "+1 206-555-01{d2}"),
            ("Los Angeles", "America/Los_Angeles", "900{d2}", "+1 213-555-01{d2}"),
        ),
        "mobile": "+1 {area}-555-01{d2}",
        "domains": (("gmail.com", 45), ("yahoo.com", 15), ("outlook.com", 15), ("icloud.com", 15), ("aol.com", 3)),
    },
    "DE": {
        "weight": 15,
        "locale": "de-DE",
        "first": _words(
            "Lukas Anna Leon Marie Felix Sophie Jonas Lena Paul Lea Maximilian Hannah Elias Emilia Finn Mia"
        ),
        "last": _words(
            "Müller Schmidt Schneider Fischer Weber Meyer Wagner Becker Schulz Hoffmann Koch Richter "
            "Klein Wolf Schröder Neumann"
        ),
        "cities": (
            ("Berlin", "Europe/Berlin", "10{d3}", "+49 30 23125{d3}"),
            ("Hamburg", "Europe/Berlin", "20{d3}", "+49 40 {d7}"),
            ("München", "Europe/Berlin", "80{d3}", "+49 89 {d7}"),
            ("Köln", "Europe/Berlin", "50{d3}", "+49 221 {d7}"),
        ),
        "mobile": "+49 1{de}{d8}",
        "domains": (("gmail.com", 30), ("web.de", 25), ("gmx.de", 25), ("outlook.com", 10), ("t-online.de", 10)),
    },
    "FR": {
        "weight": 12,
        "locale": "fr-FR",
        "first": _words(
            "Louis Emma Gabriel Jade Raphaël Louise Arthur Alice Jules Chloé Hugo Léa Lucas Manon Nathan Camille"
        ),
        "last": _words(
            "Martin Bernard Dubois Thomas Robert Richard Petit Durand Leroy Moreau Simon Laurent "
            "Lefebvre Michel Fontaine Girard"
        ),
        "cities": (
            ("Paris", "Europe/Paris", "750{d2}", "+33 1 99 00 {d2} {d2}"),
            ("Lyon", "Europe/Paris", "6900{d}", "+33 4 78 {d2} {d2} {d2}"),
            ("Bordeaux", "Europe/Paris", "330{d2}", "+33 5 56 {d2} {d2} {d2}"),
            ("Marseille", "Europe/Paris", "130{d2}", "+33 4 91 {d2} {d2} {d2}"),
        ),
        "mobile": "+33 {fr} {d2} {d2} {d2} {d2}",
        "domains": (("gmail.com", 40), ("orange.fr", 20), ("free.fr", 15), ("outlook.fr", 15), ("laposte.net", 10)),
    },
    "ES": {
        "weight": 8,
        "locale": "es-ES",
        "first": _words(
            "Hugo Lucía Martín Sofía Pablo María Daniel Paula Alejandro Valeria Álvaro Carmen Javier Elena"
        ),
        "last": _words(
            "García Fernández González Rodríguez López Martínez Sánchez Pérez Gómez Jiménez Ruiz Hernández Díaz Moreno"
        ),
        "cities": (
            ("Madrid", "Europe/Madrid", "280{d2}", "+34 91 {d3} {d2} {d2}"),
            ("Barcelona", "Europe/Madrid", "080{d2}", "+34 93 {d3} {d2} {d2}"),
            ("Valencia", "Europe/Madrid", "460{d2}", "+34 96 {d3} {d2} {d2}"),
        ),
        "mobile": "+34 6{d2} {d3} {d3}",
        "domains": (("gmail.com", 50), ("hotmail.com", 20), ("yahoo.es", 15), ("outlook.es", 15)),
    },
    "NL": {
        "weight": 10,
        "locale": "nl-NL",
        "first": _words("Daan Emma Sem Julia Lucas Mila Levi Tess Finn Sophie Milan Zoë Bram Sanne"),
        "last": _words(
            "de Jong|Jansen|de Vries|van den Berg|van Dijk|Bakker|Visser|Smit|Meijer|de Boer|Mulder|Bos", "|"
        ),
        "cities": (
            ("Amsterdam", "Europe/Amsterdam", "10{d2} {L}{L}", "+31 20 {d7}"),
            ("Rotterdam", "Europe/Amsterdam", "30{d2} {L}{L}", "+31 10 {d7}"),
            ("Utrecht", "Europe/Amsterdam", "35{d2} {L}{L}", "+31 30 {d7}"),
        ),
        "mobile": "+31 6 {d8}",
        "domains": (("gmail.com", 45), ("hotmail.com", 20), ("outlook.com", 15), ("ziggo.nl", 10), ("kpnmail.nl", 10)),
    },
}

_USER_AGENTS: dict[str, tuple[tuple[str, int], ...]] = {
    "mobile": (
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
            "Version/17.5 Mobile/15E148 Safari/604.1",
            40,
        ),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
            "CriOS/125.0.6422.80 Mobile/15E148 Safari/604.1",
            8,
        ),
        (
            "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/125.0.6422.113 Mobile Safari/537.36",
            22,
        ),
        (
            "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
            "SamsungBrowser/25.0 Chrome/121.0.0.0 Mobile Safari/537.36",
            18,
        ),
        (
            "Mozilla/5.0 (Linux; Android 13; moto g84 5G) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/124.0.6367.179 Mobile Safari/537.36",
            6,
        ),
    ),
    "desktop": (
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/125.0.0.0 Safari/537.36",
            40,
        ),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/125.0.0.0 Safari/537.36 Edg/125.0.2535.67",
            12,
        ),
        ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:126.0) Gecko/20100101 Firefox/126.0", 8),
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
            "Version/17.5 Safari/605.1.15",
            22,
        ),
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/125.0.0.0 Safari/537.36",
            14,
        ),
        ("Mozilla/5.0 (X11; Linux x86_64; rv:126.0) Gecko/20100101 Firefox/126.0", 4),
    ),
    "tablet": (
        (
            "Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
            "Version/17.5 Mobile/15E148 Safari/604.1",
            65,
        ),
        (
            "Mozilla/5.0 (Linux; Android 14; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/125.0.6422.113 Safari/537.36",
            35,
        ),
    ),
}
_SCREENS = {
    "mobile": {"width": 390, "height": 844, "density": 3},
    "desktop": {"width": 1920, "height": 1080, "density": 1},
    "tablet": {"width": 820, "height": 1180, "density": 2},
}
_APPS = (
    {
        "device": {"type": "ios", "manufacturer": "Apple", "model": "iPhone15,2"},
        "os": {"name": "iOS", "version": "17.5.1"},
        "library": {"name": "analytics-swift", "version": "1.5.11"},
    },
    {
        "device": {"type": "android", "manufacturer": "samsung", "model": "SM-S918B"},
        "os": {"name": "Android", "version": "14"},
        "library": {"name": "analytics-kotlin", "version": "1.15.0"},
    },
)
# Relative traffic by local hour: phones peak at lunch and late evening, desktops in office hours,
# tablets on the sofa after dinner.
_HOURS = {
    "mobile": (1, 0.5, 0.3, 0.2, 0.2, 0.4, 1, 3, 4, 3, 2.5, 3, 5, 4.5, 3, 2.5, 3, 3.5, 4, 5, 6, 6, 4.5, 2.5),
    "desktop": (0.3, 0.2, 0.1, 0.1, 0.1, 0.2, 0.5, 1.5, 3, 5, 5.5, 5, 4.5, 5, 5.5, 5, 4.5, 3.5, 3, 3.5, 4, 3.5, 2, 1),
    "tablet": (0.5, 0.2, 0.1, 0.1, 0.1, 0.2, 0.5, 1, 2, 2.5, 2.5, 2, 2, 2, 2, 2, 2.5, 3, 4, 6, 7, 6.5, 4, 1.5),
}
_CAMPAIGNS = (
    ({"name": "summer_sale", "source": "newsletter", "medium": "email"}, "/sale", 3),
    ({"name": "brand_search", "source": "google", "medium": "cpc"}, "/", 4),
    ({"name": "new_season", "source": "instagram", "medium": "social"}, "/c/fashion", 2),
    ({"name": "retargeting", "source": "facebook", "medium": "paid_social"}, "/", 2),
    ({"name": "price_comparison", "source": "idealo", "medium": "affiliate"}, "/", 1),
)
_REFERRERS = ("https://www.google.com/", "https://www.bing.com/", "https://duckduckgo.com/", "")
_GIFT_QUERIES = (
    "gift for mum",
    "gift for dad",
    "birthday present",
    "gift ideas",
    "christmas gift",
    "present for kids",
    "anniversary gift",
)
_COUPONS = (("SAVE10", "10% off", Decimal("0.10")), ("WELCOME15", "15% off first order", Decimal("0.15")))


def _ascii(text: str) -> str:
    text = text.replace("ü", "ue").replace("ö", "oe").replace("ä", "ae").replace("ß", "ss")
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


def _fill(rng: random.Random, pattern: str, **extra: str) -> str:
    """Fill a number/postcode pattern: {d} digit, {d2}… n digits, {L} letter, plus named parts."""
    out = pattern
    for key, value in extra.items():
        out = out.replace("{" + key + "}", value)
    while "{" in out:
        start = out.index("{")
        end = out.index("}", start)
        part = out[start + 1 : end]
        if part == "L":
            value = rng.choice("ABDEFGHJLNPQRSTUWXYZ")
        else:
            width = int(part[1:] or 1)
            value = "".join(rng.choice("0123456789") for _ in range(width))
        out = out[:start] + value + out[end + 1 :]
    return out


def _typo(rng: random.Random, word: str) -> str:
    """A plausible typing slip: a doubled, dropped or swapped letter (never the first one)."""
    if len(word) < 3:
        return word + word[-1]
    i = rng.randrange(1, len(word) - 1)
    slip = rng.choice(("double", "drop", "swap"))
    if slip == "double":
        return word[: i + 1] + word[i] + word[i + 1 :]
    if slip == "drop":
        return word[:i] + word[i + 1 :]
    swapped = word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    return swapped if swapped != word else word[: i + 1] + word[i] + word[i + 1 :]


# --- behaviour types -----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Behaviour:
    """How a type of customer shops: how often, how much they browse, buy, and at what price."""

    weight: float
    sessions_per_week: float
    views: tuple[int, int]  # product views per session
    search_p: float  # a session starts with a search
    cart_p: float  # a viewed product goes to the cart
    buy_p: float  # a session with a cart ends in an order
    price_exp: float  # product weight ~ price ** price_exp (negative: cheap first)
    coupon_p: float
    account_p: float  # has (or creates) an account
    login_p: float  # logs in during a session on a device not yet logged in
    mobile_share: float
    app_p: float  # uses the native app on the phone
    campaign_p: float  # arrives from a marketing campaign (utm parameters)
    categories: dict[str, float]  # taste: relative interest per category


_ALL = dict.fromkeys(CATEGORIES, 1.0)
_CHEAP = {c: (0.0 if c in LUXURY else 1.0) for c in CATEGORIES}
_WINDOW = {**_ALL, **dict.fromkeys(LUXURY, 2.0)}  # dreams are free
_LOYAL = {**_ALL, "luxury watches": 3, "luxury bags": 3, "electronics": 2, "fashion": 2, "toys": 0.3}
_GIFT = {**dict.fromkeys(CATEGORIES, 0.2), "toys": 3, "beauty": 2, "books": 2, "luxury watches": 0.6}
_IMPULSE = {**dict.fromkeys(CATEGORIES, 0.3), "fashion": 3, "beauty": 3, "electronics": 2, "sports": 1.5}

# fmt: off
_BEHAVIOUR_TABLE = (
    # name                 weight s/wk  views   search cart  buy  price coupon acct login mobile app campaign taste
    ("bargain_hunter",       0.16, 1.0, (2, 6),  0.6, 0.15, 0.4,  -1.6, 0.7,  0.7,  0.5, 0.6,  0.2, 0.45, _CHEAP),
    ("loyal_high_spender",   0.08, 1.0, (1, 4),  0.3, 0.35, 0.7,   0.8, 0.05, 1.0,  0.9, 0.45, 0.3, 0.15, _LOYAL),
    ("window_shopper",       0.17, 0.9, (2, 7),  0.4, 0.04, 0.2,   0.0, 0.0,  0.3,  0.3, 0.7,  0.1, 0.3,  _WINDOW),
    ("category_enthusiast",  0.14, 0.8, (2, 5), 0.35, 0.2,  0.6,   0.2, 0.1,  0.85, 0.7, 0.5, 0.15, 0.2,  _CHEAP),
    ("one_time_gift_buyer",  0.10, 0.0, (2, 5),  0.7, 0.5,  0.9,   0.3, 0.1,  0.25, 0.5, 0.55, 0.0, 0.3,  _GIFT),
    ("cart_abandoner",       0.09, 0.8, (1, 5),  0.4, 0.4,  0.15, -0.3, 0.2,  0.75, 0.5, 0.6, 0.15, 0.25, _CHEAP),
    ("mobile_impulse_buyer", 0.10, 1.5, (1, 3),  0.3, 0.3,  0.6,  -0.3, 0.15, 0.85, 0.8, 1.0,  0.6, 0.35, _IMPULSE),
    ("drive_by_visitor",     0.16, 0.0, (0, 2),  0.2, 0.0,  0.0,   0.0, 0.0,  0.0,  0.0, 0.65, 0.0, 0.6,  _ALL),
)
# fmt: on
BEHAVIOURS: dict[str, Behaviour] = {
    row[0]: Behaviour(**dict(zip((f.name for f in fields(Behaviour)), row[1:], strict=True)))
    for row in _BEHAVIOUR_TABLE
}


# --- identity cases ------------------------------------------------------------------------------

# Scripted cases every run includes while customers allow (pairs take two customers), so even a
# small run has each identity situation; beyond them, cases are drawn at realistic rates.
_SCRIPTED = (
    ("cross_device", 1),
    ("shared_landline", 2),
    ("family_mailbox", 2),
    ("guest_then_account", 1),
    ("second_account_typo", 1),
    ("landline_and_mobile", 1),
    ("shared_tablet", 2),
)
_CASE_RATES = (
    ("cross_device", 0.15),
    ("guest_then_account", 0.04),
    ("landline_and_mobile", 0.03),
    ("second_account_typo", 0.02),
    ("shared_landline", 0.012),
    ("family_mailbox", 0.012),
    ("shared_tablet", 0.01),
)
IDENTITY_CASES = (
    "cross_device: one person, phone + desktop, logs in on both (variant email spellings): merged",
    "guest_then_account: guest order by email on the phone, account later on desktop: merged",
    "second_account_typo: a second account with a typo'd last name and the same mobile: not merged",
    "landline_and_mobile: gives a mobile at sign-up, a landline at checkout: one profile, two phones",
    "shared_landline: two people of one household, one landline: review candidate, not merged",
    "family_mailbox: two people share a family email address: review candidate, not merged",
    "shared_tablet: two people log in on one family tablet: refused merge",
)


@dataclass
class Device:
    """A browser or app install: one anonymous id, as Segment's libraries keep it."""

    anonymous_id: str
    kind: str  # mobile | desktop | tablet
    user_agent: str = ""
    app: dict | None = None  # native app context (screen calls) instead of the web shop
    account: int = 0  # which of the customer's accounts logs in here
    shared: bool = False  # a household device: whoever uses it logs in each session


@dataclass
class Account:
    """A shop account (user id) and the details its owner typed into it."""

    user_id: str
    first_name: str
    last_name: str
    email: str
    phone: str = ""


@dataclass
class Customer:
    """One simulated person and everything the identity cases need about them."""

    number: int
    behaviour: str
    case: str
    country: str
    city: str
    timezone: str
    locale: str
    postal_code: str
    first_name: str
    last_name: str
    email: str
    email_variant: str  # another spelling of ``email`` that normalises to the same value
    phone: str = ""  # mobile
    landline: str = ""
    birthday: str = ""
    accounts: list[Account] = field(default_factory=list)
    devices: list[Device] = field(default_factory=list)
    category_weights: dict[str, float] = field(default_factory=dict)  # taste: behaviour base plus favourites
    household: int | None = None  # number of the other customer of the household
    forced: list[tuple[int, frozenset[str]]] = field(default_factory=list)  # first sessions: (device, flags)

    @property
    def user_id(self) -> str:
        return self.accounts[0].user_id if self.accounts else ""


# --- the plan ------------------------------------------------------------------------------------


class _Planner:
    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.emails: set[str] = set()
        self.phones: set[str] = set()

    def choice_weighted(self, pairs):
        items, weights = zip(*pairs, strict=True)
        return self.rng.choices(items, weights=weights)[0]

    def anonymous_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def device(self, kind: str, behaviour: Behaviour) -> Device:
        if kind == "mobile" and self.rng.random() < behaviour.app_p:
            return Device(self.anonymous_id(), kind, app=self.rng.choice(_APPS))
        return Device(self.anonymous_id(), kind, user_agent=self.choice_weighted(_USER_AGENTS[kind]))

    def phone(self, pattern: str, **extra: str) -> str:
        """A valid number nobody else in the run has (an accidental share would be a false case)."""
        for _ in range(60):
            raw = _fill(self.rng, pattern, **extra)
            value = normalize_phone(raw)
            if value and value not in self.phones:
                self.phones.add(value)
                return raw
        return ""

    def mobile(self, country: str, city_landline: str) -> str:
        spec = _COUNTRIES[country]
        extra = {
            "m": self.rng.choice("456789"),
            "area": city_landline.split()[1].split("-")[0] if country == "US" else "",
            "de": self.rng.choice(("51", "52", "57", "60", "62", "70", "71", "72", "76")),
            "fr": self.rng.choice("67"),
        }
        return self.phone(spec["mobile"], **extra)

    def email(self, first: str, last: str, domain: str, *, style: int | None = None) -> str:
        first_a, last_a = _ascii(first).lower().replace(" ", ""), _ascii(last).lower().replace(" ", "")
        styles = (f"{first_a}.{last_a}", f"{first_a}{last_a}", f"{first_a[0]}.{last_a}", f"{first_a}_{last_a}")
        local = styles[self.rng.randrange(len(styles)) if style is None else style]
        for attempt in range(50):
            candidate = f"{local}{'' if attempt == 0 else self.rng.randrange(10, 99)}@{domain}"
            if normalize_email(candidate) not in self.emails:
                self.emails.add(normalize_email(candidate))
                return candidate
        raise AssertionError("no free email")  # pragma: no cover - 50 two-digit suffixes

    def email_variant(self, email: str) -> str:
        """Another spelling of the same mailbox, as people type it on another device."""
        local, _, domain = email.partition("@")
        options = [f" {local.title()}@{domain.title()}", local.upper() + "@" + domain]
        if domain == "gmail.com":
            dotted = local if "." in local else (local[:3] + "." + local[3:])
            options += [f"{dotted}+shop@gmail.com", f"{local.replace('.', '')}@googlemail.com"]
        elif domain in ("outlook.com", "hotmail.com", "icloud.com"):
            options.append(f"{local}+store@{domain}")
        variant = self.rng.choice(options)
        assert normalize_email(variant) == normalize_email(email), (variant, email)
        return variant

    def person(self, number: int, behaviour_name: str, case: str, *, household: Customer | None = None) -> Customer:
        rng = self.rng
        behaviour = BEHAVIOURS[behaviour_name]
        if household is not None:
            country, (city, tz, postal_pattern, landline_pattern) = (
                household.country,
                next(c for c in _COUNTRIES[household.country]["cities"] if c[0] == household.city),
            )
        else:
            country = self.choice_weighted((k, v["weight"]) for k, v in _COUNTRIES.items())
            city, tz, postal_pattern, landline_pattern = rng.choice(_COUNTRIES[country]["cities"])
        spec = _COUNTRIES[country]
        first = rng.choice(spec["first"])
        if household is not None:
            while first == household.first_name:  # two people of a household: different first names
                first = rng.choice(spec["first"])
        last = household.last_name if household is not None else rng.choice(spec["last"])
        domain = (
            "gmail.com" if case in ("cross_device", "guest_then_account") else self.choice_weighted(spec["domains"])
        )
        email = self.email(first, last, domain)
        customer = Customer(
            number=number,
            behaviour=behaviour_name,
            case=case,
            country=country,
            city=city,
            timezone=tz,
            locale=spec["locale"],
            postal_code=household.postal_code if household is not None else _fill(rng, postal_pattern),
            first_name=first,
            last_name=last,
            email=email,
            email_variant=self.email_variant(email),
            household=household.number if household is not None else None,
        )
        if case != "none" or rng.random() < 0.5:
            customer.phone = self.mobile(country, landline_pattern)
        if case == "shared_landline" and household is not None:
            customer.landline = household.landline
        elif case in ("landline_and_mobile", "shared_landline") or rng.random() < 0.1:
            customer.landline = self.phone(landline_pattern)
        if rng.random() < 0.3:
            born = datetime(1950, 1, 1) + timedelta(days=rng.randrange(365 * 55))
            customer.birthday = born.date().isoformat()
        if case != "none" or rng.random() < behaviour.account_p:
            customer.accounts.append(
                Account(f"cus_{self.seed}_{number:05d}", first, last, customer.email, customer.phone)
            )
        weights = {c: w * rng.uniform(0.6, 1.4) for c, w in behaviour.categories.items() if w > 0}
        for favourite in rng.sample(sorted(weights), k=1 if behaviour_name == "category_enthusiast" else 2):
            weights[favourite] *= 25 if behaviour_name == "category_enthusiast" else 3
        customer.category_weights = weights
        self._devices(customer, behaviour)
        return customer

    def _devices(self, customer: Customer, behaviour: Behaviour) -> None:
        rng = self.rng
        case = customer.case
        if case in ("cross_device", "guest_then_account", "landline_and_mobile", "second_account_typo"):
            customer.devices = [self.device("mobile", behaviour), self.device("desktop", behaviour)]
        else:
            count = 1 if not customer.accounts else self.choice_weighted(((1, 55), (2, 35), (3, 10)))
            kinds = ["mobile" if rng.random() < behaviour.mobile_share else "desktop"]
            for _ in range(count - 1):
                kinds.append(self.choice_weighted((("mobile", 30), ("desktop", 50), ("tablet", 20))))
            customer.devices = [self.device(kind, behaviour) for kind in kinds]
        if case == "cross_device":
            customer.forced = [(0, frozenset({"login"})), (1, frozenset({"login", "variant_email"}))]
        elif case == "guest_then_account":
            customer.forced = [(0, frozenset({"purchase", "guest"})), (1, frozenset({"signup", "variant_email"}))]
        elif case == "landline_and_mobile":
            customer.forced = [(0, frozenset({"login", "phone"})), (1, frozenset({"login", "purchase", "landline"}))]
        elif case == "second_account_typo":
            first, typo = customer.first_name, _typo(rng, customer.last_name)
            other_domain = self.choice_weighted(
                [d for d in _COUNTRIES[customer.country]["domains"] if d[0] != customer.email.partition("@")[2]]
            )
            other_format = ""  # the same mobile, typed another way
            if customer.phone:
                number = phonenumbers.parse(customer.phone, "GB")
                other_format = phonenumbers.format_number(
                    number,
                    phonenumbers.PhoneNumberFormat.INTERNATIONAL
                    if customer.phone.startswith("0")
                    else phonenumbers.PhoneNumberFormat.E164,
                )
            customer.accounts.append(
                Account(
                    f"cus_{self.seed}_{customer.number:05d}b",
                    first,
                    typo,
                    self.email(first, typo, other_domain, style=0),
                    other_format,
                )
            )
            laptop = self.device("desktop", behaviour)
            laptop.account = 1
            customer.devices.append(laptop)
            customer.forced = [(0, frozenset({"login", "phone"})), (2, frozenset({"login", "phone"}))]
        elif case == "shared_landline":
            customer.forced = [(0, frozenset({"login", "landline"}))]
        elif case == "family_mailbox":
            customer.forced = [(0, frozenset({"login"}))]

    def household(self, number: int, case: str) -> list[Customer]:
        account_behaviours = [(k, b.weight) for k, b in BEHAVIOURS.items() if b.account_p > 0]
        first = self.person(number, self.choice_weighted(account_behaviours), case)
        second = self.person(number + 1, self.choice_weighted(account_behaviours), case, household=first)
        first.household = second.number
        if case == "family_mailbox":
            last = _ascii(first.last_name).lower().replace(" ", "")
            family = self.email("the", f"{last}s", "gmail.com", style=0) if self.rng.random() < 0.5 else None
            family = family or self.email(last, "family", self.choice_weighted(_COUNTRIES[first.country]["domains"]))
            for member in (first, second):
                member.email = member.accounts[0].email = family
                member.email_variant = family
        if case == "shared_tablet":
            tablet = self.device("tablet", BEHAVIOURS[first.behaviour])
            tablet.shared = True
            for member in (first, second):
                member.devices.append(tablet)
                member.forced = [(len(member.devices) - 1, frozenset({"login"}))]
        return [first, second]


def demo_store_plan(*, customers: int, seed: int) -> list[Customer]:
    """The simulated customers: behaviour, identity case, names, contact details and devices."""
    planner = _Planner(seed)
    plan: list[Customer] = []
    scripted = list(_SCRIPTED)
    any_behaviour = [(k, b.weight) for k, b in BEHAVIOURS.items()]
    account_behaviours = [(k, b.weight) for k, b in BEHAVIOURS.items() if b.account_p > 0]
    while len(plan) < customers:
        left = customers - len(plan)
        while scripted and scripted[0][1] > left:
            scripted.pop(0)
        if scripted:
            case, size = scripted.pop(0)
        else:
            roll, case, size = planner.rng.random(), "none", 1
            for name, rate in _CASE_RATES:
                if roll < rate:
                    case = name
                    break
                roll -= rate
            size = 2 if case in ("shared_landline", "family_mailbox", "shared_tablet") else 1
            if size > left:
                case, size = "none", 1
        if size == 2:
            plan.extend(planner.household(len(plan), case))
        else:
            behaviour = planner.choice_weighted(any_behaviour if case == "none" else account_behaviours)
            plan.append(planner.person(len(plan), behaviour, case))
    return plan


# --- sessions and events -------------------------------------------------------------------------


class _CustomerSim:
    """Turns one customer into time-stamped Segment payloads, session by session."""

    def __init__(self, customer: Customer, *, seed: int, days: int, now: datetime) -> None:
        self.c = customer
        self.b = BEHAVIOURS[customer.behaviour]
        self.seed = seed
        self.rng = random.Random(f"{seed}:{customer.number}")
        self.tz = ZoneInfo(customer.timezone)
        # The story runs on a virtual local clock whose last day maps to the customer's last full
        # local day before ``now``; only the mapping to real time depends on ``now``.
        self.latest = now - timedelta(hours=2)
        self.last_day = (self.latest.astimezone(self.tz) - timedelta(days=1)).date()
        self.days = days
        self.seq = 0
        self.orders = 0
        self.events: list[tuple[datetime, int, int, dict]] = []
        self.created: set[int] = set()  # accounts that exist (signed up)
        self.logged_in: dict[int, int] = {}  # device index -> account index
        self.cart: list[tuple[dict, int]] = []
        self.cart_id = ""
        self.cart_at = _VIRTUAL_LAST_DAY - timedelta(days=days)
        self.account_from: datetime | None = None
        self.affiliation = "Demo Store web"
        self.first_login_flags: dict[int, frozenset[str]] = {}

    # -- payloads --

    def _emit(self, t: datetime, device_index: int, payload: dict, context: dict) -> None:
        self.seq += 1
        account = self.logged_in.get(device_index)
        device = self.c.devices[device_index]
        payload = {
            **payload,
            "messageId": str(uuid.uuid5(_MESSAGE_NAMESPACE, f"{self.seed}:{self.c.number}:{self.seq}")),
            "anonymousId": device.anonymous_id,
            "timestamp": self._stamp(t),
            "context": context,
        }
        if account is not None and "userId" not in payload:
            payload["userId"] = self.c.accounts[account].user_id
        self.events.append((self._real(t), self.c.number, self.seq, payload))

    def _real(self, virtual: datetime) -> datetime:
        day = self.last_day + (virtual.date() - _VIRTUAL_LAST_DAY.date())
        return min(datetime.combine(day, virtual.time(), tzinfo=self.tz).astimezone(UTC), self.latest)

    def _stamp(self, virtual: datetime) -> str:
        return self._real(virtual).isoformat().replace("+00:00", "Z")

    def _context(self, device: Device, page: dict | None, campaign: dict | None) -> dict:
        context: dict = {"timezone": self.c.timezone, "locale": self.c.locale}
        if device.app:
            context.update(
                {
                    "app": {"name": "Demo Store", "version": "5.3.0", "build": "530", "namespace": "com.example.store"},
                    **device.app,
                    "screen": _SCREENS["mobile"],
                }
            )
        else:
            context.update(
                {
                    "userAgent": device.user_agent,
                    "library": {"name": "analytics.js", "version": "next-1.72.0"},
                    "screen": _SCREENS[device.kind],
                }
            )
            if page:
                context["page"] = page
        if campaign:
            context["campaign"] = campaign
        return context

    # -- one session --

    def _session(self, t: datetime, device_index: int, flags: frozenset[str]) -> None:
        rng, b, device = self.rng, self.b, self.c.devices[device_index]
        if device.shared:
            self.logged_in.pop(device_index, None)  # the family tablet: whoever uses it logs in
        state = {"t": t, "page": None, "campaign": None, "referrer": rng.choice(_REFERRERS)}
        if self.cart and t - self.cart_at > CART_TTL:
            self.cart = []  # the shop forgets old carts
        if self.cart and b is BEHAVIOURS["cart_abandoner"] and self.c.accounts and rng.random() < 0.6:
            state["campaign"] = {"name": "abandoned_cart", "source": "newsletter", "medium": "email"}
            landing = "/cart"
        elif rng.random() < b.campaign_p:
            campaign, landing, _ = self._pick(_CAMPAIGNS)
            state["campaign"] = dict(campaign)
            if campaign["medium"] == "cpc":
                state["campaign"]["term"] = rng.choice(_catalog())["brand"].lower()
        else:
            landing = "/"
        if landing == "/cart":
            self._view(state, device_index, "Cart", "/cart", "Your cart")
        elif landing.startswith("/c/"):
            self._view(state, device_index, "Category", landing, "Fashion", category="fashion")
        elif landing == "/sale":
            self._view(state, device_index, "Sale", "/sale", "Sale: up to 50% off")
        else:
            self._view(state, device_index, "Home", "/", "Demo Store")
        state["campaign"] = None
        account = self._account_for(device)
        wants_login = "login" in flags or "signup" in flags or rng.random() < b.login_p
        if account is not None and device_index not in self.logged_in and wants_login and self._may_login(state):
            self._login(state, device_index, account, flags)
        if b is BEHAVIOURS["drive_by_visitor"]:
            for _ in range(rng.randint(0, 2)):
                self._product_view(state, device_index, self._product())
            return
        views = rng.randint(*b.views)
        if "purchase" in flags:
            views = max(views, 1)
        found, category, added = None, None, landing == "/cart"  # came back for the cart
        if rng.random() < b.search_p:
            found = self._search(state, device_index)
        elif views:
            category = self._category()
            self._view(state, device_index, "Category", f"/c/{_slug(category)}", category.title(), category=category)
            self._track(
                state,
                device_index,
                "Product List Viewed",
                {
                    "list_id": _slug(category),
                    "category": category,
                    "products": [
                        {"product_id": p["sku"], "sku": p["sku"], "name": p["title"], "price": float(p["price"])}
                        for p in _by_category()[category][:4]
                    ],
                },
            )
        for index in range(views):
            product = found if index == 0 and found is not None else self._product(category)
            self._product_view(state, device_index, product)
            cart_p = 1.0 if "purchase" in flags and not self.cart else b.cart_p
            if rng.random() < cart_p:
                self._add_to_cart(state, device_index, product)
                added = True
            category = product["category"] if rng.random() < 0.45 else None  # browse on nearby, or elsewhere
        if not self.cart or (not added and rng.random() < 0.6):
            return
        self._view(state, device_index, "Cart", "/cart", "Your cart")
        self._track(state, device_index, "Cart Viewed", {"cart_id": self.cart_id, "products": self._lines()})
        if len(self.cart) > 1 and rng.random() < 0.15:
            removed, quantity = self.cart.pop(rng.randrange(len(self.cart)))
            self._track(state, device_index, "Product Removed", {**self._item(removed), "quantity": quantity})
        buy_p = b.buy_p if self.orders == 0 or b is not BEHAVIOURS["one_time_gift_buyer"] else 0.0
        if "purchase" in flags or (self.cart and rng.random() < buy_p):
            self._checkout(state, device_index, flags)
        elif rng.random() < 0.3:  # got as far as checkout, then left
            self._track(state, device_index, "Checkout Started", self._order_properties(started=True))

    def _pick(self, options):
        return self.rng.choices(options, weights=[o[-1] for o in options])[0]

    def _advance(self, state: dict, low: float = 8, high: float = 75) -> datetime:
        state["t"] += timedelta(seconds=self.rng.uniform(low, high))
        return state["t"]

    def _view(self, state: dict, device_index: int, name: str, path: str, title: str, **props) -> None:
        device = self.c.devices[device_index]
        t = self._advance(state)
        search = props.pop("search", "")
        if state["campaign"]:
            c = state["campaign"]
            search = f"?utm_source={c['source']}&utm_medium={c['medium']}&utm_campaign={c['name']}"
        page = {"path": path, "url": f"{STORE_URL}{path}{search}", "title": f"{title} | Demo Store"}
        if state["referrer"]:
            page["referrer"] = state["referrer"]
        if search:
            page["search"] = search
        state["referrer"] = page["url"]
        state["page"] = page
        if device.app:
            self._emit(
                t,
                device_index,
                {"type": "screen", "name": name, "properties": props},
                self._context(device, None, state["campaign"]),
            )
        else:
            payload = {"type": "page", "name": name, "properties": {**page, **props}}
            self._emit(t, device_index, payload, self._context(device, page, state["campaign"]))

    def _track(self, state: dict, device_index: int, event: str, properties: dict, **extra) -> None:
        t = self._advance(state, 3, 40)
        device = self.c.devices[device_index]
        payload = {"type": "track", "event": event, "properties": properties, **extra}
        self._emit(t, device_index, payload, self._context(device, state["page"], None))

    def _account_for(self, device: Device) -> int | None:
        if not self.c.accounts:
            return None
        return device.account if device.account < len(self.c.accounts) else 0

    def _may_login(self, state: dict) -> bool:
        return self.account_from is None or state["t"] >= self.account_from

    def _traits(self, account_index: int, flags: frozenset[str], *, created: bool) -> dict:
        c, rng = self.c, self.rng
        account = self.c.accounts[account_index] if self.c.accounts else None
        email = account.email if account else c.email
        if "variant_email" in flags:
            email = c.email_variant
        traits = {
            "email": email,
            "firstName": account.first_name if account else c.first_name,
            "lastName": account.last_name if account else c.last_name,
        }
        phone = account.phone if account else c.phone
        if "landline" in flags and c.landline:
            traits["phone"] = c.landline
        elif phone and ("phone" in flags or rng.random() < 0.4):
            traits["phone"] = phone
        if c.birthday and account_index == 0 and rng.random() < 0.7:
            traits["birthday"] = c.birthday
        if created or rng.random() < 0.3:
            traits["address"] = {"city": c.city, "postalCode": c.postal_code, "country": c.country}
        return traits

    def _login(self, state: dict, device_index: int, account_index: int, flags: frozenset[str]) -> None:
        device = self.c.devices[device_index]
        # what a scripted case needs of a device's first login (the landline, a variant email…) is
        # sent then, even when that login happens in an earlier, unscripted session
        flags = flags | self.first_login_flags.pop(device_index, frozenset())
        account = self.c.accounts[account_index]
        signing_up = account_index not in self.created
        self._view(state, device_index, "Sign Up" if signing_up else "Login", "/account", "Your account")
        t = self._advance(state, 20, 90)
        if signing_up and device.app:
            # the mobile SDKs link the install's anonymous id to the new user explicitly
            self.seq += 1
            self.events.append(
                (
                    self._real(t),
                    self.c.number,
                    self.seq,
                    {
                        "type": "alias",
                        "previousId": device.anonymous_id,
                        "userId": account.user_id,
                        "messageId": str(uuid.uuid5(_MESSAGE_NAMESPACE, f"{self.seed}:{self.c.number}:{self.seq}")),
                        "timestamp": self._stamp(t),
                        "context": self._context(device, None, None),
                    },
                )
            )
        self.logged_in[device_index] = account_index
        traits = self._traits(account_index, flags, created=signing_up)
        if signing_up:
            traits["createdAt"] = self._stamp(t)
        self._emit(t, device_index, {"type": "identify", "traits": traits}, self._context(device, state["page"], None))
        self.created.add(account_index)
        self._track(state, device_index, "Signed Up" if signing_up else "Signed In", {"method": "email"})

    def _category(self) -> str:
        weights = self.c.category_weights
        return self.rng.choices(list(weights), weights=list(weights.values()))[0]

    def _product(self, category: str | None = None) -> dict:
        """A product of this (or a preferred) category, weighted by popularity and price taste."""
        products = _by_category()[category or self._category()]
        exp = self.b.price_exp
        weights = [float(p["price"]) ** exp / (rank + 1) ** 0.6 for rank, p in enumerate(products)]
        return self.rng.choices(products, weights=weights)[0]

    def _item(self, product: dict) -> dict:
        return {
            "product_id": product["sku"],
            "sku": product["sku"],
            "category": product["category"],
            "name": product["title"],
            "brand": product["brand"],
            "price": float(product["price"]),
            "currency": CURRENCY,
        }

    def _search(self, state: dict, device_index: int) -> dict:
        rng = self.rng
        product = self._product()
        kind = product["attributes"]["type"]
        if self.b is BEHAVIOURS["one_time_gift_buyer"] and rng.random() < 0.6:
            query = rng.choice(_GIFT_QUERIES)
        elif self.b is BEHAVIOURS["bargain_hunter"] and rng.random() < 0.5:
            query = rng.choice((f"{kind} sale", f"cheap {kind}", "sale", f"{product['category']} deals")).lower()
        else:
            options = [kind if kind != "book" else product["title"], product["brand"], product["category"]]
            if "color" in product["attributes"]:
                options.append(f"{product['attributes']['color']} {kind}")
            query = rng.choice(options).lower()
        if rng.random() < 0.08:
            query = _typo(rng, query)
        self._track(state, device_index, "Products Searched", {"query": query})
        self._view(
            state, device_index, "Search Results", "/search", f"Results for {query}", search=f"?q={quote_plus(query)}"
        )
        return product

    def _product_view(self, state: dict, device_index: int, product: dict) -> None:
        path = f"/p/{product['sku'].lower()}-{_slug(product['title'])}"
        self._view(state, device_index, "Product", path, product["title"], category=product["category"])
        self._advance(state, 15, 120)  # reading the page
        self._track(state, device_index, "Product Viewed", {**self._item(product), "url": f"{STORE_URL}{path}"})

    def _add_to_cart(self, state: dict, device_index: int, product: dict) -> None:
        rng = self.rng
        if not self.cart:
            self.cart_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        self.cart_at = state["t"]
        quantity = 1
        if product["category"] not in LUXURY and rng.random() < (0.3 if self.b.price_exp < 0 else 0.1):
            quantity = rng.randint(2, 3)
        self.cart.append((product, quantity))
        self._track(
            state, device_index, "Product Added", {**self._item(product), "quantity": quantity, "cart_id": self.cart_id}
        )

    def _lines(self) -> list[dict]:
        lines = []
        for product, quantity in self.cart:
            item = self._item(product)
            item.pop("currency")
            lines.append({**item, "quantity": quantity})
        return lines

    def _order_properties(self, *, started: bool = False, coupon: tuple | None = None) -> dict:
        subtotal = sum((p["price"] * q for p, q in self.cart), Decimal(0))
        discount = (subtotal * coupon[2]).quantize(Decimal("0.01")) if coupon else Decimal(0)
        revenue = subtotal - discount
        shipping = Decimal(0) if revenue >= 50 else Decimal("4.95")
        props = {
            "order_id": f"DS{self.seed}-{self.c.number:05d}-{self.orders + 1:02d}",
            "value": float(revenue),
            "revenue": float(revenue),
            "currency": CURRENCY,
            "products": self._lines(),
        }
        if not started:
            props.update(
                {
                    "checkout_id": self.cart_id,
                    "total": float(revenue + shipping),
                    "shipping": float(shipping),
                    "tax": float((revenue / 6).quantize(Decimal("0.01"))),  # 20% VAT included
                    "discount": float(discount),
                    "affiliation": self.affiliation,
                }
            )
            props.pop("value")
            if coupon:
                props["coupon"] = coupon[0]
        return props

    def _checkout(self, state: dict, device_index: int, flags: frozenset[str]) -> None:
        rng, device = self.rng, self.c.devices[device_index]
        self.affiliation = "Demo Store app" if device.app else "Demo Store web"
        self._view(state, device_index, "Checkout", "/checkout", "Checkout")
        self._track(state, device_index, "Checkout Started", self._order_properties(started=True))
        account = self._account_for(device)
        if device_index not in self.logged_in:
            if account is not None and "guest" not in flags and self._may_login(state):
                self._login(state, device_index, account, flags)
            else:  # guest checkout: the shop learns who it is from the order form
                traits = self._traits(0, flags, created=False)
                traits["address"] = {"city": self.c.city, "postalCode": self.c.postal_code, "country": self.c.country}
                self._emit(
                    self._advance(state, 40, 150),
                    device_index,
                    {"type": "identify", "traits": traits},
                    self._context(device, state["page"], None),
                )
        coupon = None
        if rng.random() < self.b.coupon_p:
            coupon = rng.choice(_COUPONS)
            self._track(
                state,
                device_index,
                "Coupon Applied",
                {"cart_id": self.cart_id, "coupon_id": coupon[0], "coupon_name": coupon[1]},
            )
        self._advance(state, 30, 180)
        self._track(state, device_index, "Order Completed", self._order_properties(coupon=coupon))
        self._view(state, device_index, "Order Confirmation", "/checkout/confirmation", "Thank you")
        self.orders += 1
        self.cart = []

    # -- the customer's whole history --

    def _start_for(self, device: Device, day: float | None = None) -> datetime:
        """A session start on the virtual clock: a day of the window, an hour this device is used at.

        Always the same number of draws, so a customer's story never depends on when we run.
        """
        rng = self.rng
        offset = rng.randrange(self.days) if day is None else int(min(max(day, 0), self.days - 1))
        hour = rng.choices(range(24), weights=_HOURS[device.kind])[0]
        minute = rng.randrange(60)
        return _VIRTUAL_LAST_DAY - timedelta(days=offset) + timedelta(hours=hour, minutes=minute)

    def _session_count(self) -> int:
        rng, b = self.rng, self.b
        if b is BEHAVIOURS["drive_by_visitor"]:
            return 1 if rng.random() < 0.8 else 2
        if b is BEHAVIOURS["one_time_gift_buyer"]:
            return rng.randint(1, 3)
        mean = b.sessions_per_week * self.days / 7 * math.exp(rng.gauss(0, 0.4))
        return max(1, _poisson(rng, mean))

    def run(self) -> list[tuple[datetime, int, int, dict]]:
        rng, c = self.rng, self.c
        count = max(self._session_count(), len(c.forced))
        device_weights = [
            (1.0 if d.shared else (2.0 if d.kind == "mobile" else 1.2)) * (1.5 if i == 0 else 1.0)
            for i, d in enumerate(c.devices)
        ]
        gift_day = rng.uniform(0, self.days)
        plan: list[tuple[datetime, int, frozenset[str]]] = []
        forced_starts = sorted(self._start_for(c.devices[i]) for i, _ in c.forced)
        for start, (device_index, flags) in zip(forced_starts, c.forced, strict=True):
            plan.append((start, device_index, flags))
            self.first_login_flags[device_index] = flags & LOGIN_FLAGS
            if "signup" in flags:
                self.account_from = start
        for _ in range(count - len(c.forced)):
            device_index = rng.choices(range(len(c.devices)), weights=device_weights)[0]
            day = gift_day + rng.uniform(-2, 2) if self.b is BEHAVIOURS["one_time_gift_buyer"] else None
            plan.append((self._start_for(c.devices[device_index], day), device_index, frozenset()))
        plan.sort(key=lambda s: s[0])
        previous = None
        for start, device_index, flags in plan:
            if previous is not None and start < previous + SESSION_SPACING:  # one session at a time
                start = previous + SESSION_SPACING + timedelta(minutes=rng.uniform(0, 60))
            self._session(start, device_index, flags)
            previous = start
        return self.events


def _poisson(rng: random.Random, mean: float) -> int:
    if mean > 40:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def demo_store_payloads(*, customers: int, days: int, seed: int, now: datetime) -> tuple[list[Customer], list[dict]]:
    """The plan and every tracking call it produces, in time order (as a store would send them)."""
    _check(customers=customers, days=days)
    plan = demo_store_plan(customers=customers, seed=seed)
    rows: list[tuple[datetime, int, int, dict]] = []
    for customer in plan:
        rows.extend(_CustomerSim(customer, seed=seed, days=days, now=now).run())
    rows.sort(key=lambda r: (r[0], r[1], r[2]))
    return plan, [r[3] for r in rows]


# --- running it ----------------------------------------------------------------------------------


@dataclass
class DemoSummary:
    """What a run planned and sent, and what the database holds afterwards (for the command's table)."""

    customers: int
    days: int
    seed: int
    behaviours: dict[str, int]
    identity_cases: dict[str, int]
    events_sent: int = 0
    events_accepted: int = 0
    events_duplicate: int = 0
    events_by_kind: dict[str, int] = field(default_factory=dict)  # stored for the demo source
    events_by_device: dict[str, int] = field(default_factory=dict)
    profiles: int = 0  # live profiles holding demo-store events
    profiles_merged_away: int = 0
    merges: dict[str, int] = field(default_factory=dict)  # "status reason" -> n, whole database
    match_candidates: dict[str, int] = field(default_factory=dict)  # "status reason" -> n
    traits_computed: int = 0
    seconds: float = 0.0
    message_ids: list[str] = field(default_factory=list, repr=False)


def _check(*, customers: int, days: int) -> None:
    if customers < 1:
        raise ValueError(f"customers must be at least 1 (got {customers}).")
    if days < 1:
        raise ValueError(f"days must be at least 1 (got {days}).")


def _demo_source() -> Source:
    """The ``demo-store`` source, created on first use (its write key is not needed: we ingest directly)."""
    source = Source.objects.filter(name=SOURCE_NAME).first()
    if source is not None:
        return source
    try:
        source, _ = source_create(name=SOURCE_NAME)
    except SourceNameTaken:  # created concurrently
        source = Source.objects.get(name=SOURCE_NAME)
    return source


def demo_store_generate(
    *,
    customers: int,
    days: int,
    seed: int,
    now: datetime | None = None,
    progress: bool = True,
    batch_size: int = BATCH_SIZE,
) -> DemoSummary:
    """Simulate the shop and send every call through ``clean_event`` + ``events_ingest``.

    Batches go in time order, as a store's traffic would arrive, so identity resolution sees the
    same sequence a live system would. Computed traits are then recomputed for everyone.
    """
    _check(customers=customers, days=days)
    started = time.monotonic()
    now = now or timezone.now()
    plan, payloads = demo_store_payloads(customers=customers, days=days, seed=seed, now=now)
    summary = DemoSummary(
        customers=customers,
        days=days,
        seed=seed,
        behaviours=dict(sorted(Counter(c.behaviour for c in plan).items())),
        identity_cases=dict(sorted(Counter(c.case for c in plan).items())),
        events_sent=len(payloads),
        message_ids=[p["messageId"] for p in payloads],
    )
    source = _demo_source()
    with tqdm(total=len(payloads), unit="ev", desc="demo-store events", disable=not progress) as bar:
        for begin in range(0, len(payloads), batch_size):
            chunk = payloads[begin : begin + batch_size]
            result = events_ingest(source=source, events=[clean_event(p, received_at=now) for p in chunk])
            summary.events_accepted += result.accepted
            summary.events_duplicate += result.duplicates
            bar.update(len(chunk))
    with tqdm(unit="profiles", desc="computed traits", disable=not progress) as bar:
        summary.traits_computed = traits_recompute_all(now=now, progress=lambda n: bar.update(n - bar.n))
    _fill_counts(summary, source)
    summary.seconds = round(time.monotonic() - started, 1)
    return summary


def _fill_counts(summary: DemoSummary, source: Source) -> None:
    events = Event.objects.filter(source=source)
    summary.events_by_kind = {
        f"{row['type']} {row['name']}".strip(): row["n"]
        for row in events.values("type", "name").annotate(n=Count("id")).order_by("type", "name")
    }
    summary.events_by_device = {
        row["device_type"] or "(unknown)": row["n"]
        for row in events.values("device_type").annotate(n=Count("id")).order_by("device_type")
    }
    summary.profiles = Profile.objects.filter(merged_into__isnull=True, events__source=source).distinct().count()
    summary.profiles_merged_away = Profile.objects.filter(merged_into__isnull=False).count()
    summary.merges = {
        f"{row['status']} {row['reason']}": row["n"]
        for row in Merge.objects.filter(undone_at__isnull=True)
        .values("status", "reason")
        .annotate(n=Count("id"))
        .order_by("status", "reason")
    }
    summary.match_candidates = {
        f"{row['status']} {row['reason']}": row["n"]
        for row in MatchCandidate.objects.values("status", "reason")
        .annotate(n=Count("id"))
        .order_by("status", "reason")
    }
