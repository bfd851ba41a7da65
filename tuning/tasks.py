"""Training tasks (queue `train`). Thin: ids in, one service call."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from tuning import services


@shared_task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=settings.CELERY_TASK_SOFT_TIME_LIMIT,
    time_limit=settings.CELERY_TASK_TIME_LIMIT,
)
def train_adapter(self, adapter_id: int) -> str:
    """Train one adapter. The task id is the claim token (kept across re-deliveries)."""
    return services.adapter_train(adapter_id=adapter_id, task_id=self.request.id)


@shared_task(acks_late=True)
def reconcile() -> int:
    return len(services.adapters_reconcile())
