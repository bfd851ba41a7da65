"""Websocket consumers. They authenticate, parse frames and relay; services do the work."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid

from channels.layers import get_channel_layer
from django.conf import settings
from django.db import InterfaceError, OperationalError
from redis import asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from accounts.capabilities import Capability
from accounts.consumers import SessionSocket
from accounts.sessions import Refusal
from assistant.redis_clients import loop_redis
from assistant.rendering import answer_html
from assistant.services import BRIEFLY_UNAVAILABLE, Ask, chat_answer


class PingConsumer(SessionSocket):
    """Connectivity check through the channel layer: {"type": "ping"} -> {"type": "pong"}.

    The pong travels through the Redis channel layer (group_send to this socket's own group)
    rather than straight back, so a client that gets it knows the whole push path works: the
    same path that carries indexing and training progress.
    """

    def listen_groups(self) -> list[str]:
        return [self._own_group()]

    def _own_group(self) -> str:
        return f"ping.user.{self.user_id}.{self.listener_channel.rsplit('!', 1)[-1]}"

    async def connect(self) -> None:
        await self.admit()

    async def receive_json(self, content, **kwargs) -> None:
        if self.closing:
            return
        if not isinstance(content, dict) or content.get("type") != "ping":
            await self.send_json({"type": "error", "error": 'expected {"type": "ping"}'})
            return
        await get_channel_layer().group_send(
            self._own_group(), {"type": "relay.pong", "id": str(content.get("id", ""))[:64]}
        )

    async def relay_pong(self, event: dict) -> None:
        await self.send_json({"type": "pong", "id": event["id"]})

    @classmethod
    async def decode_json(cls, text_data: str):
        try:
            return json.loads(text_data)
        except ValueError:
            return None


logger = logging.getLogger(__name__)


# Close codes the browser explains (static/js/chat/socket.js) instead of reconnecting at once.
CLOSE_TOO_MANY_SOCKETS = 4409
CLOSE_FLOOD = 4429

# How long a closing socket waits for its stopped answer to be recorded (a few writes).
STOP_GRACE_SECONDS = 10

# Open sockets per user: a sorted set of socket tokens scored by when each entry expires, so a
# node that dies without saying goodbye leaks nothing beyond CHAT_SOCKET_TTL_SECONDS. Redis's own
# clock decides, so the nodes' clocks need not agree.
_CLAIM_SOCKET = """
local now = tonumber(redis.call('TIME')[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""
_REFRESH_SOCKET = """
local now = tonumber(redis.call('TIME')[1])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""

# A question's limits in one round trip before the answer starts: count it in this minute's
# rate window, then take the user's one-answer lock unless the rate is exceeded. Returns 0
# (go), 1 (rate exceeded; the lock is not taken) or 2 (an answer is running already).
_CLAIM_QUESTION = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], 120) end
if n > tonumber(ARGV[1]) then return 1 end
if not redis.call('SET', KEYS[2], ARGV[2], 'NX', 'EX', ARGV[3]) then return 2 end
return 0
"""


def _positive_id(value) -> bool:
    """A database id from a frame: bool is an int to Python; ids are positive bigints."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63


def _redis_client() -> aioredis.Redis:
    return loop_redis("chat", _new_redis_client)


def _new_redis_client() -> aioredis.Redis:
    # A blocking pool: with a thousand sockets connecting or closing at once, calls wait for a
    # free connection instead of failing with "Too many connections" (bench/load.py found that
    # with redis-py's default pool of 100). Retries with backoff: after a Redis restart every
    # pooled connection is dead, and the first command on each must reconnect instead of
    # failing the question (faults drill, docs/operations.md).
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.REDIS_URL,
        max_connections=settings.CHAT_REDIS_CONNECTIONS,
        timeout=10,
        socket_connect_timeout=2,
        socket_timeout=5,
        health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.1), 3),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )
    return aioredis.Redis(connection_pool=pool)


class ChatConsumer(SessionSocket):
    """The chat socket: authenticates, parses frames, enforces limits, relays the service.

    Protocol: docs/chat-protocol.md. Limits are per user across all their sockets and all web
    nodes (kept in Redis): open sockets, questions per minute, and one running answer at a time;
    per socket (kept here): frame size and frames per second. The session is checked again
    before each question, and the socket closes when its session ends (SessionSocket).
    """

    # The answer is produced in the process that holds the socket and sent straight to it, not
    # through the channel layer: no Redis round trip per frame. Only the end of the session
    # comes through the channel layer (SessionSocket's listener).
    capability = Capability.CHAT
    running: asyncio.Task | None = None

    async def connect(self) -> None:
        if not await self.admit():
            return
        self.running: asyncio.Task | None = None
        self.running_id = ""
        self.lock_token = uuid.uuid4().hex
        self.frame_budget = float(settings.CHAT_FRAME_BURST)
        self.frame_clock = time.monotonic()
        self.sockets_key = f"counsel:chat:sockets:{self.user_id}"
        # Accepted (admit) before the socket count is checked: a refusal during the handshake
        # reaches a browser as a bare 1006, while a close code after accept lets the page say why.
        self.socket_claimed = bool(
            await _redis_client().eval(
                _CLAIM_SOCKET,
                1,
                self.sockets_key,
                self.lock_token,
                settings.CHAT_SOCKET_TTL_SECONDS,
                settings.CHAT_MAX_SOCKETS_PER_USER,
            )
        )
        if not self.socket_claimed:
            await self._refuse(
                CLOSE_TOO_MANY_SOCKETS,
                f"You have {settings.CHAT_MAX_SOCKETS_PER_USER} chat windows open already; close "
                "one, then reload this page.",
            )
            return
        self.keepalive = asyncio.create_task(self._keep_socket_counted())
        await self.send_json({"type": "hello", "max_chars": settings.CHAT_MAX_MESSAGE_CHARS})

    async def _keep_socket_counted(self) -> None:
        redis = _redis_client()
        ttl = settings.CHAT_SOCKET_TTL_SECONDS
        while True:
            await asyncio.sleep(ttl / 3)
            try:
                await redis.eval(_REFRESH_SOCKET, 1, self.sockets_key, self.lock_token, ttl)
            except Exception:  # Redis away for a moment: the next round tries again
                logger.warning("could not refresh a chat socket's entry", exc_info=True)

    async def _refuse(self, code: int, message: str) -> None:
        await self.refuse(Refusal(code, message))

    async def disconnect(self, code: int) -> None:
        # A closed tab stops its answer: no model time is spent for nobody.
        running = self.running
        if running and not running.done():
            running.cancel()
        await super().disconnect(code)  # the session listener
        if getattr(self, "keepalive", None):
            self.keepalive.cancel()
        if getattr(self, "socket_claimed", False):
            try:
                await _redis_client().zrem(self.sockets_key, self.lock_token)
            except Exception:  # the entry expires by itself (CHAT_SOCKET_TTL_SECONDS)
                logger.warning("could not remove a closed chat socket's entry", exc_info=True)
        if running:
            # The consumer ends once the stopped answer is recorded, not while its writes are
            # still in flight (a server shutting down, or a test's teardown, would cut them).
            await asyncio.wait({running}, timeout=STOP_GRACE_SECONDS)

    async def receive(self, text_data=None, bytes_data=None, **kwargs) -> None:
        """Size and rate limits, checked before a frame is parsed."""
        if self.closing:
            return
        now = time.monotonic()
        self.frame_budget = min(
            float(settings.CHAT_FRAME_BURST),
            self.frame_budget + (now - self.frame_clock) * settings.CHAT_FRAMES_PER_SECOND,
        )
        self.frame_clock = now
        if self.frame_budget < 1:
            await self._refuse(
                CLOSE_FLOOD, "Too many messages were sent too quickly; reload the page to go on."
            )
            return
        self.frame_budget -= 1
        if text_data is None:
            await self.send_json(
                {"type": "error", "message": "Only JSON text frames are accepted."}
            )
            return
        limit = settings.CHAT_MAX_FRAME_BYTES
        if len(text_data) > limit or len(text_data.encode()) > limit:
            await self.send_json(
                {
                    "type": "error",
                    "message": f"Messages are limited to {limit} bytes of JSON text; this one "
                    "was ignored.",
                }
            )
            return
        await super().receive(text_data=text_data, **kwargs)

    @classmethod
    async def decode_json(cls, text_data: str):
        try:
            return json.loads(text_data)
        except (ValueError, RecursionError):  # not JSON, or nested too deeply to parse
            return None

    async def receive_json(self, content, **kwargs) -> None:
        if not isinstance(content, dict):
            await self.send_json({"type": "error", "message": "Malformed message."})
            return
        kind = content.get("type")
        if kind == "ask":
            await self._ask(content)
        elif kind == "stop":
            if self.running and not self.running.done() and content.get("id") == self.running_id:
                self.running.cancel()
        elif kind == "ping":
            await self.send_json({"type": "pong", "id": str(content.get("id", ""))[:64]})
        else:
            shown = kind if isinstance(kind, str) else type(kind).__name__
            await self.send_json(
                {"type": "error", "message": f"Unknown message type {shown[:40]!r}."}
            )

    async def _ask(self, content: dict) -> None:
        client_id = str(content.get("id") or "")[:64]
        # First: is the session that opened this socket still signed in? If not, the question
        # is refused before it is taken (no answer, no query-log entry) and the socket closes.
        try:
            if not await self.still_signed_in(id=client_id):
                return
        except (OperationalError, InterfaceError):
            # PostgreSQL does not answer (restarting): the question is refused as the service
            # would refuse it; the socket stays open and the next question checks again.
            logger.warning(
                "chat database unavailable", extra={"user_id": self.user_id}, exc_info=True
            )
            await self.send_json({"type": "error", "id": client_id, "message": BRIEFLY_UNAVAILABLE})
            return
        text = content.get("text")
        conversation = content.get("conversation")
        if not isinstance(text, str) or not client_id:
            await self.send_json(
                {"type": "error", "id": client_id, "message": "A question needs an id and text."}
            )
            return
        # A question over CHAT_MAX_MESSAGE_CHARS goes on to the service, which refuses it and
        # logs it (cut to the limit): it was asked. The frame size limit bounds it anyway.
        if conversation is not None and not _positive_id(conversation):
            await self.send_json({"type": "error", "id": client_id, "message": "Bad conversation."})
            return
        document = content.get("document")
        if document is not None and not _positive_id(document):
            await self.send_json({"type": "error", "id": client_id, "message": "Bad document."})
            return
        try:
            refusal = await self._limits()
        except RedisError:
            # Redis is down (restarting): refuse this question plainly; the socket stays open
            # and the next question tries again.
            logger.warning("chat limits unavailable", extra={"user_id": self.user_id})
            refusal = BRIEFLY_UNAVAILABLE
        if refusal:
            await self.send_json({"type": "error", "id": client_id, "message": refusal})
            return
        self.running_id = client_id
        ask = Ask(
            user_id=self.user_id,
            question=text,
            conversation_id=conversation,
            client_id=client_id,
            document_id=document,
        )
        self.running = asyncio.create_task(self._relay(ask))

    async def _limits(self) -> str | None:
        minute = int(time.time() // 60)
        # Per minute of the rate, and one running answer per user, whichever socket or node it
        # runs on.
        refused = await _redis_client().eval(
            _CLAIM_QUESTION,
            2,
            f"counsel:chat:rate:{self.user_id}:{minute}",
            f"counsel:chat:running:{self.user_id}",
            settings.CHAT_RATE_PER_MINUTE,
            self.lock_token,
            settings.CHAT_ANSWER_LOCK_SECONDS,
        )
        if refused == 1:
            return (
                f"You have asked {settings.CHAT_RATE_PER_MINUTE} questions this minute; "
                "please wait a moment."
            )
        if refused == 2:
            return "An answer is still being written for you; wait for it or stop it first."
        return None

    async def _release(self) -> None:
        key = f"counsel:chat:running:{self.user_id}"
        redis = _redis_client()
        # Only our own lock: compare-and-delete in one step. Without Redis the lock expires
        # by itself (CHAT_ANSWER_LOCK_SECONDS), or was lost with a restarted Redis.
        try:
            await redis.eval(
                "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) "
                "end",
                1,
                key,
                self.lock_token,
            )
        except RedisError:
            logger.warning("could not release the answer lock", extra={"user_id": self.user_id})

    async def _relay(self, ask: Ask) -> None:
        client_id = ask.client_id
        buffer: list[str] = []
        # Tokens go out in batches at most every CHAT_STREAM_FLUSH_MS (a frame per token is
        # what saturates the channel layer: about 500 messages/s through channels_redis here);
        # the first token, and the first after a pause, goes out at once: only the time since
        # the last *text* frame counts.
        last_sent = float("-inf")
        flush_every = settings.CHAT_STREAM_FLUSH_MS / 1000

        streamed: list[str] = []

        async def flush() -> None:
            nonlocal last_sent
            if buffer:
                text = "".join(buffer)
                streamed.append(text)
                # With the text, the whole answer so far as the final answer's sanitiser renders
                # it: the page shows formatted text while it streams, and nothing the server
                # would strip at the end can run or render in between (one sanitiser, not two).
                html = answer_html("".join(streamed))
                await self.send_json({"type": "delta", "id": client_id, "text": text, "html": html})
                buffer.clear()
                last_sent = time.monotonic()

        answer = chat_answer(ask)
        try:
            async for event in answer:
                if event["type"] == "token":
                    buffer.append(event["text"])
                    if time.monotonic() - last_sent >= flush_every:
                        await flush()
                    continue
                await flush()
                await self.send_json({**event, "id": client_id})
        except asyncio.CancelledError:
            # The stop lands in the service, which records the question as stopped, or here,
            # while a frame is sent between two of its events: then the service is told now, so
            # that it records it all the same (once: a finished service ignores this).
            try:
                await answer.athrow(asyncio.CancelledError())
            except asyncio.CancelledError:
                pass
            except Exception:
                logger.exception(
                    "could not record a stopped answer", extra={"user_id": ask.user_id}
                )
            try:
                await flush()
                stopped = {"type": "stopped", "id": client_id}
                if ask.recorded_in is not None:  # where it was recorded: a new one, perhaps
                    stopped["conversation"] = ask.recorded_in
                await self.send_json(stopped)
            except Exception:  # the socket may be gone; the service recorded the stop
                logger.debug("could not tell a closed socket that its answer stopped")
            raise
        except Exception:
            logger.exception("chat answer failed", extra={"user_id": self.user_id})
            await self.send_json(
                {
                    "type": "error",
                    "id": client_id,
                    "message": "Something went wrong while answering. It has been logged.",
                }
            )
        finally:
            await self._release()
