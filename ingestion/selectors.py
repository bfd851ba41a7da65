"""Reads of documents and chunks. `chunk_search` is the search chokepoint: nothing else reads
chunk rows (ruff's banned-api rule and scripts/check-access enforce it).

Every query here starts from `searchable_chunks(user=…)` or `documents_for_user(user=…)`, which
filter in SQL by the collections the user may read (accounts.selectors) and by freshness (not
expired, not before `valid_from`, not superseded by an indexed document). Callers cannot widen
them: an optional `collection_ids` only narrows.

Behind that filter, row-level security (ingestion/rls.py) shows the web process's database role
only the rows of the collections set for the current transaction: the functions here that read
rows open that scope themselves (`reading_as`); a caller that evaluates one of the lazy
querysets must do so inside `reading_as(user=…)` too, or it reads nothing.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.db import connection, transaction
from django.db.models import (
    BooleanField,
    Count,
    ExpressionWrapper,
    F,
    Q,
    QuerySet,
    Sum,
)
from django.utils import timezone

from accounts.selectors import (
    managed_collection_ids_query,
    readable_collection_ids_query,
    user_manages_every_collection,
)
from ingestion.freshness import fresh
from ingestion.models import Chunk, Collection, Document, DocumentVersion
from ingestion.rls import managing_collections, managing_documents, reading_as


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


# The freshness rule lives in its own module, so that the access module can use it too.
_fresh = fresh


def documents_for_user(*, user) -> QuerySet[Document]:
    """Current documents `user` may read (for citations, downloads and previews).

    "Not found" and "not allowed" are the same empty result.
    """
    return Document.objects.filter(
        _fresh(timezone.now()), collection_id__in=readable_collection_ids_query(user=user)
    )


def document_get_for_user(*, user, document_id: int) -> Document | None:
    with reading_as(user=user):
        return documents_for_user(user=user).filter(pk=document_id).first()


def document_file_for_user(*, user, document_id: int) -> DocumentVersion | None:
    """The stored original of a readable document's indexed version (downloads), or None."""
    with reading_as(user=user):
        document = documents_for_user(user=user).filter(pk=document_id).first()
        if document is None:
            return None
        # Inside the scope: the versions' default ordering joins the documents table.
        version = document.versions.filter(version=document.indexed_version).first()
    return version if version is not None and version.file else None


def document_chunks_for_user(*, user, document_id: int) -> QuerySet[Chunk] | None:
    """A readable document's chunks in order (the document viewer), or None: not found.
    Evaluate it inside `reading_as(user=…)`."""
    if document_get_for_user(user=user, document_id=document_id) is None:
        return None
    return searchable_chunks(user=user).filter(document_id=document_id).order_by("ordinal")


def overlap_length(previous: str, current: str, *, window: int = 4000, least: int = 12) -> int:
    """How many leading characters of `current` repeat the end of `previous` (0 if fewer than
    `least`): consecutive chunks of a section overlap by design (chunking.py), and a reader
    should not read that text twice."""
    tail = previous[-window:]
    probe = current[:least]
    if len(probe) < least:
        return 0
    start = tail.find(probe)
    while start != -1:  # the earliest match is the longest overlap
        if current.startswith(tail[start:]):
            return len(tail) - start
        start = tail.find(probe, start + 1)
    return 0


def document_passages_for_user(*, user, document_id: int) -> list[tuple[Chunk, str]] | None:
    """A readable document's chunks in order, each with the text to show (the part that
    repeats the previous chunk of the same section removed), or None: not found."""
    with reading_as(user=user):
        chunks = document_chunks_for_user(user=user, document_id=document_id)
        if chunks is None:
            return None
        chunks = list(chunks)
    passages: list[tuple[Chunk, str]] = []
    previous = None
    for chunk in chunks:
        text = chunk.text
        if previous is not None and previous.heading == chunk.heading:
            text = text[overlap_length(previous.text, text) :].lstrip()
        passages.append((chunk, text))
        previous = chunk
    return passages


