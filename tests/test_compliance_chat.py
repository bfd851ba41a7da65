"""The chat writes the query log through the compliance append path: one chained entry per
question, whatever its outcome, carrying the texts of the chunks the model was given.

Runs the real ASGI application, ingestion (real embeddings) and the database; the model is the
FAKE streaming model of the test settings (assistant/llm/fake.py).
"""

from __future__ import annotations

import io
import threading

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.db import connection
from django.test import Client
from django.utils import timezone

from assistant.models import Citation, Message
from compliance.models import QueryLogEntry
from compliance.selectors import querylog_verify
from compliance.services import querylog_append
from config.asgi import application
from ingestion import services as ingest
from tests.factories import CollectionFactory, RoleFactory, UserFactory

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SALES_TEXT = (
    "# Dealer discounts\n\n## Approval\n\nNo dealer discount above 23.5% may be granted without "
    "the written approval of the VP Sales. Project KESTREL covers the Nordic dealers.\n"
)


@pytest.fixture
def sam(transactional_db):
    sales = CollectionFactory(name="Sales", slug="sales")
    result = ingest.document_upload(
        actor=None,
        collection=sales,
        stream=io.BytesIO(SALES_TEXT.encode()),
        filename="discounts.md",
        size=len(SALES_TEXT),
    )
    assert ingest.document_index(document_id=result.document.pk, task_id="t") == "indexed"
    return UserFactory(username="sam", roles=[RoleFactory(name="Sales", reads=[sales])])


def cookie_for(user) -> bytes:
    client = Client()
    client.force_login(user)
    name = settings.SESSION_COOKIE_NAME
    return f"{name}={client.cookies[name].value}".encode()


async def ask(ws, text: str, qid: str, conversation=None) -> list:
    await ws.send_json_to({"type": "ask", "id": qid, "text": text, "conversation": conversation})
    frames = []
    while True:
        frame = await ws.receive_json_from(timeout=20)
        frames.append(frame)
        if frame.get("id") == qid and frame["type"] in ("done", "error", "stopped"):
            return frames


@pytest.mark.asyncio
async def test_every_question_gets_exactly_one_chained_entry_with_its_chunk_texts(sam):
    cookie = await sync_to_async(cookie_for)(sam)
    ws = WebsocketCommunicator(
        application,
        "/ws/chat/",
        headers=[(b"host", b"localhost"), (b"origin", b"http://localhost"), (b"cookie", cookie)],
    )
    assert (await ws.connect())[0]
    assert (await ws.receive_json_from(timeout=5))["type"] == "hello"
    done = (await ask(ws, "What is Project KESTREL?", "a"))[-1]
    assert done["type"] == "done"
    await ask(ws, "What is the canteen menu on Fridays?", "b", done["conversation"])
    await ask(ws, "What is Project KESTREL? [[fake:error]]", "c")
    await ask(ws, "Who approves a dealer discount above 23.5%?", "d", done["conversation"])
    await ws.disconnect()

    def check() -> None:
        entries = list(QueryLogEntry.objects.order_by("id"))
        questions = list(Message.objects.filter(role="user").order_by("id"))
        # Exactly one entry per question asked, in the order asked, whatever the outcome.
        assert [e.question_message_id for e in entries] == [m.pk for m in questions]
        assert [e.outcome for e in entries] == ["answered", "refused", "error", "answered"]
        assert entries[0].pk == done["log_entry"]
        # The chunks the model was given, by value: the same text as the answer's citations.
        answered = entries[0]
        cited = list(
            Citation.objects.filter(message_id=answered.answer_message_id).order_by("number")
        )
        assert [c["text"] for c in answered.used_chunks] == [c.snippet for c in cited]
        assert "KESTREL" in answered.used_chunks[0]["text"]
        assert answered.used_chunks[0]["document_title"] and answered.used_chunks[0]["version"]
        assert entries[1].used_chunks == []  # refused: the model was given nothing
        assert "KESTREL" in entries[2].used_chunks[0]["text"]  # failed after it was given this
        result = querylog_verify()
        assert result.intact and result.checked == 4

    await sync_to_async(check)()


def test_concurrent_appends_form_one_unbroken_chain(transactional_db):
    """Appends from several connections at once: the advisory lock keeps a single chain."""
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(10):
                now = timezone.now()
                querylog_append(
                    username=f"user{n}",
                    question=f"question {n}.{i}",
                    outcome="answered",
                    started_at=now,
                    finished_at=now,
                )
        except BaseException as exc:  # reported below: a thread's exception is otherwise lost
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    result = querylog_verify()
    assert result.intact and result.checked == 40
