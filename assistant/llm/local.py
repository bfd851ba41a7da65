"""The embedded model: a transformers checkpoint generating in-process, streamed to LangChain.

Generation runs in a worker thread (torch releases the GIL in its kernels), and text reaches the
event loop through ``call_soon_threadsafe``, so the loop never waits for the model. Closing the
stream, or cancelling the task that reads it, sets the generation's cancel event: a hook in front
of every decoder layer checks it, so even a long prompt's prefill stops within one layer's work
(milliseconds), not after the whole forward pass.

One copy of the weights per process (``_Runtime``), loaded lazily under a lock; PEFT adapters
are loaded into it by name on first use. Only one adapter (or the bare base model) can be active
in a PEFT model at a time, so a small gate lets generations run together only when they use the
same one, in FIFO order; with the default ``LLM_MAX_CONCURRENCY=1`` it never has to wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import queue
import re
import threading
import time
import warnings
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    CallbackManagerForLLMRun,
)
from langchain_core.messages import AIMessageChunk, BaseMessage, ChatMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGenerationChunk
from pydantic import ConfigDict, Field

from assistant.llm.base import StreamingChatModel
from assistant.llm.convert import is_prepared
from assistant.llm.errors import LLMError, LLMUnavailable
from assistant.llm.slots import GenerationSlots, get_generation_slots

logger = logging.getLogger(__name__)

# Adapter names become PEFT module keys, where a dot would mean nesting.
ADAPTER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
_ROLES = {"system": "system", "human": "user", "ai": "assistant"}


class _Cancelled(Exception):
    """Raised inside generate() to abandon it; never leaves this module."""


# --- the per-process model -------------------------------------------------------------------

_current = threading.local()  # the running generation's cancel event, per worker thread


def _check_cancelled(module, args) -> None:
    cancel = getattr(_current, "cancel", None)
    if cancel is not None and cancel.is_set():
        raise _Cancelled


class _Runtime:
    """Tokenizer and weights of one checkpoint directory, loaded once, shared by all calls."""

    def __init__(self, model_dir: Path) -> None:
        self.model_dir = model_dir
        self.tokenizer: Any = None
        self._base: Any = None
        self._peft: Any = None
        self._load_lock = threading.Lock()
        # The adapter gate: which adapter is active (None: the base model), how many generations
        # use it, and who waits to switch.
        self._gate = threading.Condition()
        self._mode: str | None = None
        self._active = 0
        self._waiting: deque[object] = deque()
        # Adapters loaded beside the base model, least recently used first; beyond
        # `adapter_cache_size` the oldest is unloaded (only ever while nobody generates).
        self._loaded: OrderedDict[str, None] = OrderedDict()
        self.adapter_cache_size = 4

    @property
    def loaded(self) -> bool:
        return self._base is not None

    def load(self, *, threads: int = 0) -> None:
        if self._base is not None:
            return
        with self._load_lock:
            if self._base is not None:
                return
            if not is_prepared(self.model_dir):
                raise LLMUnavailable(
                    detail=f"no converted model in {self.model_dir}; run `manage.py prepare_models`"
                )
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer

            if threads > 0:
                torch.set_num_threads(threads)
            started = time.monotonic()
            tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
            model = AutoModelForCausalLM.from_pretrained(self.model_dir, dtype=torch.float32)
            model.eval()
            for module in model.modules():
                if type(module).__name__.endswith("DecoderLayer"):
                    module.register_forward_pre_hook(_check_cancelled)
            self.tokenizer = tokenizer
            self._base = model
            logger.info(
                "local language model loaded",
                extra={"model_dir": str(self.model_dir), "seconds": time.monotonic() - started},
            )

    def encode(self, messages: Sequence[BaseMessage]) -> Any:
        return self.tokenizer.apply_chat_template(
            _chat_messages(messages),
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        )

    @contextlib.contextmanager
    def using(self, adapter: str | None, adapter_path: Path | None, cancel: threading.Event):
        """The model with ``adapter`` active (None: base), for the body; FIFO among switchers."""
        me = object()
        with self._gate:
            self._waiting.append(me)
            try:
                while not (self._waiting[0] is me and (self._active == 0 or self._mode == adapter)):
                    if cancel.is_set():
                        raise _Cancelled
                    self._gate.wait(0.05)
            finally:
                self._waiting.remove(me)
                self._gate.notify_all()
            if self._mode != adapter:  # nobody is generating: safe to change the weights
                self._switch(adapter, adapter_path)
            self._active += 1
        try:
            yield self._peft if self._peft is not None else self._base
        finally:
            with self._gate:
                self._active -= 1
                self._gate.notify_all()

    def _switch(self, adapter: str | None, adapter_path: Path | None) -> None:
        if adapter is None:
            if self._peft is not None:
                self._peft.base_model.disable_adapter_layers()
        else:
            from peft import PeftModel

            with warnings.catch_warnings():
                # peft 0.21 calls a transformers 5 property that warns about its own rename.
                warnings.filterwarnings("ignore", "`is_gradient_checkpointing`", FutureWarning)
                if self._peft is None:
                    self._peft = PeftModel.from_pretrained(
                        self._base, str(adapter_path), adapter_name=adapter, is_trainable=False
                    )
                elif adapter not in self._peft.peft_config:
                    self._peft.load_adapter(str(adapter_path), adapter_name=adapter)
            self._peft.set_adapter(adapter, inference_mode=True)
            self._peft.base_model.enable_adapter_layers()
            self._peft.eval()
            self._loaded[adapter] = None
            self._loaded.move_to_end(adapter)
            while len(self._loaded) > max(1, self.adapter_cache_size):
                oldest = next(iter(self._loaded))
                del self._loaded[oldest]
                self._peft.delete_adapter(oldest)
                logger.info("adapter unloaded", extra={"adapter": oldest})
            logger.info("adapter active", extra={"adapter": adapter})
        self._mode = adapter


_runtimes: dict[Path, _Runtime] = {}
_runtimes_lock = threading.Lock()


def _runtime_for(model_dir: Path) -> _Runtime:
    key = Path(model_dir).resolve()
    with _runtimes_lock:
        if key not in _runtimes:
            _runtimes[key] = _Runtime(key)
        return _runtimes[key]


def local_tokenizer(model_dir: Path) -> Any:
    """The converted model's tokenizer (loaded once; without the weights when not loaded)."""
    runtime = _runtime_for(model_dir)
    if runtime.tokenizer is not None:
        return runtime.tokenizer
    return _tokenizer_only(Path(model_dir).resolve())