def searchable_chunks(*, user, collection_ids: Iterable[int] | None = None) -> QuerySet[Chunk]:
    """The chunks `user` may retrieve now, as one lazy SQL filter (the document viewer, tests)."""
    readable = readable_collection_ids_query(user=user)
    live = documents_for_user(user=user)
    chunks = Chunk.objects.filter(collection_id__in=readable, document_id__in=live.values("pk"))
    if collection_ids is not None:
        chunks = chunks.filter(collection_id__in=list(collection_ids))  # narrows, never widens
    return chunks


# --- search -----------------------------------------------------------------------------------
#
# chunk_search runs two statements, in one transaction whose row-level security scope
# (`reading_as`, one more statement) names the user's readable collections. The first asks the
# access module which collections the user may read, and how many chunks each holds (the
# collections' own counts, kept by a trigger: one small table whatever the number of documents).
# From those sizes it plans the vector search per collection (`SearchPlan`):
#
# - exact: collections whose chunks are few enough to compare with the query one by one (recall
#   1.0; about 1.4 ms per 1,000 chunks here);
# - own index: a large collection with its own partial HNSW index (`search_indexes`), searched
#   without a filter, so that its recall is that of an unfiltered search;
# - shared index: the table-wide HNSW index with an iterative, filtered scan, for the rest of a
#   large readable set and for users who read most of the table.
#
# The second statement does all of it at once: the vector searches and the keyword search (in
# `ingestion_chunk_text_search`, which keeps to the transaction's scope itself and ranks by term
# rarity), each restricted by the readable collection ids and by the chunks' own freshness
# columns, in SQL, before any LIMIT; then the rows of the winners, whose documents are checked
# by the documents table's freshness rule once more. Fusion by weighted reciprocal rank happens
# in Python over at most 2 x SEARCH_CANDIDATES rows. The plan only decides how to search what
# is readable, never what is: a missing or dropped partial index costs speed, not access.


@dataclass(frozen=True)
class SearchPlan:
    rows: int  # fresh chunks the user may read (within the narrowing, if any)
    exact: tuple[int, ...] = ()
    own_index: tuple[int, ...] = ()
    shared_index: tuple[int, ...] = ()

    @property
    def collections(self) -> tuple[int, ...]:
        return self.exact + self.own_index + self.shared_index

    @property
    def label(self) -> str:
        parts = []
        if self.exact:
            parts.append("exact")
        if self.own_index:
            parts.append(f"own index x{len(self.own_index)}")
        if self.shared_index:
            parts.append("shared index")
        return " + ".join(parts) or "nothing readable"


# The two statements' ORM parts (access subquery, freshness) are compiled once per process with
# marker values, then bound to the real user and time on each call: compiling them through the
# ORM on every search cost ~2-3 ms of CPU, a third of the search. The SQL is the ORM's own.
_MARK_USER = -7_306_114_553
_MARK_TIME = datetime(1901, 2, 3, 4, 5, 6, 789, tzinfo=UTC)


class _MarkerUser:
    pk = _MARK_USER
    is_authenticated = True
    is_active = True


@functools.cache
def _compiled(name: str) -> tuple[str, tuple]:
    if name == "sizes":
        # Every collection's stored chunks (kept by a trigger on the chunk table) and whether
        # the user reads it: one small table, whatever the number of documents.
        readable = ExpressionWrapper(
            Q(pk__in=readable_collection_ids_query(user=_MarkerUser())),
            output_field=BooleanField(),
        )
        query = (
            Collection.objects.annotate(readable=readable)
            .values_list("pk", "chunk_count", "readable")
            .order_by()
        )
    else:  # "live": the fresh documents, narrowed to the readable collections by the caller
        query = Document.objects.filter(_fresh(_MARK_TIME)).values_list("pk", "title").order_by()
    sql, params = query.query.sql_with_params()
    markers = sum(1 for p in params if p is _MARK_TIME or p == _MARK_USER)
    if markers < (1 if name == "sizes" else 2):  # the ORM changed shape: fail loudly
        raise RuntimeError(f"search statement {name!r}: markers not found in {params!r}")
    return sql, params


