"""Bulk import: every supported file in a folder into one collection, queued for indexing."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from accounts.models import User
from accounts.selectors import user_can_manage_collection
from ingestion.models import Collection
from ingestion.services import document_import_path

SUFFIXES = {".pdf", ".docx", ".html", ".htm", ".md", ".markdown", ".txt", ".text"}


class Command(BaseCommand):
    help = "Import the documents in FOLDER into a collection; they are indexed by the workers."

    def add_arguments(self, parser) -> None:
        parser.add_argument("folder", type=Path)
        parser.add_argument("--collection", required=True, help="collection slug or id")
        parser.add_argument("--recursive", action="store_true", help="descend into subfolders")
        parser.add_argument(
            "--user", help="username recorded as the uploader (must manage the collection)"
        )
        parser.add_argument(
            "--all-files",
            action="store_true",
            help="try every file, not only known extensions (type is detected from content)",
        )

    def handle(self, *args, folder: Path, collection: str, recursive: bool, user, **options):
        if not folder.is_dir():
            raise CommandError(f"{folder} is not a folder")
        lookup = {"pk": collection} if collection.isdigit() else {"slug": collection}
        target = Collection.objects.filter(**lookup).first()
        if target is None:
            raise CommandError(f"no collection {collection!r}")
        actor = None
        if user:
            actor = User.objects.filter(username=user).first()
            if actor is None:
                raise CommandError(f"no user {user!r}")
            # Recorded as the uploader, so held to the same rule as on the documents page.
            if not user_can_manage_collection(user=actor, collection_id=target.pk):
                raise CommandError(f"{user!r} does not manage the collection {target.name!r}")
        files = sorted(
            p for p in (folder.rglob("*") if recursive else folder.iterdir()) if p.is_file()
        )
        if not options["all_files"]:
            files = [p for p in files if p.suffix.lower() in SUFFIXES]
        counts: dict[str, int] = {}
        for path in files:
            result = document_import_path(actor=actor, collection=target, path=path)
            counts[result.outcome] = counts.get(result.outcome, 0) + 1
            self.stdout.write(f"{result.outcome:<11} {path.name}")
        summary = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items())) or "nothing"
        self.stdout.write(f"imported into {target.name}: {summary}")