_tokenizers: dict[Path, Any] = {}


def _tokenizer_only(model_dir: Path) -> Any:
    if model_dir not in _tokenizers:
        from transformers import AutoTokenizer

        _tokenizers[model_dir] = AutoTokenizer.from_pretrained(model_dir)
    return _tokenizers[model_dir]


def _chat_messages(messages: Sequence[BaseMessage]) -> list[dict[str, str]]:
    converted = []
    for message in messages:
        if isinstance(message, ChatMessage):
            role = message.role
        else:
            role = _ROLES.get(message.type, "user")
        converted.append({"role": role, "content": message.text})
    return converted


# --- one generation in a worker thread -------------------------------------------------------

_thread_ids = itertools.count(1)
_live_threads: set[threading.Thread] = set()
_live_lock = threading.Lock()


def generation_threads() -> list[threading.Thread]:
    """Generation threads still running in this process (for tests and health checks)."""
    with _live_lock:
        return [t for t in _live_threads if t.is_alive()]


@dataclass
class _End:
    input_tokens: int
    output_tokens: int
    finish_reason: str
    error: BaseException | None = None


class _Streamer:
    """Receives token ids from ``generate`` and emits text as soon as it is complete.

    A byte-level BPE token may end inside a multi-byte character: the text is held back while
    it ends in U+FFFD. With stop strings, the last few characters are held back too, so that a
    stop string split over two tokens is never shown.
    """

    def __init__(self, tokenizer: Any, emit: Callable[[str], None], stop: Sequence[str]) -> None:
        self.tokenizer = tokenizer
        self.emit = emit
        self.stop = [s for s in stop if s]
        self.hold = max((len(s) for s in self.stop), default=1) - 1
        self.ids: list[int] = []
        self.count = 0
        self.sent = 0
        self.prompt_seen = False
        self.stopped = False

    def put(self, value) -> None:
        if not self.prompt_seen:  # generate() first passes the prompt itself
            self.prompt_seen = True
            return
        if self.stopped:
            return
        ids = value.reshape(-1).tolist()
        self.count += len(ids)
        self.ids.extend(ids)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if not text.endswith("\ufffd"):
            self._release(text, final=False)

    def end(self) -> None:
        if not self.stopped:
            self._release(self.tokenizer.decode(self.ids, skip_special_tokens=True), final=True)

    def _release(self, text: str, *, final: bool) -> None:
        limit = len(text)
        if self.stop:
            start = max(0, self.sent - self.hold)
            found = [i for i in (text.find(s, start) for s in self.stop) if i >= 0]
            if found:
                limit = min(found)
                self.stopped = True
            elif not final:
                limit = max(self.sent, len(text) - self.hold)
        if limit > self.sent:
            self.emit(text[self.sent : limit])
            self.sent = limit


