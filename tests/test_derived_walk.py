"""Every page and API, as every demo user, after a revocation: no fact of a collection the
viewer cannot read (issue 15, "done when").

What is derived from documents is made for real on the demo company (Sales and HR indexed): chat
answers with their quotes and citations (FAKE model, which echoes its sources), an adapter's
training pairs, held-out keys and leak-probe items (built by the tuning service from the
indexed documents), a query-log export, the audit trail. Then max loses the Sales role (keeping
Engineering) and Sales Operations loses the Sales collection (omar). Then every GET route of the
URL configuration — found by walking it, so a new page is walked too — is requested with every
object id it takes, as each of the ten demo users, and the answers are searched for the manifest's
canaries of the collections that user cannot read now.

The one designed exception: the compliance officer reviews every question, and the query log
keeps by value what each answer was given (docs/compliance.md); the officer's `/compliance/`
pages are therefore not searched for the officer (every other page is, and everyone else's).
"""

from __future__ import annotations

import contextlib
import html
import json
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from accounts.models import ApiToken, DirectoryGroup, DirectoryGroupMapping, ScimToken, User
from accounts.selectors import user_readable_collection_ids
from assistant.models import Conversation, Message
from assistant.services import Ask, chat_answer
from compliance.models import QueryLogEntry, QueryLogExport
from compliance.services import querylog_export_request, querylog_export_run
from ingestion.models import Collection, Document
from tests.tuning_support import load_demo, registered_adapter
from tuning.models import Adapter
from tuning.services import dataset_build

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

MANIFEST = json.loads(Path("demo/manifest.json").read_text())
DEMO_USERS = ["admin", "compliance", "sam", "hana", "eli", "fiona", "max", "omar", "erin", "nora"]
# Which objects a route's parameters name, by the route's name.
POOLS = {
    "token_revoke": {"pk": ApiToken},
    "user_token_revoke": {"pk": User, "token_pk": ApiToken},
    "feedback": {"pk": Message},
    "answer": {"pk": Message},  # one answer alone: previews, "why this answer" (issue 19)
    "directory_mapping_remove": {"pk": DirectoryGroupMapping},
    "scim_token_revoke": {"pk": ScimToken},
    "group": {"pk": DirectoryGroup},  # SCIM (bearer tokens only: a session gets 401)
    "user": {"pk": User},
}
POOLS_BY_WORD = [
    ("user", User),
    ("role", Group),
    ("collection", Collection),
    ("document", Document),
    ("conversation", Conversation),
    ("adapter", Adapter),
    ("entry", QueryLogEntry),
]


def _routes():
    """(namespace:name, parameter names) of every route, the Django admin's aside (it opens to
    superusers only, none of the demo users, and is read-only: tests/test_admin_doors.py)."""

    def walk(resolver, namespace):
        for p in resolver.url_patterns:
            if isinstance(p, URLResolver):
                if p.namespace != "admin":
                    yield from walk(p, p.namespace or namespace)
            elif isinstance(p, URLPattern) and p.name:
                name = f"{namespace}:{p.name}" if namespace else p.name
                yield name, list(getattr(p.pattern, "converters", {}))

    return sorted({(n, tuple(params)) for n, params in walk(get_resolver(), None)})


def _values(route: str, param: str) -> list:
    short = route.split(":")[-1]
    model = POOLS.get(short, {}).get(param)
    if model is None and param == "token":
        return list(QueryLogExport.objects.order_by("-pk").values_list("token", flat=True)[:10])
    if model is None and param == "pk":
        model = next((m for word, m in POOLS_BY_WORD if word in short), None)
    assert model is not None, f"the walk does not know what {route}'s {param} names: add it"
    # The newest: what this test derived (the demo also seeds three weeks of older questions).
    return list(model.objects.order_by("-pk").values_list("pk", flat=True)[:60])


def _urls() -> list[str]:
    urls = []
    for route, params in _routes():
        if not params:
            urls.append(reverse(route))
            continue
        combos = [{}]
        for param in params:
            combos = [{**c, param: v} for c in combos for v in _values(route, param)]
        urls += [reverse(route, kwargs=c) for c in combos]
    return urls


