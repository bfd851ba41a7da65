"""Serving adapters on the model server: converted, checked, loaded per request, routed to.

Real parts throughout: PEFT adapters converted with llama.cpp's own converter, the real
adapters' server (llama.cpp from xllamacpp, SmolLM2-135M), real training runs of a few steps,
the chat service, PostgreSQL and Redis.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.test import Client

from assistant import llm
from assistant.llm.adapters import adapter_endpoint, gguf_file, manifest_write
from assistant.llm.bases import checkpoint_dir
from assistant.llm.lora_gguf import adapter_to_gguf
from tests.test_tuning import ask
from tests.tuning_support import load_demo, registered_adapter, sales_profile_key, user
from tuning import services, serving
from tuning.models import Adapter, RoleStrategy
from tuning.selectors import adapter_for_user

pytestmark = pytest.mark.django_db(transaction=True)
QUESTION = [{"role": "user", "content": "What is the staff canteen called?"}]


def _random_peft_adapter(folder: Path, seed: int) -> Path:
    """A LoRA adapter with random (not zero) weights on SmolLM2: it visibly changes answers."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(checkpoint_dir("smollm2-135m"), dtype=torch.float32)
    config = LoraConfig(
        r=4, lora_alpha=64, target_modules=["q_proj", "v_proj"], init_lora_weights=False
    )
    get_peft_model(base, config).save_pretrained(folder)
    return adapter_to_gguf(
        peft_dir=folder,
        base_dir=checkpoint_dir("smollm2-135m"),
        output=gguf_file(folder),
        converter=Path(django_settings.LLM_CONVERTER_DIR),
    )


def _served_answer(name: str | None) -> str:
    """Greedy answer of the adapters' server with adapter ``name`` (None: base alone)."""
    from assistant.llm.adapters import base_endpoint
    from assistant.llm.server import local_api_key

    endpoint = adapter_endpoint(name) if name else base_endpoint()
    response = httpx.post(
        f"{endpoint.base_url}/chat/completions",
        json={
            "messages": QUESTION,
            "max_tokens": 12,
            "temperature": 0,
            "lora": endpoint.lora_field(),
        },
        headers={"Authorization": f"Bearer {local_api_key(endpoint.server_dir)}"},
        timeout=60,
    )
    response.raise_for_status()
    return response.json()["choices"][0]["message"]["content"]


@pytest.fixture
def short_runs(settings):
    settings.TUNING_MAX_EXAMPLES = 40
    settings.TUNING_BATCH_SIZE = 4
    settings.TUNING_EVAL_QUESTIONS = 3
    settings.TUNING_LEAK_PROBE_QUESTIONS = 3
    settings.CHAT_MAX_SOURCES = 2
    settings.LLM_SERVER_THREADS = 2
    return settings


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_adapters_server_applies_the_asked_adapter_per_request_and_swaps_without_restart(
    adapter_server, tmp_path
):
    first = _random_peft_adapter(tmp_path / "noisy-a", seed=0)
    second = _random_peft_adapter(tmp_path / "noisy-b", seed=1)
    manifest_write(base="smollm2-135m", adapters=[("noisy-a", first)])
    before = adapter_server.serving({"noisy-a"})
    base = _served_answer(None)
    with_a = _served_answer("noisy-a")
    assert with_a != base
    # The base alone right after an adapter's answer: llama.cpp must not reuse the prompt the
    # adapter computed (every request names every adapter's scale).
    assert _served_answer(None) == base

    # A second adapter: a new instance takes over; the web side follows server.json.
    manifest_write(base="smollm2-135m", adapters=[("noisy-a", first), ("noisy-b", second)])
    after = adapter_server.serving({"noisy-a", "noisy-b"})
    assert after["generation"] == before["generation"] + 1
    assert after["url"] != before["url"]
    with_b = _served_answer("noisy-b")
    assert with_b not in (base, with_a)
    assert _served_answer("noisy-a") == with_a  # same weights, same answer
    assert _served_answer(None) == base

    # A manifest for another base serves none of its adapters on this one.
    manifest_write(base="qwen2.5-coder-0.5b", adapters=[("noisy-a", first)])
    adapter_server.serving(set())
    assert adapter_endpoint("noisy-a") is None


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_an_activated_adapter_answers_its_profile_through_the_chat_until_it_is_retired(
    short_runs, local_llm, adapter_server
):
    load_demo("sales")
    adapter = services.adapter_create(
        actor=user("admin"), profile_key=sales_profile_key(), max_steps=4
    )
    assert services.adapter_train(adapter_id=adapter.pk, task_id="t1") == "ready"
    adapter.refresh_from_db()
    assert (adapter.base_model, adapter.base_sha256[:12]) == ("smollm2-135m", "b179c9523d0e")
    # Converted, loaded by llama.cpp and evaluated there; the server loads ready adapters.
    assert gguf_file(serving.adapter_dir(adapter)).stat().st_size > 100_000
    assert adapter.metrics["heldout"]["n"] >= 1 and "adapter" in adapter.metrics["heldout"]
    adapter_server.serving({adapter.name})
    RoleStrategy.objects.create(role=Group.objects.get(name="Sales"), strategy="tuned")
    # Ready is not active: nobody is answered by it yet.
    assert ask("sam")[1].route == "rag"

    services.adapter_activate(actor=user("admin"), adapter=adapter)
    events, entry = ask("sam")
    done = events[-1]
    assert done["type"] == "done", done
    assert done["route"] == "tuned" and entry.route == "tuned"
    assert entry.adapter == adapter.label
    assert entry.model == f"smollm2-135m+{adapter.name}"
    assert entry.completion_tokens > 0  # the real server answered
    assert 'data-route="tuned"' in _chat_page("sam", done["conversation"])

    services.adapter_retire(actor=user("admin"), adapter=adapter)
    _events, entry = ask("sam")
    assert entry.route == "rag" and "No active adapter" in entry.route_reason
    adapter_server.serving(set())  # and the server lets it go


