"""``manage.py import_orders``: cleaning, idempotency, existing profiles, errors, and the same result
as the tracking API path (``events_ingest``) for the same orders."""

from __future__ import annotations

import csv
import gzip
import io
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from profiles import hooks
from profiles.bulk import CleaningStats, OrderColumns, parse_order_time, read_order_lines
from profiles.models import Event, Identifier, PendingWork, Profile, Source
from profiles.services import events_ingest, source_create, traits_refresh
from profiles.tracking.validate import clean_event
from tests.conftest import REPO, worker_env
from tests.profiles.helpers import call, person_insert, writer

pytestmark = pytest.mark.django_db

HEADER = ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country"]


def write_csv(path: Path, rows: list[list], header: list[str] = HEADER, *, gz: bool = False) -> str:
    buffer = io.StringIO()
    out = csv.writer(buffer)
    out.writerow(header)
    out.writerows(rows)
    data = buffer.getvalue().encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return str(path)


def run_import(path: str, *args: str) -> str:
    err = io.StringIO()
    call_command("import_orders", path, "--no-progress", *args, stderr=err)
    return err.getvalue()


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# --- cleaning and what is stored ------------------------------------------------------------------

CLEANING_ROWS = [
    ["536365", "85123A", "WHITE HANGING HEART", "6", "12/1/2010 8:26", "2.55", "17850.0", "United Kingdom"],
    ["536365", "71053", "WHITE METAL LANTERN", "2.0", "12/1/2010 8:26", "3.39", "17850.0", "United Kingdom"],
    ["536366", "22633", "HAND WARMER", "6", "12/1/2010 8:28", "1.85", "", "United Kingdom"],  # rule 1
    ["536367", "", "NO ITEM", "1", "12/1/2010 8:34", "1.00", "13047", "United Kingdom"],  # rule 1
    ["536368", "22960", "JAM MAKING SET", "0", "12/1/2010 8:34", "4.25", "13047", "United Kingdom"],  # rule 2
    ["536369", "22961", "JAM JAR", "-2", "12/1/2010 8:35", "1.45", "13047", "United Kingdom"],  # rule 2
    ["C536379", "22556", "PLASTERS", "1", "12/1/2010 9:41", "1.65", "13047", "United Kingdom"],  # rule 2
    ["536370", "POST", "POSTAGE", "3", "12/1/2010 8:45", "18.00", "12583", "France"],  # rule 3
    ["536371", "22728", "ALARM CLOCK PINK", "24", "not a date", "3.75", "12583", "France"],  # bad time
    ["536372", "22727", "ALARM CLOCK RED", "24", "2010-12-01 08:45:00", "3.75", "12583.0", "France"],
]


def test_cleaning_rules_apply_in_order_and_the_summary_counts_each_step(tmp_path):
    path = write_csv(tmp_path / "orders.csv", CLEANING_ROWS)

    summary = run_import(path)

    assert summary.strip().startswith(
        "import_orders: 10 rows read; kept 8 after rule 1 (customer, item), 5 after rule 2 (quantity > 0, "
        "not cancelled), 4 after rule 3 (item has a digit); 0 bad quantities, 1 bad timestamps, 0 invalid lines "
        "skipped; 2 orders; customers 2 new, 0 existing; events 2 inserted, 0 skipped; computed traits of 2 "
        "profiles; source 'import'; "
    )
    assert sorted(Identifier.objects.values_list("kind", "value")) == [("user_id", "12583"), ("user_id", "17850")]
    assert sorted(Event.objects.values_list("message_id", flat=True)) == ["order-536365-17850", "order-536372-12583"]


def test_an_order_becomes_one_order_completed_event_with_its_lines_as_products(tmp_path):
    path = write_csv(tmp_path / "orders.csv", CLEANING_ROWS)

    run_import(path)

    event = Event.objects.get(message_id="order-536365-17850")
    assert (event.type, event.name, event.user_id, event.anonymous_id) == ("track", "Order Completed", "17850", "")
    assert event.properties == {
        "order_id": "536365",
        "revenue": 22.08,
        "products": [
            {"product_id": "85123A", "sku": "85123A", "quantity": 6, "price": 2.55, "name": "WHITE HANGING HEART"},
            {"product_id": "71053", "sku": "71053", "quantity": 2, "price": 3.39, "name": "WHITE METAL LANTERN"},
        ],
    }
    assert event.occurred_at == event.original_timestamp == at("2010-12-01 08:26")
    assert (event.traits, event.context, event.sent_at, event.device_type, event.local_hour) == ({}, {}, None, "", None)
    assert Source.objects.get(pk=event.source_id).name == "import"
    profile = event.profile
    assert (profile.first_seen_at, profile.last_seen_at) == (at("2010-12-01 08:26"), at("2010-12-01 08:26"))
    assert (profile.computed["orders"], profile.computed["revenue"], profile.computed["events"]) == (1, 22.08, 1)
    assert profile.computed_at is not None
    assert not PendingWork.objects.exists()  # the import computed the traits itself


