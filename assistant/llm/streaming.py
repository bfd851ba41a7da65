"""Streaming an answer under two deadlines: one for the first token, one for the whole answer."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from assistant.llm.errors import LLMTimeout

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel


@dataclass
class StreamStats:
    """Filled in by :func:`stream_with_timeouts` as the answer streams (for the query log)."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    finish_reason: str | None = None
    first_token_seconds: float | None = None
    total_seconds: float | None = None
    # The first generated token's alternatives with their log-probabilities
    # ([{"token", "logprob"}, ...]), when the request asked for `top_logprobs` and the server
    # sent them (llama.cpp, vLLM and OpenAI do).
    top_logprobs: list[dict] | None = None


async def stream_with_timeouts(
    model: BaseChatModel,
    messages: Any,
    *,
    first_token_timeout: float,
    total_timeout: float,
    stats: StreamStats | None = None,
) -> AsyncIterator[str]:
    """Yield the answer's text pieces; raise :class:`LLMTimeout` when a deadline passes.

    ``first_token_timeout`` counts from the call to the first non-empty piece (a queue wait for a
    generation slot inside the model counts too); ``total_timeout`` bounds the whole answer.
    Either way the model's stream is closed, which stops a local generation thread.
    ``messages`` is anything a LangChain chat model accepts (messages, ``(role, text)`` pairs).
    Errors other than timeouts from our backends arrive as :class:`LLMError` subclasses.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + total_timeout
    first_deadline = min(deadline, started + first_token_timeout)
    got_first = False
    stream = aiter(model.astream(messages))
    try:
        while True:
            try:
                # asyncio.timeout, not wait_for: the stream must keep running in this task, so
                # that context-bound state (the generation slot) stays with it.
                async with asyncio.timeout_at(deadline if got_first else first_deadline):
                    chunk = await anext(stream)
            except StopAsyncIteration:
                break
            except TimeoutError:
                which = "answer" if got_first else "first token"
                limit = total_timeout if got_first else first_token_timeout
                raise LLMTimeout(detail=f"no complete {which} within {limit:g} s") from None
            if stats is not None:
                _collect(stats, chunk)
            text = chunk.text
            if text:
                if not got_first:
                    got_first = True
                    if stats is not None:
                        stats.first_token_seconds = loop.time() - started
                yield text
    finally:
        if stats is not None:
            stats.total_seconds = loop.time() - started
        await _close(stream)


def _collect(stats: StreamStats, chunk: Any) -> None:
    usage = getattr(chunk, "usage_metadata", None)
    if usage:
        stats.input_tokens = (stats.input_tokens or 0) + usage.get("input_tokens", 0)
        stats.output_tokens = (stats.output_tokens or 0) + usage.get("output_tokens", 0)
    metadata = getattr(chunk, "response_metadata", None) or {}
    reason = metadata.get("finish_reason")
    if reason:
        stats.finish_reason = reason
    if stats.top_logprobs is None:
        content = (metadata.get("logprobs") or {}).get("content") or []
        if content and isinstance(content[0], dict):
            stats.top_logprobs = list(content[0].get("top_logprobs") or [])


async def _close(stream: AsyncIterator[Any]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):  # a failed stream's own error was raised already
            await aclose()
