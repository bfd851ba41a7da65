"""Indexing through real Celery workers: enqueue on commit, crash recovery, the reconciler,
live progress over the websocket, and the JSON API."""

from __future__ import annotations

import io
import os
import signal
import time
from datetime import timedelta

import psutil
import pytest
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone

from accounts.capabilities import ADMINISTRATOR
from accounts.services import api_token_create
from config.asgi import application
from ingestion import services
from ingestion.models import Chunk, Document
from tests.factories import CollectionFactory, RoleFactory, UserFactory

pytestmark = pytest.mark.slow


def wait_for(predicate, timeout: float = 90, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def state_of(document_id: int) -> Document:
    return Document.objects.get(pk=document_id)


def long_text(paragraphs: int) -> bytes:
    body = "\n\n".join(
        f"## Section {n}\n\nClause {n}: the supplier delivers component batch {n} within "
        f"{n % 30 + 1} working days; late batches carry a penalty of {n % 7 + 1} percent of "
        "their value, and the buyer inspects every batch within two days of delivery."
        for n in range(paragraphs)
    )
    return f"# Supplier framework\n\n{body}\n".encode()


@pytest.fixture
def sales(transactional_db):
    collection = CollectionFactory(name="Sales", slug="sales")
    reader = UserFactory(username="alice", roles=[RoleFactory(name="Sales", reads=[collection])])
    admin = UserFactory(username="ada", roles=[Group.objects.get(name=ADMINISTRATOR)])
    return {"collection": collection, "alice": reader, "admin": admin}


def upload(collection, name: str, data: bytes) -> Document:
    # Outside any test transaction: the upload commits and its task is sent on commit.
    return services.document_upload(
        actor=None, collection=collection, stream=io.BytesIO(data), filename=name, size=len(data)
    ).document


def test_upload_is_indexed_by_a_real_worker(celery_worker, sales):
    document = upload(sales["collection"], "framework.md", long_text(5))
    done = wait_for(lambda: state_of(document.pk).state == Document.State.INDEXED, what="indexing")
    assert done
    assert state_of(document.pk).chunk_count == Chunk.objects.filter(document=document).count()


@pytest.mark.timeout(900)
def test_worker_killed_mid_document_ends_indexed_once_without_duplicates(celery_worker, sales):
    document = upload(sales["collection"], "big.md", long_text(600))
    # Wait until the worker is embedding (progress reported), then kill its pool process.
    wait_for(
        lambda: state_of(document.pk).progress_done > 0,
        what="embedding to start",
    )
    worker_main = next(
        p
        for p in psutil.process_iter(["pid", "cmdline"])
        if p.info["cmdline"] and celery_worker in " ".join(p.info["cmdline"])
    )
    children = worker_main.children()
    assert children, "the prefork pool has a child process"
    os.kill(children[0].pid, signal.SIGKILL)
    assert state_of(document.pk).state == Document.State.PROCESSING
    assert not Chunk.objects.filter(document=document).exists(), "no partial chunk set"

    final = wait_for(
        lambda: (d := state_of(document.pk)).state == Document.State.INDEXED and d,
        timeout=600,
        what="the re-delivered task to finish",
    )
    ordinals = list(Chunk.objects.filter(document=document).values_list("ordinal", flat=True))
    assert len(ordinals) == len(set(ordinals)) == final.chunk_count
    assert final.attempts == 2  # the killed attempt and the one that finished


def test_reconciler_requeues_a_document_whose_worker_vanished(celery_worker, sales):
    document = upload(sales["collection"], "framework.md", long_text(3))
    wait_for(lambda: state_of(document.pk).state == Document.State.INDEXED, what="indexing")
    # Simulate a claim left by a worker that died without Celery noticing (machine lost):
    # processing, lease already over, chunks of the old run still in place.
    Document.objects.filter(pk=document.pk).update(
        state=Document.State.PROCESSING,
        task_id="lost-worker",
        lease_expires_at=timezone.now() - timedelta(seconds=1),
    )
    assert services.documents_reconcile() == [document.pk]
    final = wait_for(
        lambda: (d := state_of(document.pk)).state == Document.State.INDEXED and d,
        what="the reconciled task",
    )
    assert final.task_id != "lost-worker"
    ordinals = list(Chunk.objects.filter(document=document).values_list("ordinal", flat=True))
    assert len(ordinals) == len(set(ordinals))


def test_reconciler_leaves_healthy_work_alone(sales):
    document = upload(sales["collection"], "framework.md", long_text(2))
    assert state_of(document.pk).state == Document.State.QUEUED
    assert services.documents_reconcile() == []  # queued moments ago: not stuck


# --- live progress ----------------------------------------------------------------------------


def _cookie(user) -> bytes:
    client = Client()
    client.force_login(user)
    name = settings.SESSION_COOKIE_NAME
    return f"{name}={client.cookies[name].value}".encode()


@pytest.mark.asyncio
async def test_documents_page_socket_receives_progress_until_indexed(celery_worker, sales):
    from asgiref.sync import sync_to_async

    ws = WebsocketCommunicator(
        application,
        "/ws/documents/",
        headers=[
            (b"host", b"localhost"),
            (b"origin", b"http://localhost"),
            (b"cookie", await sync_to_async(_cookie)(sales["admin"])),
        ],
    )
    connected, _ = await ws.connect()
    assert connected
    document = await sync_to_async(upload)(sales["collection"], "framework.md", long_text(40))
    states = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        message = await ws.receive_json_from(timeout=90)
        if message["id"] != document.pk:
            continue
        states.append(message["state"])
        if message["state"] == "indexed":
            assert message["done"] == message["total"] > 0
            break
    assert states[0] == "processing" and states[-1] == "indexed"
    await ws.disconnect()


@pytest.mark.asyncio
async def test_progress_socket_is_refused_to_users_who_do_not_manage_documents(sales):
    from asgiref.sync import sync_to_async

    ws = WebsocketCommunicator(
        application,
        "/ws/documents/",
        headers=[
            (b"host", b"localhost"),
            (b"origin", b"http://localhost"),
            (b"cookie", await sync_to_async(_cookie)(sales["alice"])),
        ],
    )
    connected, _ = await ws.connect()
    assert connected  # accepted, then closed with a code the page reads
    assert (await ws.receive_json_from(timeout=5))["fatal"]
    assert (await ws.receive_output(timeout=5)) == {"type": "websocket.close", "code": 4403}
    await ws.disconnect()  # as a server does after a close: no consumer is left running


# --- JSON API ---------------------------------------------------------------------------------


def test_api_upload_with_a_token_then_search_as_a_reader(celery_worker, sales):
    _, token = api_token_create(actor=None, user=sales["admin"], name="import script")
    client = Client()
    upload_file = io.BytesIO(long_text(3))
    upload_file.name = "framework.md"
    response = client.post(
        "/api/documents/",
        {"collection": "sales", "file": upload_file},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 201, response.content
    document_id = response.json()["results"][0]["document"]["id"]
    wait_for(lambda: state_of(document_id).state == Document.State.INDEXED, what="indexing")

    reader = Client()
    reader.force_login(sales["alice"])
    found = reader.get("/api/search/", {"q": "penalty for late component batches"}).json()
    assert found["results"] and found["results"][0]["document_id"] == document_id
    outsider = Client()
    outsider.force_login(UserFactory(username="charlie", roles=[RoleFactory(name="Chat only")]))
    assert outsider.get("/api/search/", {"q": "penalty"}).json()["results"] == []
    nobody = Client()
    nobody.force_login(UserFactory(username="nora"))
    assert nobody.get("/api/search/", {"q": "penalty"}).status_code == 403


def test_api_refuses_bad_tokens_missing_capabilities_and_missing_csrf(sales):
    assert Client().get("/api/documents/").status_code == 401
    bad = Client().get("/api/documents/", headers={"Authorization": "Bearer cns_nope"})
    assert bad.status_code == 401
    reader = Client()
    reader.force_login(sales["alice"])
    assert reader.get("/api/documents/").status_code == 403
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(sales["admin"])
    response = strict.post("/api/documents/", {"collection": "sales"})
    assert response.status_code == 403 and "CSRF" in response.json()["error"]


def test_api_refuses_an_oversized_file_as_it_arrives(sales, settings):
    settings.INGEST_MAX_UPLOAD_MB = 1
    client = Client()
    client.force_login(sales["admin"])
    big = io.BytesIO(b"a" * (1024 * 1024 + 10))
    big.name = "too-big.txt"
    response = client.post("/api/documents/", {"collection": "sales", "file": big})
    assert response.status_code == 200
    result = response.json()["results"][0]
    assert result["outcome"] == "refused"
    assert "limit is 1 MB" in result["document"]["reason"]
    assert not Document.objects.get(pk=result["document"]["id"]).versions.exists()
