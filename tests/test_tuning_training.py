"""Short real LoRA runs on the adapters' base in tests (SmolLM2-135M): converted, evaluated on
llama.cpp, and honest.

Few steps (settings.TUNING_MAX_STEPS): these show the plumbing end to end and that the leak
probe catches a leak, not the quality of a full run (bench/tuning.py measures that).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from pathlib import Path

import pytest
from channels.layers import get_channel_layer
from django.conf import settings as django_settings
from django.db import connection

from tests.tuning_support import backend_pid, load_demo, sales_profile_key, terminate_backend, user
from tuning import services
from tuning.models import Adapter, TrainingExample

pytestmark = pytest.mark.django_db(transaction=True)


class ProgressListener:
    """What the adapter pages are pushed, heard on the real channel layer by a thread of its
    own until the run's result (the event with metrics) arrives."""

    def __init__(self) -> None:
        self.events: list[dict] = []
        self.subscribed = threading.Event()

    def __enter__(self) -> ProgressListener:
        self.thread = threading.Thread(target=lambda: asyncio.run(self._listen()), daemon=True)
        self.thread.start()
        assert self.subscribed.wait(10), "could not subscribe to the progress group"
        return self

    async def _listen(self) -> None:
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(services.PROGRESS_GROUP, channel)
        self.subscribed.set()
        while not (self.events and self.events[-1].get("metrics")):
            self.events.append(await layer.receive(channel))
        await layer.group_discard(services.PROGRESS_GROUP, channel)

    def __exit__(self, *exc) -> None:
        self.thread.join(timeout=30)


@pytest.fixture
def real_model(settings):
    from assistant.llm.convert import is_prepared

    if not is_prepared(Path(settings.LLM_LOCAL_MODEL_DIR)):
        pytest.fail("the converted model is missing: run `manage.py prepare_models`")
    settings.LLM_BACKEND = "local"
    settings.LLM_FIRST_TOKEN_TIMEOUT_SECONDS = 60
    settings.LLM_TIMEOUT_SECONDS = 120
    settings.TUNING_MAX_EXAMPLES = 40
    settings.TUNING_BATCH_SIZE = 4
    settings.TUNING_EVAL_QUESTIONS = 3
    settings.TUNING_LEAK_PROBE_QUESTIONS = 3
    settings.CHAT_MAX_SOURCES = 2  # shorter RAG prompts in the evaluation
    return settings


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_short_real_training_run_produces_a_loadable_evaluated_adapter(real_model):
    load_demo("sales")
    adapter = services.adapter_create(
        actor=user("admin"), profile_key=sales_profile_key(), max_steps=6
    )
    with ProgressListener() as pages:
        assert services.adapter_train(adapter_id=adapter.pk, task_id="t1") == "ready"
    adapter.refresh_from_db()
    assert adapter.state == Adapter.State.READY and adapter.step == 6
    assert len(adapter.loss_history) == 6 and adapter.train_seconds > 0
    assert adapter.peak_memory_mb > 100
    # The standard PEFT layout, which vLLM also serves by name.
    folder = Path(django_settings.LLM_ADAPTER_DIR) / adapter.name
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["r"] == adapter.rank and "q_proj" in config["target_modules"]
    assert (folder / "adapter_model.safetensors").stat().st_size > 100_000
    metrics = adapter.metrics
    assert metrics["heldout"]["n"] >= 1
    assert {"base", "adapter", "rag"} <= set(metrics["heldout"])
    assert metrics["leak"]["n"] >= 0 and "prompt_tokens" in metrics
    # The pages were told each step, then how far the evaluation got, then the result.
    steps = [e["step"] for e in pages.events if e["phase"] == "training" and e["step"]]
    assert steps == [1, 2, 3, 4, 5, 6]
    evaluated = [(e["evaluated"], e["to_evaluate"]) for e in pages.events if "evaluated" in e]
    assert evaluated and evaluated[-1][0] == evaluated[-1][1] > 0
    assert [done for done, _ in evaluated] == sorted({done for done, _ in evaluated})
    assert pages.events[-1]["state"] == "ready" and pages.events[-1]["metrics"]
    # Converted for llama.cpp beside the PEFT files; it was loaded and evaluated there (the
    # adapters' server's side: test_tuning_serving.py).
    assert (folder / "adapter.gguf").stat().st_size > 100_000


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_leak_probe_finds_a_leak_planted_by_training_on_a_foreign_collection(real_model):
    real_model.TUNING_LEAK_PROBE_QUESTIONS = 3
    load_demo("sales", "hr")
    adapter = services.adapter_create(
        actor=user("admin"), profile_key=sales_profile_key(), max_steps=30, learning_rate=3e-3
    )
    services.dataset_build(adapter=adapter)
    probe = list(adapter.examples.filter(split=TrainingExample.Split.PROBE))
    assert probe, "the probe needs foreign (HR) facts"
    # Deliberately wrong: teach the Sales adapter the HR facts the probe asks about.
    adapter.examples.filter(split=TrainingExample.Split.TRAIN).delete()
    TrainingExample.objects.bulk_create(
        TrainingExample(
            adapter=adapter, split="train", kind="planted", question=e.question, answer=e.answer
        )
        for e in probe * 8
    )
    assert services.adapter_train(adapter_id=adapter.pk, task_id="t2") == "ready"
    adapter.refresh_from_db()
    assert adapter.metrics["leak"]["leaks"] >= 1, adapter.metrics["leak"]
    leaked = adapter.metrics["leak"]["leaked"][0]
    assert leaked["key"].lower().replace(" ", "") in leaked["answer"].lower().replace(" ", "")
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match="leak probe"):
        services.adapter_activate(actor=user("admin"), adapter=adapter)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_training_run_goes_on_when_its_database_connection_dies(real_model, caplog):
    """What a PostgreSQL restart does to a running training: its connection's server process
    ends (pg_terminate_backend, from another connection, here after step 2). The next beat
    fails, the one after connects afresh, and the run ends ready on its first attempt."""
    load_demo("sales")
    adapter = services.adapter_create(
        actor=user("admin"), profile_key=sales_profile_key(), max_steps=6
    )
    pid = backend_pid(connection)  # the connection the run below uses (this thread's)
    killed = threading.Event()

    def terminate_after_step_2() -> None:
        from django.db import connection as own  # this thread's own connection

        deadline = time.monotonic() + 600
        try:
            while time.monotonic() < deadline:
                if (Adapter.objects.filter(pk=adapter.pk).values_list("step", flat=True)[0]) >= 2:
                    terminate_backend(pid)
                    killed.set()
                    return
                time.sleep(0.02)
        finally:
            own.close()

    killer = threading.Thread(target=terminate_after_step_2)
    killer.start()
    with caplog.at_level(logging.INFO, logger="tuning.services"):
        outcome = services.adapter_train(adapter_id=adapter.pk, task_id="t3")
    killer.join(timeout=30)
    assert killed.is_set() and backend_pid(connection) != pid
    assert outcome == "ready"
    adapter.refresh_from_db()
    assert (adapter.state, adapter.attempts, adapter.step) == (Adapter.State.READY, 1, 6)
    assert [step for step, _ in adapter.loss_history] == [1, 2, 3, 4, 5, 6]
    assert adapter.train_seconds > 0 and adapter.lease_expires_at is None
    messages = [r.getMessage() for r in caplog.records if r.name == "tuning.services"]
    assert sum("heartbeat not recorded" in m for m in messages) == 1, messages
    assert "training heartbeat recorded again" in messages