def test_profile_seen_times_span_the_customers_orders_in_any_file_order(tmp_path):
    rows = [
        ["2", "10001", "B", "1", "2011-03-01 10:00:00", "1", "42", "UK"],
        ["1", "10002", "A", "1", "2011-01-01 09:00:00", "1", "42", "UK"],
        ["3", "10003", "C", "1", "2011-02-01 11:00:00", "1", "42", "UK"],
    ]

    run_import(write_csv(tmp_path / "orders.csv", rows))

    profile = Profile.objects.get()
    assert (profile.first_seen_at, profile.last_seen_at) == (at("2011-01-01 09:00"), at("2011-03-01 10:00"))
    assert profile.identifiers.get().last_seen_at == at("2011-01-01 09:00")
    assert profile.computed["orders"] == 3


def test_a_file_whose_lines_are_all_dropped_imports_nothing(tmp_path):
    summary = run_import(write_csv(tmp_path / "orders.csv", CLEANING_ROWS[2:9]))

    assert "0 orders; customers 0 new, 0 existing; events 0 inserted, 0 skipped;" in summary
    assert not Profile.objects.exists()
    assert not Event.objects.exists()


def test_running_the_import_again_adds_nothing(tmp_path):
    path = write_csv(tmp_path / "orders.csv", CLEANING_ROWS)
    run_import(path)
    before = sorted(Profile.objects.values_list("pk", "first_seen_at", "last_seen_at"))

    summary = run_import(path)

    assert "customers 0 new, 2 existing; events 0 inserted, 2 skipped;" in summary
    assert (Event.objects.count(), Identifier.objects.count(), Source.objects.count()) == (2, 2, 1)
    assert sorted(Profile.objects.values_list("pk", "first_seen_at", "last_seen_at")) == before


def test_a_file_with_more_orders_adds_only_the_new_ones(tmp_path):
    run_import(write_csv(tmp_path / "a.csv", CLEANING_ROWS[:2]))
    more = [*CLEANING_ROWS[:2], ["536400", "21730", "LANTERN", "1", "12/2/2010 10:00", "4.25", "17850", "UK"]]

    summary = run_import(write_csv(tmp_path / "b.csv", more))

    assert "customers 0 new, 1 existing; events 1 inserted, 1 skipped;" in summary
    profile = Profile.objects.get()
    assert profile.events.count() == 2
    assert profile.last_seen_at == at("2010-12-02 10:00")
    assert profile.computed["orders"] == 2


def test_a_customer_known_from_the_api_gets_the_orders_on_their_profile(write_key, tmp_path):
    client = writer(write_key)
    response = call(client, "identify", userId="17850", traits={"email": "ann@example.com", "first_name": "Ann"})
    assert response.status_code == 200
    known = Profile.objects.get()
    seen_at = known.last_seen_at

    summary = run_import(write_csv(tmp_path / "orders.csv", CLEANING_ROWS))

    assert "customers 1 new, 1 existing; events 2 inserted" in summary
    assert Profile.objects.count() == 2
    known.refresh_from_db()
    assert known.events.filter(name="Order Completed").get().message_id == "order-536365-17850"
    assert set(known.identifiers.values_list("kind", "value")) == {("user_id", "17850"), ("email", "ann@example.com")}
    assert (known.first_seen_at, known.last_seen_at) == (at("2010-12-01 08:26"), seen_at)
    assert known.traits["first_name"] == "Ann"
    assert known.computed["orders"] == 1


def test_an_identifier_still_on_a_merged_away_profile_leads_to_the_survivor(tmp_path):
    # merges move identifiers; ingestion still follows merged_into for one a concurrent merge moves
    winner = Profile.objects.create(first_seen_at=at("2009-01-01 00:00"), last_seen_at=at("2009-01-01 00:00"))
    loser = Profile.objects.create(
        first_seen_at=at("2009-02-01 00:00"), last_seen_at=at("2009-02-01 00:00"), merged_into=winner
    )
    Identifier.objects.create(kind="user_id", value="17850", profile=loser, last_seen_at=loser.first_seen_at)

    run_import(write_csv(tmp_path / "orders.csv", CLEANING_ROWS[:2]))

    assert Event.objects.get().profile_id == winner.pk
    winner.refresh_from_db()
    assert winner.last_seen_at == at("2010-12-01 08:26")
    assert winner.computed["orders"] == 1


