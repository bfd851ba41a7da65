"""Abuse limits of the chat socket, over real websockets to the real ASGI server (uvicorn).

Each limit refuses or caps one user with a plain message while another user, at the same time,
is served as usual. Cast from tests/test_chat.py: sam reads Sales, hana reads HR. The model is
the FAKE streaming model (test settings), whose ``[[fake:endless]]`` marker makes it ignore its
token limit and stream for ever.
"""

from __future__ import annotations

import asyncio
import json
import time
import warnings

import pytest
import websockets
from asgiref.sync import sync_to_async
from django.conf import settings as django_settings

from assistant.consumers import CLOSE_FLOOD, CLOSE_TOO_MANY_SOCKETS
from compliance.models import QueryLogEntry
from tests import test_chat
from tests.test_chat import cookie_for

cast = test_chat.cast  # the fixture: sam reads Sales, hana reads HR

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SERVER_MAX_FRAME = 65536  # what scripts/run and the Dockerfile give uvicorn (--ws-max-size)


async def open_chat(live_asgi, user):
    cookie = (await sync_to_async(cookie_for)(user)).decode()
    return await websockets.connect(
        live_asgi.url.replace("http", "ws") + "/ws/chat/",
        additional_headers={"Cookie": cookie, "Origin": live_asgi.url},  # the page's own
        max_size=None,
    )


async def chat(live_asgi, user):
    ws = await open_chat(live_asgi, user)
    assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "hello"
    return ws


async def ask(ws, text: str, qid: str, timeout: float = 20) -> list[dict]:
    await ws.send(json.dumps({"type": "ask", "id": qid, "text": text}))
    return await until_end(ws, qid, timeout)


async def until_end(ws, qid: str, timeout: float = 20) -> list[dict]:
    frames = []
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        frames.append(frame)
        if frame.get("id") == qid and frame["type"] in ("done", "error", "stopped"):
            return frames


async def closed_with(ws) -> tuple[int | None, list[dict]]:
    """Read until the server closes the socket: its close code and the frames before it."""
    frames = []
    try:
        while True:
            frames.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
    except websockets.ConnectionClosed as closed:
        return (closed.rcvd.code if closed.rcvd else None), frames


@pytest.mark.asyncio
async def test_oversized_questions_and_frames_are_refused_and_others_are_served(cast, live_asgi):
    live_asgi.server.config.ws_max_size = SERVER_MAX_FRAME  # as deployed
    sam, hana = await chat(live_asgi, cast["sam"]), await chat(live_asgi, cast["hana"])
    long = await ask(sam, "x" * (django_settings.CHAT_MAX_MESSAGE_CHARS + 1), "long")
    assert long[-1]["type"] == "error" and "limited to" in long[-1]["message"]
    # A raw frame over the consumer's limit (not a question at all) is ignored with a message,
    await sam.send("{" + " " * django_settings.CHAT_MAX_FRAME_BYTES + "}")
    frame = json.loads(await asyncio.wait_for(sam.recv(), 5))
    assert frame["type"] == "error" and "limited to" in frame["message"]
    await sam.send(b"\x00" * 100)  # binary frames too
    frame = json.loads(await asyncio.wait_for(sam.recv(), 5))
    assert frame["type"] == "error" and "text frames" in frame["message"]
    # and the socket goes on.
    assert (await ask(sam, "What is Project KESTREL?", "after"))[-1]["type"] == "done"
    # A frame over the server's limit never reaches the application: the server closes the
    # socket with 1009 (message too big).
    await sam.send("x" * (SERVER_MAX_FRAME + 1))
    code, _ = await closed_with(sam)
    assert code == 1009
    # Meanwhile hana is served as usual.
    frames = await ask(hana, "What is the HR code name?", "h")
    assert frames[-1]["type"] == "done"
    await hana.close()


@pytest.mark.asyncio
async def test_a_flood_of_frames_closes_that_socket_alone(cast, live_asgi, settings):
    settings.CHAT_FRAME_BURST = 20
    settings.CHAT_FRAMES_PER_SECOND = 1.0
    sam, hana = await chat(live_asgi, cast["sam"]), await chat(live_asgi, cast["hana"])
    for n in range(200):
        try:
            await sam.send(json.dumps({"type": "ping", "id": str(n)}))
        except websockets.ConnectionClosed:
            break
    code, frames = await closed_with(sam)
    assert code == CLOSE_FLOOD
    pongs = [f for f in frames if f["type"] == "pong"]
    assert 20 <= len(pongs) < 200  # the burst was served, the rest refused
    assert frames[-1]["type"] == "error" and "Too many messages" in frames[-1]["message"]
    # hana, flooding nobody, is served; sam may open a new socket and ask.
    assert (await ask(hana, "What is the HR code name?", "h"))[-1]["type"] == "done"
    sam = await chat(live_asgi, cast["sam"])
    assert (await ask(sam, "What is Project KESTREL?", "again"))[-1]["type"] == "done"
    await sam.close()
    await hana.close()