class _StopCriteria:
    def __init__(self, cancel: threading.Event, streamer: _Streamer) -> None:
        self.cancel = cancel
        self.streamer = streamer

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        done = self.cancel.is_set() or self.streamer.stopped
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)


class _Generation:
    def __init__(
        self,
        runtime: _Runtime,
        inputs: Any,
        *,
        adapter: str | None,
        adapter_path: Path | None,
        max_new_tokens: int,
        temperature: float,
        stop: Sequence[str],
        emit: Callable[[str | _End], None],
    ) -> None:
        self.runtime = runtime
        self.inputs = inputs
        self.adapter = adapter
        self.adapter_path = adapter_path
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.stop = stop
        self.emit = emit
        self.cancel = threading.Event()
        self.thread = threading.Thread(
            target=self._run, name=f"llm-generate-{next(_thread_ids)}", daemon=True
        )

    def start(self) -> None:
        with _live_lock:
            _live_threads.add(self.thread)
        self.thread.start()

    def _run(self) -> None:
        from transformers import StoppingCriteriaList

        tokenizer = self.runtime.tokenizer
        prompt_tokens = int(self.inputs["input_ids"].shape[1])
        streamer = _Streamer(tokenizer, self.emit, self.stop)
        options: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "do_sample": self.temperature > 0,
            "pad_token_id": tokenizer.pad_token_id or tokenizer.eos_token_id,
        }
        if self.temperature > 0:
            options["temperature"] = self.temperature
        _current.cancel = self.cancel
        end: _End
        try:
            with self.runtime.using(self.adapter, self.adapter_path, self.cancel) as model:
                model.generate(
                    **self.inputs,
                    **options,
                    streamer=streamer,
                    stopping_criteria=StoppingCriteriaList([_StopCriteria(self.cancel, streamer)]),
                )
            if self.cancel.is_set():
                reason = "cancelled"
            elif streamer.stopped:
                reason = "stop"
            elif streamer.count >= self.max_new_tokens:
                reason = "length"
            else:
                reason = "stop"
            end = _End(prompt_tokens, streamer.count, reason)
        except _Cancelled:
            end = _End(prompt_tokens, streamer.count, "cancelled")
        except Exception as exc:
            logger.exception("local generation failed")
            end = _End(prompt_tokens, streamer.count, "error", error=exc)
        finally:
            _current.cancel = None
        try:
            self.emit(end)
        except Exception:  # the reader is gone (its loop closed): nothing to tell
            logger.debug("generation end not delivered", exc_info=True)
        finally:
            with _live_lock:
                _live_threads.discard(self.thread)


# --- the LangChain model ---------------------------------------------------------------------