def _recover_urls() -> list[str]:
    """The answer recovery route (issue 19) for every recorded question's client id: it takes
    its id in the query string, which the route walk cannot know."""
    ids = Message.objects.exclude(client_id="").values_list("client_id", flat=True).distinct()
    return [f"{reverse('assistant:answer_recover')}?question={i}" for i in ids]


def _body(response) -> str:
    if getattr(response, "streaming", False):
        raw = b"".join(response.streaming_content)
    else:
        raw = response.content
    text = raw.decode("utf-8", "replace")
    if response.get("Content-Type", "").startswith("application/json"):
        with contextlib.suppress(ValueError):
            text = json.dumps(json.loads(text), ensure_ascii=False)
    return text


def _canaries_outside(user) -> dict[str, str]:
    readable = {
        c.slug for c in Collection.objects.filter(pk__in=user_readable_collection_ids(user=user))
    }
    return {
        c["token"]: c["collection"] for c in MANIFEST["canaries"] if c["collection"] not in readable
    }


def _found(text: str, tokens) -> list[str]:
    return [t for t in tokens if t in text or html.escape(t) in text]


def _ask(username: str, question: str, conversation: int | None = None) -> dict:
    user_id = User.objects.get(username=username).pk
    # A client id as the page sends one: the recovery route finds answers by it.
    client_id = f"walk-{Message.objects.count()}"

    async def run():
        ask = Ask(
            user_id=user_id, question=question, conversation_id=conversation, client_id=client_id
        )
        return [e async for e in chat_answer(ask)]

    return async_to_sync(run)()[-1]


def _derive_everything() -> dict:
    """Answers, an adapter's pairs and probe, an export: everything derived, made for real."""
    asked = {}
    for canary in MANIFEST["canaries"]:
        if canary["collection"] == "sales":
            for username in ("sam", "max", "omar"):
                asked.setdefault(username, []).append(
                    _ask(username, canary["question"] + " [[fake:quote]]")
                )
        if canary["collection"] == "hr":
            asked.setdefault("hana", []).append(
                _ask("hana", canary["question"] + " [[fake:quote]]")
            )
    adapter = registered_adapter()
    assert dataset_build(adapter=adapter) > 0
    officer = User.objects.get(username="compliance")
    export = querylog_export_request(officer=officer, filters={}, export_format="csv")
    querylog_export_run(export_id=export.pk)
    return {"asked": asked, "adapter": adapter}


def _walk(username: str, urls: list[str]) -> dict[str, list[str]]:
    user = User.objects.get(username=username)
    forbidden = _canaries_outside(user)
    client = Client(raise_request_exception=False)
    client.force_login(user)
    leaks = {}
    for url in urls:
        if username == "compliance" and url.startswith("/compliance/"):
            continue  # the designed exception: the officer reviews every question
        response = client.get(url)
        assert response.status_code < 500, (username, url, response.status_code)
        found = _found(_body(response), forbidden)
        if found:
            leaks[url] = found
    for canary in MANIFEST["canaries"]:  # the search API, asked for every canary
        response = client.get("/api/search/", {"q": canary["question"], "k": 10})
        found = _found(_body(response), forbidden)
        if found:
            leaks[f"/api/search/?q={canary['question']}"] = found
    return leaks


def test_no_page_or_api_shows_a_fact_its_viewer_cannot_read_after_a_revocation(settings):
    settings.CHAT_RATE_PER_MINUTE = 100_000
    load_demo("sales", "hr")
    derived = _derive_everything()
    # The walk can find what it looks for: before the revocation, max's answers show Sales facts.
    max_conversation = derived["asked"]["max"][0]["conversation"]
    client = Client()
    client.force_login(User.objects.get(username="max"))
    before = client.get(f"/chat/{max_conversation}/").content.decode()
    sales_tokens = [c["token"] for c in MANIFEST["canaries"] if c["collection"] == "sales"]
    assert _found(before, sales_tokens), "the answers hold no canary: the walk would prove nothing"

    User.objects.get(username="max").groups.remove(Group.objects.get(name="Sales"))
    Collection.objects.get(slug="sales").readers.remove(Group.objects.get(name="Sales Operations"))

    urls = _urls() + _recover_urls()
    assert len(urls) > 100
    leaks = {username: _walk(username, urls) for username in DEMO_USERS}
    assert not any(leaks.values()), {u: found for u, found in leaks.items() if found}
