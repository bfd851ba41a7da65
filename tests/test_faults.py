"""Faults (hardening issue, part 6; drills, issue 8): the model server hangs, fails or refuses;
Redis restarts; PostgreSQL restarts under the chat, the pages and the worker.

The model server is a FAKE OpenAI-compatible HTTP server (`FakeModelServer` below): a process
boundary that cannot run here (vLLM on a GPU node). It hangs, answers 500, or answers properly,
and counts the requests it got, which is how the tests see that an open circuit breaker sends
nothing to the model. "Refusing connections" is a port nobody listens on. Everything else is
real: the chat service, the OpenAI-compatible backend (langchain-openai over httpx), the
breaker's state in the real Redis, the query log in PostgreSQL. Redis and PostgreSQL are
really stopped and started (scripts/services). Faults of the indexing and training workers are in
tests/test_faults_workers.py.
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

import httpx
import pytest
import redis
from asgiref.sync import sync_to_async
from django.conf import settings as django_settings
from django.db import connections

from assistant import llm
from assistant.llm.breaker import _keys
from assistant.services import BRIEFLY_UNAVAILABLE, Ask, chat_answer
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
    # Two requests: the yes/no check whether the passages answer, then the answer.
    assert model_server.requests == 2


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
    assert model_server.requests == sent + 2  # its yes/no check and its answer
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


# --- PostgreSQL restarted --------------------------------------------------------------------


def _postgres(command: str) -> None:
    subprocess.run(
        [str(ROOT / "scripts" / "services"), command, "postgres"],
        check=True,
        capture_output=True,
        env=os.environ,
        timeout=60,
    )


@pytest.fixture
def postgres(transactional_db):
    """`postgres("stop")` / `postgres("start")` on the test's own PostgreSQL. Teardown starts it
    again (also after a failed test) and drops the connections that died with the server before
    the test database is emptied: this thread's, and that of asgiref's thread for sync code
    (`sync_to_async`), which later tests' websocket sessions would otherwise find broken."""
    yield _postgres
    _postgres("start")
    connections.close_all()
    asyncio.run(sync_to_async(connections.close_all)())


@pytest.mark.asyncio
async def test_postgres_restart_gives_the_chat_a_plain_message_then_every_socket_answers(
    asker, live_asgi, postgres, caplog
):
    from tests.test_chat_limits import ask, chat

    # Three users on open sockets of the real server (uvicorn), each answered once.
    sockets = [await chat(live_asgi, user) for user in asker]
    for n, ws in enumerate(sockets):
        assert (await ask(ws, QUESTION, f"before-{n}"))[-1]["type"] == "done"

    await asyncio.to_thread(postgres, "stop")
    with caplog.at_level(logging.WARNING):
        frames = await ask(sockets[0], QUESTION, "down")
        # A plain message, and the socket stays open for the next question.
        assert frames[-1] == {"type": "error", "id": "down", "message": BRIEFLY_UNAVAILABLE}
        await asyncio.to_thread(postgres, "start")
        # Every socket is answered at once: no connection broken by the restart is left in the
        # server's threads (before the fix, every later question failed until a restart).
        after = []
        for round_ in range(3):
            for n, ws in enumerate(sockets):
                after.append((await ask(ws, QUESTION, f"after-{round_}-{n}"))[-1]["type"])
    assert after == ["done"] * 9
    unavailable = [r for r in caplog.records if r.getMessage() == "chat database unavailable"]
    assert len(unavailable) == 1 and unavailable[0].levelno == logging.WARNING
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    # One log entry per answered question; the refused one could not be written (no database)
    # and nothing was answered for it.
    assert await sync_to_async(QueryLogEntry.objects.count)() == 3 + 9
    # A socket opened after the restart works too.
    fresh = await chat(live_asgi, asker[0])
    assert (await ask(fresh, QUESTION, "fresh"))[-1]["type"] == "done"
    for ws in [*sockets, fresh]:
        await ws.close()


@pytest.mark.asyncio
async def test_postgres_restart_between_questions_does_not_break_an_open_socket(asker, postgres):
    from tests.test_chat import ask, connect

    ws = await connect(asker[0])
    assert (await ask(ws, QUESTION, "q1"))[-1]["type"] == "done"
    await asyncio.to_thread(postgres, "stop")
    assert (await ask(ws, QUESTION, "q2"))[-1]["message"] == BRIEFLY_UNAVAILABLE
    await asyncio.to_thread(postgres, "start")
    # Before the fix, this socket's every later question failed ("the connection is closed").
    for n in range(3):
        frames = await ask(ws, QUESTION, f"q{n + 3}")
        assert frames[-1]["type"] == "done", frames[-1]
    await ws.disconnect()


def _get(server, path: str, cookie: str = "") -> httpx.Response:
    return httpx.get(server.url + path, headers={"Cookie": cookie}, timeout=20)


def test_postgres_restart_gives_pages_a_plain_503_then_they_serve_again(
    asker, live_asgi, postgres, caplog
):
    from tests.test_chat import cookie_for

    cookie = cookie_for(asker[0]).decode()
    assert _get(live_asgi, "/chat/", cookie).status_code == 200

    postgres("stop")
    with caplog.at_level(logging.ERROR, logger="django.request"):
        page = _get(live_asgi, "/chat/", cookie)
    assert page.status_code == 503
    assert "Briefly unavailable" in page.text and "reload the page in a moment" in page.text
    assert "OperationalError" not in page.text and "Traceback" not in page.text
    assert page.headers["Retry-After"] == "5"
    # The operator's log has the cause.
    assert any(r.exc_info and "OperationalError" in repr(r.exc_info[1]) for r in caplog.records)
    assert _get(live_asgi, "/healthz").status_code == 503

    postgres("start")
    # The first request after the restart is served: each request opens its own connection.
    for _ in range(3):
        page = _get(live_asgi, "/chat/", cookie)
        assert page.status_code == 200, page.text[:500]
    assert _get(live_asgi, "/healthz").status_code == 200  # ok, or degraded without a worker


def test_any_other_server_error_gets_the_plain_500_page(rf):
    from config.views import server_error

    try:
        raise ValueError("secret detail")
    except ValueError:
        response = server_error(rf.get("/chat/"))
    body = response.content.decode()
    assert response.status_code == 500 and "Something went wrong" in body
    assert "secret detail" not in body and "Retry-After" not in response
