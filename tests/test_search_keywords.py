"""Search on corpora of many short documents (issue 16): the chunks' own freshness columns, the
collections' chunk counts, and keyword search that finds something for questions people ask.

Real PostgreSQL (row-level security as the tests run it), real indexing through the services,
the real embedding model; nothing of ours is mocked.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from ingestion import services
from ingestion.freshness import fresh
from ingestion.keywords import keyword_stats_refresh
from ingestion.models import Chunk, Collection, Document
from ingestion.rls import reading_as
from ingestion.selectors import chunk_search
from tests.factories import CollectionFactory, RoleFactory, UserFactory
from tests.test_ingestion import POLICY, upload_and_index

pytestmark = [pytest.mark.slow, pytest.mark.django_db]


@pytest.fixture
def world(db):
    sales = CollectionFactory(name="Sales", slug="sales")
    hr = CollectionFactory(name="HR", slug="hr")
    return {
        "sales": sales,
        "hr": hr,
        "alice": UserFactory(username="alice", roles=[RoleFactory(name="Sales", reads=[sales])]),
        "bob": UserFactory(username="bob", roles=[RoleFactory(name="HR", reads=[hr])]),
    }


def _chunks_agree_with_documents() -> None:
    """Every chunk's copied freshness says what the documents table's rule says, now and at
    a few other moments."""
    now = timezone.now()
    for at in (now, now - timedelta(days=3), now + timedelta(days=3)):
        by_document = set(
            Chunk.objects.filter(document__in=Document.objects.filter(fresh(at))).values_list(
                "pk", flat=True
            )
        )
        by_chunk = {
            c.pk
            for c in Chunk.objects.all()
            if not c.superseded
            and (c.valid_from is None or c.valid_from <= at)
            and (c.valid_until is None or c.valid_until > at)
        }
        assert by_chunk == by_document, at


def _counts_agree() -> None:
    for collection in Collection.objects.all():
        assert collection.chunk_count == Chunk.objects.filter(collection=collection).count()


def test_chunks_carry_their_documents_freshness_through_every_change(world):
    sales, hr = world["sales"], world["hr"]
    old = upload_and_index(sales, "travel-2024.md", POLICY.encode())
    _chunks_agree_with_documents()
    _counts_agree()
    # A successor replaces it the moment it is indexed.
    new = upload_and_index(
        sales, "travel-2025.md", POLICY.replace("190", "210").encode(), supersedes=old
    )
    assert Chunk.objects.filter(document=old, superseded=True).exists()
    _chunks_agree_with_documents()
    # Dates: not yet valid, then no longer valid.
    admin = None
    services.document_set_validity(
        actor=admin, document=new, valid_from=timezone.now() + timedelta(days=1), valid_until=None
    )
    _chunks_agree_with_documents()
    services.document_set_validity(
        actor=admin,
        document=new,
        valid_from=None,
        valid_until=timezone.now() - timedelta(days=1),
    )
    _chunks_agree_with_documents()
    # Moved: counts follow; deleted successor: the old document is current again.
    services.document_move(actor=admin, document=new, collection=hr)
    _counts_agree()
    services.document_delete(actor=admin, document=Document.objects.get(pk=new.pk))
    assert not Chunk.objects.filter(document=old, superseded=True).exists()
    _chunks_agree_with_documents()
    _counts_agree()
    # A new version of the old document: the set is swapped, the counts stay right.
    upload_and_index(sales, "travel-2024.md", (POLICY + "\nTaxis need a receipt.\n").encode())
    _chunks_agree_with_documents()
    _counts_agree()


def test_a_replaced_or_expired_document_is_never_found(world):
    alice = world["alice"]
    old = upload_and_index(
        world["sales"], "parking-old.md", b"# Parking\n\nVisitors park in bay 7.\n"
    )
    upload_and_index(
        world["sales"], "parking.md", b"# Parking\n\nVisitors park in bay 9.\n", supersedes=old
    )
    found = {h.document_id for h in chunk_search(user=alice, query="Where do visitors park?", k=5)}
    assert old.pk not in found and found
    dated = upload_and_index(world["sales"], "canteen.md", b"# Canteen\n\nLunch costs 4.50.\n")
    services.document_set_validity(
        actor=None, document=dated, valid_from=None, valid_until=timezone.now() - timedelta(hours=1)
    )
    assert dated.pk not in {
        h.document_id for h in chunk_search(user=alice, query="What does lunch cost?", k=5)
    }


def _keyword_ranks(user, query: str, collections) -> dict[int, float]:
    with reading_as(user=user), connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, rank FROM ingestion_chunk_text_search(%s, %s, NULL, 50)",
            [query, [c.pk for c in collections]],
        )
        return dict(cursor.fetchall())


def test_a_natural_question_gets_keyword_candidates_though_not_every_word_matches(world):
    upload_and_index(world["sales"], "travel.md", POLICY.encode())
    question = "How much may I spend on a hotel room per night in Munich?"
    assert _keyword_ranks(world["alice"], question, [world["sales"]])
    hits = chunk_search(user=world["alice"], query=question, k=3)
    assert hits[0].text_rank == 1 and "190 euros in Munich" in hits[0].text


def test_rarer_terms_weigh_more(world):
    sales = world["sales"]
    for n in range(6):
        upload_and_index(
            sales, f"policy-{n}.md", f"# Policy {n}\n\nThis policy covers topic {n}.\n".encode()
        )
    rare = upload_and_index(sales, "sandbox.md", b"# CRM\n\nThe training sandbox is ferngrove.\n")
    keyword_stats_refresh()
    ranks = _keyword_ranks(world["alice"], "policy ferngrove", [sales])
    best = max(ranks, key=ranks.get)
    assert Chunk.objects.get(pk=best).document_id == rare.pk


def test_an_exact_identifier_finds_its_chunk_first(world):
    sales = world["sales"]
    for n in range(8):
        upload_and_index(
            sales,
            f"account-{n}.md",
            f"# Key account {n}\n\nAgreement KA-RRR-04{n}{n} covers cargo bikes.\n".encode(),
        )
    keyword_stats_refresh()
    hits = chunk_search(user=world["alice"], query="KA-RRR-0455", k=5)
    assert "KA-RRR-0455" in hits[0].text


def test_what_other_collections_hold_never_changes_a_readers_ranking(world):
    """Term rarity is counted over the reader's collections only: adding documents elsewhere
    changes nothing a reader can observe (no side channel on what they cannot read)."""
    upload_and_index(world["sales"], "travel.md", POLICY.encode())
    upload_and_index(world["sales"], "bikes.md", b"# Bikes\n\nCargo bikes are leased in Munich.\n")
    keyword_stats_refresh()
    question = "hotel limit Munich"
    before = _keyword_ranks(world["alice"], question, [world["sales"], world["hr"]])
    for n in range(5):
        upload_and_index(world["hr"], f"hr-{n}.md", f"# Munich {n}\n\nMunich hotel {n}.\n".encode())
    keyword_stats_refresh()
    after = _keyword_ranks(world["alice"], question, [world["sales"], world["hr"]])
    assert before == after and before
    assert (
        _keyword_ranks(world["bob"], question, [world["sales"], world["hr"]])
        .keys()
        .isdisjoint(before)
    )


def test_narrowing_to_a_document_keeps_to_it_and_never_widens(world):
    sales = world["sales"]
    travel = upload_and_index(sales, "travel.md", POLICY.encode())
    other = upload_and_index(
        sales, "hotels.md", b"# Hotels\n\nThe hotel limit in Munich is 190 euros.\n"
    )
    salaries = upload_and_index(world["hr"], "salaries.md", b"# Salaries\n\nMunich hotel bonus.\n")
    question = "hotel limit in Munich"
    assert {h.document_id for h in chunk_search(user=world["alice"], query=question, k=10)} == {
        travel.pk,
        other.pk,
    }
    only = chunk_search(user=world["alice"], query=question, k=10, document_ids=[travel.pk])
    assert only and {h.document_id for h in only} == {travel.pk}
    # A document the reader may not read narrows to nothing.
    assert chunk_search(user=world["alice"], query=question, k=10, document_ids=[salaries.pk]) == []


def test_a_full_chunks_tsvector_stays_in_its_row(world):
    # Keyword search reads every candidate's tsvector once per term: out of line, each read
    # was a fetch from the toast table (migration 0013). A full chunk with its vector is over
    # the 2 kB row size at which PostgreSQL moves values out.
    words = " ".join(f"word{n} topic{n % 7} subject{n % 11}" for n in range(120))
    upload_and_index(world["sales"], "long.md", f"# Long\n\n{words}.\n".encode())
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT min(pg_column_size(search_vector) + pg_column_size(embedding)),"
            " count(pg_column_toast_chunk_id(search_vector)), count(*) FROM ingestion_chunk"
        )
        narrowest, toasted, chunks = cursor.fetchone()
        cursor.execute(
            "SELECT attstorage FROM pg_attribute"
            " WHERE attrelid = 'ingestion_chunk'::regclass AND attname = 'search_vector'"
        )
        assert cursor.fetchone()[0] == "m"
    assert chunks and narrowest > 2100  # the row would be toasted with default storage
    assert toasted == 0
