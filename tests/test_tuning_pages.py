"""The adapter pages: who may see them, training from the form, decisions, routing per role."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from accounts.models import AuditEvent
from tests.tuning_support import load_demo, registered_adapter, sales_profile_key, user
from tuning.models import Adapter, RoleStrategy

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def admin_client(client):
    load_demo()  # roles, collections, users; nothing indexed (fast)
    client.force_login(user("admin"))
    return client


def test_only_adapter_managers_reach_the_pages(client):
    load_demo()
    client.force_login(user("sam"))
    assert client.get("/manage/adapters/").status_code == 403
    assert client.post("/manage/adapters/train/", {"profile_key": "x"}).status_code == 403
    client.logout()
    assert client.get("/manage/adapters/").status_code == 302  # to the sign-in page


def test_admin_sees_every_profile_and_trains_one_from_the_form(
    admin_client, django_capture_on_commit_callbacks
):
    page = admin_client.get("/manage/adapters/")
    assert page.status_code == 200
    assert sales_profile_key() in page.content.decode()
    with django_capture_on_commit_callbacks(execute=False):
        response = admin_client.post(
            "/manage/adapters/train/",
            {
                "profile_key": sales_profile_key(),
                "rank": 8,
                "epochs": 2,
                "learning_rate": "0.002",
                "max_steps": 10,
            },
        )
    adapter = Adapter.objects.get()
    assert response.status_code == 302 and response.url == f"/manage/adapters/{adapter.pk}/"
    assert (adapter.rank, adapter.epochs, adapter.learning_rate, adapter.max_steps) == (
        8,
        2,
        0.002,
        10,
    )
    assert adapter.state == "training" and adapter.phase == "queued"
    assert AuditEvent.objects.filter(action="adapter.train").exists()
    detail = admin_client.get(response.url).content.decode()
    assert "Cancel training" in detail and "Not evaluated yet" in detail


def test_bad_training_input_is_refused_with_a_message_and_creates_nothing(admin_client):
    response = admin_client.post(
        "/manage/adapters/train/",
        {
            "profile_key": sales_profile_key(),
            "rank": 0,
            "epochs": 2,
            "learning_rate": "x",
            "max_steps": 0,
        },
        follow=True,
    )
    assert "Check the training settings" in response.content.decode()
    response = admin_client.post(
        "/manage/adapters/train/",
        {
            "profile_key": "ap-nothere",
            "rank": 8,
            "epochs": 2,
            "learning_rate": "0.001",
            "max_steps": 0,
        },
        follow=True,
    )
    assert "does not exist" in response.content.decode()
    assert not Adapter.objects.exists()


def test_evaluation_is_shown_side_by_side_with_a_chart_and_activation_is_audited(admin_client):
    adapter = registered_adapter(state=Adapter.State.READY, accuracy=0.7)
    adapter.loss_history = [[1, 3.2], [2, 2.1]]
    adapter.save()
    html = admin_client.get(f"/manage/adapters/{adapter.pk}/").content.decode()
    assert 'svg class="chart accuracy"' in html and '<polyline points="' in html
    assert "clean" in html and "0.7" in html
    response = admin_client.post(f"/manage/adapters/{adapter.pk}/activate/", follow=True)
    assert "is active" in response.content.decode()
    adapter.refresh_from_db()
    assert adapter.state == Adapter.State.ACTIVE
    assert AuditEvent.objects.filter(action="adapter.activate").exists()


def test_routing_strategy_per_role_is_saved_and_audited(admin_client):
    sales = Group.objects.get(name="Sales")
    response = admin_client.post(
        "/manage/adapters/routing/", {"role": sales.pk, "strategy": "tuned"}, follow=True
    )
    assert "Routing for “Sales” saved." in response.content.decode()
    assert RoleStrategy.objects.get(role=sales).strategy == "tuned"
    response = admin_client.post(
        "/manage/adapters/routing/", {"role": sales.pk, "strategy": "always"}, follow=True
    )
    assert "Unknown routing strategy" in response.content.decode()
    assert RoleStrategy.objects.get(role=sales).strategy == "tuned"
    assert AuditEvent.objects.filter(action="role.route_strategy").count() == 1


# --- the live view's sync after a (re)connect -------------------------------------------------


async def _adapters_socket(username: str):
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

    ws = WebsocketCommunicator(
        application,
        "/ws/adapters/",
        headers=[
            (b"host", b"localhost"),
            (b"origin", b"http://localhost"),
            (b"cookie", await sync_to_async(cookie)()),
        ],
    )
    connected, code = await ws.connect()
    return ws, connected, code


@pytest.mark.asyncio
async def test_a_reconnecting_page_is_sent_the_current_state_of_the_adapters_it_shows():
    # A page that missed a push (it was loading, or its socket was down when training ended)
    # asks for what it shows and is told the state now.
    from asgiref.sync import sync_to_async

    await sync_to_async(load_demo)()
    ready = await sync_to_async(registered_adapter)(state=Adapter.State.READY)
    ws, connected, _ = await _adapters_socket("admin")
    assert connected
    await ws.send_json_to({"type": "sync", "ids": [ready.pk, 999_999, "1", True, None]})
    message = await ws.receive_json_from(timeout=10)
    assert message["type"] == "progress" and message["id"] == ready.pk
    assert message["state"] == "ready" and message["phase"] == ready.phase
    assert await ws.receive_nothing(timeout=0.5)  # unknown ids and non-integers: nothing
    await ws.send_json_to({"type": "sync", "ids": "all"})
    await ws.send_json_to({"type": "something else", "ids": [ready.pk]})
    assert await ws.receive_nothing(timeout=0.5)

    # The capability is checked again for every sync: once revoked, nothing more is told.
    def revoke() -> None:
        user("admin").groups.clear()

    await sync_to_async(revoke)()
    await ws.send_json_to({"type": "sync", "ids": [ready.pk]})
    assert await ws.receive_nothing(timeout=0.5)
    await ws.disconnect()
    ws, connected, _ = await _adapters_socket("sam")
    assert connected  # accepted, then closed with a code the page reads
    assert (await ws.receive_json_from(timeout=5))["fatal"]
    assert (await ws.receive_output(timeout=5)) == {"type": "websocket.close", "code": 4403}
    await ws.disconnect()  # as a server does after a close: no consumer is left running
