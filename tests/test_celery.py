import pytest
from django.conf import settings
from django.db import connection

from config.celery import ping

pytestmark = pytest.mark.slow


def test_task_round_trip_through_a_real_worker(celery_worker, transactional_db):
    result = ping.delay("hello").get(timeout=30)
    assert result["payload"] == "hello"
    assert result["worker"] == celery_worker
    # The worker writes to the same (test) database as this process, not the dev database.
    assert result["database"] == connection.settings_dict["NAME"]


def test_tasks_are_routed_to_their_queues():
    routes = settings.CELERY_TASK_ROUTES
    assert routes["ingestion.tasks.*"]["queue"] == "ingest"
    assert routes["tuning.tasks.*"]["queue"] == "train"
    assert settings.CELERY_TASK_ACKS_LATE and settings.CELERY_TASK_REJECT_ON_WORKER_LOST
