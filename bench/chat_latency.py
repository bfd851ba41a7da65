"""Server-added latency to the first token: everything but the model.

Runs the real ASGI application (uvicorn, websocket, consumer, chat service, role-filtered
search, prompt building) over the demo company in a database of its own, with the FAKE
streaming model (assistant/llm/fake.py) at 30 tokens/s standing in for a model server. For each
question it measures, over a real websocket, the time from sending the question to receiving
the first streamed text. The baseline, measured in the same run, is the fake model's own time
to first token when called directly with the same kind of prompt; the difference is what the
server adds (target p95 ≤ 50 ms, docs/benchmarks.md). It also prints where the server's time
goes, from the chat service's stage marks (logger `counsel.chat.stages`). The database
connections are pooled as config/asgi.py pools the web process's (BENCH_DATABASE_POOL_SIZE=0:
not pooled).

    .venv/bin/python bench/chat_latency.py [--questions 60]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import setup_demo  # noqa: E402

DB_NAME = "counsel_chat_bench"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def setup() -> None:
    """The demo company, indexed, in a bench database of its own, served with the FAKE model."""
    setup_demo(
        DB_NAME,
        {
            "LLM_BACKEND": "fake",
            "LLM_FAKE_TOKENS_PER_SECOND": "30",
            "CHAT_RATE_PER_MINUTE": "100000",
            # As config/asgi.py gives the web process; BENCH_DATABASE_POOL_SIZE=0 measures
            # without (a new PostgreSQL connection per question).
            "DATABASE_POOL_SIZE": os.environ.get("BENCH_DATABASE_POOL_SIZE", "10"),
            "COUNSEL_DOTENV": "0",
        },
    )


def session_cookie(username: str) -> str:
    from django.conf import settings
    from django.test import Client

    from accounts.models import User

    client = Client()
    client.force_login(User.objects.get(username=username))
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


async def baseline_ttft(questions: list[str], runs: int) -> list[float]:
    """The fake model's own time to first token, called directly."""
    from assistant import llm

    model = llm.get_chat_model()
    times = []
    for n in range(runs):
        messages = [
            ("system", "You are Counsel."),
            ("user", f"Sources: …\n\nQuestion: {questions[n % len(questions)]}"),
        ]
        started = time.perf_counter()
        async for _ in llm.stream_with_timeouts(
            model, messages, first_token_timeout=10, total_timeout=30
        ):
            times.append((time.perf_counter() - started) * 1000)
            break
    return times


class StageCollector(logging.Handler):
    """The chat service's per-question stage times (`counsel.chat.stages`, DEBUG)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.rows: list[dict[str, float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.rows.append(dict(record.stages_ms))

    def install(self) -> StageCollector:
        stages = logging.getLogger("counsel.chat.stages")
        stages.setLevel(logging.DEBUG)
        stages.propagate = False
        stages.addHandler(self)
        return self


def _schedstat_ns(path: str) -> int:
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return 0


def backend_pids() -> list[int]:
    """The PostgreSQL backends serving the benchmark database (the server's connections)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            [DB_NAME],
        )
        return [pid for (pid,) in cursor.fetchall()]


def cpu_ns(pids: list[int]) -> int:
    """CPU time used so far by every thread of this process (client, server, model threads)
    and by the given PostgreSQL backends: /proc/.../schedstat, in nanoseconds."""
    total = sum(
        _schedstat_ns(f"/proc/self/task/{tid}/schedstat") for tid in os.listdir("/proc/self/task")
    )
    return total + sum(_schedstat_ns(f"/proc/{pid}/schedstat") for pid in pids)


def page_origin(url: str) -> str:
    """The Origin a page of the server at `url` sends (config/websocket.py checks it)."""
    return "http://" + url.split("://", 1)[1].split("/", 1)[0]


async def websocket_ttft(url: str, cookie: str, questions: list[str], runs: int) -> dict:
    import websockets
    from asgiref.sync import sync_to_async

    first_token, total, outcomes, cpu = [], [], {}, []
    async with websockets.connect(
        url, additional_headers={"Cookie": cookie, "Origin": page_origin(url)}
    ) as ws:
        assert json.loads(await ws.recv())["type"] == "hello"
        for n in range(runs):
            qid = f"b{n}"
            pids = await sync_to_async(backend_pids)()
            cpu_start = cpu_ns(pids)
            started = time.perf_counter()
            await ws.send(
                json.dumps({"type": "ask", "id": qid, "text": questions[n % len(questions)]})
            )
            got_first = False
            while True:
                frame = json.loads(await ws.recv())
                if frame.get("type") == "delta" and not got_first:
                    first_token.append((time.perf_counter() - started) * 1000)
                    cpu.append((cpu_ns(pids) - cpu_start) / 1e6)
                    got_first = True
                if frame.get("type") in ("done", "error", "stopped") and frame.get("id") == qid:
                    total.append((time.perf_counter() - started) * 1000)
                    outcomes[frame.get("status", frame["type"])] = (
                        outcomes.get(frame.get("status", frame["type"]), 0) + 1
                    )
                    break
    return {"first_token": first_token, "total": total, "outcomes": outcomes, "cpu": cpu}