class LocalChatModel(StreamingChatModel):
    """SmolLM2-135M-Instruct (or any converted causal LM checkpoint) generating in-process.

    Per-call options (``model.astream(messages, max_new_tokens=8, temperature=0)``):
    ``max_new_tokens`` and ``temperature``; ``stop`` strings end the answer before them.
    ``temperature=0`` is greedy decoding. The last chunk carries ``usage_metadata`` and
    ``response_metadata["finish_reason"]`` (stop, length, cancelled).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, protected_namespaces=())

    model_dir: Path
    model_name: str = "SmolLM2-135M-Instruct"
    max_new_tokens: int = 256
    temperature: float = 0.2
    threads: int = 0
    adapter: str | None = None
    adapter_dir: Path | None = None
    adapter_cache_size: int = 4
    slots: GenerationSlots | None = Field(default=None, exclude=True)
    """Concurrency limiter; None: the process-wide one (``LLM_MAX_CONCURRENCY``)."""

    @property
    def _llm_type(self) -> str:
        return "counsel-local-transformers"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "adapter": self.adapter,
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
        }

    # --- preparation shared by both paths ---

    def _adapter_path(self) -> Path | None:
        if self.adapter is None:
            return None
        if not ADAPTER_NAME.fullmatch(self.adapter):
            raise LLMError(detail=f"invalid adapter name {self.adapter!r}")
        if self.adapter_dir is None:
            raise LLMUnavailable(detail="no adapter directory configured (LLM_ADAPTER_DIR)")
        path = Path(self.adapter_dir) / self.adapter
        if not (path / "adapter_config.json").is_file():
            raise LLMUnavailable(detail=f"adapter {self.adapter!r} not found in {path}")
        return path

    def _prepare(self, messages: list[BaseMessage], stop, kwargs) -> tuple[_Runtime, dict]:
        runtime = _runtime_for(self.model_dir)
        runtime.adapter_cache_size = self.adapter_cache_size
        try:
            runtime.load(threads=self.threads)
        except LLMError:
            raise
        except Exception as exc:
            raise LLMUnavailable(detail=f"loading the local model failed: {exc}") from exc
        unknown = set(kwargs) - {"max_new_tokens", "temperature"}
        if unknown:
            raise TypeError(f"unsupported options: {', '.join(sorted(unknown))}")
        options = {
            "inputs": runtime.encode(messages),
            "adapter": self.adapter,
            "adapter_path": self._adapter_path(),
            "max_new_tokens": int(kwargs.get("max_new_tokens", self.max_new_tokens)),
            "temperature": float(kwargs.get("temperature", self.temperature)),
            "stop": list(stop or []),
        }
        return runtime, options

    def _final_chunk(self, end: _End) -> ChatGenerationChunk:
        if end.error is not None:
            raise LLMError(detail=f"local generation failed: {end.error}") from end.error
        usage: UsageMetadata = {
            "input_tokens": end.input_tokens,
            "output_tokens": end.output_tokens,
            "total_tokens": end.input_tokens + end.output_tokens,
        }
        return ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                usage_metadata=usage,
                response_metadata={
                    "model_name": self.model_name,
                    "adapter": self.adapter,
                    "finish_reason": end.finish_reason,
                },
                chunk_position="last",
            ),
            generation_info={"finish_reason": end.finish_reason},
        )

    # --- async ---

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        # Loading takes seconds the first time: never on the event loop.
        runtime, options = await asyncio.to_thread(self._prepare, messages, stop, kwargs)
        slots = self.slots or get_generation_slots()
        async with slots.acquire():
            loop = asyncio.get_running_loop()
            items: asyncio.Queue[str | _End] = asyncio.Queue()

            def emit(item: str | _End) -> None:
                loop.call_soon_threadsafe(items.put_nowait, item)

            generation = _Generation(runtime, emit=emit, **options)
            generation.start()
            try:
                while True:
                    item = await items.get()
                    if isinstance(item, _End):
                        yield self._final_chunk(item)
                        return
                    chunk = ChatGenerationChunk(message=AIMessageChunk(content=item))
                    if run_manager is not None:
                        await run_manager.on_llm_new_token(item, chunk=chunk)
                    yield chunk
            finally:
                # Closed early (cancelled, timed out, the reader went away): stop the thread
                # and keep the slot until it has really stopped, a few milliseconds later.
                generation.cancel.set()
                while generation.thread.is_alive():
                    await asyncio.sleep(0.005)

    # --- sync (worker threads, Celery tasks, benchmarks) ---

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        runtime, options = self._prepare(messages, stop, kwargs)
        slots = self.slots or get_generation_slots()
        with slots.acquire_sync():
            items: queue.SimpleQueue[str | _End] = queue.SimpleQueue()
            generation = _Generation(runtime, emit=items.put, **options)
            generation.start()
            try:
                while True:
                    item = items.get()
                    if isinstance(item, _End):
                        yield self._final_chunk(item)
                        return
                    chunk = ChatGenerationChunk(message=AIMessageChunk(content=item))
                    if run_manager is not None:
                        run_manager.on_llm_new_token(item, chunk=chunk)
                    yield chunk
            finally:
                generation.cancel.set()
                generation.thread.join()


def loaded_model(model_dir: Path, *, threads: int = 0) -> tuple[Any, Any]:
    """(tokenizer, base model) of the shared runtime, loading it if needed: for benchmarks."""
    runtime = _runtime_for(model_dir)
    runtime.load(threads=threads)
    return runtime.tokenizer, runtime._base
