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
        OrderColumns.add_arguments(parser)
        parser.add_argument("--source", default="import", help="source of the events, created if missing")
        parser.add_argument("--no-progress", action="store_true", help="no progress bars")

    def handle(self, *args, **options):
        columns = OrderColumns.from_options(options)
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
