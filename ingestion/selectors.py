"""Reads of documents and chunks. `chunk_search` is the search chokepoint: nothing else reads
chunk rows (ruff's banned-api rule and scripts/check-access enforce it).

Every query here starts from `searchable_chunks(user=…)` or `documents_for_user(user=…)`, which
filter in SQL by the collections the user may read (accounts.selectors) and by freshness (not
expired, not before `valid_from`, not superseded by an indexed document). Callers cannot widen
them: an optional `collection_ids` only narrows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.contrib.postgres.search import SearchQuery, SearchRank
from django.db import connection, transaction
from django.db.models import (
    Count,
    Exists,
    ExpressionWrapper,
    F,
    FloatField,
    OuterRef,
    Q,
    QuerySet,
    Sum,
    Value,
)
from django.utils import timezone
from pgvector.django import CosineDistance

from accounts.selectors import readable_collection_ids_query
from ingestion.models import Chunk, Collection, Document


@dataclass(frozen=True)
class SearchHit:
    chunk_id: int
    document_id: int
    document_title: str
    collection_id: int
    version: int
    ordinal: int
    heading: str
    page: int | None
    text: str
    score: float  # reciprocal-rank-fusion score: higher is better
    similarity: float | None  # cosine similarity of the vector match, when it was one
    vector_rank: int | None
    text_rank: int | None


def _fresh(now) -> Q:
    return (
        Q(indexed_version__isnull=False)
        & ~Q(state=Document.State.EXPIRED)
        & (Q(valid_until__isnull=True) | Q(valid_until__gt=now))
        & (Q(valid_from__isnull=True) | Q(valid_from__lte=now))
        # A document replaced by another one disappears the moment its successor is indexed.
        # NOT EXISTS, not the negated reverse lookup: Django compiles that to LEFT JOIN … IS
        # NULL, which PostgreSQL estimates at about one live document and then joins every
        # chunk to the documents in a nested loop (bench/search.py measured it).
        & ~Exists(Document.objects.filter(supersedes=OuterRef("pk"), indexed_version__isnull=False))
    )


def documents_for_user(*, user) -> QuerySet[Document]:
    """Current documents `user` may read (for citations, downloads and previews).

    "Not found" and "not allowed" are the same empty result.
    """
    return Document.objects.filter(
        _fresh(timezone.now()), collection_id__in=readable_collection_ids_query(user=user)
    )


def document_get_for_user(*, user, document_id: int) -> Document | None:
    return documents_for_user(user=user).filter(pk=document_id).first()


def document_chunks_for_user(*, user, document_id: int) -> QuerySet[Chunk] | None:
    """A readable document's chunks in order (the document viewer), or None: not found."""
    if document_get_for_user(user=user, document_id=document_id) is None:
        return None
    return searchable_chunks(user=user).filter(document_id=document_id).order_by("ordinal")


def searchable_chunks(*, user, collection_ids: Iterable[int] | None = None) -> QuerySet[Chunk]:
    """The chunks `user` may retrieve now, as one lazy SQL filter."""
    readable = readable_collection_ids_query(user=user)
    live = documents_for_user(user=user)
    chunks = Chunk.objects.filter(collection_id__in=readable, document_id__in=live.values("pk"))
    if collection_ids is not None:
        chunks = chunks.filter(collection_id__in=list(collection_ids))  # narrows, never widens
    return chunks


def _candidate_rows(*, user, collection_ids: Iterable[int] | None) -> int:
    # From the documents table (small), not by counting chunk rows.
    docs = documents_for_user(user=user)
    if collection_ids is not None:
        docs = docs.filter(collection_id__in=list(collection_ids))
    return docs.aggregate(n=Sum("chunk_count"))["n"] or 0