@pytest.mark.asyncio
async def test_a_flood_of_questions_is_refused_per_user(cast, live_asgi, settings):
    settings.CHAT_RATE_PER_MINUTE = 3
    sam, hana = await chat(live_asgi, cast["sam"]), await chat(live_asgi, cast["hana"])
    outcomes = [(await ask(sam, "What is Project KESTREL?", f"q{n}"))[-1] for n in range(5)]
    assert [o["type"] for o in outcomes] == ["done"] * 3 + ["error"] * 2
    assert "this minute" in outcomes[-1]["message"]
    assert (await ask(hana, "What is the HR code name?", "h"))[-1]["type"] == "done"
    await sam.close()
    await hana.close()


@pytest.mark.asyncio
async def test_sockets_per_user_are_capped_and_a_dead_nodes_entries_expire(
    cast, live_asgi, settings, redis_client
):
    settings.CHAT_MAX_SOCKETS_PER_USER = 2
    first, second = await chat(live_asgi, cast["sam"]), await chat(live_asgi, cast["sam"])
    third = await open_chat(live_asgi, cast["sam"])
    code, frames = await closed_with(third)
    assert code == CLOSE_TOO_MANY_SOCKETS
    assert frames == [frames[0]] and "chat windows open" in frames[0]["message"]
    # Another user is not affected, and sam's open sockets still work.
    hana = await chat(live_asgi, cast["hana"])
    assert (await ask(hana, "What is the HR code name?", "h"))[-1]["type"] == "done"
    assert (await ask(second, "What is Project KESTREL?", "s"))[-1]["type"] == "done"
    # Closing one frees its place.
    await first.close()
    for _ in range(50):
        if redis_client.zcard(f"counsel:chat:sockets:{cast['sam'].pk}") < 2:
            break
        await asyncio.sleep(0.1)
    replacement = await chat(live_asgi, cast["sam"])
    # Entries a crashed node left behind stop counting when they expire: fill sam's places with
    # entries that expired a second ago, as a node that died would leave them.
    await replacement.close()
    await second.close()
    await asyncio.sleep(0.5)
    key = f"counsel:chat:sockets:{cast['sam'].pk}"
    redis_client.zadd(key, {"dead-1": time.time() - 1, "dead-2": time.time() - 1})
    again = await chat(live_asgi, cast["sam"])
    assert not {b"dead-1", b"dead-2"} & set(redis_client.zrange(key, 0, -1))
    await again.close()
    await hana.close()


@pytest.mark.asyncio
async def test_endless_output_is_cut_with_a_note(cast, live_asgi, settings):
    settings.CHAT_MAX_ANSWER_TOKENS = 40
    sam, hana = await chat(live_asgi, cast["sam"]), await chat(live_asgi, cast["hana"])
    await sam.send(
        json.dumps({"type": "ask", "id": "e", "text": "What is Project KESTREL? [[fake:endless]]"})
    )
    hana_frames = await ask(hana, "What is the HR code name?", "h")  # served meanwhile
    assert hana_frames[-1]["type"] == "done" and not hana_frames[-1]["truncated"]
    frames = await until_end(sam, "e")
    done = frames[-1]
    assert done["type"] == "done" and done["truncated"] is True
    streamed = "".join(f["text"] for f in frames if f["type"] == "delta")
    body, note = streamed.split("\n\n(The answer was cut here")
    assert len(body.split()) == 40 and "limited to 40 tokens" in note
    assert "cut here" in done["html"]
    entry = await sync_to_async(QueryLogEntry.objects.get)(question__contains="endless")
    assert entry.outcome == "answered" and entry.answer.endswith("limited to 40 tokens.)")
    # The lock was released: sam's next question runs.
    assert (await ask(sam, "What is Project KESTREL?", "next"))[-1]["type"] == "done"
    await sam.close()
    await hana.close()


@pytest.mark.asyncio
async def test_a_stopped_server_closes_its_redis_connections_itself(cast, live_asgi):
    sam = await chat(live_asgi, cast["sam"])
    assert (await ask(sam, "What is Project KESTREL?", "k"))[-1]["type"] == "done"
    await sam.close()
    # Closed by the server at shutdown, not torn down with its loop (a ResourceWarning each).
    # catch_warnings records the server thread's warnings too: it swaps a process-wide hook.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        await asyncio.to_thread(live_asgi.stop)
    assert not live_asgi.thread.is_alive()
    assert [str(w.message) for w in caught if w.category is ResourceWarning] == []
