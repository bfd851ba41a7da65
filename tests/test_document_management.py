"""Document management per collection: who manages which collection's documents, and how far.

The cast (roles in brackets; "manages" means the role is in the collection's `managers`):
    mia     [Sales docs: manage documents, reads + manages Sales]
    hank    [HR docs: manage documents, manages HR, reads nothing]
    hera    [HR editors: manage documents, reads + manages HR]
    max     [Sales docs + HR docs]                 manages Sales and HR
    nils    [Observers: chat only, in Sales' managers]   manages nothing (no capability)
    ada     [Administrator]                        manages every collection
    alice   [Sales readers]                        reads Sales, manages nothing

Most page and API tests run as the web process's database role (`as_app_role`), so that the
row-level security scope `managing_collections` is exercised together with the SQL filters.
"""

from __future__ import annotations

import importlib
import io
from datetime import timedelta

import pytest
from django.apps import apps as django_apps
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.capabilities import ADMINISTRATOR, Capability
from accounts.models import AuditEvent
from accounts.selectors import (
    collections_managed_by,
    managed_collection_ids_query,
    user_can_manage_collection,
    user_managed_collection_ids,
    user_may_see,
)
from accounts.services import capability_permissions
from ingestion import rls, services
from ingestion.models import Chunk, Collection, Document
from ingestion.selectors import documents_for_user, user_manages_document
from tests.factories import CollectionFactory, RoleFactory, UserFactory
from tests.test_ingestion import POLICY, upload, upload_and_index

pytestmark = pytest.mark.slow

HR_TEXT = (
    "# Salaries\n\n## Bands\n\nThe salary band for engineers in Leipzig runs from 52,000 to "
    "71,000 euros. Bonuses are paid every March.\n"
)
POLICY_SNIPPET = "190 euros in Munich"
HR_SNIPPET = "52,000 to"
MANAGE = [Capability.CHAT, Capability.MANAGE_DOCUMENTS]


@pytest.fixture
def world(db):
    sales = CollectionFactory(name="Sales", slug="sales")
    hr = CollectionFactory(name="HR", slug="hr")
    sales_docs = RoleFactory(name="Sales docs", reads=[sales], capabilities=MANAGE)
    hr_docs = RoleFactory(name="HR docs", capabilities=[Capability.MANAGE_DOCUMENTS])
    hr_editors = RoleFactory(name="HR editors", reads=[hr], capabilities=MANAGE)
    observers = RoleFactory(name="Observers", capabilities=[Capability.CHAT])
    sales.managers.set([sales_docs, observers])
    hr.managers.set([hr_docs, hr_editors])
    policy = upload_and_index(sales, "policy.md", POLICY.encode())
    salaries = upload_and_index(hr, "salaries.md", HR_TEXT.encode())
    return {
        "sales": sales,
        "hr": hr,
        "sales_docs": sales_docs,
        "hr_docs": hr_docs,
        "mia": UserFactory(username="mia", roles=[sales_docs]),
        "hank": UserFactory(username="hank", roles=[hr_docs]),
        "hera": UserFactory(username="hera", roles=[hr_editors]),
        "max": UserFactory(username="max", roles=[sales_docs, hr_docs]),
        "nils": UserFactory(username="nils", roles=[observers]),
        "ada": UserFactory(username="ada", roles=[Group.objects.get(name=ADMINISTRATOR)]),
        "alice": UserFactory(username="alice", roles=[RoleFactory(name="Sales", reads=[sales])]),
        "charlie": UserFactory(username="charlie"),
        "policy": policy,
        "salaries": salaries,
    }


@pytest.fixture
def as_app_role(world, settings):
    """The test's connection runs as the web role until the test transaction ends."""
    role = settings.DATABASE_APP_ROLE
    with connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL ROLE {connection.ops.quote_name(role)}")
    yield role
    with connection.cursor() as cursor:
        cursor.execute("RESET ROLE")


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def scalar(sql: str, params=()):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()[0]


def detail(document) -> str:
    return reverse("ingestion:document_detail", args=[document.pk])


# --- the rule, in the access module -------------------------------------------------------------


