"""Recount the schema registry (event names, property keys, trait keys) from the stored data."""

from django.core.management.base import BaseCommand

from profiles.schema import schema_rebuild


class Command(BaseCommand):
    help = "Rebuild the schema registry the segment builder offers (after bulk imports, or to correct counts)."

    def handle(self, *args, **options):
        count = schema_rebuild()
        self.stdout.write(self.style.SUCCESS(f"Schema registry rebuilt: {count} entries."))
