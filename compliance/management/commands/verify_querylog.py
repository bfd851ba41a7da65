"""`manage.py verify_querylog`: walk the query log's hash chain and say "intact" or where it breaks.

Exit status 0 when intact, 1 when broken, so that cron or a monitoring check can alert on it.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from compliance.selectors import querylog_verify


class Command(BaseCommand):
    help = "Verify the query log's hash chain: 'intact', or the first entry where it breaks."

    def handle(self, *args, **options) -> None:
        result = querylog_verify()
        if not result.intact:
            raise CommandError(result.message(), returncode=1)
        self.stdout.write(result.message())