def test_imported_profiles_fire_the_activity_hook(tmp_path, django_capture_on_commit_callbacks):
    seen: list[str] = []

    def subscriber(*, profile_ids, **kwargs):
        seen.extend(profile_ids)

    hooks.on_profile_activity.subscribe(subscriber)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            run_import(write_csv(tmp_path / "orders.csv", CLEANING_ROWS))
    finally:
        hooks.on_profile_activity.unsubscribe(subscriber)
    assert sorted(seen) == sorted(str(p) for p in Profile.objects.values_list("pk", flat=True))


def test_gzipped_file_with_other_column_names_and_no_price(tmp_path):
    header = ["order_ref", "user", "sku", "qty", "ordered_at"]
    rows = [["A-1", "c1", "SKU1", "2", "2011-05-01T10:00:00Z"], ["A-1", "c1", "SKU2", "1", "2011-05-01T10:00:00Z"]]
    path = write_csv(tmp_path / "orders.data", rows, header, gz=True)  # gzip is recognised by content

    flags = ["--order", "order_ref", "--customer", "user", "--item", "sku", "--quantity", "qty"]
    run_import(path, *flags, "--timestamp", "ordered_at")

    event = Event.objects.get()
    assert event.message_id == "order-A-1-c1"
    assert event.properties == {
        "order_id": "A-1",
        "products": [
            {"product_id": "SKU1", "sku": "SKU1", "quantity": 2},
            {"product_id": "SKU2", "sku": "SKU2", "quantity": 1},
        ],
    }


def test_a_blocklisted_customer_id_gets_a_profile_per_order_as_ingestion_does(tmp_path):
    rows = [
        ["1", "10001", "A", "1", "2011-01-01 09:00:00", "1", "unknown", "UK"],
        ["2", "10001", "A", "1", "2011-01-02 09:00:00", "1", "unknown", "UK"],
    ]

    run_import(write_csv(tmp_path / "orders.csv", rows))

    assert sorted(Identifier.objects.values_list("kind", "value")) == [
        ("anonymous_id", "cdp-unidentified-order-1-unknown"),
        ("anonymous_id", "cdp-unidentified-order-2-unknown"),
    ]
    assert set(Event.objects.values_list("user_id", flat=True)) == {"unknown"}


# --- errors ---------------------------------------------------------------------------------------


def test_a_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(CommandError, match=r"File not found: .*nowhere\.csv"):
        run_import(str(tmp_path / "nowhere.csv"))
    assert not Source.objects.exists()


def test_a_column_named_by_a_flag_must_exist(tmp_path):
    path = write_csv(tmp_path / "orders.csv", CLEANING_ROWS)
    with pytest.raises(CommandError, match=r"Column 'Customer' \(--customer\) is not in the header"):
        run_import(path, "--customer", "Customer")
    with pytest.raises(CommandError, match=r"Column 'Price' \(--price\) is not in the header"):
        run_import(path, "--price", "Price")
    assert not Event.objects.exists()


def test_an_empty_file_is_a_clear_error(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(CommandError, match="is empty"):
        run_import(str(path))


def test_a_deactivated_source_is_refused(tmp_path):
    source, _ = source_create(name="import")
    Source.objects.filter(pk=source.pk).update(is_active=False)
    with pytest.raises(CommandError, match="deactivated"):
        run_import(write_csv(tmp_path / "orders.csv", CLEANING_ROWS))


def test_the_command_exits_non_zero_without_a_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "manage.py", "import_orders", str(tmp_path / "nowhere.csv"), "--no-progress"],
        cwd=REPO,
        env=worker_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "File not found" in proc.stderr
    assert "Traceback" not in proc.stderr


# --- reading --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12/1/2010 8:26", "2010-12-01 08:26"),
        ("12/13/2010 08:26:59", "2010-12-13 08:26:59"),
        ("1/2/2011 8:05 PM", "2011-01-02 20:05"),
        ("1/2/2011 12:05 AM", "2011-01-02 00:05"),
        ("12/1/10 8:26", "2010-12-01 08:26"),
        ("2010-12-01 08:26:00", "2010-12-01 08:26"),
        ("2010-12-01T08:26:00Z", "2010-12-01 08:26"),
        ("2010-12-01T09:26:00+01:00", "2010-12-01 08:26"),
        ("2010-12-01", "2010-12-01 00:00"),
        ("13/1/2010 8:26", None),
        ("1/2/2011 13:05 PM", None),
        ("1900-01-01 00:00", None),
        ("yesterday", None),
        ("", None),
    ],
)
def test_order_times_are_parsed_as_utc(text, expected):
    assert parse_order_time(text) == (at(expected) if expected else None)