def test_who_manages_which_collection(world):
    w = world
    everything = frozenset(Collection.objects.values_list("pk", flat=True))
    assert user_managed_collection_ids(user=w["mia"]) == {w["sales"].pk}
    assert user_managed_collection_ids(user=w["hank"]) == {w["hr"].pk}
    assert user_managed_collection_ids(user=w["max"]) == {w["sales"].pk, w["hr"].pk}
    # In the managers list without the capability: nothing; the capability alone: nothing.
    assert user_managed_collection_ids(user=w["nils"]) == frozenset()
    assert user_managed_collection_ids(user=w["alice"]) == frozenset()
    assert user_managed_collection_ids(user=w["charlie"]) == frozenset()
    # "Manage users" edits the readers anyway: it manages every collection, new ones too.
    CollectionFactory(name="Legal", slug="legal")
    assert user_managed_collection_ids(user=w["ada"]) == everything | {
        Collection.objects.get(slug="legal").pk
    }
    assert user_can_manage_collection(user=w["hank"], collection_id=w["hr"].pk)
    assert not user_can_manage_collection(user=w["hank"], collection_id=w["sales"].pk)
    assert not user_can_manage_collection(user=w["hank"], collection_id=None)
    assert [c.name for c in collections_managed_by(user=w["max"])] == ["HR", "Sales"]


def test_the_managed_set_is_re_read_from_the_database_each_time(world):
    w = world
    query = managed_collection_ids_query(user=w["hank"])  # lazy: evaluated below
    w["hr"].managers.remove(w["hr_docs"])
    assert not query.exists()
    w["hr"].managers.add(w["hr_docs"])
    assert user_managed_collection_ids(user=w["hank"]) == {w["hr"].pk}
    w["hr_docs"].permissions.set(capability_permissions([Capability.CHAT]))
    assert user_managed_collection_ids(user=w["hank"]) == frozenset()
    w["mia"].is_active = False
    w["mia"].save()
    assert user_managed_collection_ids(user=w["mia"]) == frozenset()


def test_the_data_migration_keeps_todays_managers(world):
    w = world
    migration = importlib.import_module("ingestion.migrations.0007_collection_managers")
    for collection in Collection.objects.all():
        collection.managers.clear()
    migration.managers_from_capability(django_apps, None)
    holders = {"Administrator", "Sales docs", "HR docs", "HR editors"}
    for collection in Collection.objects.all():
        assert set(collection.managers.values_list("name", flat=True)) == holders
    # So everyone who managed every document yesterday still does.
    assert user_managed_collection_ids(user=w["hank"]) == {w["sales"].pk, w["hr"].pk}
    assert user_managed_collection_ids(user=w["nils"]) == frozenset()


# --- row-level security: the per-user management scope ----------------------------------------


def test_managing_collections_shows_the_managed_rows_only(world, as_app_role):
    w = world
    for who, expected in (
        ("hank", {w["hr"].pk}),
        ("mia", {w["sales"].pk}),
        ("max", {w["sales"].pk, w["hr"].pk}),
        ("ada", {w["sales"].pk, w["hr"].pk}),
        ("nils", set()),
        ("alice", set()),
    ):
        with rls.managing_collections(user=w[who]):
            seen = set(Document.objects.values_list("collection_id", flat=True))
            seen_chunks = set(Chunk.objects.values_list("collection_id", flat=True))
            assert seen == expected, who
            assert seen_chunks == expected, who
    # The scope ended with its block.
    assert scalar("SELECT count(*) FROM ingestion_document") == 0
    assert not scalar("SELECT current_setting(%s, true)", [rls.MANAGED_SETTING])


def test_managing_collections_re_reads_the_grants(world, as_app_role):
    w = world
    w["hr"].managers.remove(w["hr_docs"])
    with rls.managing_collections(user=w["hank"]):
        assert scalar("SELECT count(*) FROM ingestion_document") == 0


def test_the_management_scope_refuses_writes_outside_it(world, as_app_role):
    w = world
    with (
        pytest.raises(DatabaseError, match="row-level security"),
        rls.managing_collections(user=w["mia"]),
    ):
        scalar(
            "UPDATE ingestion_document SET collection_id = %s WHERE id = %s",
            [w["hr"].pk, w["policy"].pk],
        )
    with rls.managing_collections(user=w["mia"]):
        assert Document.objects.filter(pk=w["salaries"].pk).update(title="renamed") == 0


def test_a_scope_nested_in_another_adds_to_it_and_ends_with_its_block(world, as_app_role):
    w = world
    with rls.reading_as(user=w["alice"]):
        assert scalar("SELECT count(*) FROM ingestion_document") == 1
        with rls.managing_collections(user=w["hank"]):
            assert scalar("SELECT count(*) FROM ingestion_document") == 2
        assert scalar("SELECT count(*) FROM ingestion_document") == 1


# --- the pages and the API, as the web role ------------------------------------------------------


