from django.core.management.base import BaseCommand, CommandError

from ingestion.models import Collection, Document
from ingestion.services import reindex


class Command(BaseCommand):
    help = "Queue documents for indexing again: all, one collection, or one document."

    def add_arguments(self, parser) -> None:
        group = parser.add_mutually_exclusive_group()
        group.add_argument("--collection", help="collection slug or id")
        group.add_argument("--document", type=int, help="document id")

    def handle(self, *args, collection=None, document=None, **options) -> None:
        target_collection = target_document = None
        if collection:
            lookup = {"pk": collection} if collection.isdigit() else {"slug": collection}
            target_collection = Collection.objects.filter(**lookup).first()
            if target_collection is None:
                raise CommandError(f"no collection {collection!r}")
        if document:
            target_document = Document.objects.filter(pk=document).first()
            if target_document is None:
                raise CommandError(f"no document {document}")
        n = reindex(collection=target_collection, document=target_document)
        self.stdout.write(f"queued {n} document{'s' if n != 1 else ''} for indexing")
