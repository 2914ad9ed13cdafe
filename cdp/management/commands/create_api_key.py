from django.core.management.base import BaseCommand, CommandError

from cdp import services


class Command(BaseCommand):
    help = "Create a secret API key for the read and admin APIs; prints the key alone on the last line."

    def add_arguments(self, parser):
        parser.add_argument("name", help="what the key is for, e.g. 'marketing-sync'")

    def handle(self, *args, name: str, **options):
        try:
            key, raw = services.api_key_create(name=name)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stderr.write(f"Created secret key {key.name!r} ({key.prefix}…). It is shown once:")
        self.stdout.write(raw)