def _vector_ranking(chunks: QuerySet[Chunk], vector, *, limit: int, exact: bool) -> list:
    distance = CosineDistance("embedding", vector)
    if exact:
        # `distance + 0` cannot be served by the HNSW index, so PostgreSQL scans the (small)
        # readable subset through the collection index and sorts exactly: recall 1.0.
        ordered = chunks.annotate(
            distance=ExpressionWrapper(distance + Value(0.0), output_field=FloatField())
        ).order_by("distance")
        return list(ordered.values_list("pk", "distance")[:limit])
    with transaction.atomic(), connection.cursor() as cursor:
        # Iterative scans keep walking the graph until `limit` rows pass the access filter
        # (without them a selective filter returns fewer rows than asked; NOTES.md).
        cursor.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        cursor.execute("SET LOCAL hnsw.ef_search = %s", [settings.SEARCH_EF_SEARCH])
        cursor.execute("SET LOCAL hnsw.max_scan_tuples = %s", [settings.SEARCH_MAX_SCAN_TUPLES])
        # We chose this branch because the readable subset is large. The planner, costing the
        # HNSW scan above a scan-and-sort of those rows even at LIMIT 30, would otherwise turn
        # it into an exact scan (300 ms at 100k rows instead of 30; bench/search.py).
        cursor.execute("SET LOCAL enable_sort = off")
        rows = list(
            chunks.annotate(distance=distance)
            .order_by("distance")
            .values_list("pk", "distance")[:limit]
        )
    # relaxed_order may return rows slightly out of order.
    return sorted(rows, key=lambda row: row[1])


def _text_ranking(chunks: QuerySet[Chunk], query: str, *, limit: int) -> list:
    tsquery = SearchQuery(query, search_type="websearch", config="english")
    return list(
        chunks.filter(search_vector=tsquery)
        .annotate(rank=SearchRank(F("search_vector"), tsquery))
        .order_by("-rank", "pk")
        .values_list("pk", "rank")[:limit]
    )


def chunk_search(
    *,
    user,
    query: str,
    k: int = 5,
    collection_ids: Iterable[int] | None = None,
    vector=None,
) -> list[SearchHit]:
    """The best `k` chunks for `query` among those `user` may read now.

    Vector similarity (cosine; exact over small readable subsets, HNSW with iterative scans
    over large ones) and PostgreSQL full-text search are fused by reciprocal rank fusion.
    `vector` may pass a precomputed query embedding.
    """
    query = (query or "").strip()
    k = max(1, min(k, settings.SEARCH_MAX_K))
    if not query:
        return []
    chunks = searchable_chunks(user=user, collection_ids=collection_ids)
    candidates = _candidate_rows(user=user, collection_ids=collection_ids)
    if candidates == 0:
        return []
    if vector is None:
        from ingestion.embedding import embed_query

        vector = embed_query(query)
    limit = max(settings.SEARCH_CANDIDATES, k)
    exact = candidates <= settings.SEARCH_EXACT_MAX_ROWS
    vector_rows = _vector_ranking(chunks, vector, limit=limit, exact=exact)
    text_rows = _text_ranking(chunks, query, limit=limit)

    rrf = settings.SEARCH_RRF_K
    scores: dict[int, float] = {}
    vector_rank = {pk: rank for rank, (pk, _) in enumerate(vector_rows, start=1)}
    similarity = {pk: 1.0 - float(d) for pk, d in vector_rows}
    text_rank = {pk: rank for rank, (pk, _) in enumerate(text_rows, start=1)}
    for ranking in (vector_rank, text_rank):
        for pk, rank in ranking.items():
            scores[pk] = scores.get(pk, 0.0) + 1.0 / (rrf + rank)
    best = sorted(scores, key=lambda pk: (-scores[pk], pk))[:k]
    # Fetched again through the same access filter, never by id alone.
    rows = {
        c.pk: c
        for c in chunks.filter(pk__in=best)
        .select_related("document")
        .only(
            "pk",
            "document_id",
            "document__title",
            "collection_id",
            "version",
            "ordinal",
            "heading",
            "page",
            "text",
        )
    }
    return [
        SearchHit(
            chunk_id=pk,
            document_id=rows[pk].document_id,
            document_title=rows[pk].document.title,
            collection_id=rows[pk].collection_id,
            version=rows[pk].version,
            ordinal=rows[pk].ordinal,
            heading=rows[pk].heading,
            page=rows[pk].page,
            text=rows[pk].text,
            score=scores[pk],
            similarity=similarity.get(pk),
            vector_rank=vector_rank.get(pk),
            text_rank=text_rank.get(pk),
        )
        for pk in best
        if pk in rows
    ]


