"""Show the per-collection search indexes, or bring them in line with the collections' sizes."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from ingestion.models import Collection
from ingestion.search_indexes import (
    collection_chunk_counts,
    index_name,
    own_indexes,
    search_indexes_sync,
)


class Command(BaseCommand):
    help = (
        "List collections with their chunk counts and own HNSW index; --sync builds missing "
        "indexes (CONCURRENTLY), rebuilds invalid ones and drops unneeded ones."
    )

    def add_arguments(self, parser):
        parser.add_argument("--sync", action="store_true", help="build/drop indexes now")

    def handle(self, *args, sync: bool, **options):
        if sync:
            result = search_indexes_sync()
            if result.skipped:
                self.stdout.write("another sync is running; nothing done")
                return
            self.stdout.write(
                f"created {result.created or '-'}, rebuilt {result.rebuilt or '-'}, "
                f"dropped {result.dropped or '-'}, kept {result.kept or '-'}"
            )
        counts = collection_chunk_counts()
        present = own_indexes()
        minimum = settings.SEARCH_OWN_INDEX_MIN_ROWS
        self.stdout.write(f"own index from {minimum} chunks")
        for collection in Collection.objects.order_by("name"):
            state = present.get(collection.pk)
            index = (
                "-"
                if state is None
                else f"{index_name(collection.pk)} ({'valid' if state else 'INVALID'})"
            )
            self.stdout.write(f"{collection.name:<40} {counts.get(collection.pk, 0):>9}  {index}")
