"""The language-model layer: the real embedded model, the slot queue, timeouts, the backends.

The local model is the real SmolLM2-135M-Instruct, converted once per machine by the session
fixture (the same code as `manage.py prepare_models`; ≈ 40 s the first time). Two fakes stand at
process boundaries that cannot run here, and are named as such: the FAKE streaming model
(`LLM_BACKEND=fake`, for the chat service's tests and load benchmarks) and a FAKE
OpenAI-compatible HTTP server standing in for vLLM. No database is used.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from assistant import llm
from assistant.llm.convert import local_model_prepare
from assistant.llm.fake import ERROR, HANG, STALL, FakeStreamingChatModel, recent_prompts
from assistant.llm.openai_compat import OpenAICompatibleChatModel
from tests.conftest import free_port

SYSTEM = (
    "You are Counsel, the internal consultant of this company. Answer the question from the "
    "sources below and nothing else. Answer in one or two sentences."
)
SOURCES = [
    "Source: Canteen guide\nThe staff canteen is called Blue Fern. It is on the second floor "
    "and opens at 8 am.",
    "Source: Parking\nParking permits are issued by the facilities team at the front desk.",
    "Source: IT support\nThe IT helpdesk can be reached on extension 4455 from any office phone.",
]


def rag_messages(question: str) -> list[tuple[str, str]]:
    user = "Sources:\n\n" + "\n\n".join(SOURCES) + f"\n\nQuestion: {question}"
    return [("system", SYSTEM), ("user", user)]


async def wait_until(predicate, timeout: float) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.01)
    return time.monotonic() - started


# --- generation slots ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_waiters_learn_their_queue_position_and_get_the_slot_in_order():
    slots = llm.GenerationSlots(1)
    positions: dict[str, list[int]] = {"bob": [], "charlie": [], "dave": []}
    order: list[str] = []
    release = {name: asyncio.Event() for name in ["alice", *positions]}

    async def ask(name: str) -> None:
        report = positions[name].append if name in positions else None
        async with slots.acquire(on_wait=report):
            order.append(name)
            await release[name].wait()

    tasks = [asyncio.create_task(ask("alice"))]
    await wait_until(lambda: order == ["alice"], 1)
    for name in positions:  # queued one after the other: bob first
        tasks.append(asyncio.create_task(ask(name)))
        await wait_until(lambda name=name: positions[name], 1)
    assert positions == {"bob": [1], "charlie": [2], "dave": [3]}
    assert slots.waiting == 3

    release["alice"].set()
    await wait_until(lambda: order == ["alice", "bob"], 1)
    await wait_until(lambda: positions["dave"] == [3, 2], 1)
    assert positions == {"bob": [1], "charlie": [2, 1], "dave": [3, 2]}

    release["bob"].set()
    await wait_until(lambda: order[-1] == "charlie", 1)
    await wait_until(lambda: positions["dave"] == [3, 2, 1], 1)
    release["charlie"].set()
    release["dave"].set()
    await asyncio.gather(*tasks)
    assert order == ["alice", "bob", "charlie", "dave"]
    assert (slots.in_use, slots.waiting) == (0, 0)


@pytest.mark.asyncio
async def test_a_cancelled_waiter_leaves_the_queue_and_those_behind_move_up():
    slots = llm.GenerationSlots(1)
    dave_positions: list[int] = []
    held = asyncio.Event()

    async def alice() -> None:
        async with slots.acquire():
            await held.wait()

    async def waiter(report=None) -> None:
        async with slots.acquire(on_wait=report):
            pass

    first = asyncio.create_task(alice())
    await wait_until(lambda: slots.in_use == 1, 1)
    bob = asyncio.create_task(waiter())
    await wait_until(lambda: slots.waiting == 1, 1)
    dave = asyncio.create_task(waiter(dave_positions.append))
    await wait_until(lambda: dave_positions == [2], 1)

    bob.cancel()
    await wait_until(lambda: dave_positions == [2, 1], 1)
    held.set()
    await asyncio.gather(first, dave)
    assert bob.cancelled()
    assert (slots.in_use, slots.waiting) == (0, 0)


@pytest.mark.asyncio
async def test_reserve_yields_positions_to_an_async_generator_then_holds_the_slot():
    """The chat service's way: report positions from inside an async generator."""
    slots = llm.GenerationSlots(1)
    seen: list[int] = []
    held = asyncio.Event()

    async def alice() -> None:
        async with slots.acquire():
            await held.wait()

    async def bob() -> None:
        positions: asyncio.Queue[int] = asyncio.Queue()
        async with slots.reserve(on_wait=positions.put_nowait) as slot_wait:
            async for position in slot_wait(positions):
                seen.append(position)
                held.set()  # alice finishes once bob knows he is next
            assert slot_wait.granted and slots.in_use == 1
            # A model called here sees the slot this task holds and does not queue again.
            async with slots.acquire():
                assert slots.in_use == 1

    first = asyncio.create_task(alice())
    await wait_until(lambda: slots.in_use == 1, 1)
    await asyncio.wait_for(bob(), 5)
    await first
    assert seen == [1]
    assert (slots.in_use, slots.waiting) == (0, 0)


