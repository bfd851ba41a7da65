"""Compliance tasks (queue `default`): exports and retention. Thin: ids in, one service call."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from compliance import services


@shared_task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=settings.CELERY_TASK_SOFT_TIME_LIMIT,
    time_limit=settings.CELERY_TASK_TIME_LIMIT,
)
def export_querylog(self, export_id: int) -> str:
    return services.querylog_export_run(export_id=export_id, task_id=self.request.id or "")


@shared_task(acks_late=True)
def apply_retention() -> int:
    return services.querylog_purge().removed


@shared_task(acks_late=True)
def verify_chain(verification_id: int) -> str:
    return services.querylog_verification_run(verification_id=verification_id)


@shared_task(acks_late=True)
def verify_daily() -> int:
    return services.querylog_verification_request().pk
