"""Every question, by any path, leaves exactly one query-log entry, and a failure of the
conversation's own rows cannot lose it.

Found by probing (issue 15): a chat question with a NUL byte was answered "could not be
recorded" and left no entry; `/api/search/` returned chunk text and was neither logged nor
rate-limited; a conversation deleted while its answer streamed lost the entry; an unexpected
exception in the chat service left none. Real sockets, Redis and PostgreSQL; the model is the
fake one (its `[[fake:crash]]` marker breaks the stream with an exception that is no model
error, as a broken client library would).
"""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.test import Client

from assistant.models import Conversation, Message
from compliance.models import QueryLogEntry
from tests.test_chat import ask, build_cast, connect

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def cast(transactional_db):
    """The chat tests' cast: sam reads Sales (canaries 23.5%, KESTREL), hana reads HR."""
    return build_cast()


def _entries() -> list[QueryLogEntry]:
    return list(QueryLogEntry.objects.filter(kind=QueryLogEntry.Kind.QUESTION).order_by("id"))


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "hostile",
    ["Project\x00 KESTREL", "Project KESTREL \ud800?", "Project\u202e KESTREL\x07 \x1b[31m"],
    ids=["nul", "lone-surrogate", "rtl-and-control"],
)
async def test_a_question_with_characters_postgres_cannot_store_is_answered_and_logged(
    cast, hostile
):
    ws = await connect(cast["sam"])
    frames = await ask(ws, f"What is {hostile}")
    await ws.disconnect()
    assert frames[-1]["type"] == "done", frames[-1]
    entries = await sync_to_async(_entries)()
    assert len(entries) == 1
    entry = entries[0]
    assert entry.outcome == QueryLogEntry.Outcome.ANSWERED
    assert "\x00" not in entry.question and "KESTREL" in entry.question
    # What could not be stored is shown as the replacement character, not dropped silently.
    if "\x00" in hostile or "\ud800" in hostile:
        assert "\ufffd" in entry.question
    stored = await sync_to_async(Message.objects.get)(pk=entry.question_message_id)
    assert stored.content == entry.question


@pytest.mark.asyncio
async def test_a_conversation_deleted_while_its_answer_streams_keeps_the_log_entry(cast, settings):
    settings.LLM_FAKE_TOKENS_PER_SECOND = 20.0
    conversation = await sync_to_async(
        lambda: Conversation.objects.create(user=cast["sam"], title="Discounts").pk
    )()
    ws = await connect(cast["sam"])
    await ws.send_json_to(
        {"type": "ask", "id": "q1", "text": "What is KESTREL?", "conversation": conversation}
    )
    while (await ws.receive_json_from(timeout=10))["type"] != "delta":
        pass
    # Deleted in another tab while the answer streams.
    await sync_to_async(Conversation.objects.filter(pk=conversation).delete)()
    while True:
        frame = await ws.receive_json_from(timeout=20)
        if frame.get("id") == "q1" and frame["type"] in ("done", "error", "stopped"):
            break
    await ws.disconnect()
    assert frame["type"] == "error"
    assert "deleted" in frame["message"]
    entries = await sync_to_async(_entries)()
    assert len(entries) == 1
    entry = entries[0]
    assert entry.question == "What is KESTREL?"
    assert entry.answer  # what the model wrote is kept in the record
    assert entry.conversation_id == conversation
    assert entry.answer_message_id is None
    assert "deleted" in entry.error
    assert not await sync_to_async(Conversation.objects.filter(pk=conversation).exists)()


@pytest.mark.asyncio
async def test_an_unexpected_exception_in_the_service_still_leaves_one_entry(cast):
    ws = await connect(cast["sam"])
    frames = await ask(ws, "What is Project KESTREL? [[fake:crash]]")
    later = await ask(ws, "What is Project KESTREL?", "q2")
    await ws.disconnect()
    assert frames[-1]["type"] == "error"
    assert "logged" in frames[-1]["message"]
    assert "Traceback" not in frames[-1]["message"]
    assert later[-1]["type"] == "done"  # the socket and the service go on
    entries = await sync_to_async(_entries)()
    assert [e.outcome for e in entries] == ["error", "answered"]
    assert entries[0].question.endswith("[[fake:crash]]")
    assert entries[0].error


@pytest.mark.asyncio
async def test_questions_refused_before_processing_are_logged_as_refused(cast, settings):
    """Over the length limit, or into someone else's conversation: not processed, nothing
    searched, but asked, so logged (cut to the limit)."""
    hanas = await sync_to_async(
        lambda: Conversation.objects.create(user=cast["hana"], title="Bands").pk
    )()
    ws = await connect(cast["sam"])
    too_long = "Why? " + "x" * settings.CHAT_MAX_MESSAGE_CHARS
    long_frames = await ask(ws, too_long, "q1")
    foreign_frames = await ask(ws, "What is band E4?", "q2", conversation=hanas)
    await ws.disconnect()
    assert "limited to" in long_frames[-1]["message"]
    assert foreign_frames[-1]["type"] == "error"
    entries = await sync_to_async(_entries)()
    assert [e.outcome for e in entries] == ["refused", "refused"]
    long_entry, foreign_entry = entries
    assert long_entry.question == too_long[: settings.CHAT_MAX_MESSAGE_CHARS]
    assert str(len(too_long)) in long_entry.error
    assert foreign_entry.question == "What is band E4?"
    assert foreign_entry.conversation_id == hanas and foreign_entry.username == "sam"
    assert foreign_entry.retrieved == [] and foreign_entry.used_chunks == []


# --- the search API ----------------------------------------------------------------------------


def test_api_searches_are_logged_like_questions(cast):
    sam = Client()
    sam.force_login(cast["sam"])
    found = sam.get("/api/search/", {"q": "dealer discount approval", "k": 3}).json()
    assert any("23.5%" in r["text"] for r in found["results"])
    nothing = sam.get("/api/search/", {"q": "zzzz qqqq"}).json()
    entries = _entries()
    assert len(entries) == 2
    first, second = entries
    assert first.route == "search" and first.username == "sam"
    assert first.question == "dealer discount approval"
    assert first.outcome == QueryLogEntry.Outcome.ANSWERED
    # The compliance officer sees exactly the text the API returned.
    assert [c["text"] for c in first.used_chunks] == [r["text"] for r in found["results"]]
    assert second.outcome == (
        QueryLogEntry.Outcome.ANSWERED if nothing["results"] else QueryLogEntry.Outcome.REFUSED
    )
    assert first.entry_hash and second.prev_hash == first.entry_hash


def test_api_searches_share_the_question_rate_limit(cast, settings):
    settings.CHAT_RATE_PER_MINUTE = 2
    sam = Client()
    sam.force_login(cast["sam"])
    # Five calls: even across a minute's boundary at most four fit in two minutes' budgets.
    codes = [sam.get("/api/search/", {"q": f"discount {n}"}).status_code for n in range(5)]
    assert 429 in codes and set(codes) == {200, 429}
    assert len(_entries()) == codes.count(200)  # a refused call returns nothing: no question


@pytest.mark.parametrize("q", ["a\x00b", "\x00"])
def test_api_search_with_a_nul_byte_is_a_clear_400(cast, q):
    sam = Client(raise_request_exception=False)
    sam.force_login(cast["sam"])
    response = sam.get("/api/search/", {"q": q})
    assert response.status_code == 400
    assert "error" in response.json()
    assert _entries() == []