def _bind(params: tuple, *, user_id: int, now) -> list:
    return [
        now if p is _MARK_TIME else user_id if (type(p) is int and p == _MARK_USER) else p
        for p in params
    ]


def _collection_sizes(*, user, collection_ids: Iterable[int] | None) -> tuple[dict[int, int], int]:
    """Stored chunks per readable collection, and stored chunks in the whole table, from the
    collections' own counts (one statement on the small collections table). A collection's
    count includes chunks that are out of date: it sizes the search (exact or index), the
    search's own filters decide what is found."""
    if not (user is not None and getattr(user, "is_authenticated", False) and user.pk):
        return {}, 0
    sql, params = _compiled("sizes")
    with connection.cursor() as cursor:
        cursor.execute(sql, _bind(params, user_id=user.pk, now=None))
        rows = cursor.fetchall()
    narrowed = None if collection_ids is None else set(collection_ids)
    sizes: dict[int, int] = {}
    total = 0
    for collection_id, n, may_read in rows:
        total += n
        if may_read and (narrowed is None or collection_id in narrowed) and n:
            sizes[collection_id] = n
    return sizes, total


def plan_search(
    sizes: dict[int, int], *, table_rows: int, indexed: Callable[[], frozenset[int]] | None = None
) -> SearchPlan:
    """How to search the readable collections `sizes` ({collection id: fresh chunks}).

    `table_rows`: fresh chunks in the whole table; `indexed`: returns the collections that have
    a valid index of their own (default: the catalog, `search_indexes`).
    """
    rows = sum(sizes.values())
    everything = tuple(sorted(sizes))
    if rows <= settings.SEARCH_EXACT_MAX_ROWS:
        return SearchPlan(rows, exact=everything)
    if indexed is None:
        from ingestion.search_indexes import collections_with_own_index as indexed
    indexed = indexed()
    own = tuple(sorted(c for c in sizes if c in indexed))
    reads_most = table_rows > 0 and rows >= settings.SEARCH_SHARED_INDEX_FRACTION * table_rows
    if reads_most or len(own) > settings.SEARCH_MAX_OWN_INDEX_SCANS:
        return SearchPlan(rows, shared_index=everything)
    rest = tuple(sorted(c for c in sizes if c not in indexed))
    rest_rows = sum(sizes[c] for c in rest)
    if rest_rows <= settings.SEARCH_EXACT_MAX_ROWS:
        return SearchPlan(rows, exact=rest, own_index=own)
    return SearchPlan(rows, own_index=own, shared_index=rest)


def _vector_literal(vector) -> str:
    return "[" + ",".join(repr(float(x)) for x in vector) + "]"


# A candidate chunk is current by its own columns (copied from its document, in the same
# transaction as every change: ingestion.services._chunk_freshness_sync): testing them costs
# the same for every candidate whatever the number of documents. Joining each candidate to the
# list of live documents instead cost documents x candidates (issue 16: 18 ms of a 5k-document
# search went to rescanning that list). The winners are checked against the documents once
# more (`live`), so a stale copy could cost a result, never admit one.
_CURRENT_CHUNK = (
    " AND NOT c.superseded"
    " AND (c.valid_from IS NULL OR c.valid_from <= %(now)s)"
    " AND (c.valid_until IS NULL OR c.valid_until > %(now)s)"
    # "Ask the document": only these documents' chunks (NULL: no narrowing).
    " AND (%(documents)s::bigint[] IS NULL OR c.document_id = ANY(%(documents)s::bigint[]))"
)


