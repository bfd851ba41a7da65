"""Load the demo company. For now only the administrator; departments come with roles."""

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction

from accounts.models import User

DEMO_ACCOUNTS = [
    # username, full name, superuser, what the account shows
    ("admin", "Ada Admin", True, "administrator"),
]


class Command(BaseCommand):
    help = "Create the demo company's accounts (idempotent)."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--if-empty",
            action="store_true",
            help="do nothing when the database already has users",
        )
        parser.add_argument(
            "--logins",
            action="store_true",
            help="only print the demo logins (username, password, what the account shows)",
        )

    def handle(self, *args, if_empty: bool = False, logins: bool = False, **options) -> None:
        if logins:
            self.stdout.write(f"demo logins (password {settings.DEMO_PASSWORD!r}):")
            for username, _name, _superuser, shows in DEMO_ACCOUNTS:
                self.stdout.write(f"  {username:<12} {shows}")
            return
        if if_empty and User.objects.exists():
            self.stdout.write("demo data: database already has users, left as it is")
            return
        self.load()

    @transaction.atomic
    def load(self) -> None:
        for username, full_name, superuser, _shows in DEMO_ACCOUNTS:
            first, last = full_name.split(" ", 1)
            user, created = User.objects.get_or_create(
                username=username,
                defaults={"first_name": first, "last_name": last, "email": f"{username}@demo.test"},
            )
            if created:
                user.set_password(settings.DEMO_PASSWORD)
                user.is_staff = user.is_superuser = superuser
                user.save()
            self.stdout.write(f"demo data: {'created' if created else 'kept'} {username}")
