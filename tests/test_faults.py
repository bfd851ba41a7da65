"""Faults (hardening issue, part 6): the model server hangs, fails or refuses; Redis restarts.

The model server is a FAKE OpenAI-compatible HTTP server (`FakeModelServer` below): a process
boundary that cannot run here (vLLM on a GPU node). It hangs, answers 500, or answers properly,
and counts the requests it got, which is how the tests see that an open circuit breaker sends
nothing to the model. "Refusing connections" is a port nobody listens on. Everything else is
real: the chat service, the OpenAI-compatible backend (langchain-openai over httpx), the
breaker's state in the real Redis, the query log in PostgreSQL.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import redis
from django.conf import settings as django_settings

from assistant import llm
from assistant.llm.breaker import _keys
from assistant.services import Ask, chat_answer
from compliance.models import QueryLogEntry
from ingestion import services as ingest
from tests.conftest import ROOT, free_port
from tests.factories import CollectionFactory, RoleFactory, UserFactory

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TEXT = (
    "# Dealer discounts\n\n## Approval\n\nNo dealer discount above 23.5% may be granted without "
    "the written approval of the VP Sales. Project KESTREL covers the Nordic dealers.\n"
)
QUESTION = "Who approves dealer discounts for Project KESTREL?"


class FakeModelServer:
    """FAKE OpenAI-compatible server (a boundary fake): mode "ok", "hang" or "fail"."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.requests = 0
        self.release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                server.requests += 1
                if server.mode == "hang":
                    server.release.wait(30)
                    return
                if server.mode == "fail":
                    body = b'{"error": {"message": "internal error"}}'
                    self.send_response(500)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for delta, finish in (({"role": "assistant", "content": "The VP"}, None),
                                      ({"content": " Sales approves [1]."}, None),
                                      ({}, "stop")):  # fmt: skip
                    chunk = {
                        "id": "fake",
                        "object": "chat.completion.chunk",
                        "created": 0,
                        "model": "fake-server",
                        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                    }
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.write(b"data: [DONE]\n\n")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeModelServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def asker(transactional_db):
    sales = CollectionFactory(name="Sales", slug="sales")
    result = ingest.document_upload(
        actor=None,
        collection=sales,
        stream=io.BytesIO(TEXT.encode()),
        filename="discounts.md",
        size=len(TEXT),
    )
    assert ingest.document_index(document_id=result.document.pk, task_id="t") == "indexed"
    role = RoleFactory(name="Sales", reads=[sales])
    return [UserFactory(username=name, roles=[role]) for name in ("sam", "sally", "sven")]


@pytest.fixture
def model_server(settings):
    settings.LLM_BACKEND = "openai"
    settings.LLM_MODEL = "fake-server"
    settings.LLM_FIRST_TOKEN_TIMEOUT_SECONDS = 1.0
    settings.LLM_TIMEOUT_SECONDS = 3.0
    settings.LLM_MAX_CONCURRENCY = 4
    with FakeModelServer() as server:
        settings.LLM_BASE_URL = server.url
        yield server


@pytest.fixture
def breaker(settings):
    settings.LLM_BREAKER_FAILURES = 2
    settings.LLM_BREAKER_WINDOW_SECONDS = 60
    settings.LLM_BREAKER_COOLDOWN_SECONDS = 1
    client = redis.Redis.from_url(django_settings.REDIS_URL)
    client.delete(*_keys())
    yield
    client.delete(*_keys())


def answer(user, question: str = QUESTION) -> dict:
    async def run() -> list[dict]:
        return [e async for e in chat_answer(Ask(user_id=user.pk, question=question))]

    events = asyncio.run(run())
    return events[-1]


def wait_for(predicate, what: str, limit: float = 20) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


# --- the model server ------------------------------------------------------------------------


