"""Which documents are current: the one freshness rule, shared by every reader-facing check.

The search chokepoint and the reader's document view (ingestion.selectors) and the access
module's `user_may_see` (accounts.selectors) all use `fresh`, so that "may this user open this
document?" has one answer everywhere. The planner's SQL function `ingestion_fresh_chunk_total`
(ingestion/rls.py) writes the same rule out in SQL; tests/test_rls.py compares the two.
"""

from __future__ import annotations

from django.db.models import Exists, OuterRef, Q

from ingestion.models import Document


def fresh(now) -> Q:
    """Documents a reader may retrieve at `now`: indexed, not expired, within their validity
    dates, and not replaced by an indexed successor."""
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
