from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from ingestion.models import Document
from tests.factories import CollectionFactory

ROOT = Path(__file__).resolve().parent.parent


def test_import_documents_imports_a_folder_and_recognises_repeats(db):
    collection = CollectionFactory(name="Sales", slug="sales")
    folder = ROOT / "demo" / "documents" / "sales"
    out = StringIO()
    call_command("import_documents", str(folder), "--collection", "sales", stdout=out)
    files = [p for p in folder.iterdir() if p.is_file()]
    assert Document.objects.filter(collection=collection).count() == len(files)
    assert f"{len(files)} created" in out.getvalue()
    assert all(d.state == Document.State.QUEUED for d in Document.objects.all())
    again = StringIO()
    call_command("import_documents", str(folder), "--collection", "sales", stdout=again)
    assert f"{len(files)} duplicate" in again.getvalue()
    assert Document.objects.count() == len(files)


def test_import_documents_refuses_an_unknown_collection(db, tmp_path):
    with pytest.raises(CommandError, match="no collection"):
        call_command("import_documents", str(tmp_path), "--collection", "nope")


def test_reindex_queues_a_collection_again(db):
    CollectionFactory(name="Sales", slug="sales")
    call_command(
        "import_documents",
        str(ROOT / "demo" / "documents" / "sales"),
        "--collection",
        "sales",
        stdout=StringIO(),
    )
    Document.objects.update(state=Document.State.FAILED, attempts=3)
    out = StringIO()
    call_command("reindex", "--collection", "sales", stdout=out)
    assert "queued 5 documents" in out.getvalue()
    assert set(Document.objects.values_list("state", "attempts")) == {("queued", 0)}
