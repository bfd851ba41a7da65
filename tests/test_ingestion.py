"""The indexing pipeline and the search chokepoint on the real database and embedding model.

Most tests run the pipeline's service directly (`document_index`, the code a worker runs);
tests/test_ingestion_worker.py runs it through real Celery workers, SIGKILL included.
"""

from __future__ import annotations

import io
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import Group
from django.core.files.storage import default_storage
from django.db import connection
from django.utils import timezone

from accounts.capabilities import ADMINISTRATOR
from ingestion import services
from ingestion.models import Chunk, Document, DocumentVersion
from ingestion.selectors import chunk_search, document_get_for_user, searchable_chunks
from tests.factories import CollectionFactory, RoleFactory, UserFactory

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "demo" / "documents"
HOSTILE = ROOT / "tests" / "data" / "hostile"

pytestmark = pytest.mark.slow


@pytest.fixture
def world(db):
    """alice reads Sales, bob reads HR, charlie reads nothing."""
    sales = CollectionFactory(name="Sales", slug="sales")
    hr = CollectionFactory(name="HR", slug="hr")
    return {
        "sales": sales,
        "hr": hr,
        "alice": UserFactory(username="alice", roles=[RoleFactory(name="Sales", reads=[sales])]),
        "bob": UserFactory(username="bob", roles=[RoleFactory(name="HR", reads=[hr])]),
        "charlie": UserFactory(username="charlie"),
        "admin": UserFactory(username="ada", roles=[Group.objects.get(name=ADMINISTRATOR)]),
    }


def upload(collection, name: str, data: bytes, **kwargs) -> services.UploadResult:
    return services.document_upload(
        actor=None,
        collection=collection,
        stream=io.BytesIO(data),
        filename=name,
        size=len(data),
        **kwargs,
    )


def index(document: Document, task_id: str = "test-task") -> str:
    return services.document_index(document_id=document.pk, task_id=task_id)


def upload_and_index(collection, name: str, data: bytes, **kwargs) -> Document:
    result = upload(collection, name, data, **kwargs)
    assert index(result.document) == "indexed", result.document.state_reason
    result.document.refresh_from_db()
    return result.document


POLICY = (
    "# Travel policy\n\n## Hotels\n\nEmployees book hotels through the travel desk. The nightly "
    "limit is 140 euros in Leipzig and 190 euros in Munich.\n\n## Trains\n\nSecond class for "
    "trips under four hours; first class above that.\n"
)


# --- formats ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("relative", "kind"),
    [
        ("company/employee-handbook.md", "markdown"),
        ("company/it-security-basics.txt", "text"),
        ("company/holidays-and-office-hours.html", "html"),
        ("company/travel-policy.pdf", "pdf"),
        ("company/code-of-conduct.docx", "docx"),
    ],
)
def test_each_supported_format_is_indexed(world, relative, kind):
    path = DEMO / relative
    document = upload_and_index(world["sales"], path.name, path.read_bytes())
    assert document.state == Document.State.INDEXED
    assert document.kind == kind
    assert document.chunk_count == Chunk.objects.filter(document=document).count() > 0
    chunks = list(Chunk.objects.filter(document=document))
    assert all(c.collection_id == world["sales"].pk and c.version == 1 for c in chunks)
    assert any(c.heading for c in chunks), "headings are kept for citations"
    if kind == "pdf":
        assert document.page_count and all(c.page for c in chunks)


def test_original_is_stored_under_a_generated_name(world):
    result = upload(world["sales"], "../../etc/passwd.md", POLICY.encode())
    version = DocumentVersion.objects.get(document=result.document)
    assert "passwd" not in version.file.name and ".." not in version.file.name
    assert result.document.original_name == "passwd.md"
    assert default_storage.exists(version.file.name)


def test_hostile_file_names_are_cleaned_for_display(world):
    result = upload(world["sales"], "invoice\u202egpj.exe\x00<script>.md", POLICY.encode())
    name = result.document.original_name
    assert "\u202e" not in name and "\x00" not in name


# --- bad input --------------------------------------------------------------------------------

HOSTILE_CASES = [
    ("empty.txt", "empty"),
    ("empty.pdf", "empty"),
    ("encrypted.pdf", "password"),
    ("corrupt.pdf", "damaged"),
    ("image-only.pdf", "images"),
    ("not-a-pdf.pdf", "image"),
    ("zip-bomb.docx", ""),
    ("corrupt.docx", ""),
    ("legacy.doc", "legacy"),
]


