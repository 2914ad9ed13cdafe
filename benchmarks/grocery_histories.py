"""Synthetic grocery-like order histories, for the "no loss" half of recommendation quality.

    python benchmarks/grocery_histories.py OUT.csv.gz [--variant random|cycles] [--seed 1]
        [--customers 2500] [--products 800] [--days 240]

Online Retail is a gift wholesaler's history: few repeat purchases of the same item. A grocery
shop is the opposite: each customer re-buys a handful of staples, and a recommender that cannot
beat "buy again" there must at least not lose to it (issue 15). This writes such a history as an
order-lines CSV with Online Retail's columns, so ``evaluate_recommendations`` and
``benchmarks/recommendations_quality.py`` read it unchanged:

- ``--products`` items in 20 aisles (40 per aisle by default), a popular head in every aisle
  (Zipf weights), a price and a description naming the aisle (content features have something to
  read);
- each customer has aisle affinities (a Dirichlet draw), 6-12 staples chosen by affinity and
  popularity, a personal mean gap between orders (5-20 days) and a first order in the first three
  weeks;
- every order holds some of the customer's staples and 1-6 other items drawn by affinity and
  popularity;
- ``--variant random``: each staple is in an order with probability one half (nothing in the timing
  to learn); ``--variant cycles``: each staple has a personal cycle (5-30 days) and is re-bought
  when it has run out (with a day or two of jitter), as replenishment works.

The seed fixes the file; the file is written where it is told, never into the repository.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import sys
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

AISLES = (
    "dairy", "bakery", "produce", "meat", "fish", "frozen", "pantry", "snacks", "drinks", "coffee and tea",
    "breakfast", "baby", "pet", "household", "personal care", "wine", "beer", "deli", "world foods", "sweets",
)  # fmt: skip
START = datetime(2025, 1, 6, 8, 0)
HEADER = ("InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country")


def grocery_history(
    path: Path, *, variant: str = "cycles", seed: int = 1, customers: int = 2500, products: int = 800, days: int = 240
) -> dict:
    """Write the history to ``path`` (gzipped when it ends in .gz); returns counts."""
    if variant not in ("random", "cycles"):
        raise ValueError(f"unknown variant {variant!r}: random or cycles")
    if customers < 1 or products < len(AISLES) or days < 30:
        raise ValueError("need at least 1 customer, 20 products and 30 days")
    rng = np.random.default_rng(seed)
    aisle_of = np.arange(products) % len(AISLES)
    rank_in_aisle = np.arange(products) // len(AISLES)
    popularity = 1.0 / (1.0 + rank_in_aisle) ** 1.1  # Zipf within each aisle
    price = np.round(np.exp(rng.normal(1.0, 0.6, products)), 2)
    codes = [f"G{a:02d}{r:04d}" for a, r in zip(aisle_of, rank_in_aisle, strict=True)]
    names = [f"{AISLES[a].upper()} ITEM {r}" for a, r in zip(aisle_of, rank_in_aisle, strict=True)]
    opener = gzip.open if str(path).endswith(".gz") else open
    lines = orders = 0
    invoice = 500000
    with opener(path, "wt", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(HEADER)
        for c in range(customers):
            affinity = rng.dirichlet(np.full(len(AISLES), 0.3))
            weights = affinity[aisle_of] * popularity
            weights /= weights.sum()
            staples = rng.choice(products, size=int(rng.integers(6, 13)), replace=False, p=weights)
            cycle = rng.integers(5, 31, size=len(staples)).astype(float)
            last = np.full(len(staples), -1e9)
            mean_gap = rng.uniform(5, 20)
            day = rng.uniform(0, 21)
            customer_id = str(12000 + c)
            while day < days:
                if variant == "random":
                    chosen = staples[rng.random(len(staples)) < 0.5]
                else:
                    due = (day - last) >= cycle + rng.normal(0, 1.5, len(staples))
                    chosen = staples[due]
                    last[due] = day
                others = rng.choice(products, size=int(rng.integers(1, 7)), replace=False, p=weights)
                basket = list(dict.fromkeys([*chosen.tolist(), *others.tolist()]))
                at = START + timedelta(days=float(day), minutes=float(rng.uniform(0, 600)))
                stamp = at.strftime("%Y-%m-%d %H:%M:%S")
                invoice += 1
                for item in basket:
                    quantity = int(rng.integers(1, 4))
                    out.writerow(
                        (invoice, codes[item], names[item], quantity, stamp, price[item], customer_id, "United Kingdom")
                    )
                lines += len(basket)
                orders += 1
                day += rng.exponential(mean_gap) + 0.5
    return {
        "path": str(path),
        "variant": variant,
        "seed": seed,
        "customers": customers,
        "orders": orders,
        "lines": lines,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="the CSV to write (.csv or .csv.gz); not inside the repository")
    parser.add_argument("--variant", choices=["random", "cycles"], default="cycles")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--customers", type=int, default=2500)
    parser.add_argument("--products", type=int, default=800)
    parser.add_argument("--days", type=int, default=240)
    args = parser.parse_args(argv)
    try:
        counts = grocery_history(
            args.out,
            variant=args.variant,
            seed=args.seed,
            customers=args.customers,
            products=args.products,
            days=args.days,
        )
    except (ValueError, OSError) as exc:
        print(f"grocery_histories: {exc}", file=sys.stderr)
        return 2
    print(
        f"{counts['lines']:,} order lines in {counts['orders']:,} orders of {counts['customers']:,} customers: "
        f"{args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
