from django.core.management.base import BaseCommand, CommandError

from profiles import services


class Command(BaseCommand):
    help = "Create an event source; prints its write key alone on the last line."

    def add_arguments(self, parser):
        parser.add_argument("name", help="e.g. 'storefront' or 'backend'")

    def handle(self, *args, name: str, **options):
        try:
            source, raw = services.source_create(name=name)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stderr.write(f"Created source {source.name!r}. Its write key is shown once:")
        self.stdout.write(raw)