# --- training data (tuning) ------------------------------------------------------------------


@dataclass(frozen=True)
class DocumentText:
    document_id: int
    version: int
    title: str
    collection_id: int
    indexed_at: object
    sections: list[tuple[str, str]]  # (heading, text) per chunk, in reading order


def current_document_texts(
    *, collection_ids: Iterable[int], max_per_collection: int | None = None
) -> list[DocumentText]:
    """The indexed text of every current document in `collection_ids`, with its version.

    For building an access profile's training set: the caller (tuning, for an administrator
    who may manage adapters) passes exactly the profile's collections. Only what search could
    return today is included: fresh documents, at their indexed version.
    """
    ids = sorted(set(collection_ids))
    if not ids:
        return []
    documents = list(
        Document.objects.filter(_fresh(timezone.now()), collection_id__in=ids)
        .order_by("collection_id", "title", "pk")
        .only("pk", "title", "collection_id", "indexed_version", "indexed_at")
    )
    if max_per_collection is not None:
        taken: dict[int, int] = {}
        kept = []
        for d in documents:
            taken[d.collection_id] = taken.get(d.collection_id, 0) + 1
            if taken[d.collection_id] <= max_per_collection:
                kept.append(d)
        documents = kept
    sections: dict[int, list[tuple[str, str]]] = {d.pk: [] for d in documents}
    rows = (
        Chunk.objects.filter(document_id__in=list(sections), collection_id__in=ids)
        .filter(version=F("document__indexed_version"))
        .order_by("document_id", "ordinal")
        .values_list("document_id", "heading", "text")
    )
    for document_id, heading, text in rows:
        sections[document_id].append((heading, text))
    return [
        DocumentText(
            document_id=d.pk,
            version=d.indexed_version,
            title=d.title,
            collection_id=d.collection_id,
            indexed_at=d.indexed_at,
            sections=sections[d.pk],
        )
        for d in documents
        if sections[d.pk]
    ]


def documents_current(*, document_ids: Iterable[int]) -> QuerySet[Document]:
    """Which of `document_ids` are current now (fresh), whoever reads them (tuning's staleness)."""
    return Document.objects.filter(_fresh(timezone.now()), pk__in=list(document_ids)).only(
        "pk", "version", "indexed_version", "collection_id"
    )


# --- administration ---------------------------------------------------------------------------


def document_list(*, collection_id: int | None = None, state: str = "") -> QuerySet[Document]:
    """All documents, for administrators who manage documents (titles and states, no text)."""
    documents = Document.objects.select_related("collection", "uploaded_by")
    if collection_id:
        documents = documents.filter(collection_id=collection_id)
    if state:
        documents = documents.filter(state=state)
    return documents


def index_stats() -> dict:
    """Counts per collection and state, and the size of the chunk table and its indexes."""
    per_collection = list(
        Collection.objects.annotate(
            documents=Count("documents", distinct=True),
            chunks=Sum("documents__chunk_count"),
            indexed=Count("documents", filter=Q(documents__state="indexed"), distinct=True),
            failed=Count("documents", filter=Q(documents__state="failed"), distinct=True),
            pending=Count(
                "documents",
                filter=Q(documents__state__in=["queued", "processing"]),
                distinct=True,
            ),
            expired=Count("documents", filter=Q(documents__state="expired"), distinct=True),
        ).order_by("name")
    )
    states = dict(Document.objects.values_list("state").annotate(n=Count("pk")).order_by())
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_total_relation_size(%s), pg_relation_size(%s), "
            "pg_relation_size('chunk_embedding_hnsw'), (SELECT count(*) FROM ingestion_chunk)",
            [Chunk._meta.db_table, Chunk._meta.db_table],
        )
        total, heap, hnsw, chunk_rows = cursor.fetchone()
    return {
        "collections": per_collection,
        "states": states,
        "chunks": chunk_rows,
        "bytes_total": total,
        "bytes_table": heap,
        "bytes_hnsw": hnsw,
    }