def test_reader_handles_semicolons_a_bom_ragged_rows_and_float_ids(tmp_path):
    path = tmp_path / "orders.csv"
    path.write_bytes(
        "\ufeffInvoiceNo;StockCode;Quantity;InvoiceDate;CustomerID\n"
        "536365.0;85123A;6.0;12/1/2010 8:26;17850.0\n"
        "536366;22633;x;12/1/2010 8:28;17850\n"
        "536367;22634\n"
        "\n".encode()
    )
    stats = CleaningStats()

    lines = list(read_order_lines(str(path), OrderColumns(), stats=stats))

    assert [(line.order, line.item, line.quantity, line.customer, line.price, line.description) for line in lines] == [
        ("536365", "85123A", 6, "17850", None, "")
    ]
    assert (stats.rows_read, stats.kept_rule1, stats.bad_quantity, stats.kept_rule2, stats.kept) == (3, 2, 1, 1, 1)
    assert (stats.has_price, stats.has_description) == (False, False)


# --- the same result as the tracking API path -----------------------------------------------------


def _orders(base: datetime) -> list[dict]:
    """Orders as a shop would send them; times far enough back that computed traits do not change
    while the test runs (recency in whole days, engagement decayed to zero)."""
    day = timedelta(days=1)
    return [
        {"customer": "100", "order": "5001", "at": base - 30 * day, "lines": [("20725", 10, 1.65, "LUNCH BAG RED")]},
        {
            "customer": "100",
            "order": "5002",
            "at": base - 10 * day,
            "lines": [("22386", 3, 1.005, 'JUMBO BAG "PINK", POLKADOT'), ("20725", 2, 1.65, "LUNCH BAG RED")],
        },
        {"customer": "100", "order": "5003", "at": base, "lines": [("85099B", 1, 2.08, "JUMBO BAG £ RED")]},
        {"customer": "200", "order": "5004", "at": base - 20 * day, "lines": [("22423", 1, 12.75, "CAKESTAND")]},
        {"customer": "300", "order": "5005", "at": base - 5 * day, "lines": [("47566", 4, 4.95, "PARTY BUNTING")]},
        {"customer": "400", "order": "5006", "at": base - 2 * day, "lines": [("84879", 32, 1.69, "")]},
        {"customer": "n/a", "order": "5007", "at": base - 1 * day, "lines": [("22720", 1, 4.95, "CAKE TINS")]},
        {"customer": "n/a", "order": "5008", "at": base - 3 * day, "lines": [("22720", 2, 4.95, "CAKE TINS")]},
    ]


def _csv_rows(orders: list[dict]) -> list[list]:
    """The orders as UCI order lines, in a file order that is not time order, in both time formats,
    with ids and quantities written as floats, plus lines that cleaning drops."""
    rows = []
    for n, order in enumerate(reversed(orders)):
        when = order["at"].strftime("%m/%d/%Y %H:%M") if n % 2 else order["at"].strftime("%Y-%m-%d %H:%M:%S")
        customer = f"{order['customer']}.0" if order["customer"].isdigit() else order["customer"]
        for item, quantity, price, description in order["lines"]:
            rows.append([order["order"], item, description, f"{quantity}.0", when, str(price), customer, "UK"])
    rows.insert(2, ["C5002", "22386", "CANCELLED", "1", "2011-01-01 00:00:00", "1.95", "100", "UK"])
    rows.insert(4, ["5002", "POST", "POSTAGE", "1", "2011-01-01 00:00:00", "18", "100", "UK"])
    rows.append(["5009", "22386", "NO CUSTOMER", "1", "2011-01-01 00:00:00", "1.95", "", "UK"])
    return rows


def _payload(order: dict) -> dict:
    """The Segment call for an order, written from the spec independently of profiles.bulk."""
    revenue = sum(Decimal(str(price)) * quantity for _, quantity, price, _ in order["lines"])
    products = []
    for item, quantity, price, description in order["lines"]:
        product = {"product_id": item, "sku": item, "quantity": quantity, "price": price}
        if description:
            product["name"] = description
        products.append(product)
    return {
        "type": "track",
        "event": "Order Completed",
        "userId": order["customer"],
        "messageId": f"order-{order['order']}-{order['customer']}",
        "timestamp": order["at"].isoformat(),
        "properties": {
            "order_id": order["order"],
            "revenue": float(revenue.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)),
            "products": products,
        },
    }


