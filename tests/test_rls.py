"""Row-level security: the web role sees documents and chunks only through the access scope.

The rest of the suite connects as the owner of the tables (the embedded cluster's bootstrap
role). Here the test's own connection switches to the web process's role with `SET LOCAL ROLE`
(the `as_app_role` fixture), so the real selectors, views and raw SQL run exactly as they do in
a web process whose DATABASE_URL names that role; the test transaction ends the switch.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.db import DatabaseError, connection, transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.capabilities import ADMINISTRATOR
from ingestion import rls
from ingestion.models import Chunk, Document
from ingestion.selectors import _fresh, chunk_search, document_passages_for_user
from tests.factories import CollectionFactory, RoleFactory, UserFactory
from tests.test_ingestion import POLICY, upload_and_index

pytestmark = pytest.mark.slow

HR_TEXT = (
    "# Salaries\n\n## Bands\n\nThe salary band for engineers in Leipzig runs from 52,000 to "
    "71,000 euros. Bonuses are paid every March.\n"
)


@pytest.fixture
def world(db):
    sales = CollectionFactory(name="Sales", slug="sales")
    hr = CollectionFactory(name="HR", slug="hr")
    alice = UserFactory(username="alice", roles=[RoleFactory(name="Sales", reads=[sales])])
    bob = UserFactory(username="bob", roles=[RoleFactory(name="HR", reads=[hr])])
    charlie = UserFactory(username="charlie")  # no roles
    admin = UserFactory(username="ada", roles=[Group.objects.get(name=ADMINISTRATOR)])
    policy = upload_and_index(sales, "policy.md", POLICY.encode())
    salaries = upload_and_index(hr, "salaries.md", HR_TEXT.encode())
    counts = {
        c: Chunk.objects.filter(collection_id=c.pk).count() for c in (sales, hr)
    }  # as the owner
    assert all(counts.values())
    return {
        "sales": sales,
        "hr": hr,
        "alice": alice,
        "bob": bob,
        "charlie": charlie,
        "admin": admin,
        "policy": policy,
        "salaries": salaries,
        "counts": counts,
    }


@pytest.fixture
def as_app_role(world, settings):
    role = settings.DATABASE_APP_ROLE
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role])
        assert cursor.fetchone(), f"role {role} missing: run scripts/services start"
        cursor.execute(f"SET LOCAL ROLE {connection.ops.quote_name(role)}")
        cursor.execute("SELECT current_user")
        assert cursor.fetchone()[0] == role
    yield role
    with connection.cursor() as cursor:
        cursor.execute("RESET ROLE")


def scalar(sql: str, params=()):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()[0]


def test_app_role_owns_nothing_and_cannot_bypass_the_policies(world, settings):
    role = settings.DATABASE_APP_ROLE
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb FROM pg_roles"
            " WHERE rolname = %s",
            [role],
        )
        assert cursor.fetchone() == (False, False, False, False)
        for table in rls.RLS_TABLES:
            cursor.execute(
                "SELECT pg_get_userbyid(relowner), relrowsecurity, relforcerowsecurity"
                " FROM pg_class WHERE oid = %s::regclass",
                [table],
            )
            owner, enabled, forced = cursor.fetchone()
            assert owner != role and enabled and forced, table


def test_a_query_that_forgets_the_filter_returns_nothing(as_app_role):
    assert scalar("SELECT count(*) FROM ingestion_chunk") == 0
    assert scalar("SELECT count(*) FROM ingestion_document") == 0
    assert Chunk.objects.count() == 0
    assert Document.objects.count() == 0


def test_the_setting_for_one_collection_shows_only_its_rows(world, as_app_role):
    sales, hr = world["sales"], world["hr"]
    with transaction.atomic():
        scalar("SELECT set_config('counsel.readable_collections', %s, true)", [str(sales.pk)])
        assert scalar("SELECT count(*) FROM ingestion_chunk") == world["counts"][sales]
        assert scalar("SELECT count(*) FROM ingestion_chunk WHERE collection_id = %s", [hr.pk]) == 0
        assert list(Document.objects.values_list("title", flat=True)) == [world["policy"].title]
    with transaction.atomic():
        both = f"{sales.pk},{hr.pk}"
        scalar("SELECT set_config('counsel.readable_collections', %s, true)", [both])
        assert scalar("SELECT count(*) FROM ingestion_chunk") == sum(world["counts"].values())


def test_a_malformed_setting_fails_closed(as_app_role):
    with pytest.raises(DatabaseError), transaction.atomic():
        scalar("SELECT set_config('counsel.readable_collections', '1 OR true', true)")
        scalar("SELECT count(*) FROM ingestion_chunk")


def test_reading_as_a_user_sets_their_collections_for_that_block_only(world, as_app_role):
    with rls.reading_as(user=world["alice"]):
        assert scalar("SELECT count(*) FROM ingestion_chunk") == world["counts"][world["sales"]]
        assert {c for (c,) in Chunk.objects.values_list("collection_id").distinct()} == {
            world["sales"].pk
        }
    # The outer (test) transaction goes on, but the scope ended with its block.
    assert scalar("SELECT count(*) FROM ingestion_chunk") == 0
    with rls.reading_as(user=world["charlie"]):
        assert scalar("SELECT count(*) FROM ingestion_chunk") == 0
    world["alice"].is_active = False
    world["alice"].save()
    with rls.reading_as(user=world["alice"]):  # re-read from the database: nothing any more
        assert scalar("SELECT count(*) FROM ingestion_chunk") == 0


@pytest.mark.django_db(transaction=True)
def test_reading_as_its_own_transaction_scopes_that_transaction_only(world, settings):
    role = connection.ops.quote_name(settings.DATABASE_APP_ROLE)
    with connection.cursor() as cursor:
        cursor.execute(f"SET ROLE {role}")  # for the session: there is no test transaction
    try:
        assert not connection.in_atomic_block
        with rls.reading_as(user=world["alice"]):
            assert scalar("SELECT count(*) FROM ingestion_chunk") == world["counts"][world["sales"]]
        # Committed: the setting ended with the block's transaction.
        assert not scalar("SELECT current_setting(%s, true)", [rls.READABLE_SETTING])
        assert scalar("SELECT count(*) FROM ingestion_chunk") == 0
        with pytest.raises(RuntimeError), rls.reading_as(user=world["bob"]):
            raise RuntimeError("rolled back")
        assert not scalar("SELECT current_setting(%s, true)", [rls.READABLE_SETTING])
        assert scalar("SELECT count(*) FROM ingestion_chunk") == 0
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET ROLE")


def test_chunk_search_finds_the_same_chunks_as_the_web_role(world, settings):
    questions = ["hotel nightly limit in Munich", "salary band for engineers", "trains"]
    users = [world[name] for name in ("alice", "bob", "charlie", "admin")]
    as_owner = {
        (u.pk, q): [h.chunk_id for h in chunk_search(user=u, query=q, k=5)]
        for u in users
        for q in questions
    }
    with connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL ROLE {connection.ops.quote_name(settings.DATABASE_APP_ROLE)}")
    try:
        as_app = {
            (u.pk, q): [h.chunk_id for h in chunk_search(user=u, query=q, k=5)]
            for u in users
            for q in questions
        }
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET ROLE")
    assert as_app == as_owner
    sales, hr = world["sales"].pk, world["hr"].pk
    alice_hits = chunk_search(user=world["alice"], query="hotel nightly limit in Munich", k=5)
    assert alice_hits and {h.collection_id for h in alice_hits} == {sales}
    assert as_app[(world["bob"].pk, "salary band for engineers")]
    assert all(not ids for (uid, _), ids in as_app.items() if uid == world["charlie"].pk)
    assert not set(as_app[(world["alice"].pk, "salary band for engineers")]) & set(
        Chunk.objects.filter(collection_id=hr).values_list("pk", flat=True)
    )


def test_document_viewer_and_download_serve_readers_only(world, as_app_role):
    policy = world["policy"]
    client = Client()
    client.force_login(world["alice"])
    page = client.get(reverse("ingestion:document_view", args=[policy.pk]))
    assert page.status_code == 200 and "190 euros in Munich" in page.content.decode()
    download = client.get(reverse("ingestion:document_download", args=[policy.pk]))
    assert download.status_code == 200
    assert b"190 euros" in b"".join(download.streaming_content)
    passages = document_passages_for_user(user=world["alice"], document_id=policy.pk)
    assert passages and all(chunk.collection_id == world["sales"].pk for chunk, _ in passages)
    client.force_login(world["bob"])
    assert client.get(reverse("ingestion:document_view", args=[policy.pk])).status_code == 404
    assert client.get(reverse("ingestion:document_download", args=[policy.pk])).status_code == 404


def test_document_administration_sees_every_document(world, as_app_role):
    client = Client()
    client.force_login(world["admin"])
    listing = client.get(reverse("ingestion:document_list")).content.decode()
    assert world["policy"].title in listing and world["salaries"].title in listing
    stats = client.get(reverse("ingestion:index_stats"))
    assert stats.context["stats"]["chunks"] == sum(world["counts"].values())
    detail = client.get(reverse("ingestion:document_detail", args=[world["salaries"].pk]))
    assert detail.status_code == 200
    # Outside the administrative pages the same connection sees nothing again.
    assert scalar("SELECT count(*) FROM ingestion_document") == 0


def test_writes_outside_a_scope_are_refused(world, as_app_role):
    salaries = world["salaries"]
    assert Document.objects.filter(pk=salaries.pk).update(title="renamed") == 0
    assert Chunk.objects.filter(document_id=salaries.pk).delete()[0] == 0
    # Alice's scope shows sales only: a row written into HR is refused.
    with (
        pytest.raises(DatabaseError, match="row-level security"),
        rls.reading_as(user=world["alice"]),
    ):
        scalar(
            "UPDATE ingestion_chunk SET collection_id = %s WHERE collection_id = %s",
            [world["hr"].pk, world["sales"].pk],
        )


def test_the_app_role_cannot_change_the_query_log(world, as_app_role):
    with pytest.raises(DatabaseError, match="permission denied"), transaction.atomic():
        scalar("UPDATE compliance_querylogentry SET answer = '' WHERE false")
    with pytest.raises(DatabaseError, match="permission denied"), transaction.atomic():
        scalar("TRUNCATE compliance_querylogentry")


def test_the_planner_total_matches_the_freshness_rule(world):
    now = timezone.now()
    Document.objects.filter(pk=world["salaries"].pk).update(valid_until=now)
    expected = sum(Document.objects.filter(_fresh(now)).values_list("chunk_count", flat=True))
    assert expected == world["counts"][world["sales"]]
    assert scalar("SELECT ingestion_fresh_chunk_total(%s)", [now]) == expected


def test_the_text_search_function_keeps_to_the_transaction_scope(world):
    # It runs as the owner (to use the GIN index under row-level security), so it must apply
    # the scope itself: outside one it finds nothing, inside alice's only sales, even when the
    # caller passes every collection.
    everything = [world["sales"].pk, world["hr"].pk]
    documents = list(Document.objects.values_list("pk", flat=True))
    # Any term may match (issue 16): the terms asked are ones only the HR document holds.
    sql = "SELECT count(*) FROM ingestion_chunk_text_search(%s, %s, %s, 50)"
    assert scalar(sql, ["salary band bonuses", everything, documents]) == 0
    with rls.reading_as(user=world["alice"]):
        assert scalar(sql, ["salary band bonuses", everything, documents]) == 0
        assert scalar(sql, ["hotel limit euros", everything, documents]) > 0
    with rls.reading_as(user=world["bob"]):
        assert scalar(sql, ["salary band bonuses", everything, documents]) > 0
        assert scalar(sql, ["salary band bonuses", [world["sales"].pk], documents]) == 0


def test_upload_search_and_delete_through_the_web_as_the_web_role(world, as_app_role):
    import io

    admin = Client()
    admin.force_login(world["admin"])
    upload_file = io.BytesIO(b"# Parking\n\nVisitors park in bay 7 behind the Leipzig office.\n")
    upload_file.name = "parking.md"
    response = admin.post("/api/documents/", {"collection": "sales", "file": upload_file})
    assert response.status_code == 201, response.content
    document_id = response.json()["results"][0]["document"]["id"]
    listed = admin.get("/api/documents/").json()["documents"]
    assert document_id in {d["id"] for d in listed} and len(listed) == 3

    reader = Client()
    reader.force_login(world["alice"])
    found = reader.get("/api/search/", {"q": "hotel nightly limit Munich"}).json()["results"]
    assert found and {r["document_id"] for r in found} == {world["policy"].pk}
    bob = Client()
    bob.force_login(world["bob"])
    seen_by_bob = bob.get("/api/search/", {"q": "hotel nightly limit Munich"}).json()["results"]
    assert world["policy"].pk not in {r["document_id"] for r in seen_by_bob}

    deleted = admin.post(reverse("ingestion:document_delete", args=[world["policy"].pk]))
    assert deleted.status_code == 302
    with rls.managing_documents():
        assert not Document.objects.filter(pk=world["policy"].pk).exists()
        assert not Chunk.objects.filter(document_id=world["policy"].pk).exists()
        assert Chunk.objects.filter(document_id=world["salaries"].pk).exists()