def test_the_document_list_shows_managed_documents_only(world, as_app_role):
    w = world
    page = client_for(w["hank"]).get(reverse("ingestion:document_list"))
    html = page.content.decode()
    assert w["salaries"].title in html and w["policy"].title not in html
    # Upload and filter choices: managed collections only.
    assert [c.name for c in page.context["collections"]] == ["HR"]
    listed = client_for(w["hank"]).get("/api/documents/").json()["documents"]
    assert [d["id"] for d in listed] == [w["salaries"].pk]
    other = client_for(w["hank"]).get("/api/documents/", {"collection": w["sales"].pk})
    assert other.json()["documents"] == []
    everything = client_for(w["ada"]).get("/api/documents/").json()["documents"]
    assert {d["id"] for d in everything} == {w["policy"].pk, w["salaries"].pk}


def test_documents_outside_the_managed_set_look_missing(world, as_app_role):
    w = world
    hank, policy = client_for(w["hank"]), w["policy"]
    upload_file = SimpleUploadedFile("policy.md", POLICY.replace("140", "150").encode())
    refused = [
        hank.get(detail(policy)),
        hank.post(detail(policy), {"action": "version", "file": upload_file}),
        hank.post(detail(policy), {"action": "validity", "valid_until": "2020-01-01T00:00"}),
        hank.post(detail(policy), {"action": "move", "collection": w["hr"].pk}),
        hank.post(reverse("ingestion:document_retry", args=[policy.pk])),
        hank.get(reverse("ingestion:document_delete", args=[policy.pk])),
        hank.post(reverse("ingestion:document_delete", args=[policy.pk])),
        hank.get(f"/api/documents/{policy.pk}/"),
        hank.delete(f"/api/documents/{policy.pk}/"),
        hank.post(f"/api/documents/{policy.pk}/retry/"),
        hank.post(
            f"/api/documents/{policy.pk}/move/",
            {"collection": w["hr"].pk},
            content_type="application/json",
        ),
    ]
    assert [r.status_code for r in refused] == [404] * len(refused)
    with rls.managing_documents():
        policy.refresh_from_db()
    assert (policy.collection_id, policy.version, policy.valid_until) == (w["sales"].pk, 1, None)
    assert hank.get(detail(w["salaries"])).status_code == 200


def test_live_progress_is_for_the_managers_of_the_documents_collection(world, as_app_role):
    w = world
    salaries, policy = w["salaries"].pk, w["policy"].pk
    assert user_manages_document(user=w["hank"], document_id=salaries)
    assert not user_manages_document(user=w["hank"], document_id=policy)
    assert not user_manages_document(user=w["nils"], document_id=policy)
    assert user_manages_document(user=w["ada"], document_id=policy)
    assert scalar("SELECT count(*) FROM ingestion_document") == 0  # the scope ended


def test_moving_needs_the_right_on_both_collections(world, as_app_role):
    w = world
    policy = w["policy"]
    mia = client_for(w["mia"])
    page = mia.post(detail(policy), {"action": "move", "collection": w["hr"].pk})
    assert page.status_code == 200  # the form refuses a collection she does not manage
    api = mia.post(
        f"/api/documents/{policy.pk}/move/", {"collection": w["hr"].pk}, "application/json"
    )
    assert api.status_code == 400
    with rls.managing_documents():
        assert Document.objects.get(pk=policy.pk).collection_id == w["sales"].pk
    moved = client_for(w["max"]).post(
        f"/api/documents/{policy.pk}/move/", {"collection": w["hr"].pk}, "application/json"
    )
    assert moved.status_code == 200 and moved.json()["collection"]["id"] == w["hr"].pk
    # Mia no longer manages it: the document is gone from her view.
    assert mia.get(detail(policy)).status_code == 404


def test_the_move_form_offers_managed_collections_only(world, as_app_role):
    w = world
    page = client_for(w["mia"]).get(detail(w["policy"]))
    choices = list(page.context["move_form"].fields["collection"].queryset)
    assert choices == [w["sales"]]


def test_uploads_go_into_managed_collections_only(world, as_app_role):
    w = world
    hank = client_for(w["hank"])

    def post(collection, **fields):
        data = io.BytesIO(b"# Parking\n\nVisitors park in bay 7.\n")
        data.name = "parking.md"
        return hank.post("/api/documents/", {"collection": collection, "file": data, **fields})

    assert post("sales").status_code == 400
    assert post(str(w["sales"].pk)).status_code == 400
    # A new version of a document outside the managed set, or superseding one: missing.
    assert post("hr", document=str(w["policy"].pk)).status_code == 404
    assert post("hr", supersedes=str(w["policy"].pk)).status_code == 404
    with rls.managing_documents():
        assert Document.objects.count() == 2
    created = post("hr", supersedes=str(w["salaries"].pk))
    assert created.status_code == 201, created.content
    assert created.json()["results"][0]["document"]["collection"]["id"] == w["hr"].pk


