"""Counsel's language models behind one interface: LangChain chat models built from settings.

- ``LLM_BACKEND=local`` (default): llama.cpp's server from the ``xllamacpp`` wheel, started by
  ``scripts/services`` with a hash-pinned model (:mod:`.server`, :mod:`.catalog`), spoken to over
  the same OpenAI-compatible client as production servers (:mod:`.openai_compat`). The LoRA
  adapters are served by a second local server, the adapters' (:mod:`.adapter_server`), which
  picks the asker's adapter per request (:mod:`.adapters`): this process holds no weights.
- ``LLM_BACKEND=openai``: any OpenAI-compatible server, e.g. vLLM serving LoRA adapters by name
  (:mod:`.openai_compat`).
- ``LLM_BACKEND=fake``: a FAKE streaming model for tests and load benchmarks (:mod:`.fake`).

Callers use :func:`get_chat_model`, :func:`stream_with_timeouts` and, to queue fairly and show
queue positions, :func:`generation_slot`; :func:`breaker_admit` and its companions keep a
circuit breaker shared through Redis (:mod:`.breaker`). Every failure arrives as an
:class:`LLMError` whose text can be shown to the user. Importing this package is cheap:
torch and the backends are imported when a model is first built.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings

from assistant.llm.breaker import (
    Admission,
    LLMCircuitOpen,
    breaker_admit,
    breaker_failure,
    breaker_release,
    breaker_state,
    breaker_success,
)
from assistant.llm.conf import LLMConfig
from assistant.llm.errors import LLMError, LLMTimeout, LLMUnavailable
from assistant.llm.slots import GenerationSlots, SlotWait, generation_slot, get_generation_slots
from assistant.llm.streaming import StreamStats, stream_with_timeouts

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

__all__ = [
    "Admission",
    "GenerationSlots",
    "LLMCircuitOpen",
    "LLMError",
    "LLMTimeout",
    "LLMUnavailable",
    "SlotWait",
    "StreamStats",
    "breaker_admit",
    "breaker_failure",
    "breaker_release",
    "breaker_state",
    "breaker_success",
    "count_tokens",
    "generation_slot",
    "get_chat_model",
    "get_generation_slots",
    "model_name",
    "stream_with_timeouts",
]

logger = logging.getLogger(__name__)

# Without the converted tokenizer (an OpenAI-backend deployment that never ran prepare_models),
# token counts are estimated: English text averages about four characters per token.
_CHARS_PER_TOKEN = 4


def get_chat_model(*, adapter: str | None = None) -> BaseChatModel:
    """The chat model the settings describe, with ``adapter`` (a LoRA adapter name) if given.

    Cached per process, adapter, settings and adapters' server instance: a test that overrides
    ``LLM_*`` settings gets a model built from them, and an adapter reloaded by the adapters'
    server (new instance, new port) is asked there. Raises LLMUnavailable for an adapter the
    local adapters' server does not serve (the router checks that first: tuning.selectors).
    """
    config = LLMConfig.from_settings()
    endpoint = None
    if config.backend == "local" and adapter is not None:
        from assistant.llm.adapters import adapter_endpoint

        endpoint = adapter_endpoint(adapter)
        if endpoint is None:
            raise LLMUnavailable(detail=f"the adapters' model server does not serve {adapter!r}")
    return _build(config, adapter, endpoint)


@functools.lru_cache(maxsize=64)
def _build(config: LLMConfig, adapter: str | None, endpoint) -> BaseChatModel:
    if endpoint is not None:
        from assistant.llm.openai_compat import build_openai_compatible

        served = replace(
            config,
            base_url=endpoint.base_url,
            api_key=settings.LLM_API_KEY,
            server_dir=endpoint.server_dir,
        )
        served = replace(served, api_key=served.resolved_api_key())
        return build_openai_compatible(served, adapter=adapter, lora=endpoint.lora_field())
    if config.backend in ("local", "openai"):
        from assistant.llm.openai_compat import build_openai_compatible

        return build_openai_compatible(config, adapter=adapter)
    if config.backend == "fake":
        from assistant.llm.fake import FakeStreamingChatModel

        return FakeStreamingChatModel(
            tokens_per_second=config.fake_tokens_per_second,
            max_new_tokens=config.max_new_tokens,
            adapter=adapter,
        )
    raise LLMUnavailable(detail=f"unknown LLM_BACKEND {config.backend!r}")


def model_name(*, adapter: str | None = None) -> str:
    """What the query log records as the model: the served name, ``+adapter`` when one is used."""
    config = LLMConfig.from_settings()
    if config.backend == "fake":
        name = "fake"
    elif adapter:
        name = settings.TUNING_BASE_MODEL if config.backend == "local" else config.model
    else:
        name = config.model
    return f"{name}+{adapter}" if adapter else name


def count_tokens(text: str) -> int:
    """Tokens in ``text`` by the converted local model's tokenizer (SmolLM2's).

    Exact for the embedded model; for another model behind the OpenAI backend it is an
    approximation, good enough for prompt budgets. Without the converted model: len / 4.
    """
    if not text:
        return 0
    encode = _token_encoder(str(settings.LLM_LOCAL_MODEL_DIR))
    if encode is None:
        return math.ceil(len(text) / _CHARS_PER_TOKEN)
    return len(encode(text, add_special_tokens=False).ids)


# Counting runs several times before every first token (the prompt budget): once the converted
# model is found, its Rust tokenizer is called directly, without checking the model's files and
# going through transformers' wrapper each time (about 0.5 ms a call). Same ids (test_llm.py).
_encoders: dict[str, Callable] = {}


def _token_encoder(model_dir: str) -> Callable | None:
    encode = _encoders.get(model_dir)
    if encode is None:
        tokenizer = _tokenizer(Path(model_dir))
        if tokenizer is None:
            return None
        encode = _encoders[model_dir] = tokenizer.backend_tokenizer.encode
    return encode


def _tokenizer(model_dir):
    from assistant.llm.convert import is_prepared

    if not is_prepared(model_dir):
        # Not cached: prepare_models may run later in this process (the test session does).
        if model_dir not in _warned:
            _warned.add(model_dir)
            logger.warning(
                "no converted local model in %s: token counts are estimated (run prepare_models)",
                model_dir,
            )
        return None
    from assistant.llm.local import local_tokenizer

    return local_tokenizer(model_dir)


_warned: set = set()
