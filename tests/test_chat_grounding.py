"""Grounding in the chat: the supporting quote before the first token, the claim check of the
finished answer, the loop guard — through the real ASGI application and database.

The FAKE model (assistant/llm/fake.py) is told by markers to answer with a sentence of its first
source word for word ([[fake:quote]]), with its figures changed ([[fake:misquote]]), or to loop
([[fake:loop]]); the last test asks the real local model server.
"""

from __future__ import annotations

import io

import pytest
from asgiref.sync import sync_to_async

from assistant.models import Citation, Message
from compliance.models import QueryLogEntry
from ingestion import services as ingest
from tests.factories import CollectionFactory, RoleFactory, UserFactory
from tests.test_chat import ask, connect

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TRAVEL = (
    "# Travel policy\n\n## Hotels\n\nBook hotels through the travel portal. The maximum hotel "
    "rate per night is EUR 190 in Munich and EUR 150 in other German cities. Breakfast is "
    "included in the rate.\n\n## Trains\n\nTrain journeys over four hours may be booked in "
    "first class.\n"
)


@pytest.fixture
def traveller(transactional_db):
    company = CollectionFactory(name="Company", slug="company")
    result = ingest.document_upload(
        actor=None,
        collection=company,
        stream=io.BytesIO(TRAVEL.encode()),
        filename="travel.md",
        size=len(TRAVEL),
    )
    assert ingest.document_index(document_id=result.document.pk, task_id="t") == "indexed"
    return UserFactory(username="erin", roles=[RoleFactory(name="Staff", reads=[company])])


def chunk_texts() -> list[str]:
    from ingestion.models import Chunk

    return list(Chunk.objects.values_list("text", flat=True))


@pytest.mark.asyncio
async def test_the_quote_arrives_before_the_first_token_and_is_the_documents_own_text(traveller):
    ws = await connect(traveller)
    frames = await ask(ws, "How much may a hotel night in Munich cost? [[fake:quote]]")
    kinds = [f["type"] for f in frames]
    assert "quote" in kinds and kinds.index("quote") < kinds.index("delta")
    quote = frames[kinds.index("quote")]["quote"]
    assert "EUR 190" in quote["text"]
    assert any(quote["text"] in text for text in await sync_to_async(chunk_texts)())
    assert quote["title"] == "Travel policy" and quote["url"].startswith("/documents/")
    done = frames[-1]
    assert done["quote"]["text"] == quote["text"]
    # The model repeated the source's figures: nothing is marked.
    assert "EUR 190" in done["html"] and "unsupported" not in done["html"]
    assert done["grounding"]["unsupported"] == [] and done["grounding"]["checked"] >= 2
    assert done["citations"][0]["referenced"] is True
    entry = await sync_to_async(QueryLogEntry.objects.get)()
    assert entry.unsupported_figures == 0
    assert entry.grounding["quote"]["text"] == quote["text"]
    await ws.disconnect()


@pytest.mark.asyncio
async def test_figures_the_sources_do_not_hold_are_marked_counted_and_logged(traveller):
    ws = await connect(traveller)
    frames = await ask(ws, "How much may a hotel night in Munich cost? [[fake:misquote]]")
    done = frames[-1]
    assert done["type"] == "done"
    assert '<mark class="unsupported" title="Not in the sources">EUR 191</mark>' in done["html"]
    assert "(not in the sources)" in done["html"]
    assert done["grounding"]["unsupported"] == ["EUR 191", "EUR 151"]
    entry = await sync_to_async(QueryLogEntry.objects.get)()
    assert entry.unsupported_figures == 2
    assert entry.grounding["unsupported"] == ["EUR 191", "EUR 151"]
    # The quote is still the document's own sentence, with its real figures.
    assert "EUR 190" in done["quote"]["text"]
    stored = await sync_to_async(Message.objects.get)(role="assistant")
    assert "EUR 191</mark>" in stored.content_html
    assert stored.grounding["checked"] == 4  # EUR 191, Munich, EUR 151, German
    await ws.disconnect()


@pytest.mark.asyncio
async def test_nothing_readable_gets_the_refusal_and_no_quote(traveller):
    ws = await connect(traveller)
    frames = await ask(ws, "Which dinosaurs lived in the Jurassic period?")
    assert "quote" not in [f["type"] for f in frames]
    done = frames[-1]
    assert done["status"] == "refused" and done["quote"] == {}
    entry = await sync_to_async(QueryLogEntry.objects.get)()
    assert entry.outcome == "refused" and entry.unsupported_figures is None
    await ws.disconnect()


@pytest.mark.asyncio
async def test_a_looping_answer_is_stopped_kept_and_recorded_as_such(traveller, settings):
    settings.CHAT_MAX_ANSWER_TOKENS = 400
    ws = await connect(traveller)
    frames = await ask(ws, "How much may a hotel night in Munich cost? [[fake:loop]]")
    done = frames[-1]
    assert done["type"] == "done" and done["looped"] is True and not done["truncated"]
    streamed = "".join(f["text"] for f in frames if f["type"] == "delta")
    assert streamed.endswith("(The answer was stopped here: it had begun repeating itself.)")
    assert streamed.count("The answer is:") < 20  # stopped long before the 400-token cap
    entry = await sync_to_async(QueryLogEntry.objects.get)()
    assert entry.grounding["looped"] is True and entry.answer.startswith("The answer is: 1.")
    await ws.disconnect()


