"""``manage.py evaluate_clustering`` (PROTOCOL.md C) on a small generated order-lines file."""

from __future__ import annotations

import csv
import gzip
import io
import json
import random
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import CommandError, call_command

from profiles.models import Event, Profile

pytestmark = pytest.mark.django_db

END = datetime(2011, 12, 9, 12, tzinfo=UTC)
# kind -> orders per customer, unit price range, days between the last order and END
KINDS = {"whales": (8, (40, 60), (1, 10)), "lapsed": (1, (2, 4), (250, 330)), "regular": (4, (5, 9), (5, 40))}


def order_lines(customers_per_kind: int = 25, seed: int = 5) -> list[list]:
    rng = random.Random(seed)
    rows = [["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country"]]
    invoice = 500000
    customer = 12000
    for orders, price, last in KINDS.values():
        for _ in range(customers_per_kind):
            customer += 1
            at = END - timedelta(days=rng.uniform(*last))
            for _ in range(orders):
                invoice += 1
                for line in range(rng.randint(1, 4)):
                    rows.append(
                        [
                            str(invoice),
                            f"2{line}00{rng.randint(0, 9)}",
                            "MUG",
                            rng.randint(1, 12),
                            at.strftime("%Y-%m-%d %H:%M:%S"),
                            round(rng.uniform(*price), 2),
                            f"{customer}.0",
                            "United Kingdom",
                        ]
                    )
                at -= timedelta(days=rng.uniform(15, 40))
    # noise the cleaning rules drop: a cancellation, postage, a line without customer
    rows.append(["C500001", "21000", "MUG", -1, "2011-12-01 10:00:00", 1.0, "12001.0", "UK"])
    rows.append(["500001", "POST", "POSTAGE", 1, "2011-12-01 10:00:00", 18.0, "12001.0", "UK"])
    rows.append(["600000", "21000", "MUG", 1, "2011-12-01 10:00:00", 1.0, "", "UK"])
    return rows


def write(path, rows, *, gz: bool = False) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    data = buffer.getvalue().encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return str(path)


def run(*args) -> tuple[dict, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("evaluate_clustering", *args, "--no-progress", "--bootstrap", "3", stdout=out, stderr=err)
    return json.loads(out.getvalue()), err.getvalue()


def test_every_algorithm_is_reported_through_the_product_path_and_rolled_back(tmp_path):
    rows = order_lines()
    path = write(tmp_path / "orders.csv.gz", rows, gz=True)
    last = max(r[4] for r in rows[1:] if r[6] and not r[0].startswith("C") and r[1] != "POST")

    result, table = run(path, "--k-min", "3", "--k-max", "6")

    assert result["dataset"] == "orders.csv.gz" and result["customers"] == 75
    assert result["as_of"] == datetime.fromisoformat(last).replace(tzinfo=UTC).isoformat()  # traits as of then
    assert {"recency_days", "frequency", "monetary"} <= set(result["features"])
    assert set(result["models"]) == {"kmeans", "gmm", "agglomerative"}
    for figures in result["models"].values():
        assert {"k", "silhouette", "davies_bouldin", "calinski_harabasz", "stability", "seconds"} <= set(figures)
        assert 3 <= figures["k"] <= 6 and -1 <= figures["silhouette"] <= 1 and figures["stability"] <= 1
    chosen = result["chosen"]
    assert chosen["k"] == result["models"][chosen["algorithm"]]["k"]
    assert len(result["clusters"]) == chosen["k"]
    assert sum(c["size"] for c in result["clusters"]) == 75
    assert all(c["description"] for c in result["clusters"])
    assert "silhouette" in table and "Davies-B." in table and "chosen:" in table
    assert not Profile.objects.exists() and not Event.objects.exists()  # rolled back


def test_column_flags_name_other_columns(tmp_path):
    rows = order_lines(customers_per_kind=20)
    rows[0] = ["order", "sku", "text", "qty", "when", "price", "client", "country"]
    path = write(tmp_path / "renamed.csv", rows)
    result, _ = run(
        path,
        *("--customer", "client", "--item", "sku", "--quantity", "qty", "--timestamp", "when"),
        *("--order", "order", "--price", "price", "--description", "text"),
        *("--k-min", "3", "--k-max", "4", "--algorithms", "kmeans"),
    )
    assert result["customers"] == 60 and list(result["models"]) == ["kmeans"]


@pytest.mark.parametrize(
    ("make", "args", "message"),
    [
        (None, (), "File not found"),
        (lambda p: write(p, [["a", "b"], ["1", "2"]]), (), "Column 'CustomerID' (--customer)"),
        (lambda p: write(p, order_lines()), ("--item", "Sku"), "Column 'Sku' (--item)"),
        (lambda p: write(p, order_lines()), ("--k-min", "9", "--k-max", "5"), "k_min"),
        (lambda p: write(p, order_lines()), ("--algorithms", "dbscan"), "Unknown algorithm"),
        (lambda p: write(p, order_lines()[:1]), (), "no order line is left"),
        (lambda p: write(p, order_lines(customers_per_kind=3)), (), "Too few profiles"),
        (lambda p: p.write_bytes(b"") or str(p), (), "is empty"),
    ],
)
def test_bad_files_and_flags_get_a_clear_error(tmp_path, make, args, message):
    target = tmp_path / "in.csv"
    path = make(target) if make else str(tmp_path / "missing.csv")
    with pytest.raises(CommandError) as error:
        run(path, *args)
    assert message in str(error.value)
    assert not Profile.objects.exists()


def test_a_file_without_prices_is_clustered_on_what_it_has(tmp_path):
    rows = [[r[0], r[1], r[3], r[4], r[6]] for r in order_lines(customers_per_kind=20)]  # no price, no description
    path = write(tmp_path / "no-prices.csv", rows)
    result, _ = run(path, "--k-min", "3", "--k-max", "5", "--algorithms", "kmeans")
    assert result["customers"] == 60
    assert "frequency" in result["features"] and "monetary" not in result["features"]  # all zero: dropped
    assert sum(c["size"] for c in result["clusters"]) == 60
