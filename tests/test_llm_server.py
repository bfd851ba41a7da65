"""The local model server: llama.cpp from the xllamacpp wheel, spoken to over the OpenAI client.

A real server process serving the real SmolLM2-135M (tests/conftest.py, `model_server`), and the
real packaged model files for the install checks. No database.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from assistant import llm
from assistant.llm.catalog import (
    MODELS,
    KnownModel,
    ModelInstallError,
    file_sha256,
    known_model,
    model_verified,
)
from tests.conftest import ModelServer, free_port

pytestmark = pytest.mark.slow

MESSAGES = [
    ("system", "You are Counsel. Answer briefly."),
    (
        "user",
        "Source: Handbook\nThe IT service desk is on extension 4357.\n\n"
        "Question: Whom do I call for IT?",
    ),
]


@pytest.mark.asyncio
async def test_the_chat_model_streams_from_the_local_server_with_its_usage(local_llm):
    stats = llm.StreamStats()
    pieces = [
        piece
        async for piece in llm.stream_with_timeouts(
            llm.get_chat_model(), MESSAGES, first_token_timeout=30, total_timeout=60, stats=stats
        )
    ]
    assert len(pieces) > 1 and "".join(pieces).strip()  # streamed, in several pieces
    # The server counted the prompt with the served model's own tokenizer.
    assert stats.input_tokens and stats.input_tokens > 20
    assert stats.output_tokens == len(pieces) or stats.output_tokens >= len(pieces) - 1
    assert stats.finish_reason in ("stop", "length")
    assert llm.model_name() == local_llm.model


@pytest.mark.asyncio
async def test_the_token_limit_is_sent_and_honoured(local_llm, settings):
    settings.LLM_MAX_NEW_TOKENS = 5
    stats = llm.StreamStats()
    async for _ in llm.stream_with_timeouts(
        llm.get_chat_model(),
        [("user", "Write a long story about a bicycle factory.")],
        first_token_timeout=30,
        total_timeout=60,
        stats=stats,
    ):
        pass
    assert stats.output_tokens == 5 and stats.finish_reason == "length"


def test_the_server_listens_on_loopback_and_refuses_requests_without_its_key(model_server):
    url = model_server.url
    assert url.startswith("http://127.0.0.1:")
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    assert httpx.post(f"{url}/chat/completions", json=body, timeout=10).status_code == 401
    wrong = {"Authorization": "Bearer not-the-key"}
    response = httpx.post(f"{url}/chat/completions", json=body, headers=wrong, timeout=10)
    assert response.status_code == 401
    right = {"Authorization": f"Bearer {model_server.api_key}"}
    response = httpx.post(f"{url}/chat/completions", json=body, headers=right, timeout=30)
    assert response.status_code == 200
    key_file = model_server.directory / "api-key"
    assert key_file.stat().st_mode & 0o777 == 0o600


def test_a_wrong_key_is_a_plain_message_for_the_user(local_llm, settings):
    settings.LLM_API_KEY = "not-the-key"
    with pytest.raises(llm.LLMUnavailable) as caught:
        llm.get_chat_model().invoke("hello")
    assert str(caught.value) == llm.LLMUnavailable.user_message
    assert "401" in caught.value.detail


def test_a_stopped_server_is_unavailable_and_healthz_says_so(tmp_path, settings, client):
    server = ModelServer(tmp_path).start()
    settings.LLM_BACKEND = "local"
    settings.LLM_MODEL = "smollm2-135m"
    settings.LLM_BASE_URL = server.url
    settings.LLM_SERVER_DIR = tmp_path
    settings.LLM_API_KEY = ""
    from config.health import check_llm

    assert check_llm()["model"] == "smollm2-135m"
    assert llm.get_chat_model().invoke("Say yes.", max_tokens=2).text is not None
    server.stop()
    with pytest.raises(llm.LLMUnavailable):
        llm.get_chat_model().invoke("Say yes.")
    with pytest.raises(Exception, match="Connect"):
        check_llm()


def test_every_known_model_is_pinned_by_hash_and_size():
    assert set(MODELS) == {"qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b", "smollm2-135m"}
    for model in MODELS.values():
        assert len(model.sha256) == 64 and model.size_bytes > 50_000_000
        requirements = Path("requirements/models") / f"{model.key}.txt"
        lines = [ln for ln in requirements.read_text().splitlines() if ln and ln[0] != "#"]
        assert len(lines) == model.parts and all("--hash=sha256:" in ln for ln in lines)
    with pytest.raises(ModelInstallError, match="LLM_MODEL must be one of"):
        known_model("gpt-4")


def test_a_model_file_with_other_bytes_is_refused(tmp_path):
    packaged = known_model("smollm2-135m")
    assert model_verified(packaged, tmp_path) == packaged.part_paths()[0]
    # The same bytes as an assembled model, then one byte changed.
    split = KnownModel(**{**packaged.__dict__, "key": "copy", "parts": 2})
    copy = tmp_path / "copy.gguf"
    shutil.copyfile(packaged.part_paths()[0], copy)
    assert model_verified(split, tmp_path) == copy
    with copy.open("r+b") as handle:
        handle.seek(1_000_000)
        byte = handle.read(1)
        handle.seek(1_000_000)
        handle.write(bytes([byte[0] ^ 0xFF]))
    assert file_sha256(copy) != packaged.sha256
    with pytest.raises(ModelInstallError, match="not the pinned"):
        model_verified(split, tmp_path)


def test_the_server_refuses_to_start_on_a_model_that_fails_its_check(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "assistant.llm.server",
            "--model",
            "qwen2.5-coder-0.5b",
            "--port",
            str(free_port()),
            "--server-dir",
            str(tmp_path),
        ],
        env={
            **os.environ,
            "LLM_MODELS_DIR": str(tmp_path),  # nothing assembled there
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "prepare_models --model qwen2.5-coder-0.5b" in result.stderr