def test_index_statistics_count_managed_collections_only(world, as_app_role):
    w = world
    with rls.managing_documents():
        hr_chunks = Chunk.objects.filter(collection=w["hr"]).count()
        all_chunks = Chunk.objects.count()
    stats = client_for(w["hank"]).get(reverse("ingestion:index_stats")).context["stats"]
    assert [c.name for c in stats["collections"]] == ["HR"]
    assert stats["chunks"] == hr_chunks and stats["states"] == {"indexed": 1}
    assert stats["bytes_total"] is None  # the table's size says something about every collection
    admin = client_for(w["ada"]).get(reverse("ingestion:index_stats")).context["stats"]
    assert admin["chunks"] == all_chunks and admin["bytes_total"] > 0


def test_content_is_shown_only_to_managers_who_may_read_it(world, as_app_role):
    w = world
    hank = client_for(w["hank"]).get(detail(w["salaries"])).content.decode()
    assert w["salaries"].title in hank and HR_SNIPPET not in hank
    assert "You manage this collection but may not read it" in hank
    assert reverse("ingestion:document_original", args=[w["salaries"].pk]) not in hank
    download = client_for(w["hank"]).get(
        reverse("ingestion:document_original", args=[w["salaries"].pk])
    )
    assert download.status_code == 404
    hera = client_for(w["hera"]).get(detail(w["salaries"])).content.decode()
    assert HR_SNIPPET in hera and "may not read it" not in hera
    original = client_for(w["hera"]).get(
        reverse("ingestion:document_original", args=[w["salaries"].pk])
    )
    assert original.status_code == 200
    assert HR_SNIPPET.encode() in b"".join(original.streaming_content)


def test_the_replaced_document_is_named_only_when_managed(world, as_app_role):
    w = world
    with rls.managing_documents():
        newer = upload(w["sales"], "policy-2.md", b"# Policy two\n\nNew.\n").document
        Document.objects.filter(pk=newer.pk).update(supersedes=w["salaries"])
    mia = client_for(w["mia"]).get(detail(newer)).content.decode()
    assert w["salaries"].title not in mia
    ada = client_for(w["ada"]).get(detail(newer)).content.decode()
    assert w["salaries"].title in ada


# --- the services check again ----------------------------------------------------------------


def test_services_refuse_actors_who_do_not_manage_the_collection(world):
    w = world
    hank, policy = w["hank"], w["policy"]
    data = b"# New\n\ntext\n"
    calls = [
        lambda: services.document_delete(actor=hank, document=policy),
        lambda: services.document_retry(actor=hank, document=policy),
        lambda: services.document_set_validity(
            actor=hank, document=policy, valid_from=None, valid_until=None
        ),
        lambda: services.document_move(actor=hank, document=policy, collection=w["hr"]),
        lambda: services.document_move(actor=w["mia"], document=policy, collection=w["hr"]),
        lambda: services.document_upload(
            actor=hank, collection=w["sales"], stream=io.BytesIO(data), filename="a.md", size=14
        ),
        lambda: services.document_upload(
            actor=hank,
            collection=w["hr"],
            stream=io.BytesIO(data),
            filename="a.md",
            size=14,
            supersedes=policy,
        ),
        lambda: services.document_upload(
            actor=hank,
            collection=w["hr"],
            stream=io.BytesIO(data),
            filename="a.md",
            size=14,
            document=policy,
        ),
    ]
    for call in calls:
        with pytest.raises(PermissionDenied):
            call()
    policy.refresh_from_db()
    assert policy.collection_id == w["sales"].pk and policy.version == 1
    assert Document.objects.count() == 2
    # System callers (actor None) and managers are not stopped.
    services.document_move(actor=w["max"], document=policy, collection=w["hr"])
    services.document_move(actor=None, document=policy, collection=w["sales"])


def test_import_documents_records_only_a_manager_as_the_uploader(world, tmp_path):
    w = world
    (tmp_path / "note.md").write_text("# Note\n\nThe car park closes at nine.\n")
    command = ["import_documents", str(tmp_path), "--collection", "sales", "--user"]
    with pytest.raises(CommandError, match="does not manage"):
        call_command(*command, "hank", stdout=io.StringIO())
    assert not Document.objects.filter(original_name="note.md").exists()
    call_command(*command, "mia", stdout=io.StringIO())
    assert Document.objects.get(original_name="note.md").uploaded_by == w["mia"]


