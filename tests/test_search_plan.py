"""How chunk_search plans a search (exact, own index, shared index) and the per-collection
indexes that make large collections fast without losing recall. The access side of search is
in test_search_access.py; these tests check that every plan returns what the exact plan returns
and nothing outside the readable collections."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from accounts.capabilities import ADMINISTRATOR
from ingestion import services
from ingestion.search_indexes import (
    index_name,
    own_indexes,
    search_indexes_sync,
)
from ingestion.selectors import SearchPlan, chunk_search, plan_search
from ingestion.tasks import sync_search_indexes
from tests.factories import CollectionFactory, RoleFactory, UserFactory
from tests.test_ingestion import POLICY, upload_and_index

A, B, C, D = 11, 12, 13, 14


@pytest.mark.parametrize(
    ("sizes", "table_rows", "indexed", "expected"),
    [
        # Few readable chunks: compare them all, whatever indexes exist.
        ({A: 100, B: 200}, 10_000, {A, B}, SearchPlan(300, exact=(A, B))),
        ({A: 1000}, 1000, set(), SearchPlan(1000, exact=(A,))),
        # A large collection with its own index, small ones beside it: own index + exact.
        ({A: 50_000, B: 300}, 1_000_000, {A}, SearchPlan(50_300, exact=(B,), own_index=(A,))),
        # Two large indexed collections: one index search each.
        ({A: 50_000, B: 60_000}, 1_000_000, {A, B}, SearchPlan(110_000, own_index=(A, B))),
        # A large collection without its own index yet: the shared index, filtered.
        (
            {A: 50_000, B: 60_000},
            1_000_000,
            {A},
            SearchPlan(110_000, own_index=(A,), shared_index=(B,)),
        ),
        # Reading most of the table: the shared index with a filter that passes most rows.
        ({A: 300_000, B: 300_000}, 1_000_000, {A, B}, SearchPlan(600_000, shared_index=(A, B))),
        # More indexed collections than SEARCH_MAX_OWN_INDEX_SCANS: one shared search instead.
        (
            dict.fromkeys(range(1, 9), 10000),
            1_000_000,
            set(range(1, 9)),
            SearchPlan(80_000, shared_index=tuple(range(1, 9))),
        ),
    ],
)
def test_plan_search_table(settings, sizes, table_rows, indexed, expected):
    settings.SEARCH_EXACT_MAX_ROWS = 4000
    settings.SEARCH_SHARED_INDEX_FRACTION = 0.5
    settings.SEARCH_MAX_OWN_INDEX_SCANS = 6
    plan = plan_search(sizes, table_rows=table_rows, indexed=lambda: frozenset(indexed))
    assert plan == expected
    assert sorted(plan.collections) == sorted(sizes)  # every readable collection, no other


@pytest.fixture
def indexed_world(transactional_db, settings):
    """Two collections with documents; alice reads Sales, bob reads HR. Own indexes are
    dropped again afterwards (DDL outlives the test's flush)."""
    settings.SEARCH_OWN_INDEX_MIN_ROWS = 1
    sales = CollectionFactory(name="Sales", slug="sales")
    hr = CollectionFactory(name="HR", slug="hr")
    world = {
        "sales": sales,
        "hr": hr,
        "alice": UserFactory(username="alice", roles=[RoleFactory(name="Sales", reads=[sales])]),
        "bob": UserFactory(username="bob", roles=[RoleFactory(name="HR", reads=[hr])]),
        "admin": UserFactory(username="ada", roles=[Group.objects.get(name=ADMINISTRATOR)]),
        "sales_doc": upload_and_index(sales, "policy.md", POLICY.encode()),
        "hr_doc": upload_and_index(
            hr, "leave.md", b"# Leave\n\nEmployees take 30 days of paid leave a year.\n"
        ),
    }
    yield world
    settings.SEARCH_OWN_INDEX_MIN_ROWS = 10**9
    search_indexes_sync()


def _explain(sql: str, params) -> str:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true),"
            " set_config('enable_sort', 'off', true)"
        )
        cursor.execute("EXPLAIN " + sql, params)
        return "\n".join(row[0] for row in cursor.fetchall())


def test_own_index_is_built_used_and_dropped(indexed_world, settings):
    sales, hr = indexed_world["sales"], indexed_world["hr"]
    alice, bob = indexed_world["alice"], indexed_world["bob"]
    settings.SEARCH_EXACT_MAX_ROWS = 10_000
    exact = chunk_search(user=alice, query="train class", k=3)
    assert exact

    result = search_indexes_sync()
    assert set(result.created) == {sales.pk, hr.pk}
    assert own_indexes() == {sales.pk: True, hr.pk: True}
    assert search_indexes_sync().created == []  # idempotent

    settings.SEARCH_EXACT_MAX_ROWS = 0
    settings.SEARCH_SHARED_INDEX_FRACTION = 1.0
    with CaptureQueriesContext(connection) as queries:
        own = chunk_search(user=alice, query="train class", k=3)
    assert [h.chunk_id for h in own] == [h.chunk_id for h in exact]
    assert {h.collection_id for h in own} == {sales.pk}
    search = next(q for q in queries.captured_queries if " live (id, title)" in q["sql"])
    # The statement names Sales by its id, and PostgreSQL plans Sales' own index for it.
    plan = _explain(search["sql"], None)
    assert index_name(sales.pk) in plan
    assert index_name(hr.pk) not in plan

    # Bob's search uses HR's index and never returns a Sales chunk.
    assert {h.collection_id for h in chunk_search(user=bob, query="train class", k=5)} <= {hr.pk}

    services.document_delete(actor=indexed_world["admin"], document=indexed_world["hr_doc"])
    outcome = sync_search_indexes.apply().get()
    assert outcome["dropped"] == [hr.pk]
    assert own_indexes() == {sales.pk: True}
    assert chunk_search(user=bob, query="leave", k=5) == []


def test_shared_index_plan_matches_exact_on_a_small_table(indexed_world, settings):
    alice = indexed_world["alice"]
    settings.SEARCH_EXACT_MAX_ROWS = 10_000
    exact = chunk_search(user=alice, query="hotel limit", k=3)
    settings.SEARCH_EXACT_MAX_ROWS = 0
    settings.SEARCH_SHARED_INDEX_FRACTION = 0.0  # forces the shared index
    shared = chunk_search(user=alice, query="hotel limit", k=3)
    assert [h.chunk_id for h in shared] == [h.chunk_id for h in exact]
