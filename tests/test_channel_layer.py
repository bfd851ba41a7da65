"""The channel layer that carries chat tokens and progress to open pages, on the real Redis.

redis-py 8 gives every connection a 5 s socket timeout unless told otherwise, and channels_redis
waits for a message with a BZPOPMIN that Redis holds for 5 s: the client gave up at the moment the
server answered "nothing yet". When the event loop was busy at that moment, the read timed out,
the consumer's receive loop died with redis's TimeoutError, and its socket was closed: a page
that was idle for a while (an adapter evaluating, say) missed the next push.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from channels.layers import get_channel_layer


@pytest.mark.asyncio
async def test_an_idle_receive_survives_a_busy_event_loop_when_redis_answers_nothing_yet():
    layer = get_channel_layer()
    channel = await layer.new_channel()
    receiving = asyncio.ensure_future(layer.receive(channel))
    # Keep the loop busy while both 5 s deadlines (the server's and the socket's) pass.
    asyncio.get_running_loop().call_later(4.6, time.sleep, 0.8)
    await asyncio.sleep(6.0)
    assert not receiving.done(), receiving.exception()
    await layer.send(channel, {"type": "test.message", "n": 1})
    message = await asyncio.wait_for(receiving, timeout=5)
    assert message == {"type": "test.message", "n": 1}
    await layer.flush()