def test_synchronous_callers_share_the_same_queue():
    slots = llm.GenerationSlots(1)
    inside = threading.Event()
    leave = threading.Event()
    positions: list[int] = []

    def alice() -> None:
        with slots.acquire_sync():
            inside.set()
            leave.wait(5)

    thread = threading.Thread(target=alice)
    thread.start()
    assert inside.wait(5)
    timer = threading.Timer(0.2, leave.set)
    timer.start()
    with slots.acquire_sync(on_wait=positions.append):
        assert slots.in_use == 1
    thread.join(5)
    assert positions == [1]


# --- the FAKE streaming model and the timeouts -----------------------------------------------


@pytest.mark.asyncio
async def test_fake_model_streams_an_echo_of_its_prompt_at_its_pace():
    model = FakeStreamingChatModel(tokens_per_second=200)
    started = time.monotonic()
    chunks = [c async for c in model.astream(rag_messages("Where is the canteen?"))]
    elapsed = time.monotonic() - started
    answer = "".join(c.text for c in chunks)
    assert answer.startswith("FAKE ANSWER.")
    assert "Question: Where is the canteen?" in answer
    assert "[1] Canteen guide; [2] Parking; [3] IT support" in answer
    words = len(answer.split())
    assert len([c for c in chunks if c.text]) == words
    assert elapsed >= 0.9 * words / 200
    usage = chunks[-1].usage_metadata
    assert usage["output_tokens"] == words and usage["input_tokens"] > 50
    assert recent_prompts()[-1][0] == ("system", SYSTEM)


@pytest.mark.asyncio
async def test_a_model_that_never_answers_times_out_at_the_first_token_deadline():
    model = FakeStreamingChatModel(tokens_per_second=200)
    started = time.monotonic()
    with pytest.raises(llm.LLMTimeout, match="did not answer in time"):
        async for _ in llm.stream_with_timeouts(
            model, [("user", f"hello {HANG}")], first_token_timeout=0.3, total_timeout=5
        ):
            pass
    assert 0.25 < time.monotonic() - started < 2


@pytest.mark.asyncio
async def test_a_model_that_stalls_mid_answer_times_out_at_the_total_deadline():
    model = FakeStreamingChatModel(tokens_per_second=200)
    received: list[str] = []
    stats = llm.StreamStats()
    with pytest.raises(llm.LLMTimeout) as caught:
        async for text in llm.stream_with_timeouts(
            model,
            [("user", f"hello {STALL}")],
            first_token_timeout=0.3,
            total_timeout=0.6,
            stats=stats,
        ):
            received.append(text)
    assert received == ["FAKE "]
    assert "answer within 0.6 s" in caught.value.detail
    assert stats.first_token_seconds < 0.3 and 0.55 < stats.total_seconds < 2


@pytest.mark.asyncio
async def test_a_failing_model_raises_llm_unavailable_with_a_message_for_people():
    model = FakeStreamingChatModel()
    with pytest.raises(llm.LLMUnavailable) as caught:
        async for _ in llm.stream_with_timeouts(
            model, [("user", ERROR)], first_token_timeout=1, total_timeout=1
        ):
            pass
    assert (
        str(caught.value)
        == "The language model is not available right now; please try again later."
    )


