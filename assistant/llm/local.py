"""The converted local checkpoint's tokenizer: how the chat counts prompt tokens.

The web process holds no model weights: the chat's model and the LoRA adapters are served by
the local model servers (assistant.llm.server, assistant.llm.adapter_server). What stays here is
the tokenizer of the converted SmolLM2 checkpoint (``LLM_LOCAL_MODEL_DIR``), loaded once per
process, which :func:`assistant.llm.count_tokens` uses for prompt budgets.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

_tokenizers: dict[Path, Any] = {}
_lock = threading.Lock()


def local_tokenizer(model_dir: Path) -> Any:
    """The converted model's tokenizer (loaded once per process; no weights)."""
    key = Path(model_dir).resolve()
    with _lock:
        if key not in _tokenizers:
            from transformers import AutoTokenizer

            _tokenizers[key] = AutoTokenizer.from_pretrained(key)
        return _tokenizers[key]
