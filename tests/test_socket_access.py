"""Who may open a websocket and keep it, over real websockets to the real ASGI server (uvicorn),
the Redis channel layer and sessions in PostgreSQL: unknown paths, origins, close codes a page
can read, and sessions that end while a socket is open.

Cast: sam and omar may chat and read nothing (their questions are answered "not found" by the
FAKE model, which is enough to see that a socket still answers), nora may not chat, ada is an
administrator (documents, adapters, users).
"""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
import websockets
from asgiref.sync import sync_to_async
from django.conf import settings as django_settings
from django.contrib.auth.models import Group
from django.contrib.sessions.models import Session
from django.test import Client

from accounts import services
from accounts.capabilities import ADMINISTRATOR
from accounts.models import User
from compliance.models import QueryLogEntry
from tests.factories import PASSWORD, RoleFactory, UserFactory

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# The close codes of docs/chat-protocol.md, spelled out: the tests say what the page reads.
NO_SESSION, NOT_ALLOWED, SESSION_ENDED = 4401, 4403, 4410


@pytest.fixture
def cast(transactional_db):
    readers = RoleFactory(name="Readers")  # may chat, reads no collection
    return {
        "sam": UserFactory(username="sam", roles=[readers]),
        "omar": UserFactory(username="omar", roles=[readers]),
        "nora": UserFactory(username="nora"),
        "ada": UserFactory(username="ada", roles=[Group.objects.get(name=ADMINISTRATOR)]),
    }


class Visitor:
    """One browser's session of a user: a Django test client signed in, and its cookie."""

    def __init__(self, user: User) -> None:
        self.client = Client()
        self.client.force_login(user)

    @property
    def cookie(self) -> str:
        name = django_settings.SESSION_COOKIE_NAME
        return f"{name}={self.client.cookies[name].value}"

    @property
    def session_key(self) -> str:
        return self.client.cookies[django_settings.SESSION_COOKIE_NAME].value


async def visitor(user: User) -> Visitor:
    return await sync_to_async(Visitor)(user)


async def dial(live_asgi, path: str, *, cookie: str = "", origin: str | None = None,
               host: str = "127.0.0.1", headers: dict | None = None):  # fmt: skip
    """A websocket to the live server as a browser opens it: the Host header names `host`
    (the TCP connection goes to 127.0.0.1 whatever it says) and Origin is the page's own
    unless `origin` says otherwise ("" sends none)."""
    netloc = f"{host}:{live_asgi.port}"
    sent = dict(headers or {})
    origin = f"http://{netloc}" if origin is None else origin
    if origin:
        sent["Origin"] = origin
    if cookie:
        sent["Cookie"] = cookie
    return await websockets.connect(
        f"ws://{netloc}{path}",
        host="127.0.0.1",
        port=live_asgi.port,
        additional_headers=sent,
        open_timeout=10,
    )


async def chat(live_asgi, guest: Visitor):
    ws = await dial(live_asgi, "/ws/chat/", cookie=guest.cookie)
    assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "hello"
    return ws


async def ask(ws, qid: str, text: str = "What is the travel policy?") -> list[dict]:
    await ws.send(json.dumps({"type": "ask", "id": qid, "text": text}))
    frames = []
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 30))
        frames.append(frame)
        if frame.get("id") == qid and frame["type"] in ("done", "error", "stopped"):
            return frames


async def closed_with(ws, timeout: float = 10) -> tuple[int | None, list[dict]]:
    """Read until the server closes the socket: its close code and the frames before it."""
    frames = []
    try:
        while True:
            frames.append(json.loads(await asyncio.wait_for(ws.recv(), timeout)))
    except websockets.ConnectionClosed as closed:
        return (closed.rcvd.code if closed.rcvd else None), frames


async def refused_status(live_asgi, path: str, **kwargs) -> int:
    """The HTTP status of a handshake the server refuses before accepting it."""
    with pytest.raises(websockets.InvalidStatus) as refused:
        ws = await dial(live_asgi, path, **kwargs)
        await ws.close()
    return refused.value.response.status_code


async def log_entries() -> int:
    return await sync_to_async(QueryLogEntry.objects.count)()