STAGES = {
    "context": "user, roles, strategy",
    "embedded": "query embedding",
    "searched": "search",
    "routed": "prompt and route",
    "admitted": "model admission",
    "first_token": "model's first token",
}


def stage_table(rows: list[dict[str, float]]) -> dict[str, tuple[float, float]]:
    """p50 and p95 of each stage's own duration (its mark minus the previous mark)."""
    table: dict[str, tuple[float, float]] = {}
    previous = dict.fromkeys(range(len(rows)), 0.0)
    for stage, label in STAGES.items():
        spans = []
        for i, row in enumerate(rows):
            if stage in row:
                spans.append(row[stage] - previous[i])
                previous[i] = row[stage]
        if spans:
            table[label] = (percentile(spans, 50), percentile(spans, 95))
    totals = [row["first_token"] for row in rows if "first_token" in row]
    if totals:
        table["total (in the server)"] = (percentile(totals, 50), percentile(totals, 95))
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=60)
    args = parser.parse_args()
    setup()
    import uvicorn

    from config.asgi import application

    manifest = json.loads((ROOT / "demo" / "manifest.json").read_text())
    questions = [
        q["question"] for q in manifest["questions"] if q["collection"] in ("company", "sales")
    ]
    server = uvicorn.Server(
        uvicorn.Config(
            application,
            host="127.0.0.1",
            port=0,
            lifespan="on",
            log_level="warning",
            ws="websockets-sansio",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    cookie = session_cookie("sam")

    collector = StageCollector().install()

    async def measure() -> tuple[list[float], dict]:
        await websocket_ttft(f"ws://127.0.0.1:{port}/ws/chat/", cookie, questions, 5)  # warm-up
        base = await baseline_ttft(questions, args.questions)
        collector.rows.clear()
        measured = await websocket_ttft(
            f"ws://127.0.0.1:{port}/ws/chat/", cookie, questions, args.questions
        )
        return base, measured

    base, measured = asyncio.run(measure())
    server.should_exit = True
    thread.join(timeout=10)
    model_ttft = statistics.median(base)
    added = [t - model_ttft for t in measured["first_token"]]
    rows = [
        ("model alone (baseline)", base),
        ("through the server", measured["first_token"]),
        ("server-added", added),
        ("CPU to first token", measured["cpu"]),
    ]
    print(f"\nfirst token, {args.questions} questions (sam; FAKE model at 30 tokens/s)")
    print(f"{'':>24} {'p50 ms':>9} {'p95 ms':>9} {'p99 ms':>9}")
    for label, values in rows:
        p50, p95, p99 = (percentile(values, p) for p in (50, 95, 99))
        print(f"{label:>24} {p50:9.1f} {p95:9.1f} {p99:9.1f}")
    print(f"outcomes: {measured['outcomes']}; target: server-added p95 <= 50 ms")
    stages = stage_table(collector.rows)
    print("\nwhere the server's time goes, per question (ms spent in each stage, in order):")
    print(f"{'':>24} {'p50 ms':>9} {'p95 ms':>9}")
    for stage, (p50, p95) in stages.items():
        print(f"{stage:>24} {p50:9.1f} {p95:9.1f}")
    print(
        "CPU to first token: CPU time of this process (server, client, fake model) and of its "
        "PostgreSQL backends from sending the question to the first text frame: what an idle "
        f"machine would wait, at most. Load average (1 min) now {os.getloadavg()[0]:.2f}."
    )
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    payload = {
        "questions": args.questions,
        "model_ttft_ms": {"p50": percentile(base, 50), "p95": percentile(base, 95)},
        "through_server_ms": {
            p: percentile(measured["first_token"], int(p[1:])) for p in ("p50", "p95", "p99")
        },
        "server_added_ms": {p: percentile(added, int(p[1:])) for p in ("p50", "p95", "p99")},
        "cpu_to_first_token_ms": {
            p: percentile(measured["cpu"], int(p[1:])) for p in ("p50", "p95", "p99")
        },
        "stages_ms": {k: {"p50": v[0], "p95": v[1]} for k, v in stages.items()},
        "loadavg_1m": os.getloadavg()[0],
        "outcomes": measured["outcomes"],
    }
    (results / "chat-latency.json").write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
