"""Term statistics for keyword search: how many chunks of each collection hold each term.

The keyword search (`ingestion_chunk_text_search`, ingestion/rls.py) weighs a matching term by
its rarity among the chunks the reader may read, as BM25 does (idf = ln(1 + (N - df + 0.5) /
(df + 0.5))). Counting a term's chunks at query time would cost a scan of its postings per
term, so the counts are kept per collection in `ingestion_keywordstat`, refreshed by a periodic
task for the collections whose chunks changed since their last count (and by the bulk import
command when it finishes). A term the counts do not know yet (a document indexed a minute ago)
counts as rare, which is what a new, distinctive term usually is. Runs as the table owner
(workers, commands): the web process only reads the counts, through the search function.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import connection, transaction
from django.db.models import Count, Max
from django.utils import timezone

from ingestion.models import Chunk, Collection, Document, KeywordStat

logger = logging.getLogger(__name__)

# ts_stat reads a statement's tsvectors and returns each lexeme with the number of rows that
# hold it. The collection id is an integer written into the statement (ts_stat takes SQL text).
_COUNT_TERMS = """
INSERT INTO ingestion_keywordstat (collection_id, term, df, refreshed_at)
SELECT %s, word, ndoc, %s FROM ts_stat(%s)
"""


@dataclass(frozen=True)
class Refreshed:
    collections: tuple[int, ...]
    terms: int


def _stale_collections() -> list[int]:
    """Collections whose chunks changed since their terms were last counted: a different chunk
    count, or a document changed (indexed, moved in, dated) after the count."""
    counted = {
        s.collection_id: s
        for s in KeywordStat.objects.filter(term="").only("collection_id", "df", "refreshed_at")
    }
    chunks = dict(
        Chunk.objects.filter(superseded=False)
        .values("collection_id")
        .annotate(n=Count("id"))
        .values_list("collection_id", "n")
        .order_by()
    )
    changed = dict(
        Document.objects.values("collection_id")
        .annotate(at=Max("updated_at"))
        .values_list("collection_id", "at")
        .order_by()
    )
    stale = []
    for collection_id in Collection.objects.values_list("pk", flat=True):
        stat = counted.get(collection_id)
        n = chunks.get(collection_id, 0)
        if stat is None:
            if n:
                stale.append(collection_id)
        elif stat.df != n or (changed.get(collection_id) or stat.refreshed_at) > stat.refreshed_at:
            stale.append(collection_id)
    return stale


def keyword_stats_refresh(*, collection_ids: list[int] | None = None) -> Refreshed:
    """Count the terms of `collection_ids` (default: those whose chunks changed), one
    transaction per collection, so that a search sees the old counts or the new ones."""
    ids = _stale_collections() if collection_ids is None else sorted(set(collection_ids))
    terms = 0
    for collection_id in ids:
        now = timezone.now()
        statement = (
            "SELECT search_vector FROM ingestion_chunk"  # noqa: S608 - an integer id
            f" WHERE collection_id = {int(collection_id)} AND NOT superseded"
        )
        with transaction.atomic(), connection.cursor() as cursor:
            KeywordStat.objects.filter(collection_id=collection_id).delete()
            cursor.execute(_COUNT_TERMS, [collection_id, now, statement])
            terms += cursor.rowcount
            total = Chunk.objects.filter(collection_id=collection_id, superseded=False).count()
            KeywordStat.objects.create(
                collection_id=collection_id, term="", df=total, refreshed_at=now
            )
    if ids:
        logger.info("keyword statistics refreshed", extra={"collections": ids, "terms": terms})
    return Refreshed(tuple(ids), terms)
