"""The adapters' model server: llama.cpp serving the adapters' base and every servable adapter.

    python -m assistant.llm.adapter_server             serve until SIGTERM or SIGINT
    python -m assistant.llm.adapter_server --describe  print what would be served (JSON)

``scripts/services`` starts it beside the chat's model server (service ``llm-adapters``). It
serves ``TUNING_BASE_MODEL`` with the GGUF LoRA adapters listed in its manifest
(``LLM_ADAPTER_SERVER_DIR/adapters.json``, written by tuning.services whenever an adapter
becomes ready or active or stops being so), each loaded at scale 0 and picked per request.

llama.cpp loads LoRA files only when it starts, and xllamacpp's server cannot be stopped inside
its process, so this is a small supervisor of :mod:`assistant.llm.server` processes. When the
manifest changes it starts a new instance with the new set (a second or two for the fast
model), points ``server.json`` at it once it is listening, lets the old one finish what it is
answering, then stops it: nothing in flight is lost, and the web process never restarts (it
reads ``server.json`` on every question, :mod:`assistant.llm.adapters`). Instances alternate
between ``LLM_ADAPTER_SERVER_PORT`` and the port after it (0: free ports, for tests).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

POLL_SECONDS = 0.5
START_TIMEOUT = 180
# An old instance is stopped once it has answered everything it had, or after this long.
DRAIN_TIMEOUT = 180
# After the switch, a request may still be on its way to the old instance (its sender read
# server.json just before): it gets this long to arrive before the old one counts as idle.
DRAIN_GRACE = 2.0


def _settings():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    from django.conf import settings

    return settings


def describe(args: argparse.Namespace) -> dict:
    settings = _settings()
    from assistant.llm.server import default_threads

    port = settings.LLM_ADAPTER_SERVER_PORT if args.port is None else args.port
    return {
        "needed": settings.LLM_BACKEND == "local",
        "backend": settings.LLM_BACKEND,
        "model": args.model or settings.TUNING_BASE_MODEL,
        "ports": [port, port + 1] if port else [0, 0],
        "threads": args.threads or settings.LLM_SERVER_THREADS or default_threads(),
        "parallel": args.parallel or settings.LLM_SERVER_PARALLEL,
        "server_dir": str(args.server_dir or settings.LLM_ADAPTER_SERVER_DIR),
    }


@dataclass
class Instance:
    """One llama.cpp server process with one set of adapters."""

    generation: int
    port: int
    adapters: list[dict]
    proc: subprocess.Popen
    state_file: Path
    state: dict = field(default_factory=dict)

    def listening(self) -> bool:
        if self.state:
            return True
        try:
            self.state = json.loads(self.state_file.read_text())
        except (FileNotFoundError, ValueError):
            return False
        return True


class Supervisor:
    def __init__(self, config: dict) -> None:
        self.config = config
        self.directory = Path(config["server_dir"])
        self.current: Instance | None = None
        self.draining: list[tuple[Instance, float]] = []
        self.generation = 0

    # --- instances ---

    def _start(self, adapters: list[dict]) -> Instance:
        self.generation += 1
        ports = self.config["ports"]
        port = ports[self.generation % 2]
        self._free(port)
        state_file = self.directory / f"instance-{self.generation}.json"
        state_file.unlink(missing_ok=True)
        command = [sys.executable, "-m", "assistant.llm.server", "--model", self.config["model"]]
        command += ["--port", str(port), "--server-dir", str(self.directory)]
        command += ["--threads", str(self.config["threads"])]
        command += ["--parallel", str(self.config["parallel"]), "--state-file", str(state_file)]
        for adapter in adapters:
            command += ["--lora", f"{adapter['name']}={adapter['path']}"]
        log = (self.directory / "instances.log").open("ab")
        proc = subprocess.Popen(
            command,
            cwd=Path(__file__).resolve().parents[2],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        return Instance(self.generation, port, adapters, proc, state_file)

    def _free(self, port: int) -> None:
        """Two swaps in a row: the instance before last may still hold this port; it finishes
        what it answers first."""
        for instance, since in [d for d in self.draining if port and d[0].port == port]:
            while time.monotonic() - since < DRAIN_TIMEOUT and not _idle(instance):
                time.sleep(POLL_SECONDS)
            _stop(instance)
            self.draining.remove((instance, since))

    def _wait_listening(self, instance: Instance) -> bool:
        deadline = time.monotonic() + START_TIMEOUT
        while not instance.listening():
            if instance.proc.poll() is not None or time.monotonic() > deadline:
                _say(f"instance {instance.generation} did not start (see instances.log)")
                _stop(instance)
                return False
            time.sleep(0.1)
        return True

    def _publish(self, instance: Instance) -> None:
        state = {
            **instance.state,
            "pid": os.getpid(),
            "instance_pid": instance.proc.pid,
            "generation": instance.generation,
        }
        path = self.directory / "server.json"
        partial = path.with_name("server.json.partial")
        partial.write_text(json.dumps(state) + "\n")
        os.replace(partial, path)

    def load(self, adapters: list[dict]) -> None:
        """Serve ``adapters`` from a new instance; the old one drains. A set llama.cpp refuses
        is retried without the adapters that are not files any more, then left as it was."""
        instance = self._start(adapters)
        if not self._wait_listening(instance):
            present = [a for a in adapters if Path(a["path"]).is_file()]
            if present != adapters:
                return self.load(present)
            return
        previous, self.current = self.current, instance
        self._publish(instance)
        names = ", ".join(a["name"] for a in adapters) or "none"
        url = instance.state["url"]
        _say(f"instance {instance.generation} serving on {url}; adapters: {names}")
        if previous is not None:
            self.draining.append((previous, time.monotonic()))

    def drain(self) -> None:
        still = []
        for instance, since in self.draining:
            waited = time.monotonic() - since
            if waited >= DRAIN_GRACE and (waited > DRAIN_TIMEOUT or _idle(instance)):
                _stop(instance)
                _say(f"instance {instance.generation} stopped after {waited:.1f} s")
            else:
                still.append((instance, since))
        self.draining = still

    def stop_all(self) -> None:
        for instance, _ in self.draining:
            _stop(instance)
        if self.current is not None:
            _stop(self.current)
        (self.directory / "server.json").unlink(missing_ok=True)

    # --- the loop ---

    def wanted(self) -> list[dict]:
        from assistant.llm.adapters import manifest_read

        manifest = manifest_read(self.directory)
        if manifest["base"] and manifest["base"] != self.config["model"]:
            return []  # written for another base: none of its adapters fits this one
        return [a for a in manifest["adapters"] if Path(a["path"]).is_file()]

    def run(self) -> int:
        self.load(self.wanted())
        if self.current is None:
            return 3
        while True:
            signum = signal.sigtimedwait({signal.SIGTERM, signal.SIGINT}, POLL_SECONDS)
            if signum is not None:
                self.stop_all()
                return 0
            if self.current.proc.poll() is not None:
                _say(f"instance {self.current.generation} exited; starting another")
                self.current = None
                self.load(self.wanted())
                if self.current is None:
                    self.stop_all()
                    return 3
                continue
            wanted = self.wanted()
            if wanted != self.current.adapters:
                self.load(wanted)
            self.drain()


def _idle(instance: Instance) -> bool:
    """Whether an instance answers nothing now (llama.cpp's own counters, /metrics)."""
    if instance.proc.poll() is not None:
        return True
    from assistant.llm.server import local_api_key

    key = _settings().LLM_API_KEY or local_api_key(instance.state_file.parent)
    try:
        response = httpx.get(
            instance.state["url"] + "/metrics",
            headers={"Authorization": f"Bearer {key}"},
            timeout=2,
        )
        text = response.text
    except httpx.HTTPError:
        return False
    busy = 0.0
    for line in text.splitlines():
        if line.startswith(("llamacpp:requests_processing", "llamacpp:requests_deferred")):
            busy += float(line.split()[-1])
    return busy == 0


def _stop(instance: Instance) -> None:
    if instance.proc.poll() is None:
        instance.proc.send_signal(signal.SIGTERM)
        try:
            instance.proc.wait(10)
        except subprocess.TimeoutExpired:
            instance.proc.kill()
            instance.proc.wait()
    instance.state_file.unlink(missing_ok=True)


def _say(message: str) -> None:
    print(f"adapter server: {message}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--describe", action="store_true", help="print the configuration")
    parser.add_argument("--model", help="the adapters' base (TUNING_BASE_MODEL)")
    parser.add_argument("--port", type=int, help="first of two ports; 0: free ports")
    parser.add_argument("--threads", type=int, help="LLM_SERVER_THREADS")
    parser.add_argument("--parallel", type=int, help="LLM_SERVER_PARALLEL")
    parser.add_argument("--server-dir", help="manifest, state, key (LLM_ADAPTER_SERVER_DIR)")
    args = parser.parse_args(argv)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    config = describe(args)
    if args.describe:
        print(json.dumps(config))
        return 0
    Path(config["server_dir"]).mkdir(parents=True, exist_ok=True)
    return Supervisor(config).run()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    sys.exit(main())
