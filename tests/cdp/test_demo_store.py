"""The demo store: a simulated shop sent through real ingestion, deterministic for a seed, with the
identity cases (two devices, household landline, family mailbox…) resolving as the rules say."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from cdp.demo.store import demo_catalog, demo_store_generate, demo_store_payloads, demo_store_plan
from profiles.models import Event, Identifier, MatchCandidate, Merge, Profile, Source
from profiles.normalize import normalize_email

pytestmark = pytest.mark.django_db

NOW = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)
SMALL = {"customers": 20, "days": 7, "seed": 11}
ZONES = {
    "Europe/London",
    "Europe/Berlin",
    "Europe/Paris",
    "Europe/Madrid",
    "Europe/Amsterdam",
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Los_Angeles",
}


def generate(**overrides):
    return demo_store_generate(**{**SMALL, **overrides}, now=NOW, progress=False)


def live(profile: Profile) -> Profile:
    while profile.merged_into_id:
        profile = profile.merged_into
    return profile


def profile_of(user_id: str) -> Profile:
    return live(Identifier.objects.get(kind="user_id", value=user_id).profile)


def household(case: str):
    plan = demo_store_plan(customers=SMALL["customers"], seed=SMALL["seed"])
    first, second = [c for c in plan if c.case == case][:2]
    assert first.household == second.number and first.first_name != second.first_name
    return first, second


def linked(model_rows, a: Profile, b: Profile) -> list:
    """Rows (merges or candidates) between the people behind a and b, whatever merged since."""
    pair = {a.pk, b.pk}
    return [row for row, x, y in model_rows if {live(x).pk, live(y).pk} == pair]


def kept_apart(a: Profile, b: Profile, kind: str) -> list:
    """What stopped a link through a shared email/phone: a review candidate (the traits contradict)
    or a refused merge (both already have a user id). Which one depends on whether the two identify
    calls were resolved in the same ingestion batch (see the report on in-batch contradictions)."""
    candidates = MatchCandidate.objects.filter(reason=f"shared_{kind}_contradicted", status="pending")
    refused = Merge.objects.filter(status="refused", reason=f"identifier:{kind}")
    return linked(((c, c.profile_a, c.profile_b) for c in candidates), a, b) + linked(
        ((m, m.winner, m.loser) for m in refused), a, b
    )


def test_every_kind_of_event_is_stored_through_ingestion():
    summary = generate()

    events = Event.objects.filter(source=Source.objects.get(name="demo-store"))
    assert summary.events_accepted == summary.events_sent == events.count()
    assert summary.events_sent > 300
    assert set(events.values_list("type", flat=True)) == {"identify", "track", "page", "screen", "alias"}
    assert {
        "Products Searched",
        "Product List Viewed",
        "Product Viewed",
        "Product Added",
        "Cart Viewed",
        "Checkout Started",
        "Order Completed",
        "Signed Up",
    } <= set(events.filter(type="track").values_list("name", flat=True))
    assert {"Home", "Product", "Search Results", "Cart", "Checkout"} <= set(
        events.filter(type="page").values_list("name", flat=True)
    )
    searched = events.filter(name="Products Searched").first()
    assert searched.properties["query"]
    order = events.filter(name="Order Completed").first().properties
    assert order["revenue"] > 0 and order["currency"] == "EUR"
    assert set(order["products"][0]) >= {"product_id", "sku", "category", "name", "price", "quantity", "brand"}
    # computed traits ran for everyone: buyers and abandoned carts are there
    assert summary.traits_computed == Profile.objects.filter(merged_into__isnull=True).count()
    assert Profile.objects.filter(computed__orders__gte=1).exists()
    assert Profile.objects.filter(computed__cart_abandoned=True).exists()


def test_context_has_zones_locales_user_agents_pages_and_campaigns():
    generate()

    events = list(Event.objects.all())
    assert {e.context["timezone"] for e in events} <= ZONES
    assert all(e.local_hour is not None for e in events)
    assert {e.device_type for e in events} == {"mobile", "desktop", "tablet"}
    web = [e for e in events if "userAgent" in e.context]
    assert any("iPhone" in e.context["userAgent"] for e in web)
    assert any("Android" in e.context["userAgent"] for e in web)
    assert any("Windows NT" in e.context["userAgent"] or "Macintosh" in e.context["userAgent"] for e in web)
    assert all(e.context["page"]["url"].startswith("https://shop.example.com/") for e in web)
    assert any("campaign" in e.context for e in events)
    assert {e.context["locale"] for e in events} <= {"en-GB", "en-US", "de-DE", "fr-FR", "es-ES", "nl-NL"}


def test_same_seed_gives_the_same_events_and_a_second_run_adds_nothing():
    _, first = demo_store_payloads(**SMALL, now=NOW)
    _, later = demo_store_payloads(**SMALL, now=NOW + timedelta(days=3, hours=7))
    _, other_seed = demo_store_payloads(**{**SMALL, "seed": 12}, now=NOW)
    assert sorted(p["messageId"] for p in first) == sorted(p["messageId"] for p in later)
    assert not {p["messageId"] for p in first} & {p["messageId"] for p in other_seed}

    once = generate()
    twice = generate()

    assert once.message_ids == twice.message_ids
    assert (once.events_sent, once.events_accepted) == (twice.events_sent, once.events_sent)
    assert (twice.events_accepted, twice.events_duplicate) == (0, once.events_sent)
    assert Event.objects.count() == once.events_sent
    assert once.events_by_kind == twice.events_by_kind


def test_one_person_on_two_devices_becomes_one_profile():
    generate()
    person = next(c for c in demo_store_plan(customers=20, seed=11) if c.case == "cross_device")

    profile = profile_of(person.user_id)

    anonymous = set(profile.identifiers.filter(kind="anonymous_id").values_list("value", flat=True))
    assert {d.anonymous_id for d in person.devices} <= anonymous
    assert Merge.objects.filter(status="merged", winner=profile, reason="identifier:anonymous_id").exists()
    assert {"mobile", "desktop"} <= set(profile.events.values_list("device_type", flat=True))
    # two spellings of one mailbox (e.g. ann.lee+shop@gmail.com, annlee@gmail.com): one identifier
    spellings = {e.traits["email"] for e in profile.events.filter(type="identify")}
    assert spellings == {person.email, person.email_variant}
    assert list(profile.identifiers.filter(kind="email").values_list("value", flat=True)) == [
        normalize_email(person.email)
    ]


def test_guest_order_then_account_on_another_device_is_one_profile():
    generate()
    person = next(c for c in demo_store_plan(customers=20, seed=11) if c.case == "guest_then_account")

    profile = profile_of(person.user_id)

    guest = Event.objects.filter(type="identify", user_id="", anonymous_id=person.devices[0].anonymous_id).first()
    assert guest is not None and guest.traits["email"] == person.email
    assert live(guest.profile) == profile
    assert profile.identifiers.filter(kind="email").count() == 1


def test_household_landline_does_not_merge_two_people():
    generate()
    ann, tom = household("shared_landline")

    a, b = profile_of(ann.user_id), profile_of(tom.user_id)

    assert a.pk != b.pk
    assert {a.traits["firstName"], b.traits["firstName"]} == {ann.first_name, tom.first_name}
    assert len(kept_apart(a, b, "phone")) == 1


def test_family_mailbox_does_not_merge_two_people():
    generate()
    sarah, david = household("family_mailbox")
    assert sarah.email == david.email

    a, b = profile_of(sarah.user_id), profile_of(david.user_id)

    assert a.pk != b.pk
    assert {a.traits["firstName"], b.traits["firstName"]} == {sarah.first_name, david.first_name}
    assert len(kept_apart(a, b, "email")) == 1


def test_family_tablet_used_by_two_people_is_a_refused_merge():
    generate()
    first, second = household("shared_tablet")

    a, b = profile_of(first.user_id), profile_of(second.user_id)

    assert a.pk != b.pk
    refused = Merge.objects.filter(status="refused", reason="identifier:anonymous_id")
    found = linked(((m, m.winner, m.loser) for m in refused), a, b)
    assert found and found[0].evidence["guard"] == "identifier_limit"


def test_second_account_with_a_typo_stays_apart_with_a_refused_phone_link():
    generate()
    person = next(c for c in demo_store_plan(customers=20, seed=11) if c.case == "second_account_typo")
    main, second = person.accounts

    a, b = profile_of(main.user_id), profile_of(second.user_id)

    assert a.pk != b.pk
    assert b.traits["lastName"] == second.last_name != main.last_name
    refused = Merge.objects.filter(status="refused", reason="identifier:phone")
    assert linked(((m, m.winner, m.loser) for m in refused), a, b)


def test_landline_and_mobile_are_both_on_the_profile():
    generate()
    person = next(c for c in demo_store_plan(customers=20, seed=11) if c.case == "landline_and_mobile")

    phones = set(profile_of(person.user_id).identifiers.filter(kind="phone").values_list("value", flat=True))

    assert len(phones) == 2


def test_no_profile_holds_two_customers_accounts():
    generate()
    owner = {a.user_id: c.number for c in demo_store_plan(customers=20, seed=11) for a in c.accounts}

    people: dict = {}
    for profile_id, user_id in Event.objects.exclude(user_id="").values_list("profile_id", "user_id"):
        people.setdefault(profile_id, set()).add(owner[user_id])

    assert people and all(len(numbers) == 1 for numbers in people.values())


def test_catalog_covers_the_shop_and_events_only_name_its_products():
    catalog = demo_catalog()
    skus = {p["sku"] for p in catalog}
    assert len(skus) == len(catalog) >= 150
    assert {
        "outdoor",
        "home decor",
        "kitchen",
        "fashion",
        "electronics",
        "beauty",
        "toys",
        "luxury watches",
        "luxury bags",
        "books",
    } <= {p["category"] for p in catalog}
    assert all(isinstance(p["price"], Decimal) and p["price"] > 0 for p in catalog)
    assert all(p["title"] and p["description"] and p["brand"] and p["attributes"] for p in catalog)
    assert demo_catalog() == catalog  # the same for every call and seed

    _, payloads = demo_store_payloads(**SMALL, now=NOW)
    viewed = {p["properties"]["product_id"] for p in payloads if p.get("event") == "Product Viewed"}
    assert viewed and viewed <= skus


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--customers", "0"], "--customers must be at least 1"),
        (["--days", "0"], "--days must be at least 1"),
        (["--customers", "-5", "--days", "3"], "--customers must be at least 1"),
    ],
)
def test_bad_arguments_are_refused(args, message):
    with pytest.raises(CommandError, match=message):
        call_command("generate_demo_store", *args, "--no-progress")
    assert not Event.objects.exists()


def test_service_refuses_bad_sizes_too():
    with pytest.raises(ValueError, match="days must be at least 1"):
        demo_store_generate(customers=5, days=0, seed=1, progress=False)


def test_command_prints_the_summary():
    out = StringIO()

    call_command("generate_demo_store", "--customers", "3", "--days", "2", "--seed", "1", "--no-progress", stdout=out)

    text = out.getvalue()
    for heading in (
        "Customers by behaviour",
        "Events stored for demo-store, by type and name",
        "Profiles",
        "Merges by status and reason",
        "Match candidates by status and reason",
    ):
        assert heading in text
    assert Source.objects.filter(name="demo-store").exists()
