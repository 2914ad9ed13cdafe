from django.core.management.base import BaseCommand, CommandError

from profiles import services
from profiles.storefront import ANY_ORIGIN


class Command(BaseCommand):
    help = (
        "Create an event source; prints its write key alone on the last line. "
        "--origin (repeatable) lists the shop pages' origins whose browsers may send with it."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", help="e.g. 'storefront' or 'backend'")
        parser.add_argument(
            "--origin",
            action="append",
            default=[],
            dest="origins",
            metavar="URL",
            help="a browser origin allowed to send, e.g. https://shop.example.com (repeatable); "
            "'*' allows every origin and must be given on purpose",
        )

    def handle(self, *args, name: str, origins: list[str], **options):
        try:
            source, raw = services.source_create(name=name, allowed_origins=origins)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stderr.write(f"Created source {source.name!r}.")
        if ANY_ORIGIN in source.allowed_origins:
            self.stderr.write("Browsers on ANY origin may send with this write key (--origin '*').")
        elif source.allowed_origins:
            self.stderr.write("Browser origins allowed: " + ", ".join(source.allowed_origins))
        else:
            self.stderr.write("No browser origin is allowed yet (server-side calls only); add --origin URL.")
        self.stderr.write(f"User-token secret (for the shop's backend, keep it secret): {source.user_token_secret}")
        self.stderr.write("Its write key is shown once:")
        self.stdout.write(raw)
