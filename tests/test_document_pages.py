"""The document page's actions through the real views: new version, validity, move."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.capabilities import ADMINISTRATOR
from accounts.models import AuditEvent
from ingestion import services
from ingestion.models import Document
from ingestion.selectors import chunk_search
from tests.factories import CollectionFactory, RoleFactory, UserFactory
from tests.test_ingestion import POLICY, upload_and_index

pytestmark = pytest.mark.slow


@pytest.fixture
def setup(db):
    sales = CollectionFactory(name="Sales", slug="sales")
    hr = CollectionFactory(name="HR", slug="hr")
    admin = UserFactory(username="ada", roles=[Group.objects.get(name=ADMINISTRATOR)])
    alice = UserFactory(username="alice", roles=[RoleFactory(name="Sales", reads=[sales])])
    client = Client()
    client.force_login(admin)
    document = upload_and_index(sales, "policy.md", POLICY.encode())
    return {"sales": sales, "hr": hr, "alice": alice, "client": client, "doc": document}


def url(document: Document) -> str:
    return reverse("ingestion:document_detail", args=[document.pk])


def test_new_version_from_the_document_page(setup):
    doc = setup["doc"]
    upload = SimpleUploadedFile("policy.md", POLICY.replace("140", "150").encode())
    response = setup["client"].post(url(doc), {"action": "version", "file": upload}, follow=True)
    assert "version 2 queued" in response.content.decode()
    doc.refresh_from_db()
    assert (doc.version, doc.state, doc.indexed_version) == (2, Document.State.QUEUED, 1)
    same = SimpleUploadedFile("policy-again.md", POLICY.replace("140", "150").encode())
    response = setup["client"].post(url(doc), {"action": "version", "file": same}, follow=True)
    assert "identical to the current version" in response.content.decode()


def test_oversized_new_version_is_refused_with_its_reason(setup, settings):
    settings.INGEST_MAX_UPLOAD_MB = 1
    doc = setup["doc"]
    big = SimpleUploadedFile("policy.md", b"x" * (1024 * 1024 + 5))
    response = setup["client"].post(url(doc), {"action": "version", "file": big}, follow=True)
    assert "the limit is 1 MB" in response.content.decode()
    doc.refresh_from_db()
    assert doc.version == 1 and doc.state == Document.State.INDEXED


def test_validity_from_the_page_applies_to_the_next_search(setup):
    doc, alice = setup["doc"], setup["alice"]
    past = (timezone.now() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    setup["client"].post(url(doc), {"action": "validity", "valid_until": past})
    assert chunk_search(user=alice, query="hotel nightly limit", k=3) == []
    services.documents_expire()
    doc.refresh_from_db()
    assert doc.state == Document.State.EXPIRED
    # Extending the validity revives it: queued again, its chunks having been dropped.
    setup["client"].post(url(doc), {"action": "validity", "valid_until": ""})
    doc.refresh_from_db()
    assert doc.state == Document.State.QUEUED and doc.valid_until is None
    assert AuditEvent.objects.filter(action="document.validity").count() == 2


def test_refused_validity_range_is_explained(setup):
    doc = setup["doc"]
    response = setup["client"].post(
        url(doc),
        {"action": "validity", "valid_from": "2030-01-02T00:00", "valid_until": "2030-01-01T00:00"},
        follow=True,
    )
    assert "must be after" in response.content.decode()


def test_move_from_the_page_changes_who_retrieves_it(setup):
    doc, alice = setup["doc"], setup["alice"]
    assert chunk_search(user=alice, query="hotel nightly limit", k=3)
    setup["client"].post(url(doc), {"action": "move", "collection": setup["hr"].pk})
    assert chunk_search(user=alice, query="hotel nightly limit", k=3) == []
    assert AuditEvent.objects.filter(action="document.move").exists()


def test_document_pages_are_forbidden_without_the_capability(setup):
    reader = Client()
    reader.force_login(setup["alice"])
    for path in (
        reverse("ingestion:document_list"),
        url(setup["doc"]),
        reverse("ingestion:document_delete", args=[setup["doc"].pk]),
        reverse("ingestion:index_stats"),
    ):
        assert reader.get(path).status_code == 403, path


def test_document_page_posts_still_need_the_csrf_token(setup):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(UserFactory(username="otto", roles=[Group.objects.get(name=ADMINISTRATOR)]))
    response = strict.post(url(setup["doc"]), {"action": "move", "collection": setup["hr"].pk})
    assert response.status_code == 403
    setup["doc"].refresh_from_db()
    assert setup["doc"].collection_id == setup["sales"].pk