def test_a_working_model_server_answers_through_the_openai_backend(asker, model_server):
    final = answer(asker[0])
    assert final["type"] == "done", final
    assert "VP Sales approves" in final["html"]
    assert model_server.requests == 1


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("hang", llm.LLMTimeout.user_message),
        ("fail", llm.LLMUnavailable.user_message),
        ("refuse", llm.LLMUnavailable.user_message),
    ],
)
def test_a_failing_model_server_gives_a_plain_message_an_error_log_and_a_log_entry(
    asker, model_server, settings, caplog, mode, message
):
    if mode == "refuse":
        settings.LLM_BASE_URL = f"http://127.0.0.1:{free_port()}/v1"  # nobody listens there
    else:
        model_server.mode = mode
    with caplog.at_level(logging.ERROR, logger="assistant.services"):
        final = answer(asker[0])
    assert final == {"type": "error", "message": message, "conversation": final["conversation"]}
    failed = [r for r in caplog.records if r.getMessage() == "model failed"]
    assert failed and failed[0].levelno == logging.ERROR
    assert failed[0].exc_info is not None  # the technical cause is in the log, not the page
    entry = QueryLogEntry.objects.get()
    assert entry.outcome == QueryLogEntry.Outcome.ERROR
    assert entry.error == message


# --- the circuit breaker ---------------------------------------------------------------------


def test_breaker_opens_after_consecutive_failures_and_tells_others_at_once(
    asker, model_server, breaker, caplog
):
    sam, sally, sven = asker
    model_server.mode = "fail"
    assert answer(sam)["message"] == llm.LLMUnavailable.user_message
    assert llm.breaker_state() == "closed"  # one failure is not a pattern
    with caplog.at_level(logging.ERROR, logger="assistant.llm.breaker"):
        answer(sam)
    assert llm.breaker_state() == "open"
    assert any("circuit breaker open" in r.getMessage() for r in caplog.records)
    sent = model_server.requests

    # Other users are told at once: their questions never reach the model server.
    for user in (sally, sven):
        final = answer(user)
        assert final["type"] == "error"
        assert "not available right now (the last answers failed)" in final["message"]
    assert model_server.requests == sent
    # Every question still has its log entry.
    assert QueryLogEntry.objects.filter(outcome=QueryLogEntry.Outcome.ERROR).count() == 4


def test_half_open_breaker_lets_one_probe_through_and_a_success_closes_it(
    asker, model_server, breaker
):
    sam, sally, _ = asker
    model_server.mode = "fail"
    answer(sam)
    answer(sam)
    assert llm.breaker_state() == "open"
    model_server.mode = "ok"  # the server is back
    wait_for(lambda: llm.breaker_state() == "half-open", "the cool-down to pass")
    sent = model_server.requests
    assert answer(sally)["type"] == "done"  # the probe
    assert model_server.requests == sent + 1
    assert llm.breaker_state() == "closed"
    assert answer(sam)["type"] == "done"


def test_a_failed_probe_opens_the_breaker_again(asker, model_server, breaker):
    sam, sally, sven = asker
    model_server.mode = "fail"
    answer(sam)
    answer(sam)
    wait_for(lambda: llm.breaker_state() == "half-open", "the cool-down to pass")
    sent = model_server.requests
    assert answer(sally)["message"] == llm.LLMUnavailable.user_message  # the probe failed
    assert model_server.requests == sent + 1
    assert llm.breaker_state() == "open"
    assert "not available right now" in answer(sven)["message"]
    assert model_server.requests == sent + 1


def test_a_breaker_without_redis_lets_questions_through(asker, model_server, breaker, settings):
    # Redis down must not stop the chat: the breaker steps aside (and logs it).
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    assert answer(asker[0])["type"] == "done"


# --- Redis restarted during chat -------------------------------------------------------------


def _restart_redis() -> None:
    subprocess.run(
        [str(ROOT / "scripts" / "services"), "restart", "redis"],
        check=True,
        capture_output=True,
        env=os.environ,
        timeout=60,
    )
    # This test process's own pooled broker connections died with the server; later tests
    # (a Celery worker's ping) must not inherit them.
    from config.celery import app
    from tests.conftest import reset_broker_connections

    reset_broker_connections(app)


@pytest.mark.asyncio
async def test_redis_restart_between_questions_does_not_break_an_open_socket(asker, settings):
    from tests.test_chat import ask, connect

    ws = await connect(asker[0])
    frames = await ask(ws, QUESTION, "q1")
    assert frames[-1]["type"] == "done"
    await asyncio.to_thread(_restart_redis)
    # The consumer's Redis connections died with the server; the next question on the same
    # socket reconnects (limits and lock live in Redis) and is answered.
    frames = await ask(ws, QUESTION, "q2")
    assert frames[-1]["type"] == "done", frames[-1]
    await ws.disconnect()
