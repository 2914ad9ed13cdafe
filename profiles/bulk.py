"""Bulk import of order history: an order-lines CSV becomes profiles and ``Order Completed`` events.

Why a separate path: the tracking API resolves identity event by event under advisory locks, which
is right for live traffic but not for a shop's whole order history at once. Here the file is read and cleaned
in Python (``read_order_lines``, shared with ``evaluate_recommendations`` so that both read a file
the same way), grouped into one Segment e-commerce ``Order Completed`` track event per customer
and order, and written set-based: COPY into temp tables, then ``INSERT ... SELECT ... ON CONFLICT
DO NOTHING`` into profiles, identifiers and events, in one transaction.

The result is the one the API path (``events_ingest`` with events built by ``clean_event``) gives
for the same calls sent in time order: the customer id is the ``userId`` (a ``user_id``
identifier); a customer whose ``user_id`` already has a profile gets the events on that profile;
a blocklisted id leaves the event on a profile of its own, as ingestion does; the message id is
``order-<order id>-<customer id>``, so running the import again adds nothing. One deliberate
difference: the API's 32 KB per-call limit (a transport limit) is not applied, so a wholesale
order with hundreds of lines is imported rather than refused.

Concurrency with live ingestion: existing identifiers are read ``FOR SHARE`` (a merge waits for
the import, as it waits for ingestion), profiles are locked in id order before they change, new
identifiers go in with ``ON CONFLICT DO NOTHING`` and a customer whose id was created meanwhile by
someone else is attached to that profile instead. A deadlock retries the whole write.

Computed traits: the touched profiles are marked in ``profiles_pendingwork`` inside the import
transaction (durable: if this process dies, the scheduled sweep does the rest), then refreshed here
in chunks with ``traits_refresh``, the marks cleared and ``on_profile_activity`` fired, as
``pending_process`` would.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import os
import random
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import NamedTuple

from django.db import DatabaseError, connection, transaction
from django.utils import timezone
from tqdm import tqdm

from profiles import hooks
from profiles.models import Source
from profiles.normalize import MAX_IDENTIFIER_LENGTH, normalize_identifier
from profiles.tracking.ingest import RETRYABLE
from profiles.tracking.validate import MAX_FUTURE_SKEW, MAX_MESSAGE_ID_LENGTH
from profiles.traits import CHUNK, ORDER_EVENT, traits_refresh

logger = logging.getLogger("cdp.bulk")

DEFAULT_PRICE_COLUMN = "UnitPrice"
DEFAULT_DESCRIPTION_COLUMN = "Description"
MAX_ATTEMPTS = 3
_CENT = Decimal("0.01")


class OrderImportError(ValueError):
    """An import that cannot start; the message says why, for the person who ran it."""


class OrderFileError(OrderImportError):
    """The file cannot be imported as it is (missing, unreadable, a named column is absent)."""


# --- reading and cleaning (PROTOCOL.md section R) ------------------------------------------------


@dataclass(frozen=True)
class OrderColumns:
    """Column names in the file. ``price``/``description``: ``None`` means the UCI default name
    when the file has it (optional), ``""`` means none; a name given explicitly must exist."""

    customer: str = "CustomerID"
    item: str = "StockCode"
    quantity: str = "Quantity"
    timestamp: str = "InvoiceDate"
    order: str = "InvoiceNo"
    price: str | None = None
    description: str | None = None

    @staticmethod
    def add_arguments(parser) -> None:
        """The protocol's column flags (PROTOCOL.md R), shared by every command that reads order lines."""
        parser.add_argument("file", help="order-lines CSV with a header row, .gz or plain")
        parser.add_argument("--customer", default="CustomerID", help="customer id column (default: %(default)s)")
        parser.add_argument("--item", default="StockCode", help="item id column (default: %(default)s)")
        parser.add_argument("--quantity", default="Quantity", help="quantity column (default: %(default)s)")
        parser.add_argument("--timestamp", default="InvoiceDate", help="order time column (default: %(default)s)")
        parser.add_argument("--order", default="InvoiceNo", help="order id column (default: %(default)s)")
        parser.add_argument(
            "--price", default=None, help="unit price column (default: UnitPrice if the file has it; '' for none)"
        )
        parser.add_argument(
            "--description",
            default=None,
            help="item description column (default: Description if the file has it; '' for none)",
        )

    @classmethod
    def from_options(cls, options: dict) -> OrderColumns:
        return cls(**{name: options[name] for name in _COLUMN_FIELDS})