@pytest.mark.parametrize(("name", "keyword"), HOSTILE_CASES)
def test_bad_files_end_failed_with_a_readable_reason(world, name, keyword):
    path = HOSTILE / name
    if not path.exists():
        pytest.fail(f"hostile corpus file missing: {path}")
    result = upload(world["sales"], name, path.read_bytes())
    assert index(result.document) == "failed"
    document = Document.objects.get(pk=result.document.pk)
    assert document.state == Document.State.FAILED
    assert document.state_reason and "Traceback" not in document.state_reason
    assert keyword.lower() in document.state_reason.lower()
    assert not Chunk.objects.filter(document=document).exists()


def test_oversized_upload_is_refused_before_it_is_stored(world, settings):
    settings.INGEST_MAX_UPLOAD_MB = 1
    stored_before = (
        set(default_storage.listdir("documents")[1])
        if default_storage.exists("documents")
        else set()
    )
    result = upload(world["sales"], "huge.txt", b"x" * (1024 * 1024 + 1))
    assert result.outcome == "refused"
    assert result.document.state == Document.State.FAILED
    assert "limit is 1 MB" in result.document.state_reason
    assert not result.document.versions.exists()
    stored_after = (
        set(default_storage.listdir("documents")[1])
        if default_storage.exists("documents")
        else set()
    )
    assert stored_after == stored_before


def test_a_lost_stored_file_fails_the_document_with_a_plain_message(world):
    result = upload(world["sales"], "policy.md", POLICY.encode())
    default_storage.delete(result.document.versions.get().file.name)
    assert index(result.document) == "failed"
    result.document.refresh_from_db()
    assert result.document.state_reason == "The stored file could not be read; upload it again."


# --- identical bytes, versions ----------------------------------------------------------------


def test_identical_bytes_in_a_collection_are_one_document(world):
    first = upload(world["sales"], "a.md", POLICY.encode())
    second = upload(world["sales"], "copy-of-a.md", POLICY.encode())
    assert (first.outcome, second.outcome) == ("created", "duplicate")
    assert second.document.pk == first.document.pk
    assert Document.objects.count() == 1
    # Another collection may hold the same bytes.
    assert upload(world["hr"], "a.md", POLICY.encode()).outcome == "created"


@pytest.mark.django_db(transaction=True)
def test_concurrent_uploads_of_the_same_bytes_make_one_document():
    collection = CollectionFactory(name="Sales", slug="sales")
    outcomes: list[str] = []
    barrier = threading.Barrier(4)

    def worker(n: int) -> None:
        barrier.wait()
        try:
            outcomes.append(upload(collection, f"copy{n}.md", POLICY.encode()).outcome)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["created", "duplicate", "duplicate", "duplicate"]
    assert Document.objects.filter(collection=collection).count() == 1
    assert DocumentVersion.objects.count() == 1


def test_new_version_replaces_the_chunk_set_and_old_one_serves_until_then(world):
    alice = world["alice"]
    document = upload_and_index(world["sales"], "policy.md", POLICY.encode())
    old_ids = set(Chunk.objects.filter(document=document).values_list("pk", flat=True))
    v2 = POLICY.replace("140 euros", "155 euros")
    result = services.document_upload(
        actor=None,
        collection=world["sales"],
        stream=io.BytesIO(v2.encode()),
        filename="policy.md",
        size=len(v2),
        document=document,
    )
    assert result.outcome == "new_version"
    # Until version 2 is indexed, version 1 answers.
    hits = chunk_search(user=alice, query="hotel nightly limit Leipzig", k=3)
    assert hits and "140 euros" in hits[0].text and hits[0].version == 1
    assert index(document, task_id="v2") == "indexed"
    chunks = Chunk.objects.filter(document=document)
    assert set(chunks.values_list("version", flat=True)) == {2}
    assert not (set(chunks.values_list("pk", flat=True)) & old_ids)
    hits = chunk_search(user=alice, query="hotel nightly limit Leipzig", k=3)
    assert "155 euros" in hits[0].text and hits[0].version == 2


def test_a_broken_new_version_keeps_the_previous_version_searchable(world):
    document = upload_and_index(world["sales"], "policy.md", POLICY.encode())
    services.document_upload(
        actor=None,
        collection=world["sales"],
        stream=io.BytesIO(b"%PDF-1.7 garbage"),
        filename="policy.pdf",
        size=16,
        document=document,
    )
    assert index(document, task_id="v2") == "failed"
    document.refresh_from_db()
    assert document.state == Document.State.FAILED and document.indexed_version == 1
    assert chunk_search(user=world["alice"], query="hotel nightly limit", k=1)


def test_identical_bytes_are_no_new_version(world):
    document = upload_and_index(world["sales"], "policy.md", POLICY.encode())
    again = services.document_upload(
        actor=None,
        collection=world["sales"],
        stream=io.BytesIO(POLICY.encode()),
        filename="policy.md",
        size=len(POLICY),
        document=document,
    )
    assert again.outcome == "unchanged"
    document.refresh_from_db()
    assert document.version == 1 and document.state == Document.State.INDEXED


