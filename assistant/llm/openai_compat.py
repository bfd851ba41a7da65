"""A model behind an OpenAI-compatible server: vLLM (production), Ollama, llama.cpp server.

langchain-openai's client does the protocol; this subclass only turns the client's
timeouts and connection failures into our :class:`LLMTimeout` / :class:`LLMUnavailable`, so that
the chat service handles every backend the same way. Retries are off: a person is waiting, and
the chat service decides what to do about a failed answer.

vLLM serves LoRA adapters under their own names (``--enable-lora --lora-modules name=path``):
with an adapter, its name replaces the model name in the request. The local adapters' server
(llama.cpp) picks it by llama.cpp's ``lora`` field instead, sent in the request body.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import openai
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_openai.chat_models.base import BaseChatOpenAI

from assistant.llm.conf import LLMConfig
from assistant.llm.errors import LLMError, LLMTimeout, LLMUnavailable


def _translate(exc: BaseException) -> LLMError | None:
    detail = f"{type(exc).__name__}: {exc}"
    # APITimeoutError is a subclass of APIConnectionError: test it first.
    if isinstance(exc, openai.APITimeoutError | httpx.TimeoutException):
        return LLMTimeout(detail=detail)
    if isinstance(exc, openai.APIConnectionError | httpx.TransportError):
        return LLMUnavailable(detail=detail)
    if isinstance(exc, openai.APIStatusError):
        return LLMUnavailable(detail=f"{detail} (HTTP {exc.status_code})")
    if isinstance(exc, openai.OpenAIError):
        return LLMError(detail=detail)
    return None


class OpenAICompatibleChatModel(BaseChatOpenAI):
    """langchain-openai's Chat Completions client, raising :class:`LLMError` subclasses.

    ``BaseChatOpenAI`` rather than ``ChatOpenAI``: the latter renames ``max_tokens`` to
    ``max_completion_tokens`` for OpenAI's own API, and routes some models to the Responses API;
    compatible servers (llama.cpp, older vLLM and Ollama) know only the Chat Completions form.
    """

    def _stream(self, *args: Any, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        try:
            yield from super()._stream(*args, **kwargs)
        except Exception as exc:
            if (translated := _translate(exc)) is None:
                raise
            raise translated from exc

    async def _astream(self, *args: Any, **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
        try:
            async for chunk in super()._astream(*args, **kwargs):
                yield chunk
        except Exception as exc:
            if (translated := _translate(exc)) is None:
                raise
            raise translated from exc

    def _generate(self, *args: Any, **kwargs: Any) -> ChatResult:
        try:
            return super()._generate(*args, **kwargs)
        except Exception as exc:
            if (translated := _translate(exc)) is None:
                raise
            raise translated from exc

    async def _agenerate(self, *args: Any, **kwargs: Any) -> ChatResult:
        try:
            return await super()._agenerate(*args, **kwargs)
        except Exception as exc:
            if (translated := _translate(exc)) is None:
                raise
            raise translated from exc


def build_openai_compatible(
    config: LLMConfig, *, adapter: str | None, lora: list[dict] | None = None
) -> OpenAICompatibleChatModel:
    """The client for ``config``'s server; ``lora``: llama.cpp's per-request adapter scales."""
    if not config.base_url:
        raise LLMUnavailable(detail=f"LLM_BACKEND={config.backend} needs LLM_BASE_URL")
    return OpenAICompatibleChatModel(
        model=adapter or config.model,
        base_url=config.base_url,
        api_key=config.resolved_api_key(),
        # Read timeout = the longest silence between two streamed pieces (or the whole answer
        # when not streaming); the first-token and total deadlines are stream_with_timeouts'.
        timeout=httpx.Timeout(config.timeout_seconds, connect=config.first_token_timeout_seconds),
        max_retries=0,
        streaming=True,
        stream_usage=True,
        use_responses_api=False,
        temperature=config.temperature,
        max_tokens=config.max_new_tokens,
        # The repetition guard: a small model given figures tends to loop ("The answer is: 1.
        # The answer is: 1. ..."); the chat also stops a stream that repeats itself.
        frequency_penalty=config.frequency_penalty or None,
        extra_body={"lora": lora} if lora is not None else None,
    )