def _search_sql(plan: SearchPlan, live_sql: str, *, with_text: bool) -> str:
    """The statement for `plan`. `live_sql` selects (id, title) of the fresh readable documents
    among those of the candidates (`hit`).

    Assembled from constant fragments, Django-compiled SQL and integer collection ids; every
    value (vector, text, ids, limits, time) travels as a parameter.
    """
    vector_parts = []
    if plan.exact:
        # `+ 0`: no index can order by this expression, so every candidate is compared.
        vector_parts.append(
            "(SELECT c.id, (c.embedding <=> (SELECT v FROM qv)) + 0 AS distance"  # noqa: S608
            " FROM ingestion_chunk c WHERE c.collection_id = ANY(%(exact)s)"
            f"{_CURRENT_CHUNK} ORDER BY 2 LIMIT %(limit)s)"
        )
    for collection_id in plan.own_index:
        # A literal collection id, so that the planner matches the partial index's predicate.
        vector_parts.append(
            "(SELECT c.id, c.embedding <=> (SELECT v FROM qv) AS distance"  # noqa: S608
            f" FROM ingestion_chunk c WHERE c.collection_id = {int(collection_id)}"
            f"{_CURRENT_CHUNK} ORDER BY 2 LIMIT %(limit)s)"
        )
    if plan.shared_index:
        vector_parts.append(
            "(SELECT c.id, c.embedding <=> (SELECT v FROM qv) AS distance"  # noqa: S608
            " FROM ingestion_chunk c WHERE c.collection_id = ANY(%(shared)s)"
            f"{_CURRENT_CHUNK} ORDER BY 2 LIMIT %(limit)s)"
        )
    # Through a function that runs as the table owner, so that the GIN index serves `@@` under
    # row-level security too; it keeps to the transaction's readable collections by itself and
    # ranks by term rarity (ingestion/rls.py, TEXT_SEARCH_FUNCTION).
    text = (
        "SELECT id, rank FROM ingestion_chunk_text_search(%(text)s, %(collections)s,"
        " %(documents)s::bigint[], %(limit)s)"
        # The LIMIT tells the planner how few rows come back (a function is assumed to return
        # 1000), so that the winners are fetched by primary key, not by scanning a collection.
        " LIMIT %(limit)s"
        if with_text
        else "SELECT NULL::bigint AS id, NULL::real AS rank WHERE false"
    )
    return (
        # The query vector is parsed once (384 floats as text cost ~0.2 ms each time).
        "WITH qv AS MATERIALIZED (SELECT %(vector)s::vector AS v),"  # noqa: S608
        f" vec AS MATERIALIZED (SELECT id, distance FROM ({' UNION ALL '.join(vector_parts)}) v"
        "  ORDER BY distance LIMIT %(limit)s),"
        f" txt AS MATERIALIZED ({text}),"
        " hit AS MATERIALIZED (SELECT c.id, c.document_id FROM ingestion_chunk c"
        "  WHERE c.id IN (SELECT id FROM vec UNION SELECT id FROM txt)),"
        # The documents of the candidates, checked by the documents table's own rule.
        f" live (id, title) AS MATERIALIZED ({live_sql})"
        " SELECT c.id, c.document_id, live.title, c.collection_id, c.version, c.ordinal,"
        "  c.heading, c.page, c.text, vec.distance, txt.rank"
        " FROM hit JOIN ingestion_chunk c ON c.id = hit.id JOIN live ON live.id = c.document_id"
        " LEFT JOIN vec ON vec.id = hit.id LEFT JOIN txt ON txt.id = hit.id"
        " WHERE c.collection_id = ANY(%(collections)s)"
    )


