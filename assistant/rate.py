"""The per-user question rate, shared by every way of asking (the chat socket, the search API).

One Redis counter per user and minute (`counsel:chat:rate:<user>:<minute>`, two minutes to
live); the chat consumer increments the same key in its own claim script, so a person who
searches through the API and chats at once has one budget, CHAT_RATE_PER_MINUTE.
"""

from __future__ import annotations

import time
from functools import cache

import redis
from django.conf import settings

_INCREMENT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], 120) end
return n
"""


def rate_key(user_id: int, minute: int) -> str:
    return f"counsel:chat:rate:{user_id}:{minute}"


@cache
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)


def question_allowed(user_id: int) -> bool:
    """Count one question for `user_id`; False when it is over this minute's budget.

    Raises redis.RedisError when Redis does not answer (the caller says "briefly unavailable").
    """
    minute = int(time.time() // 60)
    count = _client(settings.REDIS_URL).eval(_INCREMENT, 1, rate_key(user_id, minute))
    return int(count) <= settings.CHAT_RATE_PER_MINUTE
