"""Per-collection HNSW indexes: how large collections keep the recall of an unfiltered search.

A filtered scan of the table-wide HNSW index walks a graph built over every collection: when a
user reads one large collection among many, the walk spends its budget in other collections'
neighbourhoods and recall falls (0.89 to 0.91 at 1M chunks for a collection holding 1 to 30 % of
them; docs/benchmarks.md). pgvector's answer is a partial index per collection
(`WHERE collection_id = N`): searched with that predicate it is an unfiltered search over the
collection's own graph.

`search_indexes_sync` keeps one such index for every collection holding at least
SEARCH_OWN_INDEX_MIN_ROWS chunks, built with `CREATE INDEX CONCURRENTLY` (uploads and searches go
on meanwhile), rebuilds an index a crash left invalid, and drops the index of a collection that
shrank well below the threshold or was deleted. Celery beat runs it (`sync_search_indexes`), and
`manage.py search_indexes --sync` runs it by hand. `chunk_search` asks
`collections_with_own_index()` which collections have a valid index (the catalog, cached a few
seconds per process). The indexes only decide how fast a search is, never what it may return:
the access filter is in the same statement either way.

DDL only: this module reads no chunk rows (scripts/check-access lists it beside the selectors).
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection
from django.db.models import Sum

from ingestion.models import Document

log = logging.getLogger(__name__)

PREFIX = "chunk_hnsw_c"
_NAME = re.compile(rf"^{PREFIX}(\d+)$")
_LOCK = 0x636F756E73656C01  # pg_advisory_lock key: one sync at a time across workers
_cache: tuple[float, frozenset[int]] | None = None


def index_name(collection_id: int) -> str:
    return f"{PREFIX}{int(collection_id)}"


def own_indexes() -> dict[int, bool]:
    """{collection id: valid} for every per-collection index in the catalog."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, i.indisvalid AND i.indisready FROM pg_index i"
            " JOIN pg_class c ON c.oid = i.indexrelid"
            " WHERE i.indrelid = 'ingestion_chunk'::regclass AND c.relname LIKE %s",
            [PREFIX + "%"],
        )
        found = {}
        for name, valid in cursor.fetchall():
            match = _NAME.match(name)
            if match:
                found[int(match.group(1))] = bool(valid)
        return found


def collections_with_own_index() -> frozenset[int]:
    """Collections whose own index is valid (cached for SEARCH_OWN_INDEX_CACHE_SECONDS)."""
    global _cache
    now = time.monotonic()
    if _cache is None or now - _cache[0] > settings.SEARCH_OWN_INDEX_CACHE_SECONDS:
        _cache = (now, frozenset(c for c, valid in own_indexes().items() if valid))
    return _cache[1]


def forget_cached_indexes() -> None:
    global _cache
    _cache = None


def collection_chunk_counts() -> dict[int, int]:
    """Chunk rows per collection (documents with an indexed version own chunk rows)."""
    return {
        collection_id: n or 0
        for collection_id, n in Document.objects.filter(indexed_version__isnull=False)
        .values("collection_id")
        .annotate(n=Sum("chunk_count"))
        .values_list("collection_id", "n")
        .order_by()
    }


@dataclass
class SyncResult:
    created: list[int] = field(default_factory=list)
    rebuilt: list[int] = field(default_factory=list)
    dropped: list[int] = field(default_factory=list)
    kept: list[int] = field(default_factory=list)
    skipped: bool = False  # another sync held the lock


def _create(collection_id: int) -> None:
    name = index_name(collection_id)
    with connection.cursor() as cursor:
        cursor.execute("SET maintenance_work_mem = %s", [settings.SEARCH_INDEX_BUILD_MEMORY])
        try:
            # A denser graph than the table-wide index (ef_construction 64): a collection's index
            # also answers questions far from its topics, where a sparse graph loses recall.
            cursor.execute(
                f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON ingestion_chunk"
                " USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 128)"
                f" WHERE collection_id = {int(collection_id)}"
            )
        finally:
            cursor.execute("RESET maintenance_work_mem")


def _drop(collection_id: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {index_name(collection_id)}")


def search_indexes_sync() -> SyncResult:
    """Bring the per-collection indexes in line with the collections' sizes.

    Must run outside a transaction (CREATE/DROP INDEX CONCURRENTLY). Idempotent; concurrent
    calls are serialised by an advisory lock and the loser returns at once.
    """
    result = SyncResult()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [_LOCK])
        if not cursor.fetchone()[0]:
            result.skipped = True
            return result
    try:
        minimum = settings.SEARCH_OWN_INDEX_MIN_ROWS
        counts = collection_chunk_counts()
        present = own_indexes()
        for collection_id, valid in sorted(present.items()):
            rows = counts.get(collection_id, 0)
            if rows < minimum // 2 or rows == 0:
                _drop(collection_id)  # hysteresis: a collection hovering at the line keeps it
                result.dropped.append(collection_id)
            elif not valid:
                _drop(collection_id)  # left invalid by a failed or interrupted build
                _create(collection_id)
                result.rebuilt.append(collection_id)
            else:
                result.kept.append(collection_id)
        for collection_id, rows in sorted(counts.items()):
            if rows >= minimum and collection_id not in present:
                started = time.monotonic()
                _create(collection_id)
                result.created.append(collection_id)
                log.info(
                    "search index built",
                    extra={
                        "collection": collection_id,
                        "chunks": rows,
                        "seconds": round(time.monotonic() - started, 1),
                    },
                )
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [_LOCK])
        forget_cached_indexes()
    if result.created or result.rebuilt or result.dropped:
        log.info(
            "search indexes synced",
            extra={
                "created": result.created,
                "rebuilt": result.rebuilt,
                "dropped": result.dropped,
            },
        )
    return result