_COLUMN_FIELDS = ("customer", "item", "quantity", "timestamp", "order", "price", "description")


class OrderLine(NamedTuple):
    customer: str
    item: str
    quantity: int | float
    timestamp: datetime  # aware, UTC
    order: str
    price: float | None
    description: str


@dataclass
class CleaningStats:
    """How many rows each cleaning step kept; filled while ``read_order_lines`` is consumed."""

    rows_read: int = 0
    kept_rule1: int = 0  # customer and item present
    kept_rule2: int = 0  # quantity > 0 and not a cancellation (unparsable quantities dropped here too)
    kept_rule3: int = 0  # item id has a digit
    bad_quantity: int = 0
    bad_timestamp: int = 0
    kept: int = 0  # after the timestamp could be parsed
    has_price: bool = False
    has_description: bool = False


_US_TIME = re.compile(
    r"^(\d{1,2})/(\d{1,2})/(\d{4}|\d{2})(?:[ T]+(\d{1,2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?\s*([AaPp][Mm])?)?$"
)


def parse_order_time(text: str) -> datetime | None:
    """An order timestamp in UTC, or None. Accepts ISO 8601 and the UCI file's month/day/year
    (``12/1/2010 8:26``, optional seconds, optional AM/PM); naive times are UTC. The year range is
    the tracking API's (1970-9000), so both paths refuse the same times."""
    text = text.strip()
    match = _US_TIME.match(text)
    try:
        if match:
            month, day, year, hour, minute, second, ampm = match.groups()
            year_n = int(year)
            if len(year) == 2:
                year_n += 2000 if year_n < 70 else 1900
            hour_n = int(hour or 0)
            if ampm:
                if not 1 <= hour_n <= 12:
                    return None
                hour_n = hour_n % 12 + (12 if ampm.lower() == "pm" else 0)
            value = datetime(year_n, int(month), int(day), hour_n, int(minute or 0), int(second or 0), tzinfo=UTC)
        else:
            value = datetime.fromisoformat(text)
    except ValueError:
        return None
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value if 1970 <= value.year <= 9000 else None


def _plain_id(value: str) -> str:
    """``17850.0`` -> ``17850``: R and pandas write integer ids as floats; the id is the integer."""
    value = value.strip()
    head, dot, tail = value.partition(".")
    if dot and tail and head.isdigit() and tail.strip("0") == "":
        return head
    return value


def _quantity(text: str) -> int | float | None:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return None
    if number != number or number in (float("inf"), float("-inf")):
        return None
    return int(number) if number.is_integer() else number


