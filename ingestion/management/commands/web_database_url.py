"""Print the database URL the web process should use: its own role, under row-level security.

`scripts/run` starts the web server with it while migrations, the worker and beat keep the
owner's DATABASE_URL (docs/security.md). WEB_DATABASE_URL wins when set; otherwise the URL is
this process's own with the embedded cluster's web role and password (scripts/services).
"""

from __future__ import annotations

from urllib.parse import quote

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Print the web process's database URL (the non-owner role, docs/security.md)."

    def handle(self, *args, **options) -> None:
        if settings.WEB_DATABASE_URL:
            self.stdout.write(settings.WEB_DATABASE_URL)
            return
        db = settings.DATABASES["default"]
        role = settings.DATABASE_APP_ROLE or db["USER"]
        password = settings.DATABASE_APP_PASSWORD if settings.DATABASE_APP_ROLE else db["PASSWORD"]
        self.stdout.write(
            f"postgres://{quote(role, safe='')}:{quote(password, safe='')}"
            f"@{db['HOST']}:{db['PORT']}/{quote(db['NAME'], safe='')}"
        )
