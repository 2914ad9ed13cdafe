"""Import or update products from a CSV (with a header) or JSON Lines file (.gz works too)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from recommendations import services
from recommendations.catalog_io import ProductFileError, read_products

CHUNK = 5000


class Command(BaseCommand):
    help = (
        "Upsert products by sku from a CSV (columns sku, title, description, category, brand, price, in_stock, "
        "attributes as JSON) or a JSON Lines file. Nothing is imported when a row is invalid."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", help="path to a .csv, .jsonl (or .csv.gz / .jsonl.gz) file")
        parser.add_argument("--no-progress", action="store_true", help="no progress bars")

    def handle(self, *args, file: str, no_progress: bool, **options) -> None:
        try:
            items = read_products(file, progress=not no_progress)
        except ProductFileError as exc:
            raise CommandError(str(exc)) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"{file}: cannot read the file ({exc}).") from None
        created = updated = 0
        for start in range(0, len(items), CHUNK):
            result = services.product_upsert_many(items=items[start : start + CHUNK], source="import")
            created += result.created
            updated += result.updated
        self.stdout.write(f"import_products: {len(items)} products, {created} created, {updated} updated.")
