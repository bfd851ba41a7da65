"""Websocket consumers through the real ASGI application and the Redis channel layer."""

import pytest
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from channels_redis.core import RedisChannelLayer
from django.conf import settings
from django.test import Client

from accounts.models import User
from config.asgi import application

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def session_cookie(transactional_db) -> bytes:
    user = User.objects.create_user("alice", password="alice-long-password")
    web = Client()
    web.force_login(user)
    return (
        f"{settings.SESSION_COOKIE_NAME}={web.cookies[settings.SESSION_COOKIE_NAME].value}".encode()
    )


def socket(*headers: tuple[bytes, bytes]) -> WebsocketCommunicator:
    """A socket as a page of http://localhost opens it (its Host, and its Origin as given)."""
    return WebsocketCommunicator(
        application, "/ws/ping/", headers=[(b"host", b"localhost"), *headers]
    )


async def test_channel_layer_is_redis():
    assert isinstance(get_channel_layer(), RedisChannelLayer)


async def test_ping_round_trips_through_the_redis_channel_layer(session_cookie):
    ws = socket((b"origin", b"http://localhost"), (b"cookie", session_cookie))
    connected, _ = await ws.connect()
    assert connected
    await ws.send_json_to({"type": "ping", "id": "42"})
    assert await ws.receive_json_from(timeout=5) == {"type": "pong", "id": "42"}
    await ws.send_json_to({"type": "nonsense"})
    assert (await ws.receive_json_from(timeout=5))["type"] == "error"
    await ws.disconnect()


async def test_two_sockets_never_receive_each_others_pongs(session_cookie):
    first = socket((b"origin", b"http://localhost"), (b"cookie", session_cookie))
    second = socket((b"origin", b"http://localhost"), (b"cookie", session_cookie))
    assert (await first.connect())[0] and (await second.connect())[0]
    await first.send_json_to({"type": "ping", "id": "first"})
    await second.send_json_to({"type": "ping", "id": "second"})
    assert (await first.receive_json_from(timeout=5))["id"] == "first"
    assert (await second.receive_json_from(timeout=5))["id"] == "second"
    assert await first.receive_nothing(timeout=0.3)
    assert await second.receive_nothing(timeout=0.3)
    await first.disconnect()
    await second.disconnect()


async def test_anonymous_socket_is_accepted_then_closed_with_4401():
    ws = socket((b"origin", b"http://localhost"))
    connected, _ = await ws.connect()
    assert connected  # accepted first: a browser sees close codes only after an accept
    assert (await ws.receive_json_from(timeout=5))["fatal"]
    assert (await ws.receive_output(timeout=5)) == {"type": "websocket.close", "code": 4401}
    # As a server does after a close. Left running, the refused consumer's channel-layer
    # receive was cancelled only when the test's event loop closed, which once hung the run.
    await ws.disconnect()


async def test_socket_from_a_foreign_origin_is_refused(session_cookie):
    ws = socket((b"origin", b"https://evil.example"), (b"cookie", session_cookie))
    connected, _ = await ws.connect()
    assert not connected
    await ws.disconnect()
