"""A short-lived llama.cpp server of one's own: the training worker's check and evaluation.

A converted adapter is checked the only way that counts, by loading it into llama.cpp with its
base exactly as the adapters' server will, and answering with it; the evaluation then asks the
same server (adapter at scale 1, or 0 for the base alone), so the measured accuracy is that of
the served weights (the quantised base plus the GGUF adapter), not of the fp32 training copy.

The server is :mod:`assistant.llm.server` in a subprocess on a free loopback port (xllamacpp's
server cannot be stopped inside a process), with its key and log in a temporary directory.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 180


class ServerStartError(Exception):
    """llama.cpp refused the model or an adapter; the message is its own explanation."""


class PrivateServer:
    def __init__(
        self, *, model: str, adapters: dict[str, Path], threads: int = 0, parallel: int = 2
    ) -> None:
        self.model = model
        self.adapters = adapters
        self.threads = threads
        self.parallel = parallel
        self.directory = Path(tempfile.mkdtemp(prefix="counsel-llm-"))
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self.key = ""
        self.ids: dict[str, int] = {}

    def __enter__(self) -> PrivateServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        command = [sys.executable, "-m", "assistant.llm.server", "--model", self.model]
        command += ["--port", "0", "--server-dir", str(self.directory)]
        command += ["--parallel", str(self.parallel)]
        if self.threads:
            command += ["--threads", str(self.threads)]
        for name, path in self.adapters.items():
            command += ["--lora", f"{name}={path}"]
        log = (self.directory / "server.log").open("wb")
        self.proc = subprocess.Popen(
            command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        log.close()
        state = self.directory / "server.json"
        deadline = time.monotonic() + START_TIMEOUT
        while not state.is_file():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                reason = self._refusal()
                self.stop()
                raise ServerStartError(reason)
            time.sleep(0.1)
        info = json.loads(state.read_text())
        self.url, self.ids = info["url"], info["adapters"]
        self.key = (self.directory / "api-key").read_text().strip()

    def _refusal(self) -> str:
        """llama.cpp's reason, from the end of the log: errors first, else the last lines."""
        text = (self.directory / "server.log").read_text(errors="replace")
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        errors = [
            line
            for line in lines
            if " E " in line or "error" in line.lower() or "failed" in line.lower()
        ]
        return " ".join((errors or lines)[-3:])[-600:] or "the server exited without a message"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        shutil.rmtree(self.directory, ignore_errors=True)

    def lora_field(self, adapter: str | None) -> list[dict]:
        """Every adapter named, ``adapter`` at scale 1 (None: the base alone)."""
        return [{"id": i, "scale": 1.0 if n == adapter else 0.0} for n, i in self.ids.items()]

    def answer(
        self, messages: list[dict], *, adapter: str | None, max_tokens: int, timeout: float = 300
    ) -> str:
        """One greedy answer, whole."""
        body = {
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": 0,
            "lora": self.lora_field(adapter),
        }
        response = httpx.post(
            f"{self.url}/v1/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {self.key}"},
            timeout=timeout,
        )
        response.raise_for_status()
        return (response.json()["choices"][0]["message"]["content"] or "").strip()

    def answer_all(
        self,
        conversations: Sequence[list[dict]],
        *,
        adapter: str | None,
        max_tokens: int,
        on_batch: Callable[[int], None] | None = None,
    ) -> list[str]:
        """Answers to many conversations, ``parallel`` at a time (the server decodes them
        together); ``on_batch(n)`` is told after every ``parallel`` answers, in order."""
        answers: list[str] = []
        with ThreadPoolExecutor(self.parallel) as pool:
            for start in range(0, len(conversations), self.parallel):
                part = conversations[start : start + self.parallel]
                answers += pool.map(
                    lambda c: self.answer(c, adapter=adapter, max_tokens=max_tokens), part
                )
                if on_batch is not None:
                    on_batch(len(part))
        return answers
