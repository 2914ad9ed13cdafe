from django.conf import settings
from django.core.management.base import BaseCommand

from cdp import services


class Command(BaseCommand):
    help = "Create or reset the admin superuser with a fresh random password and print the credentials."

    def add_arguments(self, parser):
        parser.add_argument("--username", default=settings.DEMO_ADMIN_USERNAME)

    def handle(self, *args, username: str, **options):
        username, password = services.admin_user_ensure(username=username)
        self.stdout.write(f"admin user: {username}\nadmin password: {password}")
