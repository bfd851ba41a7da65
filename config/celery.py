"""The Celery application: queues `ingest`, `train` and `default`, configured from settings."""

from __future__ import annotations

import logging
import os
import time

from celery import Celery
from celery.signals import heartbeat_sent, worker_shutdown

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("counsel")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

logger = logging.getLogger(__name__)

# A hash of worker hostname -> unix time of its last heartbeat, read by /healthz.
HEARTBEAT_KEY = "counsel:worker-heartbeats"


def _redis():
    import redis
    from django.conf import settings

    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2)


@heartbeat_sent.connect
def record_heartbeat(sender, **kwargs) -> None:
    # Sent from the worker's event loop every couple of seconds, so a wedged consumer stops it.
    try:
        _redis().hset(HEARTBEAT_KEY, sender.eventer.hostname, time.time())
    except Exception:  # a missed heartbeat must never take the worker down
        logger.warning("could not record worker heartbeat", exc_info=True)


@worker_shutdown.connect
def forget_heartbeat(sender=None, **kwargs) -> None:
    try:
        _redis().hdel(HEARTBEAT_KEY, sender.hostname)
    except Exception:
        logger.warning("could not clear worker heartbeat", exc_info=True)


@app.task(name="counsel.ping")
def ping(payload: str = "pong") -> dict:
    """Echo a payload with the worker's name and database: an end-to-end check for operators.

    `celery -A config call counsel.ping` shows which worker answered and which database it
    writes to, the two things that differ between a healthy and a misconfigured deployment.
    """
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT current_database()")
        (database,) = cursor.fetchone()
    return {"payload": payload, "worker": ping.request.hostname, "database": database}
