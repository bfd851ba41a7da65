"""The adapter pages show derived text only to those who read where it came from; hostile input
to the tuning forms and socket is refused with a reason, never a server error.

A training pair, a held-out question, a leak-probe question and an evaluation answer are copies
of (or answers about) facts of documents. "Manage adapters" may be granted to a role that reads
less than the adapter's profile, so the page must not become a way around the access model: the
demo's administrator reads only Company-wide and must not see Sales or Finance facts there.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from accounts.capabilities import Capability
from accounts.services import capability_permissions
from ingestion.models import Collection
from tests.factories import RoleFactory, UserFactory
from tests.tuning_support import load_demo, registered_adapter, sales_profile_key, user
from tuning.models import Adapter, AdapterDocument, RoleStrategy, TrainingExample

pytestmark = pytest.mark.django_db(transaction=True)

COMPANY_TEXT = ("COMPANYQ-Where is the canteen?", "COMPANYA-On the ground floor.")
SALES_TEXT = ("SALESQ-Who approves tier exceptions?", "SALESA-Head of Dealer Development.")
SALES_KEY = "SALESKEY-4711"
SALES_TITLE = "SALESTITLE Key Account Register"
FINANCE_PROBE = ("FINANCEQ-What is the budget reserve?", "FINANCEKEY-EUR 14.38 million")
MODEL_OUTPUTS = ("SAMPLEQ-asked in other words", "BASEOUT-base says", "ADAPTEROUT-adapter says")
LEAKED_ANSWER = "LEAKEDOUT-the adapter said EUR 14.38 million"
SECRETS_OF_SALES = (*SALES_TEXT, SALES_KEY, SALES_TITLE, *MODEL_OUTPUTS, LEAKED_ANSWER)
SECRETS_OF_FINANCE = (*FINANCE_PROBE, LEAKED_ANSWER)


def _collection(slug: str) -> int:
    return Collection.objects.get(slug=slug).pk


def _example(adapter, split, question, answer="", key="", collection=None, document=None):
    return TrainingExample.objects.create(
        adapter=adapter,
        split=split,
        kind="number",
        question=question,
        answer=answer,
        key=key,
        document_id=document,
        version=1 if document else None,
        collection_id=collection,
    )


@pytest.fixture
def sales_adapter() -> Adapter:
    """The Sales profile's adapter (Company-wide + Sales), with pairs from both collections, a
    leak probe from Finance and an evaluation that found a leak. No model, no indexing."""
    load_demo()
    company, sales, finance = (_collection(s) for s in ("company", "sales", "finance"))
    adapter = registered_adapter(state=Adapter.State.READY)
    adapter.metrics = {
        "heldout": {"n": 2, "base": 0.0, "adapter": 0.5, "rag": 0.5},
        "leak": {
            "n": 1,
            "leaks": 1,
            "leaked": [
                {"question": FINANCE_PROBE[0], "key": FINANCE_PROBE[1], "answer": LEAKED_ANSWER}
            ],
        },
        "prompt_tokens": {"tuned": 40, "rag": 900},
        "samples": [
            {
                "question": MODEL_OUTPUTS[0],
                "key": SALES_KEY,
                "base": MODEL_OUTPUTS[1],
                "adapter": MODEL_OUTPUTS[2],
                "rag": None,
                "hybrid": None,
            }
        ],
    }
    adapter.save()
    AdapterDocument.objects.create(
        adapter=adapter,
        document_id=910_001,
        document_title="Employee Handbook",
        collection_id=company,
        version=1,
        examples=1,
    )
    AdapterDocument.objects.create(
        adapter=adapter,
        document_id=910_002,
        document_title=SALES_TITLE,
        collection_id=sales,
        version=1,
        examples=1,
    )
    _example(adapter, "train", *COMPANY_TEXT, collection=company, document=910_001)
    _example(adapter, "train", *SALES_TEXT, collection=sales, document=910_002)
    _example(adapter, "train", "Write me a poem about the sea.", "I don't have that information.")
    _example(adapter, "heldout", "COMPANYHQ-canteen?", key="COMPANYKEY", collection=company,
             document=910_001)  # fmt: skip
    _example(adapter, "heldout", SALES_TEXT[0] + " (asked again)", key=SALES_KEY,
             collection=sales, document=910_002)  # fmt: skip
    _example(adapter, "probe", FINANCE_PROBE[0], "A Finance sentence.", FINANCE_PROBE[1],
             collection=finance, document=920_001)  # fmt: skip
    return adapter


def _page(client, username: str, adapter: Adapter) -> str:
    client.force_login(user(username))
    response = client.get(f"/manage/adapters/{adapter.pk}/")
    assert response.status_code == 200
    return response.content.decode()


def _grant_manage_adapters(role_name: str) -> None:
    role = Group.objects.get(name=role_name)
    role.permissions.add(*capability_permissions([Capability.MANAGE_ADAPTERS]))


def test_a_manager_who_reads_only_company_wide_sees_counts_not_sales_or_finance_text(
    client, sales_adapter
):
    html = _page(client, "admin", sales_adapter)  # the Administrator role reads Company-wide only
    assert not [s for s in (*SECRETS_OF_SALES, *SECRETS_OF_FINANCE) if s in html]
    # What they may read is still there, and so are the counts and scores.
    assert COMPANY_TEXT[0] in html and COMPANY_TEXT[1] in html and "COMPANYKEY" in html
    assert "Write me a poem about the sea." in html  # a generic refusal comes from no document
    assert "3 training pairs, 2 held-out paraphrases, 1 leak-probe questions" in html
    assert "1 leaked" in html and "0.5" in html
    # A plain note says why text is missing.
    assert "from collections you do not read" in html


def test_a_manager_who_reads_the_profile_sees_its_text_but_not_the_foreign_probe(
    client, sales_adapter
):
    _grant_manage_adapters("Sales")  # sam reads Company-wide and Sales: the whole profile
    html = _page(client, "sam", sales_adapter)
    assert all(s in html for s in (*SALES_TEXT, SALES_KEY, SALES_TITLE, *MODEL_OUTPUTS))
    # The probe's facts are Finance's, and a leaked answer states one of them.
    assert not [s for s in SECRETS_OF_FINANCE if s in html]
    assert "1 leaked" in html and "from collections you do not read" in html


def test_a_manager_who_reads_every_source_sees_all_text(client, sales_adapter):
    everything = RoleFactory(
        name="Auditors",
        reads=list(Collection.objects.all()),
        capabilities=[Capability.MANAGE_ADAPTERS],
    )
    UserFactory(username="audrey", roles=[everything])
    html = _page(client, "audrey", sales_adapter)
    assert all(s in html for s in (*SECRETS_OF_SALES, *SECRETS_OF_FINANCE, *COMPANY_TEXT))
    assert "from collections you do not read" not in html


def test_the_text_goes_as_soon_as_the_grant_does(client, sales_adapter):
    _grant_manage_adapters("Sales")
    assert SALES_TEXT[1] in _page(client, "sam", sales_adapter)
    Group.objects.get(name="Sales").readable_collections.remove(_collection("sales"))
    html = _page(client, "sam", sales_adapter)
    assert not [s for s in SECRETS_OF_SALES if s in html]


def test_a_pair_whose_source_collection_is_unknown_is_shown_to_nobody(client, sales_adapter):
    # Rows made before pairs recorded their collection, which could not be traced.
    _example(sales_adapter, "train", "UNTRACEDQ", "UNTRACEDA", document=910_003)
    everything = RoleFactory(
        name="Auditors",
        reads=list(Collection.objects.all()),
        capabilities=[Capability.MANAGE_ADAPTERS],
    )
    UserFactory(username="audrey", roles=[everything])
    html = _page(client, "audrey", sales_adapter)
    assert "UNTRACEDQ" not in html and "UNTRACEDA" not in html
    assert "4 training pairs" in html


def test_a_stale_reason_does_not_name_the_training_document(client):
    # The reason is shown on the list, the page and the live socket to every adapter manager,
    # whatever they read; the page's document table says which one changed to those who may.
    from tuning import services

    load_demo("sales")
    adapter = registered_adapter()
    row = adapter.documents.first()
    AdapterDocument.objects.filter(pk=row.pk).update(version=row.version + 1)
    assert services.adapters_mark_stale(document_ids=[row.document_id], reason="has a new version")
    adapter.refresh_from_db()
    assert adapter.state == Adapter.State.STALE and "has a new version" in adapter.state_reason
    assert row.document_title not in adapter.state_reason
    client.force_login(user("admin"))
    assert row.document_title not in client.get("/manage/adapters/").content.decode()


def test_the_training_set_records_each_pairs_collection():
    from tuning import services

    load_demo("company", "sales", "hr")
    adapter = services.adapter_create(actor=user("admin"), profile_key=sales_profile_key())
    services.dataset_build(adapter=adapter)
    by_slug = dict(Collection.objects.values_list("slug", "pk"))
    trained_from = dict(adapter.documents.values_list("document_id", "collection_id"))
    for example in adapter.examples.exclude(split="probe"):
        assert example.collection_id == trained_from.get(example.document_id), example
    probe = list(adapter.examples.filter(split="probe"))
    assert probe and {e.collection_id for e in probe} == {by_slug["hr"]}


# --- hostile input ------------------------------------------------------------------------------

HOSTILE_IDS = ["²", "١٢", "\x00", "1\x00", "9" * 40, "2147483648", "9223372036854775808", "-1",
               "0", "999999", "", " 1", "1.0", "\uff58"]  # fmt: skip


@pytest.fixture
def admin_client(client):
    load_demo()
    client.force_login(user("admin"))
    return client


@pytest.mark.parametrize("value", HOSTILE_IDS)
def test_a_hostile_role_in_the_routing_form_is_refused_with_a_reason(admin_client, value):
    response = admin_client.post("/manage/adapters/routing/", {"role": value, "strategy": "rag"})
    assert 400 <= response.status_code < 500 or response.status_code == 302
    if response.status_code == 302:
        page = admin_client.get(response.url).content.decode()
        assert "Routing not saved" in page
    assert not RoleStrategy.objects.exists()


@pytest.mark.parametrize("value", ["²", "\x00", "rag\x00", "x" * 10_000, "\ufffd"])
def test_a_hostile_strategy_in_the_routing_form_is_refused_with_a_reason(admin_client, value):
    sales = Group.objects.get(name="Sales")
    response = admin_client.post("/manage/adapters/routing/", {"role": sales.pk, "strategy": value})
    assert response.status_code == 302
    assert "Routing not saved" in admin_client.get(response.url).content.decode()
    assert not RoleStrategy.objects.exists()


def test_a_lone_surrogate_in_the_routing_form_is_refused_with_a_reason(admin_client):
    for body in ("role=%ED%A0%80&strategy=rag", "role=1&strategy=%ED%A0%80", "role=%FF%FE"):
        response = admin_client.post(
            "/manage/adapters/routing/", body, content_type="application/x-www-form-urlencoded"
        )
        assert 400 <= response.status_code < 500 or response.status_code == 302
    assert not RoleStrategy.objects.exists()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("rank", "²"),
        ("epochs", "\x00"),
        ("max_steps", "9" * 12),
        ("max_steps", "2147483648"),
        ("learning_rate", "nan"),
        ("learning_rate", "1e400"),
        ("profile_key", "ap-\x00"),
        ("profile_key", "²" * 40),
    ],
)
def test_hostile_training_settings_are_refused_with_a_reason(admin_client, field, value):
    data = {"profile_key": sales_profile_key(), "rank": 8, "epochs": 2, "learning_rate": "0.001",
            "max_steps": 0, field: value}  # fmt: skip
    response = admin_client.post("/manage/adapters/train/", data)
    assert response.status_code == 302
    assert "Check the training settings" in admin_client.get(response.url).content.decode()
    assert not Adapter.objects.exists()


@pytest.mark.parametrize("action", ["", "activate/", "retire/", "cancel/"])
def test_adapter_ids_beyond_any_column_are_not_found(admin_client, action):
    for pk in ("9" * 40, "9223372036854775808", "0"):
        url = f"/manage/adapters/{pk}/{action}"
        response = admin_client.post(url) if action else admin_client.get(url)
        assert response.status_code == 404


async def _adapters_socket(username: str):
    """The adapter pages' socket, opened as `username` by a page of this site."""
    from asgiref.sync import sync_to_async
    from channels.testing import WebsocketCommunicator
    from django.conf import settings
    from django.test import Client

    from config.asgi import application

    def cookie() -> bytes:
        client = Client()
        client.force_login(user(username))
        name = settings.SESSION_COOKIE_NAME
        return f"{name}={client.cookies[name].value}".encode()

    headers = [(b"host", b"localhost"), (b"origin", b"http://localhost")]
    ws = WebsocketCommunicator(
        application, "/ws/adapters/", headers=[*headers, (b"cookie", await sync_to_async(cookie)())]
    )
    connected, _ = await ws.connect()
    assert connected
    return ws


@pytest.mark.asyncio
async def test_the_live_view_ignores_ids_beyond_any_column():
    from asgiref.sync import sync_to_async

    await sync_to_async(load_demo)()
    ready = await sync_to_async(registered_adapter)(state=Adapter.State.READY)
    ws = await _adapters_socket("admin")
    await ws.send_json_to({"type": "sync", "ids": [10**40, 2**63, -(2**63) - 1, ready.pk]})
    message = await ws.receive_json_from(timeout=10)
    assert message["type"] == "progress" and message["id"] == ready.pk
    assert await ws.receive_nothing(timeout=0.5)
    await ws.disconnect()
