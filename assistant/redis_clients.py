"""redis.asyncio clients of the web process: one per event loop, closed when the server stops.

An asyncio connection belongs to the loop that opened it, so each loop gets its own clients.
The server closes them at its ASGI lifespan shutdown (config/asgi.py); without that, their
pooled connections were still open when the server's loop closed, and were torn down only by
the garbage collector, after the loop was gone.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable

from redis import asyncio as aioredis

# loop -> {name: client}
_clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def loop_redis(name: str, make: Callable[[], aioredis.Redis]) -> aioredis.Redis:
    """The running loop's client called ``name``, made by ``make()`` on first use."""
    clients = _clients.setdefault(asyncio.get_running_loop(), {})
    client = clients.get(name)
    if client is None:
        client = clients[name] = make()
    return client


async def loop_redis_close() -> None:
    """Close the running loop's clients and their connection pools (server shutdown)."""
    clients = _clients.pop(asyncio.get_running_loop(), {})
    for client in clients.values():
        # A pool passed in explicitly is not closed with its client unless asked.
        await client.aclose(close_connection_pool=True)
