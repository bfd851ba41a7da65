"""`manage.py purge_querylog`: apply the retention period now (the beat task does it daily)."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from compliance.services import querylog_purge


class Command(BaseCommand):
    help = "Remove query-log entries older than QUERYLOG_RETENTION_DAYS, leaving a checkpoint."

    def handle(self, *args, **options) -> None:
        result = querylog_purge()
        if not settings.QUERYLOG_RETENTION_DAYS:
            self.stdout.write("retention is off (QUERYLOG_RETENTION_DAYS=0): nothing removed")
        elif result.checkpoint is None:
            self.stdout.write("nothing older than the retention period")
        else:
            self.stdout.write(
                f"removed {result.removed} entries; checkpoint entry {result.checkpoint.pk}"
            )