def test_a_duplicate_or_late_task_is_a_no_op(world):
    document = upload_and_index(world["sales"], "policy.md", POLICY.encode())
    ids = set(Chunk.objects.filter(document=document).values_list("pk", flat=True))
    assert index(document, task_id="someone-else") == "skipped"
    assert set(Chunk.objects.filter(document=document).values_list("pk", flat=True)) == ids


# --- freshness and access ---------------------------------------------------------------------


def test_expired_documents_are_never_retrieved_even_before_the_purge(world):
    document = upload_and_index(world["sales"], "policy.md", POLICY.encode())
    alice = world["alice"]
    assert chunk_search(user=alice, query="hotel nightly limit", k=3)
    Document.objects.filter(pk=document.pk).update(
        valid_until=timezone.now() - timedelta(minutes=1)
    )
    assert chunk_search(user=alice, query="hotel nightly limit", k=3) == []
    assert document_get_for_user(user=alice, document_id=document.pk) is None
    assert services.documents_expire() == [document.pk]
    document.refresh_from_db()
    assert document.state == Document.State.EXPIRED
    assert not Chunk.objects.filter(document=document).exists()


def test_documents_not_yet_valid_are_not_retrieved(world):
    upload_and_index(
        world["sales"],
        "policy.md",
        POLICY.encode(),
        valid_from=timezone.now() + timedelta(days=1),
    )
    assert chunk_search(user=world["alice"], query="hotel nightly limit", k=3) == []


def test_a_superseded_document_disappears_when_its_successor_is_indexed(world):
    old = upload_and_index(world["sales"], "policy-2025.md", POLICY.encode())
    new_text = POLICY.replace("140 euros", "160 euros")
    successor = upload(world["sales"], "policy-2026.md", new_text.encode(), supersedes=old)
    hits = chunk_search(user=world["alice"], query="hotel nightly limit Leipzig", k=5)
    assert {h.document_id for h in hits} == {old.pk}  # until the successor is indexed
    assert index(successor.document) == "indexed"
    hits = chunk_search(user=world["alice"], query="hotel nightly limit Leipzig", k=5)
    assert {h.document_id for h in hits} == {successor.document.pk}


def test_readers_change_takes_effect_without_reindexing(world):
    document = upload_and_index(world["hr"], "policy.md", POLICY.encode())
    chunk_ids = set(Chunk.objects.filter(document=document).values_list("pk", flat=True))
    alice, bob = world["alice"], world["bob"]
    assert chunk_search(user=alice, query="hotel nightly limit", k=3) == []
    assert chunk_search(user=bob, query="hotel nightly limit", k=3)
    world["hr"].readers.add(alice.groups.get())
    assert chunk_search(user=alice, query="hotel nightly limit", k=3)
    world["hr"].readers.remove(bob.groups.get())
    assert chunk_search(user=bob, query="hotel nightly limit", k=3) == []
    assert set(Chunk.objects.filter(document=document).values_list("pk", flat=True)) == chunk_ids


def test_moving_a_document_changes_who_retrieves_it(world):
    document = upload_and_index(world["hr"], "policy.md", POLICY.encode())
    services.document_move(actor=world["admin"], document=document, collection=world["sales"])
    assert chunk_search(user=world["alice"], query="hotel nightly limit", k=3)
    assert chunk_search(user=world["bob"], query="hotel nightly limit", k=3) == []


def test_search_cannot_be_widened_by_asking_for_another_collection(world):
    upload_and_index(world["hr"], "policy.md", POLICY.encode())
    alice = world["alice"]
    assert chunk_search(user=alice, query="hotel", k=5, collection_ids=[world["hr"].pk]) == []
    assert searchable_chunks(user=world["charlie"]).count() == 0


def test_search_fuses_keyword_and_vector_matches(world):
    upload_and_index(world["sales"], "policy.md", POLICY.encode())
    hits = chunk_search(user=world["alice"], query="Munich 190", k=3)
    assert hits
    best = hits[0]
    assert "190 euros" in best.text
    assert best.text_rank == 1 and best.vector_rank is not None
    assert best.heading and best.document_title
    assert len(chunk_search(user=world["alice"], query="anything", k=1)) == 1


def test_exact_and_approximate_paths_agree_on_a_small_collection(world, settings):
    upload_and_index(world["sales"], "policy.md", POLICY.encode())
    settings.SEARCH_EXACT_MAX_ROWS = 10_000
    exact = chunk_search(user=world["alice"], query="train class", k=3)
    settings.SEARCH_EXACT_MAX_ROWS = 0
    approximate = chunk_search(user=world["alice"], query="train class", k=3)
    assert [h.chunk_id for h in exact] == [h.chunk_id for h in approximate]
