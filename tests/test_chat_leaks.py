"""The canary leak suite over the whole demo company, through the chat service.

Every demo user asks every canary question (each aimed at one collection's secret facts). For
every event the service yields — streamed tokens, statuses, the final answer, citations,
errors — no canary of a collection the user may not read may appear, and neither may it in
the prompt: the FAKE model (assistant/llm/fake.py) echoes its sources into the answer, and the
prompt's sources are recorded as citations, which are checked too.
"""

import asyncio
import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from accounts.models import User
from accounts.selectors import user_readable_collection_ids
from assistant.models import Citation
from assistant.services import Ask, chat_answer
from compliance.models import QueryLogEntry
from ingestion import services
from ingestion.models import Collection, Document

MANIFEST = json.loads(
    (Path(__file__).resolve().parent.parent / "demo" / "manifest.json").read_text()
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _events_text(events: list[dict]) -> str:
    return json.dumps(events, ensure_ascii=False)


@pytest.mark.timeout(900)
def test_no_demo_user_ever_sees_another_collections_canaries():
    call_command("load_demo", stdout=StringIO())
    history = QueryLogEntry.objects.count()  # the demo's three weeks of query-log history
    last_before = QueryLogEntry.objects.order_by("-id").values_list("id", flat=True).first() or 0
    for document in Document.objects.all():
        assert services.document_index(document_id=document.pk, task_id="leaks") == "indexed"
    slug_of = dict(Collection.objects.values_list("pk", "slug"))

    async def run(user_id: int, question: str) -> list[dict]:
        return [e async for e in chat_answer(Ask(user_id=user_id, question=question))]

    asked = 0
    for user in User.objects.order_by("username"):
        readable = {slug_of[pk] for pk in user_readable_collection_ids(user=user)}
        foreign = [c["token"] for c in MANIFEST["canaries"] if c["collection"] not in readable]
        for canary in MANIFEST["canaries"]:
            events = asyncio.run(run(user.pk, canary["question"]))
            said = _events_text(events)
            for token in foreign:
                assert token not in said, (user.username, canary["question"], token)
            asked += 1
    assert asked == User.objects.count() * len(MANIFEST["canaries"])

    # The prompts: their sources are the citations, all from readable collections.
    for citation in Citation.objects.select_related("message__conversation__user"):
        user = citation.message.conversation.user
        assert citation.collection_id in user_readable_collection_ids(user=user)
    # One log entry per question, also for users without the chat capability (nora): refused,
    # with nothing retrieved.
    assert QueryLogEntry.objects.count() - history == asked
    refused = QueryLogEntry.objects.filter(username="nora", id__gt=last_before)
    assert refused.count() == len(MANIFEST["canaries"])
    assert all(e.outcome == "refused" and e.retrieved == [] for e in refused)