class ErrorLog(logging.Handler):
    """Collects ERROR records of the server's loggers (uvicorn's own do not reach the root)."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []
        self.loggers = [logging.getLogger(name) for name in ("", "uvicorn", "uvicorn.error")]

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def __enter__(self) -> ErrorLog:
        for logger in self.loggers:
            logger.addHandler(self)
        return self

    def __exit__(self, *exc) -> None:
        for logger in self.loggers:
            logger.removeHandler(self)


# --- (A) a path no consumer serves ------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_socket_to_an_unknown_path_is_refused_without_a_server_error(cast, live_asgi):
    sam = await visitor(cast["sam"])
    with ErrorLog() as errors:
        assert await refused_status(live_asgi, "/ws/nope/") == 403
        assert await refused_status(live_asgi, "/ws/nope/", cookie=sam.cookie) == 403
        assert await refused_status(live_asgi, "/not-a-socket-path") == 403
    assert [r.getMessage() for r in errors.records] == []
    # The known paths still work.
    ws = await chat(live_asgi, sam)
    await ws.close()


# --- (C) the Origin: scheme, host and port ----------------------------------------------------


@pytest.mark.asyncio
async def test_a_socket_from_another_scheme_port_or_host_is_refused(cast, live_asgi):
    sam = await visitor(cast["sam"])
    port = live_asgi.port
    for origin in (
        "http://localhost:1234",  # another port of the same host
        f"https://localhost:{port}",  # another scheme
        f"http://localhost:{port}.evil.example",  # a host that only begins like ours
        "http://evil.example",
        f"http://127.0.0.1:{port}",  # the same server under another name is another origin
        "null",  # a sandboxed frame or a file
        "",  # no Origin at all
    ):
        status = await refused_status(
            live_asgi, "/ws/chat/", cookie=sam.cookie, host="localhost", origin=origin
        )
        assert status == 403, origin
    # A page served under a name that is not an allowed host (DNS rebinding) is refused although
    # its Origin matches its Host.
    evil = f"http://evil.example:{port}"
    status = await refused_status(
        live_asgi, "/ws/chat/", cookie=sam.cookie, host="evil.example", origin=evil
    )
    assert status == 403


@pytest.mark.asyncio
async def test_a_socket_from_the_pages_own_origin_or_a_trusted_one_is_accepted(
    cast, live_asgi, settings
):
    sam = await visitor(cast["sam"])
    port = live_asgi.port
    ws = await dial(
        live_asgi,
        "/ws/chat/",
        cookie=sam.cookie,
        host="localhost",
        origin=f"http://localhost:{port}",
    )
    assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "hello"
    await ws.close()
    # Behind TLS termination the socket is wss (the proxy says so; uvicorn trusts 127.0.0.1):
    # then the page's origin is https, and plain http is another origin.
    https = {"X-Forwarded-Proto": "https"}
    ws = await dial(
        live_asgi,
        "/ws/chat/",
        cookie=sam.cookie,
        host="localhost",
        origin=f"https://localhost:{port}",
        headers=https,
    )
    assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "hello"
    await ws.close()
    status = await refused_status(
        live_asgi,
        "/ws/chat/",
        cookie=sam.cookie,
        host="localhost",
        origin=f"http://localhost:{port}",
        headers=https,
    )
    assert status == 403
    # CSRF_TRUSTED_ORIGINS are trusted here too, exactly (scheme, host and port) or by subdomain.
    settings.CSRF_TRUSTED_ORIGINS = ["https://counsel.example.com", "https://*.intranet.example"]
    for origin in ("https://counsel.example.com", "https://chat.intranet.example"):
        ws = await dial(live_asgi, "/ws/chat/", cookie=sam.cookie, origin=origin)
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "hello"
        await ws.close()
    for origin in ("http://counsel.example.com", "https://counsel.example.com:8443"):
        assert await refused_status(live_asgi, "/ws/chat/", cookie=sam.cookie, origin=origin) == 403


# --- (E) refusals a page can read -------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_refused_socket_is_accepted_then_closed_with_a_code_the_page_can_read(
    cast, live_asgi
):
    for path in ("/ws/chat/", "/ws/documents/", "/ws/adapters/", "/ws/ping/"):
        code, frames = await closed_with(await dial(live_asgi, path))
        assert code == NO_SESSION, path
        assert frames[-1]["type"] == "error" and frames[-1]["fatal"], path
    nora = await visitor(cast["nora"])  # no role: may not chat
    code, frames = await closed_with(await dial(live_asgi, "/ws/chat/", cookie=nora.cookie))
    assert code == NOT_ALLOWED
    assert "may not use the chat" in frames[-1]["message"]
    sam = await visitor(cast["sam"])  # may chat, manages nothing
    for path in ("/ws/documents/", "/ws/adapters/"):
        code, _ = await closed_with(await dial(live_asgi, path, cookie=sam.cookie))
        assert code == NOT_ALLOWED, path


# --- (D) sessions that end while a socket is open ---------------------------------------------


@pytest.mark.asyncio
async def test_signing_out_closes_that_sessions_sockets_and_no_other(cast, live_asgi):
    here, there = await visitor(cast["sam"]), await visitor(cast["sam"])  # two browsers
    chat_here, chat_there = await chat(live_asgi, here), await chat(live_asgi, there)
    ping_here = await dial(live_asgi, "/ws/ping/", cookie=here.cookie)
    await sync_to_async(here.client.post)("/accounts/logout/")
    for ws in (chat_here, ping_here):
        code, frames = await closed_with(ws)
        assert code == SESSION_ENDED
        assert frames[-1]["fatal"] and "session has ended" in frames[-1]["message"]
    # The other browser's session is still valid: its socket stays open and answers.
    assert (await ask(chat_there, "q1"))[-1]["type"] == "done"
    await chat_there.close()


@pytest.mark.asyncio
async def test_a_password_change_closes_every_socket_of_that_user(cast, live_asgi):
    here, there = await visitor(cast["sam"]), await visitor(cast["sam"])
    omar = await visitor(cast["omar"])
    chat_here, chat_there = await chat(live_asgi, here), await chat(live_asgi, there)
    chat_omar = await chat(live_asgi, omar)
    new = "a-brand-new-passphrase-42"
    response = await sync_to_async(here.client.post)(
        "/accounts/password/",
        {"old_password": PASSWORD, "new_password1": new, "new_password2": new},
    )
    assert response.status_code == 302
    for ws in (chat_here, chat_there):
        code, _ = await closed_with(ws)
        assert code == SESSION_ENDED
    # The browser that changed it keeps a valid session (a new key) and opens a new socket;
    # another user is not touched.
    ws = await chat(live_asgi, here)
    await ws.close()
    assert (await ask(chat_omar, "q1"))[-1]["type"] == "done"
    await chat_omar.close()


@pytest.mark.asyncio
async def test_an_administrators_reset_or_deactivation_closes_that_users_sockets(cast, live_asgi):
    sam, omar = await visitor(cast["sam"]), await visitor(cast["omar"])
    ada = await visitor(cast["ada"])
    sam_chat, omar_chat = await chat(live_asgi, sam), await chat(live_asgi, omar)
    ada_documents = await dial(live_asgi, "/ws/documents/", cookie=ada.cookie)
    await sync_to_async(services.user_reset_password)(actor=cast["ada"], user=cast["sam"])
    code, frames = await closed_with(sam_chat)
    assert code == SESSION_ENDED and frames[-1]["fatal"]
    await sync_to_async(services.user_set_active)(
        actor=cast["ada"], user=cast["omar"], active=False
    )
    code, _ = await closed_with(omar_chat)
    assert code == SESSION_ENDED
    # The administrator's own socket is not closed by what she did to others.
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(ada_documents.recv(), 1)
    await ada_documents.close()


async def _end_behind_the_apps_back(how: str, user: User, guest: Visitor) -> None:
    """Change the session or the user in the database directly: no signal is sent, so only the
    socket's own check before a question can notice."""

    def change() -> None:
        if how == "session deleted":
            Session.objects.filter(session_key=guest.session_key).delete()
        elif how == "password replaced":
            User.objects.filter(pk=user.pk).update(password="md5$other$0123456789abcdef")
        elif how == "deactivated":
            User.objects.filter(pk=user.pk).update(is_active=False)
        elif how == "temporary password":
            User.objects.filter(pk=user.pk).update(must_change_password=True)

    await sync_to_async(change)()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("how", "code"),
    [
        ("session deleted", SESSION_ENDED),
        ("password replaced", SESSION_ENDED),
        ("deactivated", SESSION_ENDED),
        ("temporary password", NOT_ALLOWED),
    ],
)
async def test_each_question_checks_the_session_first_and_a_refused_one_is_not_logged(
    cast, live_asgi, how, code
):
    sam = await visitor(cast["sam"])
    ws = await chat(live_asgi, sam)
    assert (await ask(ws, "before"))[-1]["type"] == "done"
    logged = await log_entries()
    await _end_behind_the_apps_back(how, cast["sam"], sam)
    await ws.send(json.dumps({"type": "ask", "id": "after", "text": "What is the travel policy?"}))
    closed, frames = await closed_with(ws)
    assert closed == code
    assert [f["type"] for f in frames] == ["error"]
    assert frames[0]["id"] == "after" and frames[0]["fatal"]
    # Refused before it was taken as a question: no answer, no query-log entry.
    assert await log_entries() == logged