def _chat_page(username: str, conversation: int) -> str:
    client = Client()
    client.force_login(user(username))
    return client.get(f"/chat/{conversation}/").content.decode()


def test_an_adapter_of_another_base_is_refused_and_its_page_says_why(adapter_server):
    load_demo("sales")
    RoleStrategy.objects.create(role=Group.objects.get(name="Sales"), strategy="tuned")
    adapter = registered_adapter()
    Adapter.objects.filter(pk=adapter.pk).update(base_model="qwen2.5-coder-0.5b")
    eligibility = adapter_for_user(user=user("sam"))
    assert eligibility.adapter is None
    assert "trained on qwen2.5-coder-0.5b" in eligibility.reason
    assert "it serves smollm2-135m" in eligibility.reason
    admin = Client()
    admin.force_login(user("admin"))
    page = admin.get(f"/manage/adapters/{adapter.pk}/").content.decode()
    assert "which the adapters&#x27; model server does not serve" in page
    # The right base name but another file of it: refused too.
    Adapter.objects.filter(pk=adapter.pk).update(base_model="smollm2-135m", base_sha256="0" * 64)
    assert "another file of smollm2-135m" in adapter_for_user(user=user("sam")).reason
    _events, entry = ask("sam")
    assert entry.route == "rag" and "another file" in entry.route_reason


def test_an_adapter_the_server_has_not_loaded_falls_back_to_retrieval_with_the_reason(
    adapter_server, settings
):
    settings.LLM_BACKEND = "local"  # the adapters' server says what it loaded
    load_demo("sales")
    RoleStrategy.objects.create(role=Group.objects.get(name="Sales"), strategy="tuned")
    adapter = registered_adapter()  # registered, but no file: the server serves nothing
    reason = adapter_for_user(user=user("sam")).reason
    assert f"{adapter.label} is not loaded by the adapters' model server" in reason
    with pytest.raises(llm.LLMUnavailable):
        llm.get_chat_model(adapter=adapter.name)


def test_a_stale_adapter_falls_back_to_retrieval(adapter_server, tmp_path):
    load_demo("sales")
    RoleStrategy.objects.create(role=Group.objects.get(name="Sales"), strategy="tuned")
    adapter = registered_adapter()
    services.adapters_mark_stale(
        document_ids=[adapter.documents.first().document_id], reason="is a test"
    )
    # Nothing changed in the document itself: the re-check leaves it active. Move it instead.
    from ingestion.models import Collection, Document

    row = adapter.documents.first()
    Document.objects.filter(pk=row.document_id).update(collection=Collection.objects.get(slug="hr"))
    services.adapters_mark_stale(document_ids=[row.document_id], reason="moved")
    adapter.refresh_from_db()
    assert adapter.state == Adapter.State.STALE
    _events, entry = ask("sam")
    assert entry.route == "rag" and f"{adapter.label} is stale" in entry.route_reason


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_converted_file_llama_cpp_refuses_fails_the_check_with_its_reason(tmp_path):
    gguf = _random_peft_adapter(tmp_path / "broken", seed=2)
    gguf.write_bytes(gguf.read_bytes()[: gguf.stat().st_size // 2])  # cut in the middle
    adapter = Adapter(name="broken", base_model="smollm2-135m")
    with pytest.raises(serving.AdapterNotServable, match=r"llama\.cpp did not load"):
        serving.adapter_check(adapter=adapter, gguf=gguf)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_an_adapter_that_cannot_be_converted_ends_failed_with_the_reason(short_runs, tmp_path):
    short_runs.LLM_CONVERTER_DIR = tmp_path / "no-converter"
    load_demo("sales")
    adapter = services.adapter_create(
        actor=user("admin"), profile_key=sales_profile_key(), max_steps=2
    )
    assert services.adapter_train(adapter_id=adapter.pk, task_id="t1") == "failed"
    adapter.refresh_from_db()
    assert adapter.state == Adapter.State.FAILED
    assert "could not be converted for llama.cpp" in adapter.state_reason
    assert "converter is not installed" in adapter.state_reason
    with pytest.raises(ValidationError):
        services.adapter_activate(actor=user("admin"), adapter=adapter)


def test_openai_compatible_backend_asks_for_the_adapter_by_name(settings):
    from assistant.llm.conf import LLMConfig
    from assistant.llm.openai_compat import build_openai_compatible

    config = LLMConfig.from_settings()
    model = build_openai_compatible(config, adapter="ap-0123456789ab-v2")
    assert model.model_name == "ap-0123456789ab-v2"
    assert model.extra_body is None  # vLLM: the name is the whole request for an adapter
    settings.LLM_BACKEND = "openai"
    assert llm.model_name(adapter="ap-0123456789ab-v2").endswith("+ap-0123456789ab-v2")
