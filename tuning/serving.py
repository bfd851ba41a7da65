"""From trained weights to a served adapter: the base, the GGUF file, the check, the manifest.

- :func:`base_checkpoint`: the de-quantised copy of the base the adapters' server serves, which
  the adapter is trained on; refuses when the base's file is not the one the adapter recorded.
- :func:`adapter_package`: the PEFT adapter converted to a GGUF LoRA with llama.cpp's converter
  and loaded, with its base, into a private llama.cpp server that must answer with it; the
  evaluation then runs on that server. Any refusal raises :class:`AdapterNotServable` with the
  reason, and the run ends ``failed`` with it.
- :func:`adapters_publish`: tells the adapters' server which adapters to serve (every ready or
  active one on its base), after every change of state; it swaps instances by itself.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings
from django.db import transaction

from assistant.llm.adapters import gguf_file, manifest_write
from assistant.llm.bases import checkpoint_dir, checkpoint_prepare
from assistant.llm.convert import MARKER
from assistant.llm.lora_gguf import ConversionError, adapter_to_gguf
from assistant.llm.private_server import PrivateServer, ServerStartError
from tuning.models import Adapter
from tuning.selectors import adapters_to_serve

logger = logging.getLogger(__name__)


class AdapterNotServable(Exception):
    """The adapter cannot be served on its base; the message says why, for its page."""


def adapter_dir(adapter: Adapter) -> Path:
    return Path(settings.LLM_ADAPTER_DIR) / adapter.name


def base_checkpoint(adapter: Adapter) -> Path:
    """The trainable copy of the adapter's base, de-quantised now if it never was (once)."""
    directory = checkpoint_dir(adapter.base_model)
    checkpoint_prepare(adapter.base_model, log=logger.info)
    try:
        source = json.loads((directory / MARKER).read_text()).get("source_sha256", "")
    except (OSError, ValueError):
        source = ""
    if source != adapter.base_sha256:
        raise AdapterNotServable(
            f"The base model's file ({adapter.base_model}, SHA-256 {source[:12] or 'unknown'}…) "
            f"is not the one this adapter was registered for ({adapter.base_sha256[:12]}…)."
        )
    return directory


@contextlib.contextmanager
def adapter_package(*, adapter: Adapter, base_dir: Path) -> Iterator[PrivateServer]:
    """Convert the trained adapter to GGUF and yield a llama.cpp server that loaded it."""
    folder = adapter_dir(adapter)
    try:
        gguf = adapter_to_gguf(
            peft_dir=folder,
            base_dir=base_dir,
            output=gguf_file(folder),
            converter=Path(settings.LLM_CONVERTER_DIR),
        )
    except ConversionError as exc:
        reason = f"The adapter could not be converted for llama.cpp: {exc}"
        raise AdapterNotServable(reason) from exc
    server = PrivateServer(
        model=adapter.base_model,
        adapters={adapter.name: gguf},
        threads=settings.LLM_SERVER_THREADS,
        parallel=settings.LLM_SERVER_PARALLEL,
    )
    try:
        server.start()
    except ServerStartError as exc:
        raise AdapterNotServable(f"llama.cpp did not load the converted adapter: {exc}") from exc
    try:
        _answers_with(server, adapter.name)
        yield server
    finally:
        server.stop()


def adapter_check(*, adapter: Adapter, gguf: Path | None = None) -> None:
    """Load the adapter's GGUF file (or ``gguf``) with its base and answer once with it;
    AdapterNotServable with llama.cpp's reason if it cannot."""
    gguf = gguf or gguf_file(adapter_dir(adapter))
    if not gguf.is_file():
        raise AdapterNotServable("The adapter has no converted file.")
    try:
        with PrivateServer(
            model=adapter.base_model, adapters={adapter.name: gguf}, parallel=1
        ) as server:
            _answers_with(server, adapter.name)
    except ServerStartError as exc:
        raise AdapterNotServable(f"llama.cpp did not load the converted adapter: {exc}") from exc


def _answers_with(server: PrivateServer, name: str) -> None:
    try:
        server.answer([{"role": "user", "content": "Hello"}], adapter=name, max_tokens=4)
    except Exception as exc:
        raise AdapterNotServable(
            f"llama.cpp loaded the converted adapter but could not answer with it: {exc}"
        ) from exc


def adapters_publish() -> bool:
    """Write the adapters' server manifest from the registry now (after the transaction).

    Every ready or active adapter on the served base whose GGUF file exists: ready ones too, so
    that activating one takes effect on the next question instead of after a reload.
    """
    base = settings.TUNING_BASE_MODEL
    rows = adapters_to_serve().values_list("name", flat=True)
    served = [(name, gguf_file(Path(settings.LLM_ADAPTER_DIR) / name)) for name in rows]
    try:
        return manifest_write(base=base, adapters=[(n, p) for n, p in served if p.is_file()])
    except OSError:
        logger.warning("could not write the adapters' server manifest", exc_info=True)
        return False


def adapters_publish_on_commit() -> None:
    transaction.on_commit(adapters_publish)
