"""Protocol R: the split and metric arithmetic by hand, and ``evaluate_recommendations`` end to end."""

from __future__ import annotations

import csv
import gzip
import io
import json
from datetime import datetime, timedelta

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from profiles.models import Event, Profile
from recommendations.engine.data import PURCHASE, VIEW, Interactions
from recommendations.engine.evaluate import holdout_split, ranking_metrics, top_k

DAY = 86400.0


def test_holdout_split_follows_the_protocol():
    rows = [
        ("u1", "A", PURCHASE, 1, 10 * DAY, "o1"),
        ("u1", "A", PURCHASE, 1, 80 * DAY, "o2"),  # a repeat purchase is relevant
        ("u1", "B", PURCHASE, 1, 80 * DAY, "o2"),  # B never occurs in train: not a candidate
        ("u2", "A", PURCHASE, 1, 20 * DAY, "o3"),  # train only: not evaluated
        ("u3", "C", PURCHASE, 1, 75 * DAY, "o4"),  # test only: not evaluated
        ("u4", "C", PURCHASE, 1, 20 * DAY, "o5"),
        ("u4", "A", VIEW, 1, 90 * DAY, ""),  # a view in the test window is no purchase
        ("u5", "C", PURCHASE, 1, 30 * DAY, "o6"),
        ("u5", "B", PURCHASE, 1, 100 * DAY, "o7"),  # evaluated, with nothing relevant
    ]
    train, truth = holdout_split(Interactions.from_rows(rows), test_days=30)
    assert truth.cutoff == 70 * DAY  # max(timestamp) - 30 days
    assert truth.users == ["u1", "u5"]
    assert truth.relevant == [{"A"}, set()]
    assert truth.candidates == 2  # A and C occur in train
    assert sorted(train.users) == ["u1", "u2", "u4", "u5"] and sorted(train.items) == ["A", "C"]
    assert (train.ts < 70 * DAY).all() and len(train) == 4


def test_metrics_match_a_hand_computed_example():
    ranked = [["a", "b", "c"], ["x", "y", "z"]]
    relevant = [{"b", "z", "q"}, {"x"}]
    m = ranking_metrics(ranked, relevant, k=3, n_candidates=10)
    # customer 1: one hit at position 2 of 3 relevant; customer 2: a hit at position 1 of 1
    ndcg1 = (1 / np.log2(3)) / (1 + 1 / np.log2(3) + 1 / np.log2(4))
    assert m["precision@3"] == pytest.approx((1 / 3 + 1 / 3) / 2)
    assert m["recall@3"] == pytest.approx((1 / 3 + 1) / 2)
    assert m["ndcg@3"] == pytest.approx((ndcg1 + 1) / 2)
    assert m["map@3"] == pytest.approx(((1 / 2) / 3 + 1) / 2)
    assert m["hit_rate@3"] == 1.0
    assert m["coverage"] == pytest.approx(6 / 10)
    # a customer with nothing relevant counts, with zeros
    assert ranking_metrics([["a"]], [set()], k=1, n_candidates=1)["ndcg@1"] == 0.0


def test_top_k_breaks_ties_by_index():
    scores = np.array([[1.0, 3.0, 3.0, 2.0]])
    assert top_k(scores, 3).tolist() == [[1, 2, 3]]


HEADER = ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country"]


