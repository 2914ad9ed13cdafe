"""Reading a product file (CSV with a header, or JSON Lines) into clean upsert items.

Every row is validated like an API item (``ProductInput``); the file is imported only when every
row is valid, so a bad file changes nothing and the errors name the line and the field.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

MAX_ERRORS = 20
TRUE = {"1", "true", "yes", "y", "t"}
FALSE = {"0", "false", "no", "n", "f"}


class ProductFileError(ValueError):
    """The file cannot be imported; the message lists what is wrong, by line."""


def _open(path: Path) -> io.TextIOBase:
    if not path.exists():
        raise ProductFileError(f"{path}: no such file.")
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path), encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def _csv_rows(handle) -> Iterator[tuple[int, dict]]:
    reader = csv.DictReader(handle)
    if not reader.fieldnames or "sku" not in [f.strip() for f in reader.fieldnames]:
        raise ProductFileError(
            "The CSV header has no 'sku' column (columns: sku, title, description, "
            "category, brand, price, in_stock, attributes)."
        )
    for row in reader:
        item: dict = {}
        for key, value in row.items():
            if key is None:
                continue
            key = key.strip()
            value = (value or "").strip()
            if key in ("price",) and value == "":
                continue
            if key == "in_stock":
                if value == "":
                    continue
                item[key] = True if value.lower() in TRUE else False if value.lower() in FALSE else value
            elif key == "attributes":
                if value:
                    try:
                        item[key] = json.loads(value)
                    except json.JSONDecodeError:
                        item[key] = value  # the validation says it is not an object
            else:
                item[key] = value
        yield reader.line_num, item


def _jsonl_rows(handle) -> Iterator[tuple[int, dict | str]]:
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, f"not JSON ({exc.msg})"
            continue
        yield number, value if isinstance(value, dict) else "not a JSON object"


def read_products(path: str, *, progress: bool = True) -> list[dict]:
    """Clean items of a product file; raises ProductFileError listing the bad lines."""
    from recommendations.api.serializers import ProductInput

    file = Path(path)
    with _open(file) as handle:
        is_jsonl = file.name.removesuffix(".gz").endswith((".jsonl", ".ndjson", ".json"))
        rows = _jsonl_rows(handle) if is_jsonl else _csv_rows(handle)
        items: list[dict] = []
        errors: list[str] = []
        for line, row in tqdm(rows, desc="reading products", unit=" rows", disable=not progress):
            if isinstance(row, str):
                errors.append(f"line {line}: {row}")
                continue
            serializer = ProductInput(data=row)
            if serializer.is_valid():
                items.append(dict(serializer.validated_data))
            else:
                detail = "; ".join(f"{field}: {' '.join(map(str, msgs))}" for field, msgs in serializer.errors.items())
                errors.append(f"line {line}: {detail}")
            if len(errors) >= MAX_ERRORS:
                errors.append(f"… stopped after {MAX_ERRORS} errors")
                break
    if errors:
        raise ProductFileError(f"{path}: {len(errors)} invalid rows, nothing imported:\n  " + "\n  ".join(errors))
    if not items:
        raise ProductFileError(f"{path}: no products in the file.")
    return items
