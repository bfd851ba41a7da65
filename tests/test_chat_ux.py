"""The chat page's server side of issue 19, through the real ASGI app, database and Redis.

Streaming renders with the final answer's sanitiser; conversation search and pagination are SQL
over the asker's own conversations; a recorded answer can be fetched alone (previews, "why this
answer", recovery after a dropped socket) under the withholding rule; "ask the document" narrows
the search and never widens it; suggestions come only from readable documents; a comment sent
alone never rates.
"""

from __future__ import annotations

import io

import pytest
from asgiref.sync import async_to_sync
from django.test import Client

from assistant.models import Conversation, Feedback, Message
from assistant.rendering import answer_html
from assistant.services import Ask, chat_answer
from compliance.models import QueryLogEntry
from ingestion import services as ingest
from tests.test_chat import HR_CANARIES, SALES_CANARIES, ask, build_cast, connect

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TRAVEL_TEXT = "# Travel rules\n\n## Trains\n\nTake the train for trips under 600 km. Code OSPREY.\n"


@pytest.fixture
def cast(transactional_db):
    cast = build_cast()
    result = ingest.document_upload(
        actor=None,
        collection=cast["sales"],
        stream=io.BytesIO(TRAVEL_TEXT.encode()),
        filename="travel.md",
        size=len(TRAVEL_TEXT),
    )
    assert ingest.document_index(document_id=result.document.pk, task_id="t") == "indexed"
    cast["travel"] = result.document
    return cast


def answer(user, question: str, **kwargs) -> dict:
    async def run():
        ask = Ask(user_id=user.pk, question=question, **kwargs)
        return [e async for e in chat_answer(ask)]

    return async_to_sync(run)()[-1]


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.asyncio
async def test_streamed_text_arrives_rendered_by_the_final_answers_sanitiser(cast):
    ws = await connect(cast["sam"])
    question = "What is **KESTREL**? <img src=x onerror=alert(1)> [x](javascript:alert(1))"
    frames = await ask(ws, question)
    deltas = [f for f in frames if f["type"] == "delta"]
    assert deltas
    text = ""
    for delta in deltas:
        text += delta["text"]
        # Each snapshot is exactly what the server's sanitiser makes of the text so far.
        assert delta["html"] == answer_html(text)
        assert "<img" not in delta["html"] and "javascript:" not in delta["html"]
        assert "onerror" not in delta["html"].replace("onerror=alert(1)&gt;", "")
    assert "<strong>KESTREL</strong>" in deltas[-1]["html"]
    await ws.disconnect()


def test_conversation_search_is_sql_over_own_conversations_and_paginated(cast):
    sam, hana = cast["sam"], cast["hana"]
    for i in range(120):
        c = Conversation.objects.create(user=sam, title=f"Question {i}")
        Message.objects.create(conversation=c, role="user", content=f"about item {i}")
    zebra = Conversation.objects.create(user=sam, title="Animals")
    Message.objects.create(conversation=zebra, role="user", content="Where is the Zebra room?")
    Conversation.objects.create(user=hana, title="zebra crossing")
    client = client_for(sam)
    page = client.get("/chat/").content.decode()
    assert page.count('href="/chat/') >= 50 and "Page 1 of 3" in page
    assert "Question 0<" in client.get("/chat/?page=3").content.decode()
    found = client.get("/chat/", {"q": "zebra"}).content.decode()
    assert f'href="/chat/{zebra.pk}/"' in found and "1 conversation match" in found
    assert "zebra crossing" not in found and "Question 1<" not in found


def test_a_recorded_answer_alone_is_its_owners_and_withheld_after_a_revocation(cast):
    sam, hana = cast["sam"], cast["hana"]
    done = answer(sam, "What is Project KESTREL? [[fake:quote]]", client_id="q-live")
    assert done["type"] == "done"
    client = client_for(sam)
    fragment = client.get(f"/chat/answers/{done['message']}/").content.decode()
    assert "KESTREL" in fragment and 'class="preview"' in fragment
    assert "Why this answer" in fragment and '<mark class="used">' in fragment
    assert "Ask this document" in fragment
    recovered = client.get("/chat/answers/recover/", {"question": "q-live"})
    assert recovered.status_code == 200 and "KESTREL" in recovered.content.decode()
    other = client_for(hana)
    assert other.get(f"/chat/answers/{done['message']}/").status_code == 404
    assert other.get("/chat/answers/recover/", {"question": "q-live"}).status_code == 404

    sam.groups.remove(cast["sales_role"])
    sam.groups.add(cast["hana"].groups.first())  # still a chat user, reading HR only
    withheld = client.get(f"/chat/answers/{done['message']}/").content.decode()
    assert "can no longer open" in withheld
    assert not any(c in withheld for c in SALES_CANARIES) and "Dealer" not in withheld


def test_suggestions_come_only_from_documents_the_user_reads_now(cast):
    sam, hana = cast["sam"], cast["hana"]
    page = client_for(sam).get("/chat/").content.decode()
    assert "Dealer discounts" in page and "Travel rules" in page
    assert "Salary bands" not in page
    hana_page = client_for(hana).get("/chat/").content.decode()
    assert "Salary bands" in hana_page and "Dealer discounts" not in hana_page
    sam.groups.remove(cast["sales_role"])
    sam.groups.add(hana.groups.first())
    after = client_for(sam).get("/chat/").content.decode()
    assert "Dealer discounts" not in after and "Travel rules" not in after


def test_ask_the_document_narrows_the_search_and_never_widens_it(cast):
    sam = cast["sam"]
    travel = cast["travel"]
    done = answer(sam, "Which code and which discount apply?", document_id=travel.pk)
    assert done["type"] == "done" and done["citations"]
    assert {c["title"] for c in done["citations"]} == {"Travel rules"}
    from ingestion.models import Document

    bands = Document.objects.get(title="Salary bands")
    refused = answer(sam, "What does band E4 pay?", document_id=bands.pk)
    assert refused["type"] == "error" and "not available" in refused["message"]
    assert not any(c in str(refused) for c in HR_CANARIES)
    entry = QueryLogEntry.objects.get(question="What does band E4 pay?")
    assert entry.outcome == "refused" and not entry.retrieved


@pytest.mark.asyncio
async def test_the_socket_passes_the_document_and_refuses_a_bad_one(cast):
    ws = await connect(cast["sam"])
    await ws.send_json_to({"type": "ask", "id": "d1", "text": "trains?", "document": True})
    assert (await ws.receive_json_from(timeout=5))["message"] == "Bad document."
    travel_pk = cast["travel"].pk
    await ws.send_json_to({"type": "ask", "id": "d2", "text": "trains?", "document": travel_pk})
    while (frame := await ws.receive_json_from(timeout=20))["type"] not in ("done", "error"):
        pass
    assert {c["title"] for c in frame["citations"]} == {"Travel rules"}
    await ws.disconnect()


def test_a_comment_sent_alone_never_rates(cast):
    sam = cast["sam"]
    done = answer(sam, "What is Project KESTREL?")
    client = client_for(sam)
    url = f"/chat/answers/{done['message']}/feedback/"
    json = {"HTTP_ACCEPT": "application/json"}
    assert client.post(url, {"comment": "hm"}, **json).status_code == 400
    assert not Feedback.objects.exists()
    assert client.post(url, {"rating": "down", "comment": ""}, **json).status_code == 204
    assert client.post(url, {"comment": "wrong figure"}, **json).status_code == 204
    feedback = Feedback.objects.get()
    assert (feedback.rating, feedback.comment) == (-1, "wrong figure")
