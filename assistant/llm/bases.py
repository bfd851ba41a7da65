"""The adapters' base model: a served GGUF model, de-quantised once into a trainable checkpoint.

A LoRA adapter works only on the weights it was trained on, so adapters are trained on exactly
the model the adapters' server serves (``TUNING_BASE_MODEL``, a key of
:data:`assistant.llm.catalog.MODELS`): its hash-pinned GGUF file, de-quantised once to an fp32
transformers checkpoint under ``LLM_MODELS_DIR/<key>-fp32`` (assistant.llm.convert), which
PEFT trains on and llama.cpp's converter reads the configuration of. SmolLM2-135M keeps its
historical directory, ``LLM_LOCAL_MODEL_DIR``, which also provides the token counter.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from django.conf import settings

from assistant.llm.catalog import gguf_path, known_model, model_install
from assistant.llm.convert import PrepareResult, local_model_prepare

_LEGACY_DIR_MODEL = "smollm2-135m"


def checkpoint_dir(key: str) -> Path:
    """Where the de-quantised checkpoint of catalog model ``key`` lives."""
    if key == _LEGACY_DIR_MODEL:
        return Path(settings.LLM_LOCAL_MODEL_DIR)
    return Path(settings.LLM_MODELS_DIR) / f"{key}-fp32"


def checkpoint_prepare(
    key: str, *, force: bool = False, log: Callable[[str], object] = print
) -> PrepareResult:
    """The model's GGUF installed and checked, then de-quantised (once; a no-op afterwards)."""
    model = known_model(key)
    models_dir = Path(settings.LLM_MODELS_DIR)
    model_install(model, models_dir, log=log)
    return local_model_prepare(
        model_dir=checkpoint_dir(key),
        source=gguf_path(model, models_dir),
        force=force,
        log=log,
    )
