"""A FAKE chat model, for tests and load benchmarks only: it never answers a real question.

It stands in for a remote model server (vLLM behind the OpenAI-compatible backend), which cannot
run on the machines where the tests and the websocket load benchmark run. ``LLM_BACKEND=fake``
selects it. It streams a deterministic answer word by word at ``LLM_FAKE_TOKENS_PER_SECOND``
using only ``asyncio.sleep`` (no threads), so a hundred concurrent streams cost almost nothing.

The answer echoes what the prompt contained, so a test can check what reached the model:

    FAKE ANSWER. Question: <the question>. Sources: [1] <first line of source 1>; [2] ...

It also keeps the last prompts it received (``recent_prompts()``), as a fake server would log
its requests, so a test can look at the whole prompt rather than its echo.

Markers anywhere in the prompt change its behaviour, to test the failure paths:

- ``[[fake:hang]]``  never sends a token (a server that accepted the request and hangs);
- ``[[fake:stall]]`` sends one token, then hangs;
- ``[[fake:error]]`` raises :class:`LLMUnavailable` at once;
- ``[[fake:long]]`` repeats its answer up to ``max_new_tokens`` (an answer as long as a real
  model's longest: the load benchmark's streams);
- ``[[fake:endless]]`` ignores ``max_new_tokens`` and streams its answer over and over, without
  end (a server that ignores the token limit: the chat service must cut it); each round ends
  with a different word, so that it is long, not a loop;
- ``[[fake:loop]]`` loops as small models do ("The answer is: 1. The answer is: 2. …") up to
  ``max_new_tokens``: the chat service must stop it as a loop;
- ``[[fake:quote]]`` answers with the first sentence of the first source that holds a digit,
  word for word; ``[[fake:misquote]]`` with the same sentence with every number changed (a
  model inventing figures: the claim check must mark them);
- ``[[fake:unanswerable]]`` answers "No" to the chat's question whether its passages answer the
  question (it answers "Yes" otherwise);
- ``[[fake:crash]]`` sends one token, then raises an exception that is no model error (a client
  library breaking in a way nobody planned for: the chat service must still log the question).
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk
from pydantic import ConfigDict

from assistant.llm.base import StreamingChatModel
from assistant.llm.errors import LLMUnavailable

HANG = "[[fake:hang]]"
STALL = "[[fake:stall]]"
ERROR = "[[fake:error]]"
ENDLESS = "[[fake:endless]]"
LONG = "[[fake:long]]"
LOOP = "[[fake:loop]]"
QUOTE = "[[fake:quote]]"
MISQUOTE = "[[fake:misquote]]"
UNANSWERABLE = "[[fake:unanswerable]]"
CRASH = "[[fake:crash]]"
# The chat's yes/no question before an answer (kept here as text: this module must not import
# the chat's modules).
ANSWERABLE_QUESTION = "Do the sources above answer the question? Reply with yes or no only."

_WORD = re.compile(r"\S+\s*")
_SENTENCE = re.compile(r"[^.!?\n]*\d[^.!?\n]*(?:\.\d+[^.!?\n]*)*[.!?]?")
_NUMBER = re.compile(r"\d+")
# "Source: <title> — <heading>" lines of the chat's prompt (assistant/prompts.py).
_SOURCE_LINE = re.compile(r"^Source: ([^\n]*)", re.MULTILINE)
# The most recent prompts as (message type, text) pairs, newest last.
_received: deque[list[tuple[str, str]]] = deque(maxlen=200)


def forget_prompts() -> None:
    """Empty the record of received prompts (a test that checks what one question sent)."""
    _received.clear()


def recent_prompts() -> list[list[tuple[str, str]]]:
    """Prompts the fake models of this process received, oldest first: (type, text) pairs.

    The type is LangChain's: "system", "human", "ai".
    """
    return list(_received)


class FakeStreamingChatModel(StreamingChatModel):
    """FAKE model (see the module docstring): deterministic, echoing, paced like a server."""

    model_config = ConfigDict(protected_namespaces=())

    model_name: str = "fake"
    tokens_per_second: float = 30.0
    max_new_tokens: int = 256
    adapter: str | None = None
    answer: str | None = None
    """A fixed answer to stream instead of the echo."""

    @property
    def _llm_type(self) -> str:
        return "counsel-fake-streaming"

    def reply_for(self, messages: list[BaseMessage]) -> str:
        if self.answer is not None:
            return self.answer
        user = next((m.text for m in reversed(messages) if m.type == "human"), "")
        if user.rstrip().endswith(ANSWERABLE_QUESTION):
            # The chat's yes/no check before answering (assistant.prompts.answerable_messages).
            return "No" if UNANSWERABLE in user else "Yes"
        if QUOTE in user or MISQUOTE in user:
            first = user.split("Source: ", 1)[-1].split("\n\n", 1)[0].split("\n", 1)[-1]
            found = _SENTENCE.search(first)
            sentence = found.group(0).strip() if found else "I could not find that."
            if MISQUOTE in user:
                sentence = _NUMBER.sub(lambda m: str(int(m.group()) + 1), sentence)
            return sentence
        question = user.rsplit("Question:", 1)[-1].strip() if "Question:" in user else user
        sources = [
            f"[{n}] {m.group(1).strip()}"
            for n, m in enumerate(_SOURCE_LINE.finditer(user), start=1)
        ]
        parts = ["FAKE ANSWER."]
        if self.adapter:
            parts.append(f"Adapter: {self.adapter}.")
        parts.append(f"Question: {' '.join(question.split())}")
        parts.append(f"Sources: {'; '.join(sources)}" if sources else "Sources: none")
        return " ".join(parts)

    def _plan(
        self, messages: list[BaseMessage], kwargs: dict
    ) -> tuple[Iterable[str], str, int, str]:
        _received.append([(m.type, m.text) for m in messages])
        prompt = "\n".join(m.text for m in messages)
        if ERROR in prompt:
            raise LLMUnavailable(detail="fake model: error marker in the prompt")
        mode = (
            "hang"
            if HANG in prompt
            else "stall"
            if STALL in prompt
            else "crash"
            if CRASH in prompt
            else "normal"
        )
        words = _WORD.findall(self.reply_for(messages))
        if ENDLESS in prompt or LONG in prompt:
            words[-1] = words[-1].rstrip() + " "  # a repeated answer stays words
        if ENDLESS in prompt:
            return _rounds(words), "length", len(_WORD.findall(prompt)), "normal"
        limit = int(kwargs.get("max_new_tokens", self.max_new_tokens))
        if LONG in prompt:
            words = list(itertools.islice(_rounds(words), limit + 1))
        if LOOP in prompt:
            words = list(itertools.islice(_loop_words(), limit + 1))
        reason = "length" if len(words) > limit else "stop"
        return words[:limit], reason, len(_WORD.findall(prompt)), mode

    def _final(self, input_tokens: int, output_tokens: int, reason: str) -> ChatGenerationChunk:
        return ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                usage_metadata={
                    "input_tokens": input_tokens,
                    "output_tokens": output_tokens,
                    "total_tokens": input_tokens + output_tokens,
                },
                response_metadata={"model_name": self.model_name, "finish_reason": reason},
                chunk_position="last",
            )
        )

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        words, reason, input_tokens, mode = self._plan(messages, kwargs)
        delay = 1.0 / self.tokens_per_second if self.tokens_per_second > 0 else 0.0
        if mode == "hang":
            await asyncio.Event().wait()
        for i, word in enumerate(words):
            await asyncio.sleep(delay)
            if mode == "stall" and i == 1:
                await asyncio.Event().wait()
            if mode == "crash" and i == 1:
                raise RuntimeError("fake model: crash marker in the prompt")
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=word))
            if run_manager is not None:
                await run_manager.on_llm_new_token(word, chunk=chunk)
            yield chunk
        yield self._final(input_tokens, len(words), reason)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        words, reason, input_tokens, mode = self._plan(messages, kwargs)
        delay = 1.0 / self.tokens_per_second if self.tokens_per_second > 0 else 0.0
        for i, word in enumerate(words):
            while mode == "hang" or (mode == "stall" and i == 1):  # forever, as documented
                time.sleep(0.1)
            if mode == "crash" and i == 1:
                raise RuntimeError("fake model: crash marker in the prompt")
            time.sleep(delay)
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=word))
            if run_manager is not None:
                run_manager.on_llm_new_token(word, chunk=chunk)
            yield chunk
        yield self._final(input_tokens, len(words), reason)


def _rounds(words: list[str]) -> Iterator[str]:
    """The answer over and over, each round closed by a different word (a long answer, not a
    loop: no stretch of it repeats three times in a row)."""
    for n in itertools.count():
        yield from words
        yield _letters(n) + " "


def _letters(n: int) -> str:
    out = ""
    while True:
        n, rest = divmod(n, 26)
        out = "abcdefghijklmnopqrstuvwxyz"[rest] + out
        if n == 0:
            return "round-" + out
        n -= 1


def _loop_words() -> Iterator[str]:
    for n in itertools.count(1):
        yield from ("The ", "answer ", "is: ", f"{n}. ")
