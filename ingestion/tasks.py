"""Indexing tasks (queue `ingest`). Thin: ids in, one service call, retries for transient errors."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from ingestion import services


@shared_task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=services.TRANSIENT_ERRORS,
    retry_backoff=5,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=5,
    soft_time_limit=settings.CELERY_TASK_SOFT_TIME_LIMIT,
    time_limit=settings.CELERY_TASK_TIME_LIMIT,
)
def index_document(self, document_id: int) -> str:
    """Index a document. A re-delivered or duplicate task is a no-op or takes over a dead claim.

    The task id is the claim token: Celery keeps it across retries and re-deliveries, so the
    task that was running when its worker died can take its own claim back at once.
    """
    return services.document_index(document_id=document_id, task_id=self.request.id)


@shared_task(acks_late=True)
def reconcile() -> int:
    return len(services.documents_reconcile())


@shared_task(acks_late=True)
def expire_documents() -> int:
    return len(services.documents_expire())


@shared_task(acks_late=True, time_limit=settings.CELERY_TASK_TIME_LIMIT)
def sync_search_indexes() -> dict:
    """Per-collection HNSW indexes in line with the collections' sizes (search_indexes.py)."""
    from ingestion.search_indexes import search_indexes_sync

    result = search_indexes_sync()
    return {"created": result.created, "rebuilt": result.rebuilt, "dropped": result.dropped}


@shared_task(acks_late=True, time_limit=settings.CELERY_TASK_TIME_LIMIT)
def refresh_keyword_stats() -> dict:
    """Term counts for keyword ranking, for the collections whose chunks changed (keywords.py)."""
    from ingestion.keywords import keyword_stats_refresh

    result = keyword_stats_refresh()
    return {"collections": list(result.collections), "terms": result.terms}
