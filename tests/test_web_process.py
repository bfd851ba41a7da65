"""The web process as it is deployed: `uvicorn config.asgi:application` in a process of its own,
with the settings config/asgi.py gives it (a database connection pool), on the test database.

The in-process server of the other tests (`live_asgi`) shares the test runner's settings, which
have no pool; these tests check what only the real entry point does: PostgreSQL connections are
kept across questions (without the pool every question opened a new backend, whose cold catalog
caches tripled the server's share of the first-token latency, bench/chat_latency.py), and a
PostgreSQL restart still costs one refused question only.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.db import connection

from assistant.services import BRIEFLY_UNAVAILABLE
from tests import test_faults
from tests.conftest import ROOT, _database_url, free_port, terminate
from tests.factories import CollectionFactory, RoleFactory, UserFactory
from tests.test_chat_limits import ask, chat
from tests.test_faults import QUESTION

asker, postgres = test_faults.asker, test_faults.postgres  # the fixtures, shared

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


class WebProcess:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.name = f"counsel-web-test-{os.getpid()}"  # its PostgreSQL application_name
        self.log_path = ROOT / "var" / "test-web-process.log"

    def start(self) -> WebProcess:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "DATABASE_URL": _database_url(),
            "COUNSEL_DOTENV": "0",
            "PGAPPNAME": self.name,  # libpq names every connection of the process
        }
        env.pop("DATABASE_POOL_SIZE", None)  # config/asgi.py's default, as deployed
        self.log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "uvicorn"), "config.asgi:application",
             "--host", "127.0.0.1", "--port", str(self.port), "--lifespan", "on",
             "--ws", "websockets-sansio", "--no-access-log"],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code in (200, 503):
                    return self
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the web process did not start; see {self.log_path}")
            time.sleep(0.2)

    def backends(self) -> set[int]:
        """The PostgreSQL backends serving the web process now."""
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s", [self.name]
            )
            return {pid for (pid,) in cursor.fetchall()}

    def stop(self) -> None:
        terminate(self.proc)
        self.log.close()


@pytest.fixture
def web(transactional_db):
    process = WebProcess().start()
    yield process
    process.stop()


@pytest.mark.asyncio
async def test_the_web_process_keeps_its_database_connections_across_questions(asker, web):
    ws = await chat(web, asker[0])
    seen: set[int] = set()
    for n in range(8):
        assert (await ask(ws, QUESTION, f"q{n}"))[-1]["type"] == "done"
        now = await sync_to_async(web.backends)()
        assert now, "the web process holds no connection between questions: no pool"
        seen |= now
    # The pool's few connections (two standing, one more while the socket opened) serve every
    # question; without it, each question had a backend of its own.
    assert len(seen) <= 4, seen
    await ws.close()


@pytest.mark.asyncio
async def test_a_postgres_restart_costs_the_pooled_web_process_one_refused_question(
    asker, web, postgres
):
    ws = await chat(web, asker[0])
    assert (await ask(ws, QUESTION, "before"))[-1]["type"] == "done"
    await asyncio.to_thread(postgres, "stop")
    started = time.monotonic()
    frames = await ask(ws, QUESTION, "down")
    assert frames[-1] == {"type": "error", "id": "down", "message": BRIEFLY_UNAVAILABLE}
    # Refused after the pool's wait for a connection (DATABASE_POOL_TIMEOUT_SECONDS, 3 s), not
    # after the socket's or the browser's patience.
    waited = time.monotonic() - started
    print(f"\nrefused {waited:.1f} s after the question (PostgreSQL down)")
    assert waited < 8
    await asyncio.to_thread(postgres, "start")
    # The pool checks a connection before handing it out: the dead ones are replaced.
    for n in range(3):
        frames = await ask(ws, QUESTION, f"after-{n}")
        assert frames[-1]["type"] == "done", frames[-1]
    await ws.close()


@pytest.mark.asyncio
async def test_pooled_connections_carry_no_reader_scope_from_one_user_to_the_next(asker, web):
    # sam reads Sales; olga's role reads another collection. They ask in turns over the same
    # few pooled connections: olga never gets what only sam may read.
    def outsider():
        hr = CollectionFactory(name="HR", slug="hr")
        return UserFactory(username="olga", roles=[RoleFactory(name="HR", reads=[hr])])

    olga = await sync_to_async(outsider)()
    sam_ws, olga_ws = await chat(web, asker[0]), await chat(web, olga)
    for n in range(4):
        answered = await ask(sam_ws, QUESTION, f"sam-{n}")
        assert answered[-1]["type"] == "done" and answered[-1]["status"] == "complete"
        assert answered[-1]["citations"], answered[-1]
        refused = await ask(olga_ws, QUESTION, f"olga-{n}")
        assert refused[-1]["type"] == "done" and refused[-1]["status"] == "refused"
        assert not refused[-1]["citations"]
        shown = json.dumps([f.get("text", "") for f in refused] + [refused[-1]["html"]])
        assert "23.5" not in shown and "VP Sales" not in shown  # only in sam's document
    assert len(await sync_to_async(web.backends)()) <= 4
    await sam_ws.close()
    await olga_ws.close()
