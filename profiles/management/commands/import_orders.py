"""``manage.py import_orders FILE``: order history in bulk (see ``profiles.bulk`` for what and why)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from profiles.bulk import OrderColumns, OrderImportError, orders_import


class Command(BaseCommand):
    help = (
        "Import an order-lines CSV (optionally gzipped; PROTOCOL.md section R format and cleaning) as profiles "
        "and one 'Order Completed' event per customer and order. Safe to run again: stored orders are skipped."
    )

    def add_arguments(self, parser):
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
        parser.add_argument("--source", default="import", help="source of the events, created if missing")
        parser.add_argument("--no-progress", action="store_true", help="no progress bars")

    def handle(self, *args, **options):
        columns = OrderColumns(
            customer=options["customer"],
            item=options["item"],
            quantity=options["quantity"],
            timestamp=options["timestamp"],
            order=options["order"],
            price=options["price"],
            description=options["description"],
        )
        try:
            summary = orders_import(
                path=options["file"],
                columns=columns,
                source_name=options["source"],
                progress=not options["no_progress"],
            )
        except OrderImportError as exc:
            raise CommandError(str(exc)) from exc
        self.stderr.write(summary.line())