def write_orders(path, *, customers: int = 40, days: int = 120, gz: bool = False, header=HEADER) -> None:
    """A small UCI-shaped order history: staples re-bought on a cycle plus pairs bought together,
    with rows each cleaning rule must drop."""
    rng = np.random.default_rng(5)
    start = datetime(2021, 1, 1, 9, 0)
    rows = []
    invoice = 500000
    for c in range(customers):
        customer = f"{12000 + c}.0"
        staple, cycle = f"{20000 + c % 6}", 8 + c % 5
        t = float(rng.uniform(0, cycle))
        while t < days:
            invoice += 1
            when = (start + timedelta(days=t)).strftime("%Y-%m-%d %H:%M:%S")
            lines = [(staple, f"STAPLE {c % 6}", 1 + c % 3, 1.25)]
            if rng.random() < 0.4:
                pair = c % 3
                lines += [(f"3000{pair}A", f"PAIR {pair} LEFT", 2, 2.5), (f"3000{pair}B", f"PAIR {pair} RIGHT", 1, 3.0)]
            for item, description, quantity, price in lines:
                rows.append([str(invoice), item, description, str(quantity), when, str(price), customer, "UK"])
            rows.append([str(invoice), "POST", "POSTAGE", "1", when, "18.0", customer, "UK"])  # rule 3
            t += cycle
    rows.append(["C600000", "20000", "STAPLE 0", "-1", "2021-03-01 10:00:00", "1.25", "12000.0", "UK"])  # rule 2
    rows.append(["600001", "20001", "STAPLE 1", "1", "2021-03-01 10:00:00", "1.25", "", "UK"])  # rule 1
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(header)
    writer.writerows(rows)
    data = text.getvalue().encode()
    path.write_bytes(gzip.compress(data) if gz else data)


def run(*args) -> tuple[dict, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("evaluate_recommendations", *args, "--no-progress", stdout=out, stderr=err)
    return json.loads(out.getvalue()), err.getvalue()


@pytest.mark.django_db(transaction=True)
def test_evaluate_recommendations_reports_every_baseline_beside_cdps_models(tmp_path):
    path = tmp_path / "orders.csv.gz"
    write_orders(path, gz=True)
    events_before = Event.objects.count()

    result, table = run(str(path), "--test-days", "20", "--k", "5")

    assert result["dataset"] == "orders.csv.gz"
    assert result["users_evaluated"] == 40  # everyone buys in both periods
    assert result["items"] == 12  # 6 staples + 3 pairs; POST dropped
    for name in ("popularity", "buy_again", "als", "bpr", "item_item", "item_item_bm25", "hybrid", "content"):
        row = result["models"][name]
        assert set(row) == {
            "precision@5",
            "recall@5",
            "ndcg@5",
            "map@5",
            "hit_rate@5",
            "coverage",
            "train_seconds",
            "baseline",
        }
        assert 0.0 <= row["ndcg@5"] <= 1.0 and row["train_seconds"] >= 0
    assert result["models"]["buy_again"]["baseline"] and not result["models"]["hybrid"]["baseline"]
    # the staples come back on a cycle: knowing the person beats the global list
    assert result["models"]["buy_again"]["ndcg@5"] > result["models"]["popularity"]["ndcg@5"]
    assert result["best_baseline"] in result["models"]
    assert "hybrid / best baseline" in table and "buy_again *" in table
    # the transaction was rolled back: nothing stays behind
    assert Event.objects.count() == events_before
    assert not Profile.objects.filter(identifiers__value="12000").exists()


@pytest.mark.django_db(transaction=True)
def test_evaluate_recommendations_takes_other_column_names(tmp_path):
    path = tmp_path / "lines.csv"
    header = ["order", "sku", "name", "qty", "at", "price", "shopper", "country"]
    write_orders(path, customers=12, header=header)
    result, _ = run(
        str(path),
        *("--customer", "shopper", "--item", "sku", "--quantity", "qty", "--timestamp", "at", "--order", "order"),
        *("--price", "price", "--description", "name", "--test-days", "20"),
    )
    assert result["users_evaluated"] == 12 and "hybrid" in result["models"]


@pytest.mark.django_db(transaction=True)
def test_evaluate_recommendations_errors(tmp_path):
    with pytest.raises(CommandError, match="No such file"):
        run(str(tmp_path / "missing.csv"))
    path = tmp_path / "orders.csv"
    write_orders(path, customers=3)
    with pytest.raises(CommandError, match="Client"):
        run(str(path), "--customer", "Client")
    empty = tmp_path / "empty.csv"
    empty.write_text(",".join(HEADER) + "\nC1,POST,POSTAGE,1,2021-01-01 10:00:00,1.0,12000.0,UK\n")
    with pytest.raises(CommandError, match="no order line is left after cleaning"):
        run(str(empty))
    with pytest.raises(CommandError, match="--k"):
        run(str(path), "--k", "0")