@pytest.mark.asyncio
async def test_a_long_answer_that_does_not_repeat_is_not_taken_for_a_loop(traveller, settings):
    settings.CHAT_MAX_ANSWER_TOKENS = 120
    ws = await connect(traveller)
    frames = await ask(ws, "How much may a hotel night in Munich cost? [[fake:long]]")
    done = frames[-1]
    assert done["looped"] is False and done["truncated"] is True
    await ws.disconnect()


@pytest.mark.asyncio
async def test_the_real_model_server_answers_with_the_quote_first_and_a_checked_answer(
    traveller, local_llm
):
    ws = await connect(traveller)
    frames = await ask(ws, "What is the hotel limit per night in Munich?", timeout=120)
    kinds = [f["type"] for f in frames]
    assert kinds.index("quote") < kinds.index("delta") and kinds[-1] == "done"
    done = frames[-1]
    assert done["status"] == "complete" and done["html"]
    # Whatever the small model wrote, each of its figures was looked up and the count logged.
    entry = await sync_to_async(QueryLogEntry.objects.get)()
    assert entry.unsupported_figures == len(done["grounding"]["unsupported"])
    assert entry.model == local_llm.model
    # The server counted the prompt with the served model's tokenizer.
    assert 50 < entry.prompt_tokens < 600
    marks = done["html"].count('<mark class="unsupported"')
    assert marks == entry.unsupported_figures
    assert await sync_to_async(Citation.objects.filter(referenced=True).count)() >= 1
    await ws.disconnect()


@pytest.mark.asyncio
async def test_passages_that_do_not_answer_get_not_found_instead_of_a_made_up_answer(traveller):
    ws = await connect(traveller)
    frames = await ask(ws, "How much may a hotel night in Munich cost? [[fake:unanswerable]]")
    assert "delta" not in [f["type"] for f in frames]  # the model's answer was never asked for
    done = frames[-1]
    assert done["status"] == "refused" and done["quote"] == {}
    assert "could not find the answer" in done["html"]
    assert done["citations"]  # what was looked at is still shown
    entry = await sync_to_async(QueryLogEntry.objects.get)()
    assert entry.outcome == "refused" and entry.unsupported_figures is None
    assert "do not answer the question" in entry.route_reason
    await ws.disconnect()


def test_the_yes_no_check_is_the_prompt_plus_one_question():
    from assistant.llm.fake import ANSWERABLE_QUESTION as FAKE_QUESTION
    from assistant.prompts import ANSWERABLE_QUESTION, answerable_messages, says_no

    assert FAKE_QUESTION == ANSWERABLE_QUESTION  # the fake knows the chat's question
    messages = [("system", "S"), ("user", "Sources: ...\n\nQuestion: Q?")]
    checked = answerable_messages(messages)
    assert checked[0] == messages[0]
    assert checked[1][1].startswith(messages[1][1]) and checked[1][1].endswith(ANSWERABLE_QUESTION)
    assert says_no("No") and says_no(" no.") and says_no('"No, they do not"')
    assert not says_no("Yes") and not says_no("Nobody knows") and not says_no("")


def test_the_check_reads_the_models_confidence_from_its_first_tokens_alternatives():
    import math

    from assistant.prompts import answerable_probability

    def alternatives(**probabilities):
        return [{"token": t, "logprob": math.log(p)} for t, p in probabilities.items()]

    # "Yes", " yes" and "YES" are one word; so are "No" and "no"; other tokens do not count.
    assert answerable_probability(alternatives(Yes=0.3, yes=0.1, No=0.35, no=0.05, To=0.2)) == (
        pytest.approx(0.5)
    )
    assert answerable_probability(alternatives(No=0.6, Yes=0.2)) == pytest.approx(0.25)
    assert answerable_probability(alternatives(Sure=0.9)) is None  # neither word: no verdict
    assert answerable_probability(None) is None and answerable_probability([]) is None
    assert answerable_probability([{"token": "Yes", "logprob": float("-inf")}]) is None


@pytest.mark.asyncio
@pytest.mark.parametrize("min_yes", [0.0, 1.01])
async def test_the_real_model_servers_confidence_decides_and_is_logged(
    traveller, local_llm, settings, min_yes
):
    # Nothing is sure enough for a threshold above 1, and everything for 0: the model server's
    # log-probabilities, not its greedy word, decide, and the officer sees the confidence.
    settings.CHAT_ANSWERABLE_CHECK = True
    settings.CHAT_ANSWERABLE_MIN_YES = min_yes
    ws = await connect(traveller)
    frames = await ask(ws, "What is the hotel limit per night in Munich?", timeout=120)
    done = frames[-1]
    entry = await sync_to_async(QueryLogEntry.objects.get)()
    confidence = entry.grounding["answerable"]
    assert 0.0 <= confidence <= 1.0
    if min_yes > 1:
        assert done["status"] == "refused" and "delta" not in [f["type"] for f in frames]
        assert entry.outcome == "refused"
        assert f"confidence that they do: {confidence:.0%}" in entry.route_reason
    else:
        assert "delta" in [f["type"] for f in frames] and entry.outcome != "refused"
    await ws.disconnect()
