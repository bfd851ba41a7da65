"""The local model server: llama.cpp's OpenAI-compatible HTTP server from the ``xllamacpp`` wheel.

    python -m assistant.llm.server            serve LLM_MODEL until SIGTERM or SIGINT
    python -m assistant.llm.server --describe print what would be served (JSON), start nothing
    python -m assistant.llm.server --model K --lora NAME=FILE ...
                                              serve model K with GGUF LoRA adapters, none
                                              applied unless a request asks (the adapters'
                                              server, assistant.llm.adapter_server)

``scripts/services`` starts it like PostgreSQL and Redis (pid file, log and state under
``var/llm/``), and the web process and workers talk to it over the same OpenAI-compatible
client as to vLLM in production (assistant.llm.openai_compat): the web process holds no model
weights. It listens on 127.0.0.1 (``LLM_SERVER_HOST``) and requires an API key:
``LLM_API_KEY``, or a random one written to ``var/llm/api-key`` (mode 0600) on first start and
read by the app.

Settings are Django's (``LLM_*``, read through config/env.py and .env); flags override them
for tests and benchmarks, which start servers of their own on free ports.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import sys
import time
from pathlib import Path


def api_key_file(server_dir: Path) -> Path:
    return server_dir / "api-key"


def local_api_key(server_dir: Path, *, create: bool = False) -> str:
    """The local server's API key from its file ('' when there is none and ``create`` is off)."""
    path = api_key_file(server_dir)
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        if not create:
            return ""
    server_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    # Created with 0600 from the start: no moment where another user could read it.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key


def default_threads() -> int:
    """All cores this process may use: llama.cpp's threads spin while they wait, so more
    threads than cores (or a second busy program) collapses its speed (docs/models.md)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _settings():
    # As manage.py does: this process starts outside Django, and its settings are Django's.
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    from django.conf import settings

    return settings


def describe(args: argparse.Namespace) -> dict:
    """What this server would serve, from the settings and flags (no model is loaded)."""
    settings = _settings()
    return {
        "needed": settings.LLM_BACKEND == "local",
        "backend": settings.LLM_BACKEND,
        "model": args.model or settings.LLM_MODEL,
        "port": settings.LLM_SERVER_PORT if args.port is None else args.port,
        "host": settings.LLM_SERVER_HOST,
        "threads": args.threads or settings.LLM_SERVER_THREADS or default_threads(),
        "parallel": args.parallel or settings.LLM_SERVER_PARALLEL,
        "context": settings.LLM_SERVER_CONTEXT,
        "server_dir": str(settings.LLM_SERVER_DIR),
        "models_dir": str(settings.LLM_MODELS_DIR),
    }


def serve(args: argparse.Namespace) -> int:
    from assistant.llm.catalog import ModelInstallError, known_model, model_verified

    config = describe(args)
    server_dir = Path(args.server_dir or config["server_dir"])
    try:
        model = known_model(config["model"])
        path = model_verified(model, Path(config["models_dir"]))
    except ModelInstallError as exc:
        print(f"model server: {exc}", file=sys.stderr, flush=True)
        return 2
    settings = _settings()
    key = settings.LLM_API_KEY or local_api_key(server_dir, create=True)

    import xllamacpp as xlc

    params = xlc.CommonParams()
    params.model.path = str(path)
    params.model_alias = model.key
    params.hostnames = [config["host"]]
    params.port = config["port"]
    params.api_keys = [key]
    params.n_parallel = config["parallel"]
    # Each slot gets context / parallel tokens: prompts are kept well under 1,000 tokens.
    params.n_ctx = config["context"] * config["parallel"]
    params.cpuparams.n_threads = config["threads"]
    params.cpuparams_batch.n_threads = config["threads"]
    # The system prompt is the same for every question, so its tokens come from the prompt
    # cache after the first answer (docs/models.md, "Prompt cache").
    params.cache_prompt = True
    params.endpoint_metrics = True
    adapters = _lora_adapters(args.lora or [])
    if adapters:
        # Loaded at scale 0: a request picks its adapter with llama.cpp's per-request `lora`
        # field (assistant.llm.adapters.lora_field), so one server serves every adapter.
        params.lora_adapters = [info for _, info in adapters]
        params.lora_init_without_apply = True
    started = time.monotonic()
    try:
        server = xlc.Server(params)
    except Exception as exc:  # a model or adapter llama.cpp refuses: say so, exit non-zero
        print(f"model server: llama.cpp refused to start: {exc}", file=sys.stderr, flush=True)
        return 3
    address = server.listening_address
    state = {
        "pid": os.getpid(),
        "url": address,
        "port": int(address.rsplit(":", 1)[1]),
        "model": model.key,
        "sha256": model.sha256,
        "threads": config["threads"],
        "parallel": config["parallel"],
        "load_seconds": round(time.monotonic() - started, 2),
        # The adapters by name, with llama.cpp's id (their order here) for the `lora` field.
        "adapters": {name: i for i, (name, _) in enumerate(adapters)},
    }
    state_file = Path(args.state_file) if args.state_file else server_dir / "server.json"
    state_file.parent.mkdir(parents=True, exist_ok=True)
    partial = state_file.with_name(state_file.name + ".partial")
    partial.write_text(json.dumps(state) + "\n")
    os.replace(partial, state_file)
    print(f"model server: {model.key} listening on {address} ({state})", flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    print("model server: stopping", flush=True)
    state_file.unlink(missing_ok=True)
    # The HTTP server's threads are not joined (xllamacpp has no stop call): leave at once.
    os._exit(0)


def _lora_adapters(specs: list[str]) -> list[tuple[str, object]]:
    """``NAME=FILE`` arguments as llama.cpp adapter entries, in order (the order is the id)."""
    import xllamacpp as xlc

    adapters = []
    for spec in specs:
        name, sep, file = spec.partition("=")
        if not sep or not name or not Path(file).is_file():
            raise SystemExit(f"model server: --lora wants NAME=FILE of an existing file: {spec!r}")
        info = xlc.CommonAdapterLoraInfo()
        info.path, info.scale = file, 0.0
        adapters.append((name, info))
    return adapters


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--describe", action="store_true", help="print the configuration")
    parser.add_argument("--model", help="a key of assistant.llm.catalog.MODELS (LLM_MODEL)")
    parser.add_argument("--port", type=int, help="0: a free port (LLM_SERVER_PORT)")
    parser.add_argument("--threads", type=int, help="LLM_SERVER_THREADS")
    parser.add_argument("--parallel", type=int, help="LLM_SERVER_PARALLEL")
    parser.add_argument("--server-dir", help="api key and state (LLM_SERVER_DIR)")
    parser.add_argument("--state-file", help="where to write the state once listening")
    parser.add_argument(
        "--lora", action="append", metavar="NAME=FILE", help="a GGUF LoRA adapter (repeatable)"
    )
    args = parser.parse_args(argv)
    # Block the stop signals before the server's threads start, so that they all inherit the
    # mask and sigwait in the main thread is the one place the signal is taken.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    if args.describe:
        print(json.dumps(describe(args)))
        return 0
    return serve(args)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    sys.exit(main())