def _known_customer(identified_at: datetime) -> None:
    """Customer 400 exists before the import: created through the API path."""
    storefront, _ = source_create(name="storefront")
    identify = {
        "type": "identify",
        "userId": "400",
        "messageId": "identify-400",
        "timestamp": identified_at.isoformat(),
        "traits": {"email": "kim@example.com", "first_name": "Kim"},
    }
    events_ingest(source=storefront, events=[clean_event(identify, received_at=timezone.now())])


def _snapshot() -> list:
    """Everything that makes up the result, keyed by content (profile ids differ between runs)."""
    fields = "message_id type name user_id anonymous_id properties traits context occurred_at original_timestamp"
    fields += " sent_at device_type local_hour source_id"
    sources = dict(Source.objects.values_list("pk", "name"))
    profiles = []
    for profile in Profile.objects.all():
        events = [
            {**row, "source_id": sources[row["source_id"]]}
            for row in profile.events.values(*fields.split()).order_by("message_id")
        ]
        profiles.append(
            {
                "identifiers": sorted(profile.identifiers.values_list("kind", "value", "last_seen_at")),
                "merged": profile.merged_into_id is not None,
                "traits": profile.traits,
                "trait_meta": profile.trait_meta,
                "first_seen_at": profile.first_seen_at,
                "last_seen_at": profile.last_seen_at,
                "computed": profile.computed,
                "events": events,
            }
        )
    return sorted(profiles, key=lambda p: repr(p["identifiers"]))


def test_the_import_gives_the_same_result_as_the_api_path(tmp_path):
    base = (timezone.now() - timedelta(days=2000, hours=12)).replace(second=0, microsecond=0)
    orders = _orders(base)
    path = write_csv(tmp_path / "orders.csv", _csv_rows(orders))

    # given customer 400 known from the storefront, when the file is imported with the command
    _known_customer(base - timedelta(days=40))
    run_import(path)
    imported = _snapshot()

    # when everything is deleted and the same orders are sent through the API path instead
    PendingWork.objects.all().delete()
    Event.objects.all().delete()
    Identifier.objects.all().delete()
    Profile.objects.all().delete()
    Source.objects.all().delete()
    _known_customer(base - timedelta(days=40))
    source, _ = source_create(name="import")
    received_at = timezone.now()
    calls = [clean_event(_payload(order), received_at=received_at) for order in sorted(orders, key=lambda o: o["at"])]
    result = events_ingest(source=source, events=calls)
    assert result.accepted == len(orders)
    traits_refresh(profile_ids=Profile.objects.values_list("pk", flat=True))
    through_api = _snapshot()

    # then both paths stored the same profiles, identifiers, events and computed traits
    assert len(imported) == 6  # 100, 200, 300, 400 and one per order of the blocklisted "n/a"
    assert imported == through_api


# --- concurrency ----------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_customer_created_by_live_traffic_during_the_import_keeps_one_profile(tmp_path):
    """Another transaction creates the customer's user_id while the import runs: the import waits
    for it, drops the profile it had made, and puts the orders on the other one."""
    import threading
    import time

    import psycopg
    from django.db import connection

    settings = connection.settings_dict
    conninfo = psycopg.conninfo.make_conninfo(
        dbname=settings["NAME"], user=settings["USER"], host=settings["HOST"], port=settings["PORT"] or 5432,
        password=settings["PASSWORD"] or None,
    )  # fmt: skip
    inserted = threading.Event()
    theirs: list[str] = []

    def live_traffic():
        with psycopg.connect(conninfo) as other:
            pid = person_insert(other, "user_id", "17850")
            theirs.append(str(pid))
            inserted.set()
            time.sleep(1.0)  # the import reaches the identifier insert meanwhile and waits for us
            other.commit()

    thread = threading.Thread(target=live_traffic)
    thread.start()
    assert inserted.wait(10)
    try:
        summary = run_import(write_csv(tmp_path / "orders.csv", CLEANING_ROWS[:2]))
    finally:
        thread.join()

    assert "customers 0 new, 1 existing; events 1 inserted" in summary
    assert [str(p) for p in Profile.objects.values_list("pk", flat=True)] == theirs
    assert str(Event.objects.get().profile_id) == theirs[0]
