import time

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from accounts.capabilities import ADMINISTRATOR
from config.celery import HEARTBEAT_KEY
from tests.conftest import free_port
from tests.factories import UserFactory


@pytest.fixture
def admin_client(db) -> Client:
    """The details of each check are for administrators (anyone else: `ok` only)."""
    client = Client()
    client.force_login(UserFactory(username="ada", roles=[Group.objects.get(name=ADMINISTRATOR)]))
    return client


def test_healthz_is_ok_with_database_redis_and_a_live_worker(admin_client, celery_worker, db):
    client = admin_client
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # the first heartbeat comes a few seconds after start
        body = client.get("/healthz").json()
        if body["status"] == "ok":
            break
        time.sleep(0.5)
    assert body["status"] == "ok", body
    assert celery_worker in body["checks"]["worker"]["workers"]
    assert body["checks"]["database"]["pgvector"].startswith("0.")
    assert body["checks"]["redis"]["ok"] is True


@pytest.mark.django_db
def test_healthz_is_degraded_but_up_when_no_worker_beats(admin_client, redis_client):
    client = admin_client
    redis_client.delete(HEARTBEAT_KEY)
    redis_client.hset(HEARTBEAT_KEY, "gone@host", time.time() - 600)
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["checks"]["worker"]["ok"] is False
    assert "no worker heartbeat" in body["checks"]["worker"]["error"]


@pytest.mark.django_db
def test_healthz_fails_with_503_when_redis_is_unreachable(client, settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "fail"
    assert body["checks"]["redis"]["ok"] is False
    assert body["checks"]["database"]["ok"] is True


def test_healthz_needs_no_login_and_is_never_cached(client, db):
    response = client.get("/healthz")
    assert response.status_code in (200, 503)
    assert "no-cache" in response["Cache-Control"]
