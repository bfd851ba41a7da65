"""Hostile strings to every form, every API parameter and every chat frame: never a server
error, and every chat question logged (issue 15, "done when").

The routes are found by walking the URL configuration; each route's fields are the names in its
own page's forms plus the query parameters the views read. Values are sent as bytes, the way a
browser or a script would send them: NUL, half a surrogate pair (invalid UTF-8), control and
bidirectional characters, Unicode digits, overlong values, injection-looking text. Found by it
before the fixes: `/api/search/?q=a%00b` (500 with the debug page), a routing form value of `²`.
"""

from __future__ import annotations

import json
import re
from urllib.parse import quote_from_bytes

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse

from accounts.capabilities import ADMINISTRATOR, COMPLIANCE_OFFICER
from compliance.models import QueryLogEntry
from tests.factories import UserFactory
from tests.test_chat import build_cast, connect
from tests.test_derived_walk import _routes, _values

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

HOSTILE: list[bytes] = [
    b"\x00",
    b"a\x00b",
    b"\xed\xa0\x80",  # a lone surrogate, as UTF-8 would encode it (invalid)
    b"\xff\xfe",
    "\u202e\u2066gnp.exe\u2069".encode(),
    b"\x07\x08\x1b[2J\r\n\t",
    "²".encode(),
    "١٢".encode(),
    "\uff19".encode(),  # fullwidth nine
    b"9" * 40,
    b"-1",
    b"1e309",
    b"A" * 70_000,
    b"' OR 1=1 --",
    b"<script>alert(1)</script>",
    b"../../etc/passwd",
    "\u200b".encode(),
]
# Query parameters the views read without a form on their page.
COMMON = ["q", "k", "page", "collection", "state", "next", "cursor", "after", "before", "format"]
# Sending these would end the session the fuzzing runs in.
SKIP = {"accounts:logout"}
_NAME = re.compile(r'name="([A-Za-z_][\w-]*)"')


def _encoded(fields: list[str], value: bytes) -> str:
    return "&".join(f"{name}={quote_from_bytes(value)}" for name in fields)


def _fields(client: Client, url: str) -> list[str]:
    response = client.get(url)
    names = set(_NAME.findall(response.content.decode("utf-8", "replace")))
    return sorted((names | set(COMMON)) - {"csrfmiddlewaretoken"})


def _who(route: str) -> str:
    if route.startswith("compliance:"):
        return "officer"
    if route.startswith(("accounts:", "ingestion:", "tuning:")) and "document_view" not in route:
        return "admin"
    return "sam"


def test_no_form_or_parameter_gets_a_server_error():
    cast = build_cast()
    users = {
        "sam": cast["sam"],
        "admin": UserFactory(username="ada", roles=[Group.objects.get(name=ADMINISTRATOR)]),
        "officer": UserFactory(username="cora", roles=[Group.objects.get(name=COMPLIANCE_OFFICER)]),
    }
    clients = {}
    for name, user in users.items():
        clients[name] = Client(raise_request_exception=False)
        clients[name].force_login(user)
    errors = []
    for route, params in _routes():
        if route in SKIP:
            continue
        kwargs = {}
        for param in params:
            values = _values(route, param)
            if not values:
                break
            kwargs[param] = values[-1]
        else:
            url = reverse(route, kwargs=kwargs)
            client = clients[_who(route)]
            fields = _fields(client, url)
            for value in HOSTILE:
                body = _encoded(fields, value)
                for method, response in (
                    ("GET", client.get(f"{url}?{body}")),
                    (
                        "POST",
                        client.post(url, body, content_type="application/x-www-form-urlencoded"),
                    ),
                ):
                    if response.status_code >= 500:
                        errors.append((method, url, value[:20], response.status_code))
                if route.startswith("ingestion:api_"):  # the JSON API reads JSON bodies too
                    text = value.decode("utf-8", "surrogateescape")
                    payload = json.dumps(dict.fromkeys(fields, text), ensure_ascii=True)
                    payload = payload.replace("\\udced\\udca0\\udc80", "\\ud800")
                    response = client.post(url, payload, content_type="application/json")
                    if response.status_code >= 500:
                        errors.append(("POST json", url, value[:20], response.status_code))
    assert not errors, sorted({(method, url) for method, url, _, _ in errors})


@pytest.mark.asyncio
async def test_hostile_chat_frames_never_break_the_socket_and_every_question_is_logged(settings):
    settings.CHAT_RATE_PER_MINUTE = 100_000
    cast = await sync_to_async(build_cast)()
    ws = await connect(cast["sam"])
    questions = []
    for n, raw in enumerate(HOSTILE):
        text = raw.decode("utf-8", "surrogateescape").replace("\udced\udca0\udc80", "\ud800")
        text = text[:15_000]  # under the frame limit: a question, not an oversized frame
        qid = f"f{n}"
        await ws.send_json_to({"type": "ask", "id": qid, "text": f"What is {text}?"})
        while True:
            frame = await ws.receive_json_from(timeout=20)
            if frame.get("id") == qid and frame["type"] in ("done", "error", "stopped"):
                break
        assert "Traceback" not in str(frame.get("message", ""))
        questions.append(qid)
    # The socket still answers after all of it.
    await ws.send_json_to({"type": "ask", "id": "last", "text": "What is Project KESTREL?"})
    while True:
        frame = await ws.receive_json_from(timeout=20)
        if frame.get("id") == "last" and frame["type"] in ("done", "error"):
            break
    assert frame["type"] == "done"
    await ws.disconnect()
    logged = await sync_to_async(
        QueryLogEntry.objects.filter(kind=QueryLogEntry.Kind.QUESTION).count
    )()
    assert logged == len(questions) + 1