def _search_rows(
    plan: SearchPlan, *, query: str, vector, limit: int, document_ids: list[int] | None = None
) -> list[tuple]:
    collections = list(plan.collections)
    now = timezone.now()
    live_sql, live_params = _compiled("live")
    live_sql += (
        ' AND "ingestion_document"."collection_id" = ANY(%s)'
        ' AND "ingestion_document"."id" IN (SELECT document_id FROM hit)'
    )
    live_params = [*_bind(live_params, user_id=0, now=now), collections]
    # The live documents' SQL comes with positional parameters; name them for the statement.
    names = {f"live{i}": value for i, value in enumerate(live_params)}
    live_sql = live_sql.replace("%%", "%%%%")  # keep literal percent signs literal
    live_sql = live_sql % tuple(f"%({name})s" for name in names)
    params = {
        **names,
        "collections": collections,
        "exact": list(plan.exact),
        "shared": list(plan.shared_index),
        "vector": _vector_literal(vector),
        "text": query,
        "limit": limit,
        "now": now,
        "documents": document_ids,
    }
    sql = _search_sql(plan, live_sql, with_text=bool(query))
    with connection.cursor() as cursor:
        if not (plan.own_index or plan.shared_index):
            cursor.execute(sql, params)
            return cursor.fetchall()
        # Inside chunk_search's transaction (reading_as): no savepoint round trips needed.
        with transaction.atomic(using=connection.alias, savepoint=False):
            # Iterative scans keep walking the graph until `limit` rows pass the filters
            # (docs/benchmarks.md, "Search"). enable_sort off: PostgreSQL prices an HNSW scan
            # above reading a large readable subset and sorting it, even at LIMIT 30, and
            # would otherwise turn the index searches into exact ones (bench/search.py).
            cursor.execute(
                "SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true),"
                " set_config('hnsw.ef_search', %s, true),"
                " set_config('hnsw.max_scan_tuples', %s, true),"
                " set_config('enable_sort', 'off', true)",
                [str(settings.SEARCH_EF_SEARCH), str(settings.SEARCH_MAX_SCAN_TUPLES)],
            )
            cursor.execute(sql, params)
            rows = cursor.fetchall()
            # The rest of a caller's transaction plans with sorts again.
            cursor.execute("RESET enable_sort")
            return rows


# A code: a token with a digit and a letter or a joining - _ . / in it ("E214", "KA-RRR-0419",
# "REQ-2025-0142", "2.75x"): contract and ticket numbers, error codes, versions. Plain numbers
# (years, amounts) and hyphenated words ("e-mail") are not codes: many chunks hold them.
_TOKEN = re.compile(r"(?<![\w])[A-Za-z0-9]+(?:[-_./][A-Za-z0-9]+)*")


def identifiers_in(query: str) -> list[str]:
    """The codes a question names (casefolded), which their chunk must hold exactly."""
    codes = set()
    for match in _TOKEN.finditer(query):
        token = match.group(0)
        has_digit = any(ch.isdigit() for ch in token)
        joined_or_lettered = any(ch.isalpha() or ch in "-_./" for ch in token)
        if has_digit and joined_or_lettered:
            codes.add(token.casefold())
    return sorted(codes)


