"""Readiness checks behind /healthz: database (with pgvector), Redis, Celery workers, the
language model server and the adapters' model server."""

from __future__ import annotations

import logging
import time

import httpx
import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from config.celery import HEARTBEAT_KEY

logger = logging.getLogger(__name__)


def _timed(check) -> dict:
    started = time.perf_counter()
    try:
        result = {"ok": True, **check()}
    except Exception as exc:  # a health check reports failures, it does not raise them
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    result["ms"] = round((time.perf_counter() - started) * 1000, 1)
    return result


def check_database() -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        row = cursor.fetchone()
    if row is None:
        raise RuntimeError("pgvector extension is not installed (run migrate)")
    return {"pgvector": row[0]}


def check_redis() -> dict:
    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
    client.ping()
    return {}


def check_workers() -> dict:
    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
    now = time.time()
    ages = {
        host.decode(): round(now - float(beat), 1)
        for host, beat in client.hgetall(HEARTBEAT_KEY).items()
    }
    alive = sorted(h for h, age in ages.items() if age <= settings.WORKER_HEARTBEAT_MAX_AGE)
    if not alive:
        raise RuntimeError(f"no worker heartbeat in the last {settings.WORKER_HEARTBEAT_MAX_AGE}s")
    return {"workers": alive}


def _probe(url: str, api_key: str) -> None:
    """A model server's health or models URL answers 200 within HEALTH_LLM_TIMEOUT."""
    response = httpx.get(
        url, headers={"Authorization": f"Bearer {api_key}"}, timeout=settings.HEALTH_LLM_TIMEOUT
    )
    if response.status_code != 200:
        raise RuntimeError(f"{url} answered HTTP {response.status_code}")


def check_llm() -> dict:
    """The model server answers: llama.cpp's /health locally, /models elsewhere (vLLM, Ollama)."""
    from assistant.llm.conf import LLMConfig

    config = LLMConfig.from_settings()
    if config.backend == "fake":
        return {"backend": "fake"}
    base = config.base_url.rstrip("/")
    url = base.removesuffix("/v1") + "/health" if config.backend == "local" else base + "/models"
    _probe(url, config.api_key)
    return {"backend": config.backend, "model": config.model}


def check_adapters() -> dict:
    """The adapters' model server answers (llama.cpp's /health), found as the chat finds it: by
    its server.json (assistant.llm.adapters), which names the instance of the moment.

    Only while some adapter is ready or active: otherwise no question is routed to it, and a
    deployment that trains no adapter need not run it, so its absence is no reason to look
    degraded (and it is not probed). With LLM_BACKEND=openai the chat's own server serves the
    adapters by name (vLLM), and the `llm` check probes it.
    """
    from assistant.llm import adapters
    from tuning.selectors import adapters_to_serve

    backend = settings.LLM_BACKEND
    if backend == "fake":
        return {"backend": "fake"}
    if backend != "local":
        return {"backend": backend, "served_by": "llm"}
    to_serve = adapters_to_serve().count()
    if not to_serve:
        return {"backend": backend, "served": 0}
    state = adapters.server_state()
    if not state or not state.get("url"):
        where = adapters.server_dir() / adapters.STATE
        raise RuntimeError(f"the adapters' model server is not running (no {where})")
    url = adapters.server_url(state) + "/health"
    _probe(url, adapters.server_api_key())
    # Served can trail to_serve for a second or two: a new instance is loading the new set.
    return {
        "backend": backend,
        "model": state.get("model", ""),
        "served": len(state.get("adapters") or {}),
        "to_serve": to_serve,
    }


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """200 when the database and Redis answer; `degraded` (still 200) without a live worker,
    model server or adapters' model server. Each check's details (versions, worker hosts, error
    text, timings) only for administrators; everyone else gets `{"ok": …}` per check.

    Without workers the web app still serves chat from indexed documents, so a load balancer
    should keep the node; indexing and training wait until a worker returns. Without the model
    server questions still get their quote, refusals and a plain message (every node shares
    the one model server, so taking nodes out would not help). Without the adapters' server
    only the questions an adapter would answer are affected (a plain message, or retrieval once
    it has stopped cleanly and removed its server.json).
    """
    checks = {
        "database": _timed(check_database),
        "redis": _timed(check_redis),
        "worker": _timed(check_workers),
        "llm": _timed(check_llm),
        "adapters": _timed(check_adapters),
    }
    if not (checks["database"]["ok"] and checks["redis"]["ok"]):
        status, code = "fail", 503
    elif not all(check["ok"] for check in checks.values()):
        status, code = "degraded", 200
    else:
        status, code = "ok", 200
    failed = {name: check for name, check in checks.items() if not check["ok"]}
    if failed:
        logger.warning("health check failed", extra={"checks": failed})
    if not _may_read_details(request):
        # Load balancers and strangers learn the state; host names, versions and error text
        # (which name hosts, ports and files) are for administrators and the log.
        checks = {name: {"ok": check["ok"]} for name, check in checks.items()}
    return JsonResponse({"status": status, "checks": checks}, status=code)


def _may_read_details(request: HttpRequest) -> bool:
    from accounts.capabilities import Capability
    from accounts.selectors import user_has_capability

    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return False
    return user_has_capability(user=user, capability=Capability.MANAGE_USERS)
