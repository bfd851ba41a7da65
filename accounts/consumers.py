"""The base of every websocket consumer: a socket belongs to its session.

- It accepts, then closes with a code when it may not serve the session's user: 4401 (no
  session), 4403 (not allowed, or a temporary password to change first). A refusal during the
  handshake reaches a browser as HTTP 403 and code 1006, which a page cannot tell from a
  network failure (it reconnected for ever); after an accept the page reads the code.
- It listens on the user's channel-layer group for the end of a session and closes with 4410
  when its own session ended (accounts/sessions.py).
- Each refusal is an error frame with `fatal: true` and a sentence, then the close.

Channel-layer events (the end of a session, and a consumer's own groups: indexing progress,
say) reach a socket through a listener of its own, started only once the socket is admitted
and stopped by a message rather than a cancellation. Channels' own receive loop started with
every socket, refused or not, and cancelling a channels_redis receive in its first
milliseconds could lose the cancellation under uvloop (the receive then reads Redis for ever,
and the server waits for it when it shuts down).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer
from redis.exceptions import RedisError

from accounts.capabilities import Capability
from accounts.sessions import (
    ACCESS_CHANGED,
    ACCESS_REDUCED,
    SESSION_END,
    SESSION_ENDED,
    Refusal,
    session_digest,
    socket_refusal,
    user_group,
)

logger = logging.getLogger(__name__)

# After Redis went away, the listener subscribes again after this long.
RESUBSCRIBE_SECONDS = 1.0
# How long a closing socket waits for Redis (to stop its listener, to leave its groups).
WAIT_SECONDS = 2.0
# What a closing socket tells its own listener.
SOCKET_CLOSED = "socket.closed"


class SessionSocket(AsyncJsonWebsocketConsumer):
    """A websocket consumer whose socket lives no longer than its session.

    Subclasses call `admit()` in `connect()` and go on only when it returns True, check
    `still_signed_in()` before work done in the user's name, name the channel-layer groups
    they want events of in `listen_groups()` (an event `{"type": "a.b"}` calls `a_b(event)`),
    and call `super().disconnect()`.
    """

    # No receive loop of Channels' own (an alias naming no layer gives none): the listener
    # below receives this socket's events.
    channel_layer_alias = "sockets-listen-on-their-own-channel"
    capability: Capability | None = None  # what the user must be allowed to open this socket
    closing = False
    user_id: int | None = None
    listener: asyncio.Task | None = None
    listener_channel = ""
    listened: tuple[str, ...] = ()

    def listen_groups(self) -> list[str]:
        """The groups whose events this socket wants, besides its user's (once admitted)."""
        return []

    def _session_key(self) -> str | None:
        session = self.scope.get("session")
        return session.session_key if session is not None else None

    async def admit(self) -> bool:
        """Accept, then close with the reason and return False, or join the groups, start the
        listener and return True (events sent from then on reach the socket)."""
        await self.accept()
        user = self.scope.get("user")
        user_id = user.pk if user is not None and user.is_authenticated else None
        refusal = await database_sync_to_async(socket_refusal)(
            self._session_key(), user_id=user_id, capability=self.capability
        )
        if refusal is not None:
            await self.refuse(refusal)
            return False
        self.user_id = user_id
        layer = get_channel_layer()
        self.listener_channel = await layer.new_channel()
        self.listened = (user_group(user_id), *self.listen_groups())
        await self._join(layer)
        self.listener = asyncio.create_task(self._listen(layer))
        return True

    async def still_signed_in(self, **frame) -> bool:
        """Check the session again (it may have ended since the last check); if it ended, close
        the socket, with `frame`'s fields (a question's id) in the error frame."""
        refusal = await database_sync_to_async(socket_refusal)(
            self._session_key(), user_id=self.user_id, opened=True
        )
        if refusal is None:
            return True
        await self.refuse(refusal, **frame)
        return False

    async def refuse(self, refusal: Refusal, **frame) -> None:
        """Say why, then close with the refusal's code (once)."""
        if self.closing:
            return
        self.closing = True
        await self.send_json({"type": "error", **frame, "message": refusal.message, "fatal": True})
        await self.close(code=refusal.code)

    async def disconnect(self, code: int) -> None:
        """Stop the listener (told on its own channel, so that its receive ends as any receive
        does) and wait until it stopped; cancel it only when Redis does not answer."""
        self.closing = True
        listener = self.listener
        if listener is None:
            return
        if not listener.done():  # else it stopped by itself (it closed the socket)
            await self._tell_listener_to_stop()
        done, _ = await asyncio.wait({listener}, timeout=WAIT_SECONDS)
        if not done:
            listener.cancel()
        elif not listener.cancelled() and listener.exception() is not None:
            logger.warning("a socket's listener failed", exc_info=listener.exception())

    async def _tell_listener_to_stop(self) -> None:
        with contextlib.suppress(Exception):  # Redis away: the caller cancels it instead
            stop = get_channel_layer().send(self.listener_channel, {"type": SOCKET_CLOSED})
            await asyncio.wait_for(stop, WAIT_SECONDS)

    async def _join(self, layer) -> None:
        for group in self.listened:
            await layer.group_add(group, self.listener_channel)

    async def _listen(self, layer) -> None:
        """Receive this socket's events until it closes. Redis away for a moment: join again
        (a restarted Redis forgot the groups); meanwhile each question still checks the
        session."""
        try:
            while not self.closing:
                try:
                    while not self.closing:
                        await self._on_event(await layer.receive(self.listener_channel))
                except (RedisError, OSError):
                    logger.warning("a socket's listener lost Redis", extra={"user": self.user_id})
                    await asyncio.sleep(RESUBSCRIBE_SECONDS)
                    with contextlib.suppress(RedisError, OSError):
                        await self._join(layer)
        finally:  # best effort: a group forgets a channel by itself after a day
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._leave(layer), WAIT_SECONDS)

    async def _leave(self, layer) -> None:
        for group in self.listened:
            await layer.group_discard(group, self.listener_channel)

    async def _on_event(self, event: dict) -> None:
        kind = event.get("type")
        if not isinstance(kind, str) or kind.startswith("websocket.") or self.closing:
            return  # SOCKET_CLOSED too: the loop ends on `closing`
        try:
            if kind == SESSION_END:
                await self.session_end(event)
                return
            if kind == ACCESS_CHANGED:  # a role was taken away (accounts/identity/mapping.py)
                await self.refuse(ACCESS_REDUCED)
                return
            handler = getattr(self, get_handler_name(event), None)
            if handler is not None:
                await handler(event)
        except Exception:  # the database away (the next question checks again), or gone
            logger.warning("a socket could not handle an event", exc_info=True)

    async def session_end(self, event: dict) -> None:
        """A session of this user ended: close if it was ours; if the event names none or
        another, check whether ours still signs the user in."""
        ended = event.get("session")
        if ended and ended == session_digest(self._session_key()):
            await self.refuse(SESSION_ENDED)
        else:
            await self.still_signed_in()