def chunk_search(
    *,
    user,
    query: str,
    k: int = 5,
    collection_ids: Iterable[int] | None = None,
    document_ids: Iterable[int] | None = None,
    vector=None,
) -> list[SearchHit]:
    """The best `k` chunks for `query` among those `user` may read now.

    Vector similarity (cosine; see `plan_search`) and keyword search (any term, rarer terms
    weigh more) are fused by weighted reciprocal rank (SEARCH_KEYWORD_WEIGHT, SEARCH_RRF_K).
    `vector` may pass a precomputed query embedding; `collection_ids` and `document_ids`
    narrow the search (in SQL, before any LIMIT), never widen it.
    """
    query = (query or "").strip()
    k = max(1, min(k, settings.SEARCH_MAX_K))
    if not query:
        return []
    # One transaction for both statements: the row-level security scope set by reading_as
    # covers them (and the readable set cannot change between them).
    with reading_as(user=user):
        sizes, table_rows = _collection_sizes(user=user, collection_ids=collection_ids)
        if not sizes:
            return []
        plan = plan_search(sizes, table_rows=table_rows)
        if document_ids is not None:
            # A few documents' chunks: compared one by one (the documents' index finds them),
            # not looked for in a graph of the whole collection.
            plan = SearchPlan(plan.rows, exact=plan.collections)
        if vector is None:
            from ingestion.embedding import embed_query

            vector = embed_query(query)  # CPU only; the open transaction holds no lock
        limit = max(settings.SEARCH_CANDIDATES, k)
        documents = None if document_ids is None else sorted({int(d) for d in document_ids})
        rows = _search_rows(plan, query=query, vector=vector, limit=limit, document_ids=documents)

    by_distance = sorted((r for r in rows if r[9] is not None), key=lambda r: (r[9], r[0]))
    by_text = sorted((r for r in rows if r[10] is not None), key=lambda r: (-r[10], r[0]))
    vector_rank = {r[0]: rank for rank, r in enumerate(by_distance, start=1)}
    text_rank = {r[0]: rank for rank, r in enumerate(by_text, start=1)}
    rrf = settings.SEARCH_RRF_K
    scores: dict[int, float] = {}
    weights = ((vector_rank, 1.0), (text_rank, settings.SEARCH_KEYWORD_WEIGHT))
    for ranking, weight in weights:
        for pk, rank in ranking.items():
            scores[pk] = scores.get(pk, 0.0) + weight / (rrf + rank)
    by_id = {r[0]: r for r in rows}
    codes = identifiers_in(query)
    # A chunk holding every code of the question exactly ("KA-RRR-0419", "E214") comes first:
    # vectors place a code's neighbours near it, and only the exact text answers.
    exact = {pk for pk in scores if codes and all(c in by_id[pk][8].casefold() for c in codes)}
    best = sorted(scores, key=lambda pk: (pk not in exact, -scores[pk], pk))[:k]
    return [
        SearchHit(
            chunk_id=pk,
            document_id=by_id[pk][1],
            document_title=by_id[pk][2],
            collection_id=by_id[pk][3],
            version=by_id[pk][4],
            ordinal=by_id[pk][5],
            heading=by_id[pk][6],
            page=by_id[pk][7],
            text=by_id[pk][8],
            score=scores[pk],
            similarity=None if by_id[pk][9] is None else 1.0 - float(by_id[pk][9]),
            vector_rank=vector_rank.get(pk),
            text_rank=text_rank.get(pk),
        )
        for pk in best
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
    # Administration (the training worker, the adapters pages): every row of these collections,
    # also for the web process's database role under row-level security.
    with managing_documents():
        return _current_document_texts(ids, max_per_collection)


def _current_document_texts(ids: list[int], max_per_collection: int | None) -> list[DocumentText]:
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


def documents_current(*, document_ids: Iterable[int]) -> list[Document]:
    """Which of `document_ids` are current now (fresh), whoever reads them (tuning's staleness).
    Evaluated here, in the administration scope (row-level security)."""
    with managing_documents():
        return list(
            Document.objects.filter(_fresh(timezone.now()), pk__in=list(document_ids)).only(
                "pk", "version", "indexed_version", "collection_id"
            )
        )


# --- administration ---------------------------------------------------------------------------
#
# Document administration sees the documents of the collections the user manages
# (accounts.selectors.managed_collection_ids_query), in every state, filtered in SQL; the views
# run inside `managing_collections(user=…)`, so the web role sees the same rows. Managing is not
# reading: content (passages, the stored file) comes only through the functions below that also
# require the collection to be readable by the user.


def documents_managed_by(*, user) -> QuerySet[Document]:
    """Every document, whatever its state, in the collections `user` manages (titles, states,
    metadata; no text). A document outside them is "not found", as for a reader."""
    return Document.objects.filter(collection_id__in=managed_collection_ids_query(user=user))


def document_list(*, user, collection_id: int | None = None, state: str = "") -> QuerySet[Document]:
    """The documents `user` manages, for the documents page and API (`collection_id` narrows)."""
    documents = documents_managed_by(user=user).select_related("collection", "uploaded_by")
    if collection_id:
        documents = documents.filter(collection_id=collection_id)
    if state:
        documents = documents.filter(state=state)
    return documents


def document_get_managed(*, user, document_id: int) -> Document | None:
    """One document `user` manages, or None (missing and not managed are the same)."""
    return (
        documents_managed_by(user=user)
        .select_related("collection", "uploaded_by")
        .filter(pk=document_id)
        .first()
    )


def user_manages_document(*, user, document_id: int) -> bool:
    """Whether `user` manages this document's collection, in its own management scope: for
    pushing a document's live state (title, state, reason) only to the managers of its
    collection (the documents page's websocket, ingestion.consumers)."""
    with managing_collections(user=user):
        return documents_managed_by(user=user).filter(pk=document_id).exists()


def _managed_and_readable(*, user, document_id: int) -> Document | None:
    return (
        documents_managed_by(user=user)
        .filter(pk=document_id, collection_id__in=readable_collection_ids_query(user=user))
        .first()
    )


def document_preview_for_manager(
    *, user, document_id: int, limit: int = 3
) -> list[tuple[str, str]] | None:
    """The first passages (heading, text) of a managed document's indexed version, for its
    administration page; None when `user` may not also read its collection, so that the page
    shows no content. Unlike the reader's view this ignores freshness: a manager checks what
    was indexed, also for a document that is superseded or not yet valid."""
    with reading_as(user=user):
        document = _managed_and_readable(user=user, document_id=document_id)
        if document is None:
            return None
        if document.indexed_version is None:
            return []
        return list(
            Chunk.objects.filter(
                document_id=document.pk,
                collection_id__in=readable_collection_ids_query(user=user),
                version=document.indexed_version,
            )
            .order_by("ordinal")
            .values_list("heading", "text")[:limit]
        )


def document_original_for_manager(*, user, document_id: int) -> DocumentVersion | None:
    """The stored file of a managed document's latest version, for a manager who may also read
    its collection; None otherwise (or when nothing was stored)."""
    with reading_as(user=user):
        document = _managed_and_readable(user=user, document_id=document_id)
        if document is None:
            return None
        version = document.versions.filter(version=document.version).first()
    return version if version is not None and version.file else None


def index_stats(*, user) -> dict:
    """Counts per managed collection and state; the size of the chunk table and its indexes
    (figures about every collection) only for a user who manages every collection, else None."""
    managed = managed_collection_ids_query(user=user)
    per_collection = list(
        Collection.objects.filter(id__in=managed)
        .annotate(
            document_count=Count("documents", distinct=True),
            chunks=Sum("documents__chunk_count"),
            indexed=Count("documents", filter=Q(documents__state="indexed"), distinct=True),
            failed=Count("documents", filter=Q(documents__state="failed"), distinct=True),
            pending=Count(
                "documents",
                filter=Q(documents__state__in=["queued", "processing"]),
                distinct=True,
            ),
            expired=Count("documents", filter=Q(documents__state="expired"), distinct=True),
        )
        .order_by("name")
    )
    states = dict(
        documents_managed_by(user=user).values_list("state").annotate(n=Count("pk")).order_by()
    )
    stats = {
        "collections": per_collection,
        "states": states,
        "chunks": Chunk.objects.filter(collection_id__in=managed).count(),
        "bytes_total": None,
        "bytes_table": None,
        "bytes_hnsw": None,
    }
    if user_manages_every_collection(user=user):
        stats.update(_table_sizes())
    return stats


def _table_sizes() -> dict:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_total_relation_size(%s), pg_relation_size(%s), "
            "pg_relation_size('chunk_embedding_hnsw')",
            [Chunk._meta.db_table, Chunk._meta.db_table],
        )
        total, heap, hnsw = cursor.fetchone()
    return {"bytes_total": total, "bytes_table": heap, "bytes_hnsw": hnsw}
