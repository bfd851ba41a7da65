"""The documents page's live progress goes only to the managers of each document's collection.

Before: every holder of "manage documents" received every collection's document ids, states and
titles over `/ws/documents/`, although the pages and the API showed them only their own
collections. Real ASGI application, real channel layer (Redis), real database.
"""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import Group
from django.test import Client

from accounts.capabilities import ADMINISTRATOR, Capability
from config.asgi import application
from ingestion import services
from tests.factories import CollectionFactory, RoleFactory, UserFactory
from tests.test_ingestion import POLICY, upload

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _world() -> dict:
    sales = CollectionFactory(name="Sales", slug="sales")
    hr = CollectionFactory(name="HR", slug="hr")
    sales_docs = RoleFactory(name="Sales docs", capabilities=[Capability.MANAGE_DOCUMENTS])
    sales.managers.set([sales_docs])
    return {
        "sales_doc": upload(sales, "policy.md", POLICY.encode()).document,
        "hr_doc": upload(hr, "salaries.md", b"# Salaries\n\nBand E4.\n").document,
        "mia": UserFactory(username="mia", roles=[sales_docs]),
        "ada": UserFactory(username="ada", roles=[Group.objects.get(name=ADMINISTRATOR)]),
    }


def _cookie(user) -> bytes:
    from django.conf import settings

    client = Client()
    client.force_login(user)
    name = settings.SESSION_COOKIE_NAME
    return f"{name}={client.cookies[name].value}".encode()


async def _socket(user) -> WebsocketCommunicator:
    ws = WebsocketCommunicator(
        application,
        "/ws/documents/",
        headers=[
            (b"host", b"localhost"),
            (b"origin", b"http://localhost"),
            (b"cookie", await sync_to_async(_cookie)(user)),
        ],
    )
    connected, _ = await ws.connect()
    assert connected
    return ws


async def _received(ws, seconds: float = 1.5) -> list[int]:
    """The ids of the progress events that arrive within `seconds` of quiet."""
    ids = []
    while not await ws.receive_nothing(timeout=seconds):
        ids.append((await ws.receive_json_from())["id"])
    return ids


@pytest.mark.asyncio
async def test_progress_reaches_only_the_managers_of_the_documents_collection():
    world = await sync_to_async(_world)()
    mia, ada = await _socket(world["mia"]), await _socket(world["ada"])
    await asyncio.sleep(0.3)  # both listeners joined the progress group
    for document in (world["hr_doc"], world["sales_doc"]):
        await sync_to_async(services._publish)(document.pk, state="processing", title="x")
    assert await _received(mia) == [world["sales_doc"].pk]
    assert await _received(ada) == [world["hr_doc"].pk, world["sales_doc"].pk]
    await mia.disconnect()
    await ada.disconnect()
