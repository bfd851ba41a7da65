"""The language-model settings as one frozen value (hashable: it keys the model cache)."""

from __future__ import annotations

from dataclasses import dataclass, replace
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
    fake_tokens_per_second: float
    frequency_penalty: float = 0.0
    server_dir: Path = Path("var/llm")

    @classmethod
    def from_settings(cls) -> LLMConfig:
        config = cls._from_settings()
        # The resolved key is part of the value, which keys the model cache: a model built
        # before the local server wrote its key is not reused once the key exists.
        return replace(config, api_key=config.resolved_api_key())

    @classmethod
    def _from_settings(cls) -> LLMConfig:
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
            fake_tokens_per_second=settings.LLM_FAKE_TOKENS_PER_SECOND,
            frequency_penalty=settings.LLM_FREQUENCY_PENALTY,
            server_dir=Path(settings.LLM_SERVER_DIR),
        )

    def resolved_api_key(self) -> str:
        """The key to send: LLM_API_KEY, or for the local server the one it wrote on start."""
        if self.api_key or self.backend != "local":
            return self.api_key or "none"
        from assistant.llm.server import local_api_key

        return local_api_key(self.server_dir) or "none"
