from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from accounts.models import User
from accounts.services import api_token_create


class Command(BaseCommand):
    help = "Create a bearer token for the JSON API; it acts as USERNAME with their roles."

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="API token", help="what the token is for")
        parser.add_argument(
            "--days", type=int, default=None, help="how long it lives (default API_TOKEN_DAYS)"
        )

    def handle(self, *args, username: str, name: str, days: int | None, **options) -> None:
        user = User.objects.filter(username=username, is_active=True).first()
        if user is None:
            raise CommandError(f"no active user {username!r}")
        try:
            _, raw = api_token_create(actor=None, user=user, name=name, days=days)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc
        self.stdout.write(raw)