@pytest.mark.asyncio
async def test_stream_with_timeouts_reports_usage_and_finish_reason():
    model = FakeStreamingChatModel(tokens_per_second=0, max_new_tokens=3)
    stats = llm.StreamStats()
    texts = [
        t
        async for t in llm.stream_with_timeouts(
            model, rag_messages("Why?"), first_token_timeout=1, total_timeout=1, stats=stats
        )
    ]
    assert texts == ["FAKE ", "ANSWER. ", "Question: "]
    assert (stats.output_tokens, stats.finish_reason) == (3, "length")


def test_the_backend_and_its_options_come_from_settings(settings, tmp_path):
    settings.LLM_BACKEND = "fake"
    settings.LLM_FAKE_TOKENS_PER_SECOND = 12.5
    settings.LLM_MAX_NEW_TOKENS = 7
    model = llm.get_chat_model()
    assert isinstance(model, FakeStreamingChatModel)
    assert (model.tokens_per_second, model.max_new_tokens) == (12.5, 7)
    assert llm.get_chat_model() is model  # cached
    tuned = llm.get_chat_model(adapter="sales-v1")
    assert tuned is not model and "Adapter: sales-v1." in tuned.invoke("hi").text
    assert llm.model_name(adapter="sales-v1") == "fake+sales-v1"

    # local: the model server, over the same client as a production server; an adapter only
    # on the adapters' server, which serves none here (tests/test_tuning_serving.py serves some).
    settings.LLM_BACKEND = "local"
    settings.LLM_BASE_URL = "http://127.0.0.1:58081/v1"
    settings.LLM_ADAPTER_SERVER_DIR = tmp_path
    local = llm.get_chat_model()
    assert isinstance(local, OpenAICompatibleChatModel)
    assert local.openai_api_base == "http://127.0.0.1:58081/v1"
    assert llm.model_name() == "smollm2-135m"
    with pytest.raises(llm.LLMUnavailable) as refused:
        llm.get_chat_model(adapter="sales-v1")
    assert "does not serve 'sales-v1'" in refused.value.detail
    assert llm.model_name(adapter="sales-v1") == "smollm2-135m+sales-v1"


def test_the_adapters_server_is_reached_at_its_host_setting_on_the_port_it_names(
    settings, tmp_path
):
    from assistant.llm.adapters import adapter_endpoint

    # What an instance listening on every address of its container (docker-compose) writes.
    state = {"url": "http://0.0.0.0:58083", "port": 58083, "adapters": {"ap-1-v1": 0}}
    (tmp_path / "server.json").write_text(json.dumps(state))
    settings.LLM_ADAPTER_SERVER_DIR = tmp_path
    settings.LLM_ADAPTER_SERVER_HOST = ""  # the default: its own URL, as on one machine
    assert adapter_endpoint("ap-1-v1").base_url == "http://0.0.0.0:58083/v1"
    settings.LLM_ADAPTER_SERVER_HOST = "llm-adapters"  # compose: the service's name
    assert adapter_endpoint("ap-1-v1").base_url == "http://llm-adapters:58083/v1"


def test_count_tokens_estimates_without_the_converted_model(settings, tmp_path):
    settings.LLM_LOCAL_MODEL_DIR = tmp_path / "missing"
    assert llm.count_tokens("") == 0
    assert llm.count_tokens("x" * 40) == 10


# --- the OpenAI-compatible backend against a FAKE OpenAI server ------------------------------


