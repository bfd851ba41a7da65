"""The language-model settings as one frozen value (hashable: it keys the model cache)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from django.conf import settings


@dataclass(frozen=True)
class LLMConfig:
    backend: str
    model: str
    base_url: str
    api_key: str
    timeout_seconds: float
    first_token_timeout_seconds: float
    max_new_tokens: int
    temperature: float
    max_concurrency: int
    local_model_dir: Path
    adapter_dir: Path
    adapter_cache_size: int
    threads: int
    fake_tokens_per_second: float

    @classmethod
    def from_settings(cls) -> LLMConfig:
        return cls(
            backend=settings.LLM_BACKEND,
            model=settings.LLM_MODEL,
            base_url=settings.LLM_BASE_URL,
            api_key=settings.LLM_API_KEY,
            timeout_seconds=settings.LLM_TIMEOUT_SECONDS,
            first_token_timeout_seconds=settings.LLM_FIRST_TOKEN_TIMEOUT_SECONDS,
            max_new_tokens=settings.LLM_MAX_NEW_TOKENS,
            temperature=settings.LLM_TEMPERATURE,
            max_concurrency=settings.LLM_MAX_CONCURRENCY,
            local_model_dir=Path(settings.LLM_LOCAL_MODEL_DIR),
            adapter_dir=Path(settings.LLM_ADAPTER_DIR),
            adapter_cache_size=settings.LLM_ADAPTER_CACHE_SIZE,
            threads=settings.LLM_THREADS,
            fake_tokens_per_second=settings.LLM_FAKE_TOKENS_PER_SECOND,
        )
