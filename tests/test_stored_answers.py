"""Stored answers outlive no revocation (issue 15, item 2).

Found by probing: after a role lost a collection, `/chat/<id>/` still rendered the earlier
answers built from it, with their cited titles and headings (only the links 404). An answer, its
quote, its citations and its route's adapter are shown only while the reader may still read
every collection it was built from; otherwise a plain note says so. Real database, real socket;
the FAKE model echoes its sources, so an answer holds the canaries it was built from.
"""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import Group
from django.test import Client

from assistant.models import AnswerSource, Message
from assistant.services import Ask, chat_answer
from ingestion.models import Collection
from tests.test_chat import SALES_CANARIES, ask, build_cast, connect
from tests.tuning_support import load_demo, registered_adapter, user
from tuning.models import RoleStrategy

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

WITHHELD = "used documents you can no longer open"


@pytest.fixture
def cast(transactional_db):
    return build_cast()


def _page(user, conversation: int) -> str:
    client = Client()
    client.force_login(user)
    response = client.get(f"/chat/{conversation}/")
    assert response.status_code == 200
    return response.content.decode()


async def _asked(user, question: str) -> dict:
    ws = await connect(user)
    frames = await ask(ws, f"{question} [[fake:quote]]")
    await ws.disconnect()
    assert frames[-1]["type"] == "done", frames[-1]
    return frames[-1]


def test_an_answer_is_withheld_once_its_reader_loses_the_collection_and_back_on_regrant(cast):
    sam = cast["sam"]
    done = async_to_sync(_asked)(sam, "Which dealer discount needs the VP's approval?")
    conversation = done["conversation"]
    before = _page(sam, conversation)
    assert any(c in before for c in SALES_CANARIES)
    assert "Dealer discounts" in before and WITHHELD not in before
    assert set(
        AnswerSource.objects.filter(message_id=done["message"]).values_list(
            "collection_id", flat=True
        )
    ) == {cast["sales"].pk}

    cast["sales"].readers.remove(cast["sales_role"])
    after = _page(sam, conversation)
    assert WITHHELD in after
    for secret in (*SALES_CANARIES, "Dealer discounts", "Approval", "/documents/"):
        assert secret not in after, secret
    # The question is the asker's own words: it stays, as does the conversation.
    assert "Which dealer discount needs the VP&#x27;s approval?" in after

    cast["sales"].readers.add(cast["sales_role"])
    again = _page(sam, conversation)
    assert WITHHELD not in again and any(c in again for c in SALES_CANARIES)


def test_refusals_and_answers_from_still_readable_collections_stay_visible(cast):
    sam = cast["sam"]
    kept = async_to_sync(_asked)(sam, "Which dealer discount needs approval?")
    refused = async_to_sync(_asked)(sam, "What does band E4 pay?")
    assert refused["status"] == Message.Status.REFUSED
    # Another role keeps the collection readable: nothing is withheld.
    other = Group.objects.create(name="Sales backup")
    cast["sales"].readers.add(other)
    sam.groups.add(other)
    cast["sales"].readers.remove(cast["sales_role"])
    page = _page(sam, kept["conversation"])
    assert WITHHELD not in page and any(c in page for c in SALES_CANARIES)
    # A refusal was built from nothing: it stays whatever the reader loses.
    other.delete()
    refusal = _page(sam, refused["conversation"])
    assert WITHHELD not in refusal and "could not find" in refusal


@pytest.fixture
def demo():
    load_demo("sales")


def test_an_adapter_answer_is_withheld_when_its_profile_is_no_longer_readable(demo):
    """The adapter route cites nothing: what it knows is its profile's collections."""
    adapter = registered_adapter()
    RoleStrategy.objects.create(role=Group.objects.get(name="Sales"), strategy="tuned")
    sam = user("sam")

    async def run():
        return [e async for e in chat_answer(Ask(user_id=sam.pk, question="Dealer discounts?"))]

    done = async_to_sync(run)()[-1]
    assert done["route"] == "tuned" and done["citations"] == []
    recorded = set(
        AnswerSource.objects.filter(message_id=done["message"]).values_list(
            "collection_id", flat=True
        )
    )
    assert recorded == {int(c) for c in adapter.collection_ids}
    page = _page(sam, done["conversation"])
    assert WITHHELD not in page and adapter.name in page

    Collection.objects.get(slug="sales").readers.remove(Group.objects.get(name="Sales"))
    page = _page(sam, done["conversation"])
    assert WITHHELD in page
    assert adapter.name not in page and "Adapter: " not in page
