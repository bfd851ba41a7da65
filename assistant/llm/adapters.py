"""Where the LoRA adapters are served, as the web process and the workers see it.

The adapters are GGUF LoRA files served by the adapters' model server
(:mod:`assistant.llm.adapter_server`): llama.cpp with the adapters' base (``TUNING_BASE_MODEL``)
and every adapter that is ready or active, loaded at scale 0, so that each request picks its
adapter with llama.cpp's ``lora`` field. This module answers three questions, cheaply enough to
ask on every question:

- which base is being served (:func:`served_base`): an adapter trained on another base is never
  eligible (tuning.selectors filters on it in SQL);
- how to ask for one adapter (:func:`adapter_endpoint`): the server's URL and the ``lora`` field
  (the URL's host is ``LLM_ADAPTER_SERVER_HOST`` where the server runs elsewhere: compose);
- what the server should load (:func:`manifest_write`, called by tuning.services whenever an
  adapter becomes ready or active, or stops being so).

With ``LLM_BACKEND=openai`` (vLLM) the adapters are requested by name and the operator declares
the base by ``TUNING_BASE_MODEL`` (docs/deployment.md); with ``fake`` the FAKE model answers.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from assistant.llm.catalog import MODELS

MANIFEST = "adapters.json"
STATE = "server.json"


@dataclass(frozen=True)
class ServedBase:
    model: str  # a key of assistant.llm.catalog.MODELS
    sha256: str  # of the base's GGUF file
    # The adapters loaded, by name; None: any name (a server that loads adapters by name).
    adapters: frozenset[str] | None


@dataclass(frozen=True)
class AdapterEndpoint:
    base_url: str  # OpenAI-compatible, ending in /v1
    server_dir: Path  # where its API key is
    lora: tuple[tuple[int, float], ...]  # llama.cpp's per-request (id, scale) of every adapter

    def lora_field(self) -> list[dict]:
        return [{"id": i, "scale": s} for i, s in self.lora]


def server_dir() -> Path:
    return Path(settings.LLM_ADAPTER_SERVER_DIR)


def base_sha256(model: str) -> str:
    """The pinned SHA-256 of a catalog model's GGUF file ('' for a name outside the catalog)."""
    known = MODELS.get(model)
    return known.sha256 if known else ""


# --- the running server's state ---------------------------------------------------------------

_cache_lock = threading.Lock()
_cache: dict[Path, tuple[tuple[int, int], dict | None]] = {}


def server_state(directory: Path | None = None) -> dict | None:
    """What the adapters' server serves now (its ``server.json``), or None when it is not running.

    Re-read only when the file changed (its size and mtime), so asking on every question costs
    one ``stat``.
    """
    path = (directory or server_dir()) / STATE
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    signature = (stat.st_mtime_ns, stat.st_size)
    with _cache_lock:
        cached = _cache.get(path)
        if cached is not None and cached[0] == signature:
            return cached[1]
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        state = None  # being replaced: the next question reads the new one
    with _cache_lock:
        _cache[path] = (signature, state)
    return state


def served_base() -> ServedBase | None:
    """The base the adapters are served on now, or None when no adapter can be served."""
    backend = settings.LLM_BACKEND
    if backend != "local":
        model = settings.TUNING_BASE_MODEL
        return ServedBase(model=model, sha256=base_sha256(model), adapters=None)
    state = server_state()
    if not state or not state.get("url"):
        return None
    return ServedBase(
        model=state.get("model", ""),
        sha256=state.get("sha256", ""),
        adapters=frozenset(state.get("adapters") or {}),
    )


def server_url(state: dict) -> str:
    """The running instance's URL as this process reaches it: server.json's own, or its port
    on LLM_ADAPTER_SERVER_HOST (the instance listens on 0.0.0.0 in a container of its own)."""
    host = settings.LLM_ADAPTER_SERVER_HOST
    return f"http://{host}:{state['port']}" if host else state["url"].rstrip("/")


def server_api_key() -> str:
    """The key the adapters' server requires: LLM_API_KEY, or the one it wrote on start."""
    from assistant.llm.server import local_api_key

    return settings.LLM_API_KEY or local_api_key(server_dir())


def adapter_endpoint(name: str) -> AdapterEndpoint | None:
    """How to ask the local adapters' server for ``name``, or None when it is not loaded.

    Every loaded adapter is named in the ``lora`` field, the chosen one at scale 1 and the
    others at 0: llama.cpp reuses a slot's cached prompt only for the same adapter scales it
    was computed with, and a request without the field would reuse one computed by an adapter.
    """
    state = server_state()
    if not state or name not in (state.get("adapters") or {}):
        return None
    ids = state["adapters"]
    return AdapterEndpoint(
        base_url=server_url(state) + "/v1",
        server_dir=server_dir(),
        lora=tuple(sorted((i, 1.0 if n == name else 0.0) for n, i in ids.items())),
    )


def base_endpoint() -> AdapterEndpoint | None:
    """The adapters' base alone on the same server (every adapter at scale 0): benchmarks."""
    state = server_state()
    if not state:
        return None
    ids = (state.get("adapters") or {}).values()
    return AdapterEndpoint(
        base_url=server_url(state) + "/v1",
        server_dir=server_dir(),
        lora=tuple(sorted((i, 0.0) for i in ids)),
    )


# --- what the server should load --------------------------------------------------------------


def gguf_file(adapter_dir: Path) -> Path:
    """The converted adapter inside its directory (beside the PEFT files vLLM serves)."""
    return adapter_dir / "adapter.gguf"


def manifest_write(*, base: str, adapters: list[tuple[str, Path]]) -> bool:
    """Tell the adapters' server what to serve: ``base`` and ``(name, gguf file)`` pairs.

    Written atomically; the server notices the change within a second and swaps to a new
    instance without dropping what is in flight. Returns whether the manifest changed.
    """
    directory = server_dir()
    directory.mkdir(parents=True, exist_ok=True)
    content = (
        json.dumps(
            {
                "base": base,
                "adapters": [{"name": n, "path": str(p)} for n, p in sorted(adapters)],
            },
            indent=1,
        )
        + "\n"
    )
    path = directory / MANIFEST
    try:
        if path.read_text() == content:
            return False
    except FileNotFoundError:
        pass
    partial = path.with_name(f"{MANIFEST}.{os.getpid()}.{threading.get_ident()}.partial")
    partial.write_text(content)
    os.replace(partial, path)
    return True


def manifest_read(directory: Path) -> dict:
    try:
        data = json.loads((directory / MANIFEST).read_text())
    except (FileNotFoundError, ValueError):
        return {"base": "", "adapters": []}
    return {"base": data.get("base", ""), "adapters": data.get("adapters") or []}
