"""A circuit breaker in front of the language model, shared by every web process through Redis.

When the model server hangs, fails or refuses connections, each question would otherwise wait
for its own timeout before being told so. After ``LLM_BREAKER_FAILURES`` consecutive failed
answers within ``LLM_BREAKER_WINDOW_SECONDS`` the breaker *opens*: for
``LLM_BREAKER_COOLDOWN_SECONDS`` every new question, on any node, is told at once that the model
is unavailable. Then it is *half-open*: one question is let through as a probe (the others are
still told at once); its success closes the breaker, its failure opens it for another cool-down.

State lives in Redis (four keys under one prefix per model endpoint):

- ``open``: exists while the breaker is open (expires after the cool-down);
- ``tripped``: the breaker opened and no answer has succeeded since (half-open once ``open`` is
  gone);
- ``probe``: the token of the question probing a half-open breaker (expires, so a probe whose
  process died is replaced);
- ``failures``: consecutive failures in the current window (expires with the window).

Each transition is one Lua script, so two nodes never both take the probe. Redis itself being
down must not stop the chat: then the breaker lets every question through and logs a warning.
``LLM_BREAKER_FAILURES=0`` turns it off.
"""

from __future__ import annotations

import hashlib
import logging
import math
import uuid
from dataclasses import dataclass

from django.conf import settings
from redis import asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from assistant.llm.errors import LLMUnavailable
from assistant.redis_clients import loop_redis

logger = logging.getLogger(__name__)

_ADMIT = """
if redis.call('exists', KEYS[1]) == 1 then
  return {0, redis.call('pttl', KEYS[1])}
end
if redis.call('exists', KEYS[2]) == 1 then
  if redis.call('set', KEYS[3], ARGV[1], 'NX', 'EX', ARGV[2]) then
    return {2, 0}
  end
  return {0, redis.call('pttl', KEYS[3])}
end
return {1, 0}
"""
# KEYS: open, tripped, probe, failures. ARGV: threshold, window, cool-down, probe token ('' if
# this was no probe). Returns 1 when this failure opened the breaker.
_FAILURE = """
if ARGV[4] ~= '' then
  if redis.call('get', KEYS[3]) == ARGV[4] then redis.call('del', KEYS[3]) end
  redis.call('set', KEYS[1], '1', 'EX', ARGV[3])
  return 1
end
if redis.call('exists', KEYS[2]) == 1 then
  return 0
end
local n = redis.call('incr', KEYS[4])
if n == 1 then redis.call('expire', KEYS[4], ARGV[2]) end
if n >= tonumber(ARGV[1]) then
  redis.call('set', KEYS[2], '1')
  redis.call('set', KEYS[1], '1', 'EX', ARGV[3])
  redis.call('del', KEYS[4])
  return 1
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


class LLMCircuitOpen(LLMUnavailable):
    """The breaker is open: recent answers failed, so this question is not sent to the model."""

    def __init__(self, retry_seconds: int) -> None:
        wait = f"about {retry_seconds} seconds" if retry_seconds > 1 else "a moment"
        super().__init__(
            "The language model is not available right now (the last answers failed); "
            f"please try again in {wait}.",
            detail=f"circuit breaker open, retry in {retry_seconds} s",
        )
        self.retry_seconds = retry_seconds


@dataclass(frozen=True)
class Admission:
    """A question let through; ``probe`` is its token when it probes a half-open breaker."""

    probe: str = ""


def _redis() -> aioredis.Redis:
    return loop_redis("llm-breaker", _new_redis)


def _new_redis() -> aioredis.Redis:
    return aioredis.Redis.from_url(
        settings.REDIS_URL,
        socket_connect_timeout=1,
        socket_timeout=1,
        # One quick retry: the pooled connections of a restarted Redis are all dead.
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 1),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )


def _keys() -> list[str]:
    # Per endpoint: two deployments of different models in one Redis do not share a breaker.
    endpoint = f"{settings.LLM_BACKEND}|{settings.LLM_BASE_URL}|{settings.LLM_MODEL}"
    digest = hashlib.sha256(endpoint.encode()).hexdigest()[:12]
    prefix = f"counsel:llm-breaker:{digest}"
    return [f"{prefix}:open", f"{prefix}:tripped", f"{prefix}:probe", f"{prefix}:failures"]


def _enabled() -> bool:
    return settings.LLM_BREAKER_FAILURES > 0


async def breaker_admit() -> Admission:
    """Let a question through to the model, or raise :class:`LLMCircuitOpen` at once."""
    if not _enabled():
        return Admission()
    token = uuid.uuid4().hex
    # The probe's claim outlives the longest answer, so a second probe never starts beside it.
    probe_ttl = math.ceil(settings.LLM_TIMEOUT_SECONDS) + 5
    open_, tripped, probe, _ = _keys()
    try:
        verdict, wait_ms = await _redis().eval(_ADMIT, 3, open_, tripped, probe, token, probe_ttl)
    except (RedisError, OSError) as exc:
        logger.warning("circuit breaker state unavailable; letting the question through: %s", exc)
        return Admission()
    if verdict == 0:
        raise LLMCircuitOpen(max(1, math.ceil(max(wait_ms, 0) / 1000)))
    if verdict == 2:
        logger.info("circuit breaker half-open: probing the model")
        return Admission(probe=token)
    return Admission()


async def breaker_success(admission: Admission) -> None:
    """The model answered: the breaker closes and the failure count starts again."""
    if not _enabled():
        return
    try:
        removed = await _redis().delete(*_keys())
    except (RedisError, OSError) as exc:
        logger.warning("circuit breaker state unavailable: %s", exc)
        return
    if admission.probe and removed:
        logger.warning("circuit breaker closed: the model answered again")


async def breaker_failure(admission: Admission) -> None:
    """The model failed this answer (error, refused connection, timeout)."""
    if not _enabled():
        return
    open_, tripped, probe, failures = _keys()
    try:
        opened = await _redis().eval(
            _FAILURE,
            4,
            open_,
            tripped,
            probe,
            failures,
            settings.LLM_BREAKER_FAILURES,
            settings.LLM_BREAKER_WINDOW_SECONDS,
            settings.LLM_BREAKER_COOLDOWN_SECONDS,
            admission.probe,
        )
    except (RedisError, OSError) as exc:
        logger.warning("circuit breaker state unavailable: %s", exc)
        return
    if opened:
        logger.error(
            "circuit breaker open: the model failed; questions are refused at once for %s s",
            settings.LLM_BREAKER_COOLDOWN_SECONDS,
            extra={"probe": bool(admission.probe)},
        )


async def breaker_release(admission: Admission) -> None:
    """The question ended without a verdict on the model (stopped): free the probe, if held."""
    if not _enabled() or not admission.probe:
        return
    try:
        await _redis().eval(_RELEASE, 1, _keys()[2], admission.probe)
    except (RedisError, OSError) as exc:
        logger.warning("circuit breaker state unavailable: %s", exc)


def breaker_state() -> str:
    """``closed``, ``open`` or ``half-open`` (for the health page and tests); sync."""
    import redis

    if not _enabled():
        return "off"
    open_, tripped, _, _ = _keys()
    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        if client.exists(open_):
            return "open"
        return "half-open" if client.exists(tripped) else "closed"
    finally:
        client.close()