# --- the collection page: who manages it ------------------------------------------------------


def test_the_collection_page_sets_and_audits_its_managers(world):
    w = world
    admin = client_for(w["ada"])
    url = reverse("ingestion:collection_detail", args=[w["hr"].pk])
    page = admin.get(url)
    assert "Managed by" in page.content.decode()
    response = admin.post(
        url,
        {"name": "HR", "description": "", "readers": [], "managers": [w["sales_docs"].pk]},
    )
    assert response.status_code == 302
    event = AuditEvent.objects.filter(action="collection.update").latest("pk")
    assert event.details["managers"] == {
        "before": ["HR docs", "HR editors"],
        "after": ["Sales docs"],
    }
    assert user_managed_collection_ids(user=w["mia"]) == {w["sales"].pk, w["hr"].pk}
    assert user_managed_collection_ids(user=w["hank"]) == frozenset()
    created = admin.post(
        reverse("ingestion:collection_create"),
        {"name": "Legal", "description": "", "managers": [w["hr_docs"].pk]},
    )
    assert created.status_code == 302
    legal = Collection.objects.get(name="Legal")
    assert list(legal.managers.values_list("name", flat=True)) == ["HR docs"]
    create_event = AuditEvent.objects.get(action="collection.create", target_id=str(legal.pk))
    assert create_event.details["managers"] == ["HR docs"]


# --- (B) retry's `next` ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://evil.example/phish", None),
        ("//evil.example/phish", None),
        ("javascript:alert(1)", None),
        ("/\\evil.example", None),
        ("", None),
        ("/manage/documents/?state=failed", "/manage/documents/?state=failed"),
    ],
)
def test_retry_follows_only_same_site_next_urls(world, given, expected):
    w = world
    response = client_for(w["ada"]).post(
        reverse("ingestion:document_retry", args=[w["salaries"].pk]), {"next": given}
    )
    assert response.status_code == 302
    assert response["Location"] == (expected or reverse("ingestion:document_list"))


# --- (C) user_may_see agrees with the reader's document view ---------------------------------


def _make_cases(w) -> dict[str, Document]:
    now = timezone.now()
    sales = w["sales"]

    def doc(name: str, **changes) -> Document:
        document = upload_and_index(sales, f"{name}.md", f"# {name}\n\n{name} text.\n".encode())
        Document.objects.filter(pk=document.pk).update(**changes)
        return Document.objects.get(pk=document.pk)

    superseded = doc("superseded")
    pending_successor_of = doc("awaiting successor")
    cases = {
        "fresh": w["policy"],
        "other collection": w["salaries"],
        "expired state": doc("expired", state=Document.State.EXPIRED),
        "past valid_until": doc("past", valid_until=now - timedelta(minutes=1)),
        "future valid_from": doc("future", valid_from=now + timedelta(days=1)),
        "never indexed": doc("never", indexed_version=None, state=Document.State.QUEUED),
        "superseded": superseded,
        "successor not yet indexed": pending_successor_of,
        "failed new version, old one indexed": doc("failed", state=Document.State.FAILED),
    }
    successor = doc("successor")
    Document.objects.filter(pk=successor.pk).update(supersedes=superseded)
    waiting = doc("waiting", indexed_version=None, state=Document.State.QUEUED)
    Document.objects.filter(pk=waiting.pk).update(supersedes=pending_successor_of)
    return cases


def test_user_may_see_agrees_with_the_readers_document_view(world):
    w = world
    cases = _make_cases(w)
    expected = {
        "fresh": True,
        "other collection": False,
        "expired state": False,
        "past valid_until": False,
        "future valid_from": False,
        "never indexed": False,
        "superseded": False,
        "successor not yet indexed": True,
        "failed new version, old one indexed": True,
    }
    alice = client_for(w["alice"])
    for name, document in cases.items():
        document.refresh_from_db()
        view = alice.get(reverse("ingestion:document_view", args=[document.pk])).status_code
        listed = documents_for_user(user=w["alice"]).filter(pk=document.pk).exists()
        may_see = user_may_see(user=w["alice"], obj=document)
        assert (may_see, listed, view == 200) == (expected[name],) * 3, name
    assert not user_may_see(user=w["charlie"], obj=w["policy"])
