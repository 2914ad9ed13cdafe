"""The grocery-like histories of the quality benchmark: read by the product's own order-lines reader,
fixed by their seed, and with the structure each variant promises."""

from collections import Counter, defaultdict

import pytest

from benchmarks.grocery_histories import grocery_history, main
from profiles.bulk import read_order_lines


def _lines(path):
    return list(read_order_lines(str(path)))


def test_the_order_lines_reader_keeps_every_line_and_a_seed_fixes_the_file(tmp_path):
    a, b, c = tmp_path / "a.csv.gz", tmp_path / "b.csv.gz", tmp_path / "c.csv.gz"
    counts = grocery_history(a, seed=3, customers=40, products=100, days=60)
    grocery_history(b, seed=3, customers=40, products=100, days=60)
    grocery_history(c, seed=4, customers=40, products=100, days=60)
    lines = _lines(a)
    assert len(lines) == counts["lines"] > 0
    assert len({line.order for line in lines}) == counts["orders"]
    assert {line.customer for line in lines} <= {str(12000 + n) for n in range(40)}
    assert all(line.price is not None and line.description for line in lines)
    assert a.read_bytes() != c.read_bytes()
    assert _lines(a) == _lines(b)


def _repeat_share(path) -> float:
    """The share of order lines whose item the customer had bought before."""
    seen, repeats, lines = defaultdict(set), 0, _lines(path)
    for line in sorted(lines, key=lambda line: line.timestamp):
        repeats += line.item in seen[line.customer]
        seen[line.customer].add(line.item)
    return repeats / len(lines)


@pytest.mark.parametrize("variant", ["random", "cycles"])
def test_staples_are_bought_again(tmp_path, variant):
    path = tmp_path / f"{variant}.csv"
    grocery_history(path, variant=variant, seed=1, customers=60, products=200, days=120)
    assert _repeat_share(path) > 0.5
    per_customer = Counter(line.customer for line in _lines(path))
    assert len(per_customer) == 60


def test_cycles_rebuy_a_staple_at_its_own_pace(tmp_path):
    """On replenishment cycles a staple's gaps between purchases are steadier than at random."""
    import statistics

    spreads = {}
    for variant in ("random", "cycles"):
        path = tmp_path / f"{variant}.csv"
        grocery_history(path, variant=variant, seed=2, customers=80, products=200, days=200)
        times = defaultdict(list)
        for line in _lines(path):
            times[(line.customer, line.item)].append(line.timestamp.timestamp() / 86400)
        cv = []
        for days in times.values():
            if len(days) >= 6:
                gaps = [b - a for a, b in zip(sorted(days), sorted(days)[1:], strict=False)]
                cv.append(statistics.pstdev(gaps) / statistics.mean(gaps))
        spreads[variant] = statistics.median(cv)
    assert spreads["cycles"] < spreads["random"]


def test_bad_arguments_are_a_message_and_exit_2(tmp_path, capsys):
    assert main([str(tmp_path / "x.csv"), "--customers", "0"]) == 2
    assert "at least 1 customer" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown variant"):
        grocery_history(tmp_path / "y.csv", variant="weekly")