def _price(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return number if number == number and abs(number) != float("inf") else None


def _open_text(path: str) -> tuple[io.TextIOBase, io.BufferedReader]:
    """The file as text (gzip detected by its magic bytes, not its name) and the raw byte stream,
    whose position drives the progress bar."""
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed by the caller
    except FileNotFoundError as exc:
        raise OrderFileError(f"File not found: {path}") from exc
    except IsADirectoryError as exc:
        raise OrderFileError(f"{path} is a directory, not an order-lines CSV file.") from exc
    except OSError as exc:
        raise OrderFileError(f"Cannot open {path}: {exc.strerror or exc}") from exc
    binary = gzip.GzipFile(fileobj=raw, mode="rb") if raw.peek(2)[:2] == b"\x1f\x8b" else raw
    # undecodable bytes (a latin-1 export) must not stop an import; only descriptions are affected
    return io.TextIOWrapper(binary, encoding="utf-8-sig", errors="replace", newline=""), raw


def _column(header: list[str], name: str, flag: str, path: str) -> int:
    if name in header:
        return header.index(name)
    folded = [h.casefold() for h in header]
    if name.casefold() in folded:
        return folded.index(name.casefold())
    shown = ", ".join(repr(h) for h in header[:30])
    raise OrderFileError(f"Column {name!r} (--{flag}) is not in the header of {path}. Columns: {shown}.")


def _optional_column(header: list[str], name: str | None, default: str, flag: str, path: str) -> int | None:
    if name == "":
        return None
    if name is None:
        try:
            return _column(header, default, flag, path)
        except OrderFileError:
            return None
    return _column(header, name, flag, path)


def read_order_lines(
    path: str,
    columns: OrderColumns | None = None,
    *,
    stats: CleaningStats | None = None,
    progress: bool = False,
) -> Iterator[OrderLine]:
    """Order lines of a CSV file after the cleaning rules of PROTOCOL.md section R, in file order.

    Rules, in this order: (1) drop rows with an empty customer or item; (2) drop rows with
    quantity <= 0 (or no number) and orders whose id starts with ``C``; (3) drop items whose id has
    no digit. Rows whose timestamp cannot be parsed are then dropped and counted. ``stats`` is
    filled when the iteration ends (or is abandoned). Raises ``OrderFileError`` for a missing/unreadable file or
    a named column that the header lacks (before the first line is yielded).
    """
    columns = columns or OrderColumns()
    stats = stats if stats is not None else CleaningStats()
    text, raw = _open_text(path)
    bar = None
    try:
        try:
            sample = text.readline()
        except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
            raise OrderFileError(f"Cannot read {path}: {exc}") from exc
        if not sample.strip():
            raise OrderFileError(f"{path} is empty: an order-lines CSV needs a header row.")
        delimiter = max(",;\t|", key=sample.count)
        header = [h.strip() for h in next(csv.reader([sample], delimiter=delimiter))]
        i_customer = _column(header, columns.customer, "customer", path)
        i_item = _column(header, columns.item, "item", path)
        i_quantity = _column(header, columns.quantity, "quantity", path)
        i_time = _column(header, columns.timestamp, "timestamp", path)
        i_order = _column(header, columns.order, "order", path)
        i_price = _optional_column(header, columns.price, DEFAULT_PRICE_COLUMN, "price", path)
        i_description = _optional_column(header, columns.description, DEFAULT_DESCRIPTION_COLUMN, "description", path)
        stats.has_price, stats.has_description = i_price is not None, i_description is not None
        width = len(header)
        bar = tqdm(
            total=os.fstat(raw.fileno()).st_size,
            unit="B",
            unit_scale=True,
            desc="reading",
            disable=not progress,
            leave=False,
        )
        done_bytes = 0
        # caches: an order's lines share a timestamp, and ids, quantities and prices repeat a lot
        times: dict[str, datetime | None] = {}
        has_digit: dict[str, bool] = {}
        ids: dict[str, str] = {}
        quantities: dict[str, int | float | None] = {}
        prices: dict[str, float | None] = {}
        read = rule1 = rule2 = rule3 = bad_quantity = bad_timestamp = kept = 0
        reader = csv.reader(text, delimiter=delimiter)
        try:
            for row in reader:
                if not row:
                    continue
                read += 1
                if progress and not read & 0x3FFF:
                    position = raw.tell()
                    bar.update(position - done_bytes)
                    done_bytes = position
                if len(row) < width:
                    row += [""] * (width - len(row))
                customer, item = row[i_customer], row[i_item]
                customer = ids.get(customer) or ids.setdefault(customer, _plain_id(customer))
                item = ids.get(item) or ids.setdefault(item, _plain_id(item))
                if not customer or not item:
                    continue
                rule1 += 1
                text_quantity = row[i_quantity]
                if text_quantity in quantities:
                    quantity = quantities[text_quantity]
                else:
                    quantity = quantities[text_quantity] = _quantity(text_quantity)
                if quantity is None:
                    bad_quantity += 1
                    continue
                order = row[i_order]
                order = ids.get(order) or ids.setdefault(order, _plain_id(order))
                if quantity <= 0 or order.startswith("C"):
                    continue
                rule2 += 1
                digit = has_digit.get(item)
                if digit is None:
                    digit = has_digit[item] = any(ch.isdigit() for ch in item)
                if not digit:
                    continue
                rule3 += 1
                stamp = row[i_time]
                if stamp in times:
                    at = times[stamp]
                else:
                    at = times[stamp] = parse_order_time(stamp)
                if at is None:
                    bad_timestamp += 1
                    continue
                kept += 1
                price = None
                if i_price is not None:
                    text_price = row[i_price]
                    if text_price in prices:
                        price = prices[text_price]
                    else:
                        price = prices[text_price] = _price(text_price)
                yield OrderLine(
                    customer,
                    item,
                    quantity,
                    at,
                    order,
                    price,
                    row[i_description].strip() if i_description is not None else "",
                )
        except (OSError, EOFError, csv.Error) as exc:
            raise OrderFileError(f"Cannot read {path} past row {read}: {exc}") from exc
        finally:
            stats.rows_read, stats.kept_rule1, stats.kept_rule2, stats.kept_rule3 = read, rule1, rule2, rule3
            stats.bad_quantity, stats.bad_timestamp, stats.kept = bad_quantity, bad_timestamp, kept
        bar.update(max(bar.total - done_bytes, 0))
    finally:
        if bar is not None:
            bar.close()
        text.close()
        raw.close()


# --- orders --------------------------------------------------------------------------------------


@dataclass
class Order:
    """One order of one customer: the lines become the products of one ``Order Completed`` event."""

    customer: str
    order_id: str
    timestamp: datetime  # the first line's
    products: list[dict] = field(default_factory=list)
    revenue: Decimal | None = None

    @property
    def message_id(self) -> str:
        return f"order-{self.order_id}-{self.customer}"

    def properties(self) -> dict:
        """Segment e-commerce spec v2 ``Order Completed`` properties."""
        properties: dict = {"order_id": self.order_id}
        if self.revenue is not None:
            properties["revenue"] = float(self.revenue.quantize(_CENT, rounding=ROUND_HALF_UP))
        properties["products"] = self.products
        return properties


def orders_from_lines(lines: Iterable[OrderLine]) -> list[Order]:
    """Group lines by (customer, order id), in order of first appearance; one product per line."""
    orders: dict[tuple[str, str], Order] = {}
    exact: dict[float, Decimal] = {}  # the price as written (2.55, not its binary neighbour), once per price
    for line in lines:
        key = (line.customer, line.order)
        order = orders.get(key)
        if order is None:
            order = orders[key] = Order(customer=line.customer, order_id=line.order, timestamp=line.timestamp)
        product: dict = {"product_id": line.item, "sku": line.item, "quantity": line.quantity}
        if line.price is not None:
            product["price"] = line.price
            price = exact.get(line.price)
            if price is None:
                price = exact[line.price] = Decimal(repr(line.price))
            quantity = line.quantity if isinstance(line.quantity, int) else Decimal(repr(line.quantity))
            order.revenue = (order.revenue or Decimal(0)) + price * quantity
        if line.description:
            product["name"] = line.description
        order.products.append(product)
    return list(orders.values())


# --- import --------------------------------------------------------------------------------------


@dataclass
class ImportSummary:
    rows_read: int = 0
    kept_rule1: int = 0
    kept_rule2: int = 0
    kept_rule3: int = 0
    bad_quantity: int = 0
    bad_timestamp: int = 0
    lines_kept: int = 0
    lines_invalid: int = 0  # no order id, or ids too long for the tracking API
    orders: int = 0
    customers_new: int = 0
    customers_existing: int = 0
    events_inserted: int = 0
    events_skipped: int = 0
    profiles_refreshed: int = 0
    orders_suppressed: int = 0  # orders of erased people (suppression list), not imported
    seconds: float = 0.0
    source: str = ""

    def line(self) -> str:
        return (
            f"import_orders: {self.rows_read} rows read; kept {self.kept_rule1} after rule 1 (customer, item), "
            f"{self.kept_rule2} after rule 2 (quantity > 0, not cancelled), {self.kept_rule3} after rule 3 "
            f"(item has a digit); {self.bad_quantity} bad quantities, {self.bad_timestamp} bad timestamps, "
            f"{self.lines_invalid} invalid lines skipped; {self.orders} orders; customers {self.customers_new} new, "
            f"{self.customers_existing} existing; events {self.events_inserted} inserted, {self.events_skipped} "
            f"skipped; computed traits of {self.profiles_refreshed} profiles; source {self.source!r}; "
            + (f"{self.orders_suppressed} orders of erased people skipped; " if self.orders_suppressed else "")
            + f"{self.seconds:.1f} s"
        )


def _source_for(name: str) -> Source:
    """The named source, created when missing (its write key is not needed for an import)."""
    from profiles.services import SourceNameTaken, source_create

    name = name.strip()
    if not name:
        raise OrderImportError("The source needs a name (--source).")
    source = Source.objects.filter(name=name).first()
    if source is None:
        try:
            source, _ = source_create(name=name)
        except SourceNameTaken:  # created by someone else meanwhile
            source = Source.objects.get(name=name)
    if not source.is_active:
        raise OrderImportError(f"Source {name!r} is deactivated; activate it or import under another --source.")
    return source


def orders_import(
    *,
    path: str,
    columns: OrderColumns | None = None,
    source_name: str = "import",
    progress: bool = True,
    now: datetime | None = None,
) -> ImportSummary:
    """Import an order-lines file; safe to run again (orders already stored are skipped).

    ``now`` is the computation time of the computed traits (default: the current time).
    """
    started = time.monotonic()
    stats = CleaningStats()
    lines = list(read_order_lines(path, columns, stats=stats, progress=progress))  # a bad file fails here
    source = _source_for(source_name)
    summary = ImportSummary(
        rows_read=stats.rows_read,
        kept_rule1=stats.kept_rule1,
        kept_rule2=stats.kept_rule2,
        kept_rule3=stats.kept_rule3,
        bad_quantity=stats.bad_quantity,
        bad_timestamp=stats.bad_timestamp,
        lines_kept=stats.kept,
        source=source.name,
    )
    received_at = timezone.now()
    rows, summary.lines_invalid, duplicates = _event_rows(orders_from_lines(lines), received_at)
    del lines
    summary.orders = len(rows) + duplicates
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            written = _write(source=source, rows=rows, received_at=received_at, progress=progress)
            break
        except DatabaseError as exc:
            cause = exc.__cause__ or exc
            if attempt == MAX_ATTEMPTS or not isinstance(cause, (*RETRYABLE, _LostRace)):
                raise
            logger.info("import_orders: retrying after %s (attempt %d)", type(cause).__name__, attempt)
            time.sleep(random.uniform(0.05, 0.5) * attempt)
    summary.customers_new = written.customers_new
    summary.customers_existing = len({(row[1], row[2]) for row in rows}) - written.customers_new
    summary.events_inserted = written.inserted
    summary.orders_suppressed = written.suppressed
    summary.events_skipped = summary.orders - written.inserted - written.suppressed
    summary.profiles_refreshed = _refresh(
        profile_ids=written.profile_ids, marked_at=written.marked_at, now=now, progress=progress
    )
    summary.seconds = time.monotonic() - started
    return summary


def _event_rows(orders: list[Order], received_at: datetime) -> tuple[list[tuple], int, int]:
    """COPY rows for imp_order, the number of lines refused as the API would refuse their event,
    and the number of orders whose message id repeats an earlier one (the API keeps the first)."""
    rows: list[tuple] = []
    invalid = duplicates = 0
    seen: set[str] = set()
    identity: dict[str, tuple[str, str] | None] = {}
    latest = received_at + MAX_FUTURE_SKEW
    dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
    for order in orders:
        message_id = order.message_id
        if not order.order_id or len(order.customer) > MAX_IDENTIFIER_LENGTH or len(message_id) > MAX_MESSAGE_ID_LENGTH:
            invalid += len(order.products)
            continue
        if message_id in seen:
            duplicates += 1
            continue
        seen.add(message_id)
        if order.customer not in identity:
            value = normalize_identifier("user_id", order.customer)
            identity[order.customer] = ("user_id", value) if value else None
        # a blocklisted id identifies nobody: ingestion gives such an event a profile of its own
        kind, value = identity[order.customer] or ("anonymous_id", f"cdp-unidentified-{message_id}")
        occurred_at = order.timestamp if order.timestamp <= latest else received_at  # clock-skew clamp
        rows.append((message_id, kind, value, order.customer, occurred_at, order.timestamp, dumps(order.properties())))
    return rows, invalid, duplicates


class _LostRace(DatabaseError):
    """A customer id was created and then removed by others while we imported: try again."""


@dataclass
class _Written:
    inserted: int
    customers_new: int
    profile_ids: list[str]
    marked_at: datetime
    suppressed: int = 0


# Imports and erasures exclude each other: an import holds this advisory lock shared for its whole
# transaction, an erasure takes it exclusively before anything else (``import_lock_exclusive``). So
# an erasure never falls between an import's suppression check and its commit, and an import that
# starts after an erasure sees the erasure's suppression entries. (Per-identifier locks, as the
# tracking path takes them, would fill PostgreSQL's lock table for a whole shop's history.)
IMPORT_LOCK_KEY = 0x63647069  # "cdpi"


def import_lock_exclusive() -> None:
    """Wait for running imports and keep new ones out until the current transaction ends."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [IMPORT_LOCK_KEY])


class _Carrier:
    """What an ingestion filter reads of an event: its identifiers and (empty) context."""

    __slots__ = ("context", "identifiers")

    def __init__(self, kind: str, value: str) -> None:
        self.identifiers = [(kind, value)]
        self.context: dict = {}


def _suppress(cursor) -> int:
    """Orders of people the identifier filters refuse (erased people) leave imp_order, as the
    tracking path drops their events: the same filter, per distinct customer. Returns orders dropped."""
    if not hooks.ingest_filter_identifiers.subscribers:
        return 0
    cursor.execute("SELECT DISTINCT kind, value FROM imp_order ORDER BY kind, value")
    customers = cursor.fetchall()
    if not customers:
        return 0
    carriers = [_Carrier(kind, value) for kind, value in customers]
    kept = set(hooks.ingest_filter_identifiers.apply(events=carriers, indexes=list(range(len(carriers)))))
    refused = [customers[i] for i in range(len(customers)) if i not in kept]
    if not refused:
        return 0
    cursor.execute(
        "DELETE FROM imp_order o USING unnest(%s::text[], %s::text[]) AS r(kind, value) "
        "WHERE o.kind = r.kind AND o.value = r.value",
        [[k for k, _ in refused], [v for _, v in refused]],
    )
    return cursor.rowcount


_SETUP_SQL = """
DROP TABLE IF EXISTS imp_order, imp_customer, imp_touched;
CREATE TEMP TABLE imp_order (
    message_id text NOT NULL, kind text NOT NULL, value text NOT NULL, user_id text NOT NULL,
    occurred_at timestamptz NOT NULL, original_timestamp timestamptz NOT NULL, properties jsonb NOT NULL
) ON COMMIT DROP;
CREATE TEMP TABLE imp_touched (
    profile_id uuid PRIMARY KEY, first_at timestamptz NOT NULL, last_at timestamptz NOT NULL, events int NOT NULL
) ON COMMIT DROP;
"""

# orders this source already has: skipped, as ingestion skips a known messageId
_DEDUPE_SQL = """
DELETE FROM imp_order o USING profiles_event e WHERE e.source_id = %s AND e.message_id = o.message_id
"""

_CUSTOMERS_SQL = """
CREATE TEMP TABLE imp_customer ON COMMIT DROP AS
SELECT kind, value, min(occurred_at) AS first_at, max(occurred_at) AS last_at,
       gen_random_uuid() AS new_id, NULL::uuid AS profile_id, false AS is_new
FROM imp_order GROUP BY kind, value;
CREATE UNIQUE INDEX ON imp_customer (kind, value);
ANALYZE imp_customer;
"""

# owners of the identifiers we carry, held FOR SHARE (a merge moving them waits for us), and the
# survivor when the owner was merged away
_OWNERS_SQL = """
WITH owner AS (
    SELECT i.kind, i.value, i.profile_id FROM profiles_identifier i
    JOIN imp_customer c ON c.kind = i.kind AND c.value = i.value
    WHERE c.profile_id IS NULL
    ORDER BY i.id FOR SHARE OF i
)
UPDATE imp_customer c SET profile_id = COALESCE(p.merged_into_id, p.id)
FROM owner JOIN profiles_profile p ON p.id = owner.profile_id
WHERE c.kind = owner.kind AND c.value = owner.value
"""

_NEW_PROFILES_SQL = """
INSERT INTO profiles_profile (id, traits, trait_meta, computed, first_seen_at, last_seen_at, created_at, updated_at)
SELECT new_id, '{}', '{}', '{}', first_at, last_at, now(), now() FROM imp_customer WHERE profile_id IS NULL
"""

# identifier last_seen_at: the time of the event that created it, as profile_resolve sets it
_NEW_IDENTIFIERS_SQL = """
WITH won AS (
    INSERT INTO profiles_identifier (kind, value, profile_id, created_at, last_seen_at)
    SELECT kind, value, new_id, now(), first_at FROM imp_customer WHERE profile_id IS NULL ORDER BY kind, value
    ON CONFLICT (kind, value) DO NOTHING
    RETURNING kind, value
)
UPDATE imp_customer c SET profile_id = c.new_id, is_new = true FROM won WHERE c.kind = won.kind AND c.value = won.value
"""

# someone else created the identifier meanwhile: our empty profile goes, theirs gets the orders
_LOST_PROFILES_SQL = """
DELETE FROM profiles_profile p USING imp_customer c WHERE c.profile_id IS NULL AND p.id = c.new_id
"""

_LOCK_PROFILES_SQL = """
SELECT p.id FROM profiles_profile p
WHERE p.id IN (SELECT profile_id FROM imp_customer WHERE NOT is_new)
ORDER BY p.id FOR UPDATE OF p
"""

_EVENTS_SQL = """
WITH inserted AS (
    INSERT INTO profiles_event (
        source_id, message_id, profile_id, type, name, user_id, anonymous_id, properties, traits, context,
        occurred_at, original_timestamp, sent_at, received_at, device_type, local_hour
    )
    SELECT %s, o.message_id, c.profile_id, 'track', %s, o.user_id, '', o.properties, '{}', '{}',
           o.occurred_at, o.original_timestamp, NULL, %s, '', NULL
    FROM imp_order o JOIN imp_customer c ON c.kind = o.kind AND c.value = o.value
    ORDER BY o.occurred_at, o.message_id
    ON CONFLICT (source_id, message_id) DO NOTHING
    RETURNING profile_id, occurred_at
)
INSERT INTO imp_touched (profile_id, first_at, last_at, events)
SELECT profile_id, min(occurred_at), max(occurred_at), count(*) FROM inserted GROUP BY profile_id
"""

_SEEN_SQL = """
UPDATE profiles_profile p
SET first_seen_at = LEAST(p.first_seen_at, t.first_at), last_seen_at = GREATEST(p.last_seen_at, t.last_at),
    updated_at = now()
FROM imp_touched t
WHERE p.id = t.profile_id AND (p.first_seen_at > t.first_at OR p.last_seen_at < t.last_at)
"""

_PENDING_SQL = """
INSERT INTO profiles_pendingwork (profile_id, queued_at) SELECT profile_id, now() FROM imp_touched
ON CONFLICT (profile_id) DO UPDATE SET queued_at = EXCLUDED.queued_at
"""


def _write(*, source: Source, rows: list[tuple], received_at: datetime, progress: bool) -> _Written:
    """The whole database write, in one transaction."""
    steps = tqdm(total=8, desc="writing", unit="step", disable=not progress, leave=False)
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL statement_timeout = 0")  # an import may take longer than a request
            cursor.execute(_SETUP_SQL)
            steps.set_postfix_str("copy")
            with connection.connection.cursor() as pg_cursor:
                columns = "message_id, kind, value, user_id, occurred_at, original_timestamp, properties"
                with pg_cursor.copy(f"COPY imp_order ({columns}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
            cursor.execute("ANALYZE imp_order")
            steps.update()
            steps.set_postfix_str("known orders")
            cursor.execute(_DEDUPE_SQL, [source.pk])
            # suppression: after an erasure has committed (it excludes us by IMPORT_LOCK_KEY), its
            # entries are visible; the erased person's message ids are unknown again, so this check
            # is what keeps the next import from recreating them
            cursor.execute("SELECT pg_advisory_xact_lock_shared(%s)", [IMPORT_LOCK_KEY])
            suppressed = _suppress(cursor)
            steps.update()
            steps.set_postfix_str("customers")
            cursor.execute(_CUSTOMERS_SQL)
            cursor.execute(_OWNERS_SQL)
            steps.update()
            steps.set_postfix_str("new profiles")
            cursor.execute(_NEW_PROFILES_SQL)
            cursor.execute(_NEW_IDENTIFIERS_SQL)
            cursor.execute("SELECT count(*) FROM imp_customer WHERE profile_id IS NULL")
            if cursor.fetchone()[0]:
                cursor.execute(_LOST_PROFILES_SQL)
                cursor.execute(_OWNERS_SQL)
                cursor.execute("SELECT count(*) FROM imp_customer WHERE profile_id IS NULL")
                if cursor.fetchone()[0]:
                    raise _LostRace("an identifier vanished during the import")
            steps.update()
            steps.set_postfix_str("events")
            cursor.execute(_LOCK_PROFILES_SQL)
            cursor.execute(_EVENTS_SQL, [source.pk, ORDER_EVENT, received_at])
            steps.update()
            steps.set_postfix_str("seen times")
            cursor.execute(_SEEN_SQL)
            cursor.execute(_PENDING_SQL)
            steps.update()
            cursor.execute(
                "SELECT (SELECT count(*) FROM imp_customer WHERE is_new), now(), "
                "(SELECT coalesce(sum(events), 0) FROM imp_touched)"
            )
            new, marked_at, inserted = cursor.fetchone()
            cursor.execute("SELECT profile_id FROM imp_touched ORDER BY profile_id")
            profile_ids = [str(pid) for (pid,) in cursor.fetchall()]
            cursor.execute("DROP TABLE imp_order, imp_customer, imp_touched")  # also when nested in a transaction
            steps.update()
    finally:
        steps.close()
    return _Written(
        inserted=int(inserted),
        customers_new=new,
        profile_ids=profile_ids,
        marked_at=marked_at,
        suppressed=suppressed,
    )


def _refresh(*, profile_ids: list[str], marked_at: datetime, now: datetime | None, progress: bool) -> int:
    """Computed traits for the touched profiles, chunk by chunk, then the marks cleared and the
    activity hook fired per chunk (what ``pending_process`` does, with a progress bar)."""
    refreshed = 0
    with tqdm(total=len(profile_ids), desc="traits", unit="profile", disable=not progress, leave=False) as bar:
        for start in range(0, len(profile_ids), CHUNK):
            chunk = profile_ids[start : start + CHUNK]
            with transaction.atomic():
                refreshed += traits_refresh(profile_ids=chunk, now=now)
                with connection.cursor() as cursor:
                    # a mark re-queued by live traffic since the import stays for the worker
                    cursor.execute(
                        "DELETE FROM profiles_pendingwork WHERE profile_id = ANY(%s::uuid[]) AND queued_at = %s",
                        [chunk, marked_at],
                    )
                hooks.on_profile_activity.fire(profile_ids=chunk)
            bar.update(len(chunk))
    return refreshed
