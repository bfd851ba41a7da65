import json
import time

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import Group
from django.test import Client

from accounts.capabilities import ADMINISTRATOR
from config.celery import HEARTBEAT_KEY
from config.health import check_adapters
from tests.conftest import free_port
from tests.factories import UserFactory
from tuning.models import Adapter


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


# --- the adapters' model server ----------------------------------------------------------------


@pytest.fixture
def all_but_adapters_up(settings, local_llm, redis_client):
    """Every other check is fine: the real local model server answers and a worker beats."""
    redis_client.hset(HEARTBEAT_KEY, "worker@health-test", time.time())
    yield settings
    redis_client.hdel(HEARTBEAT_KEY, "worker@health-test")


def _adapter(state: str) -> Adapter:
    """A registry row on the adapters' base (no weights: the check reads the registry)."""
    count = Adapter.objects.count() + 1
    return Adapter.objects.create(
        profile_key="ap-health",
        version=count,
        name=f"ap-health-v{count}",
        base_model=django_settings.TUNING_BASE_MODEL,
        state=state,
    )


@pytest.mark.django_db
def test_healthz_is_degraded_when_the_adapters_server_is_down_with_adapters_to_serve(
    admin_client, client, all_but_adapters_up, tmp_path
):
    all_but_adapters_up.LLM_ADAPTER_SERVER_DIR = tmp_path  # it never started: no server.json
    _adapter(Adapter.State.ACTIVE)
    response = admin_client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded", body
    assert [name for name, check in body["checks"].items() if not check["ok"]] == ["adapters"]
    assert "adapters' model server is not running" in body["checks"]["adapters"]["error"]
    # One that died without cleaning up: its server.json names a port nobody listens on.
    port = free_port()
    (tmp_path / "server.json").write_text(
        json.dumps({"url": f"http://127.0.0.1:{port}", "port": port, "adapters": {}})
    )
    response = admin_client.get("/healthz")
    assert response.status_code == 200 and response.json()["status"] == "degraded"
    assert "ConnectError" in response.json()["checks"]["adapters"]["error"]
    anonymous = client.get("/healthz").json()
    assert anonymous["status"] == "degraded" and anonymous["checks"]["adapters"] == {"ok": False}


@pytest.mark.django_db
def test_without_a_ready_or_active_adapter_the_adapters_server_is_not_needed(
    admin_client, all_but_adapters_up, tmp_path
):
    all_but_adapters_up.LLM_ADAPTER_SERVER_DIR = tmp_path  # not running
    for state in (Adapter.State.TRAINING, Adapter.State.RETIRED, Adapter.State.STALE):
        _adapter(state)
    body = admin_client.get("/healthz").json()
    assert body["status"] == "ok", body
    adapters = body["checks"]["adapters"]
    assert (adapters["ok"], adapters["served"]) == (True, 0) and "error" not in adapters


@pytest.mark.django_db
def test_healthz_probes_the_running_adapters_server_and_notices_it_stop(
    admin_client, all_but_adapters_up, adapter_server
):
    _adapter(Adapter.State.READY)
    body = admin_client.get("/healthz").json()
    assert body["status"] == "ok", body
    adapters = body["checks"]["adapters"]
    assert adapters["ok"] and adapters["model"] == "smollm2-135m"
    # The row has no converted file, so the server loads nothing yet: served trails to_serve.
    assert (adapters["served"], adapters["to_serve"]) == (0, 1)
    adapter_server.stop()
    body = admin_client.get("/healthz").json()
    assert body["status"] == "degraded" and "not running" in body["checks"]["adapters"]["error"]


def test_with_the_openai_backend_the_model_server_serves_the_adapters(settings):
    settings.LLM_BACKEND = "openai"
    assert check_adapters() == {"backend": "openai", "served_by": "llm"}