class FakeOpenAIServer:
    """FAKE OpenAI-compatible server (stands in for vLLM, which cannot run here).

    Speaks just enough of POST /v1/chat/completions with ``stream: true`` (server-sent events,
    ``stream_options.include_usage``) and records each request body.
    """

    WORDS = ["Blue ", "Fern ", "is ", "on ", "the ", "second ", "floor."]

    def __init__(self) -> None:
        self.requests: list[dict] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append(body)
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0}
                base["model"] = body["model"]
                for word in fake.WORDS:
                    delta = {"index": 0, "delta": {"content": word}, "finish_reason": None}
                    self._event({**base, "choices": [delta]})
                    time.sleep(0.01)
                self._event(
                    {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
                )
                if (body.get("stream_options") or {}).get("include_usage"):
                    usage = {"prompt_tokens": 42, "completion_tokens": 7, "total_tokens": 49}
                    self._event({**base, "choices": [], "usage": usage})
                self.wfile.write(b"data: [DONE]\n\n")

            def _event(self, data: dict) -> None:
                self.wfile.write(f"data: {json.dumps(data)}\n\n".encode())
                self.wfile.flush()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeOpenAIServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def openai_settings(settings):
    settings.LLM_BACKEND = "openai"
    settings.LLM_MODEL = "counsel-base"
    settings.LLM_API_KEY = "test-key"
    settings.LLM_MAX_NEW_TOKENS = 64
    settings.LLM_TIMEOUT_SECONDS = 1.0
    settings.LLM_FIRST_TOKEN_TIMEOUT_SECONDS = 1.0
    return settings


@pytest.mark.asyncio
async def test_openai_backend_streams_from_a_compatible_server(openai_settings):
    with FakeOpenAIServer() as server:
        openai_settings.LLM_BASE_URL = server.url
        stats = llm.StreamStats()
        texts = [
            t
            async for t in llm.stream_with_timeouts(
                llm.get_chat_model(),
                rag_messages("What is the canteen called?"),
                first_token_timeout=5,
                total_timeout=10,
                stats=stats,
            )
        ]
        tuned = await llm.get_chat_model(adapter="sales-v1").ainvoke("hi")
    assert texts == FakeOpenAIServer.WORDS
    assert (stats.input_tokens, stats.output_tokens, stats.finish_reason) == (42, 7, "stop")
    request = server.requests[0]
    assert request["model"] == "counsel-base" and request["stream"] is True
    assert request["max_tokens"] == 64
    assert request["messages"][0] == {"role": "system", "content": SYSTEM}
    # vLLM serves a LoRA adapter under its own name.
    assert server.requests[1]["model"] == "sales-v1"
    assert tuned.text == "Blue Fern is on the second floor."


@pytest.mark.asyncio
async def test_openai_backend_times_out_when_the_server_never_answers(openai_settings):
    with socket.socket() as silent:  # accepts connections (kernel backlog), never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        openai_settings.LLM_BASE_URL = f"http://127.0.0.1:{silent.getsockname()[1]}/v1"
        started = time.monotonic()
        with pytest.raises(llm.LLMTimeout):
            await llm.get_chat_model().ainvoke("hello")
        assert time.monotonic() - started < 3
        with pytest.raises(llm.LLMTimeout):
            async for _ in llm.stream_with_timeouts(
                llm.get_chat_model(), "hello", first_token_timeout=0.3, total_timeout=5
            ):
                pass


@pytest.mark.asyncio
async def test_openai_backend_is_unavailable_when_nothing_listens(openai_settings):
    openai_settings.LLM_BASE_URL = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(llm.LLMUnavailable):
        async for _ in llm.stream_with_timeouts(
            llm.get_chat_model(), "hello", first_token_timeout=5, total_timeout=5
        ):
            pass
    with pytest.raises(llm.LLMUnavailable):
        llm.get_chat_model().invoke("hello")


# --- the embedded model ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def local_model_dir() -> Path:
    """The converted model (converted here on a fresh machine, a no-op afterwards)."""
    model_dir = Path(settings.LLM_LOCAL_MODEL_DIR)
    local_model_prepare(model_dir=model_dir)
    return model_dir


@pytest.mark.slow
def test_prepare_models_is_a_quick_no_op_once_converted(local_model_dir, capsys):
    started = time.monotonic()
    call_command("prepare_models")
    assert time.monotonic() - started < 1
    assert "nothing to do" in capsys.readouterr().out
    assert (local_model_dir / "model.safetensors").stat().st_size > 500_000_000


def test_prepare_models_fails_with_a_clear_message(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(CommandError, match="preparing the language model failed"):
        call_command("prepare_models", model_dir=blocker / "model")


@pytest.mark.slow
def test_count_tokens_uses_the_models_tokenizer(local_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(local_model_dir)
    for text in (
        "The staff canteen is called Blue Fern.",
        "[1] Handbook — Travel (page 4)\nÜber 2.000 € per trip;  tabs\tand  spaces.\n\n" * 20,
    ):
        assert llm.count_tokens(text) == len(tokenizer.encode(text, add_special_tokens=False))