@pytest.mark.asyncio
async def test_a_temporary_password_is_enforced_on_the_socket_and_the_session_api(cast, live_asgi):
    sam = cast["sam"]
    await sync_to_async(User.objects.filter(pk=sam.pk).update)(must_change_password=True)
    guest = await visitor(sam)
    code, frames = await closed_with(await dial(live_asgi, "/ws/chat/", cookie=guest.cookie))
    assert code == NOT_ALLOWED
    assert "temporary password" in frames[-1]["message"]
    # The JSON API refuses the session with a JSON reason (not a redirect to an HTML form).
    response = await sync_to_async(guest.client.get)("/api/search/", {"q": "travel"})
    assert response.status_code == 403
    assert "temporary password" in response.json()["error"]
    # A bearer token acts as its user, who may make one under /accounts/ meanwhile: refused too,
    # until the password is the user's own.
    _, raw = await sync_to_async(services.api_token_create)(actor=None, user=sam, name="script")
    bearer = {"Authorization": f"Bearer {raw}"}
    response = await sync_to_async(Client().get)("/api/search/", {"q": "travel"}, headers=bearer)
    assert response.status_code == 403
    assert "temporary password" in response.json()["error"]
    await sync_to_async(User.objects.filter(pk=sam.pk).update)(must_change_password=False)
    response = await sync_to_async(Client().get)("/api/search/", {"q": "travel"}, headers=bearer)
    assert response.status_code == 200
