"""Serving adapters: the local backend's small adapter cache, the OpenAI-compatible naming."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings

from assistant import llm
from assistant.llm.local import LocalChatModel, _runtime_for

QUESTION = [("user", "What is the staff canteen called?")]


def _random_adapter(model_dir: Path, folder: Path, seed: int) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    config = LoraConfig(
        r=2, lora_alpha=64, target_modules=["q_proj", "v_proj"], init_lora_weights=False
    )
    get_peft_model(base, config).save_pretrained(folder)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing`:FutureWarning")
def test_local_backend_keeps_a_small_lru_cache_of_adapters(tmp_path, settings):
    model_dir = Path(settings.LLM_LOCAL_MODEL_DIR)
    for i in range(3):
        _random_adapter(model_dir, tmp_path / f"cache-a{i}", seed=i)
    settings.LLM_BACKEND = "local"
    settings.LLM_ADAPTER_DIR = tmp_path
    settings.LLM_ADAPTER_CACHE_SIZE = 2
    settings.LLM_MAX_CONCURRENCY = 1

    def answer(adapter):
        model = llm.get_chat_model(adapter=adapter)
        assert isinstance(model, LocalChatModel)
        return model.invoke(QUESTION, temperature=0, max_new_tokens=8).text

    first = answer("cache-a0")
    answer("cache-a1")
    answer("cache-a2")
    runtime = _runtime_for(model_dir)
    assert list(runtime._loaded) == ["cache-a1", "cache-a2"]
    assert "cache-a0" not in runtime._peft.peft_config  # unloaded, memory given back
    assert answer("cache-a0") == first  # loaded again from its directory, same weights
    assert list(runtime._loaded) == ["cache-a2", "cache-a0"]


def test_openai_compatible_backend_asks_for_the_adapter_by_name():
    from assistant.llm.conf import LLMConfig
    from assistant.llm.openai_compat import build_openai_compatible

    config = LLMConfig.from_settings()
    model = build_openai_compatible(config, adapter="ap-0123456789ab-v2")
    assert model.model_name == "ap-0123456789ab-v2"
    assert llm.model_name(adapter="ap-0123456789ab-v2").endswith("+ap-0123456789ab-v2")
    assert settings.LLM_ADAPTER_DIR  # where training writes what vLLM serves (--lora-modules)
