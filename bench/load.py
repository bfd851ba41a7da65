"""Websocket load on one node: idle and streaming chat sessions, mixed streams, latency, memory.

Serves the real ASGI application with uvicorn in a subprocess (as deployed: websockets-sansio,
64 KiB frame limit) over the demo company in a database of its own, with the FAKE streaming
model (assistant/llm/fake.py) at 30 tokens/s standing in for a model server. Many signed-in
users are generated (one session cookie each, made directly like bench/chat_latency.py), each
with one socket; asyncio websocket clients in this process then hold:

1. **steady**: ``--idle`` idle sockets (default 1000) plus ``--streaming`` sessions (default 100)
   that ask one question after another, for ``--minutes`` (default 2);
2. **ramp**: the idle sockets stay; the streaming sessions go through ``--ramp`` steps
   (default 25,50,100,200), ``--step-seconds`` each, to find where the p95 doubles.

Each answer is 256 tokens long (the fake's ``[[fake:long]]`` marker: LLM_MAX_NEW_TOKENS, about
8.5 s at 30 tokens/s, as long as the embedded model's longest answers), so a streaming session
asks a question about every 9 s. Every question carries a unique marker (``zq<session>k<n>q``)
that the fake model echoes in its answer: a delta with another question's id or marker is a
**mixed token**. Server-added first token latency = time from sending the question to the first
delta, minus the fake model's own time to first token measured in this run. Sampled every 2 s:
the server's RSS and CPU, this process's CPU, the load average, PostgreSQL and Redis connection
counts.

Settings raised for the run (so that the limits measure the server, not the policy):
CHAT_RATE_PER_MINUTE=100000, LLM_MAX_CONCURRENCY=100000; DJANGO_DEBUG=false.

    .venv/bin/python bench/load.py [--minutes 2] [--idle 1000] [--streaming 100]
                                   [--ramp 25,50,100,200] [--step-seconds 30] [--spread 9]

Writes bench/results/load.json and docs/img/load.svg.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time
from importlib import import_module
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DB_NAME = "counsel_bench_load"
MARKER = re.compile(r"zq\d+k\d+q")
SAMPLE_SECONDS = 2.0


def page_origin(url: str) -> str:
    """The Origin a page of the server at `url` sends (config/websocket.py checks it)."""
    return "http://" + url.split("://", 1)[1].split("/", 1)[0]


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))]


def setup(users: int) -> list[str]:
    """The bench database with the demo company and ``users`` generated readers; their cookies."""
    import psycopg

    base = os.environ.get("DATABASE_URL", "postgres://counsel:counsel@127.0.0.1:55432/counsel")
    admin_url = base.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DB_NAME]).fetchone():
            conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    os.environ.update(
        {
            "DATABASE_URL": base.rsplit("/", 1)[0] + "/" + DB_NAME,
            "DJANGO_SETTINGS_MODULE": "config.settings.local",
            "DJANGO_DEBUG": "false",
            "LLM_BACKEND": "fake",
            "LLM_FAKE_TOKENS_PER_SECOND": "30",
            "LLM_MAX_CONCURRENCY": "100000",
            "CHAT_RATE_PER_MINUTE": "100000",
            "LOG_LEVEL": "WARNING",
            "COUNSEL_DOTENV": "0",
            # Its own Redis database, as the other benchmarks (bench/common.py), for the server
            # and this process's sampler alike.
            "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:56379/14"),
        }
    )
    import django

    django.setup()
    from io import StringIO

    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.core.management import call_command

    from accounts.models import User
    from ingestion import services
    from ingestion.models import Document

    call_command("migrate", verbosity=0)
    call_command("load_demo", stdout=StringIO())
    for document in Document.objects.exclude(state="indexed"):
        services.document_index(document_id=document.pk, task_id="bench")
    groups = list(User.objects.get(username="sam").groups.all())  # reads company and sales
    names = [f"load{n:05d}" for n in range(users)]
    existing = set(User.objects.filter(username__in=names).values_list("username", flat=True))
    User.objects.bulk_create(User(username=n) for n in names if n not in existing)
    members = list(User.objects.filter(username__in=names))
    for group in groups:
        group.user_set.add(*members)
    cookies = []
    backend = settings.AUTHENTICATION_BACKENDS[-1]
    SessionStore = import_module(settings.SESSION_ENGINE).SessionStore
    for user in members:
        session = SessionStore()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = backend
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.create()
        cookies.append(f"{settings.SESSION_COOKIE_NAME}={session.session_key}")
    return cookies


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(port: int) -> subprocess.Popen:
    log = open(ROOT / "var" / "bench-load-server.log", "w")  # noqa: SIM115 (lives with the server)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "config.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--lifespan",
            "off",
            "--ws",
            "websockets-sansio",
            "--ws-max-size",
            "65536",
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=os.environ,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start; see var/bench-load-server.log") from None
            time.sleep(0.2)


def proc_cpu_seconds(pid: int | str) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def threads_cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds of each thread of a process, by thread id and name."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat.rsplit(")", 1)[1].split()
        out[f"{tid}:{name}"] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def runqueue_wait_seconds(pid: int) -> float:
    """Time the process's threads were runnable but waited for a CPU (other work on the machine)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total / 1e9


def proc_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Run:
    """Shared state of all clients: what they measured, and what went wrong."""

    def __init__(self, url: str, cookies: list[str], questions: list[str]) -> None:
        self.url, self.cookies, self.questions = url, cookies, questions
        self.phase = "warm-up"
        self.first_token: dict[str, list[tuple[float, float]]] = {}  # phase -> (time, ms)
        self.errors: list[str] = []
        self.mixed = 0
        self.deltas = 0
        self.answers: dict[str, int] = {}
        self.streaming_now = 0
        self.spread = 0.0
        self.started = time.monotonic()

    def error(self, what: str) -> None:
        if len(self.errors) < 50:
            self.errors.append(what)
        else:
            self.errors.append("…")

    async def open(self, n: int):
        import websockets

        ws = await websockets.connect(
            self.url,
            additional_headers={"Cookie": self.cookies[n], "Origin": page_origin(self.url)},
            open_timeout=60,
            ping_interval=None,  # the server pings; idle browser tabs send nothing either
        )
        hello = json.loads(await asyncio.wait_for(ws.recv(), 30))
        if hello.get("type") != "hello":
            raise RuntimeError(f"session {n}: expected hello, got {hello}")
        return ws

    async def idle(self, n: int, stop: asyncio.Event) -> None:
        try:
            ws = await self.open(n)
        except Exception as exc:
            self.error(f"idle {n} connect: {exc!r}")
            return
        try:
            await stop.wait()
            # Still alive at the end: a ping is answered.
            await ws.send(json.dumps({"type": "ping", "id": f"i{n}"}))
            frame = json.loads(await asyncio.wait_for(ws.recv(), 30))
            if frame != {"type": "pong", "id": f"i{n}"}:
                self.error(f"idle {n}: expected pong, got {frame}")
        except Exception as exc:
            self.error(f"idle {n}: {exc!r}")
        finally:
            await ws.close()

    async def stream(self, n: int, stop: asyncio.Event) -> None:
        try:
            ws = await self.open(n)
        except Exception as exc:
            self.error(f"stream {n} connect: {exc!r}")
            return
        k = 0
        try:
            # Sessions start spread over one answer's length, as people do, not all in one instant
            # (a thundering herd would measure the queue it makes, not the server's pace).
            await asyncio.sleep(random.Random(n).uniform(0, self.spread))
            while not stop.is_set():
                k += 1
                marker = f"zq{n}k{k}q"
                qid = f"s{n}-{k}"
                # [[fake:long]]: answers of LLM_MAX_NEW_TOKENS (256) tokens, ~8.5 s at 30/s.
                question = self.questions[(n + k) % len(self.questions)]
                text = f"{question} {marker} [[fake:long]]"
                phase = self.phase
                started = time.monotonic()
                await ws.send(json.dumps({"type": "ask", "id": qid, "text": text}))
                first = True
                seen_own = False
                while True:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), 60))
                    if frame.get("id") != qid:
                        self.mixed += 1
                        self.error(f"stream {n}: frame for {frame.get('id')!r} while on {qid}")
                        continue
                    kind = frame["type"]
                    if kind == "delta":
                        self.deltas += 1
                        if first:
                            first = False
                            self.streaming_now += 1
                            elapsed = (time.monotonic() - started) * 1000
                            self.first_token.setdefault(phase, []).append(
                                (time.monotonic() - self.started, elapsed)
                            )
                        found = set(MARKER.findall(frame["text"]))
                        if found - {marker}:
                            self.mixed += 1
                            self.error(f"stream {n}: foreign marker {found - {marker}} in {qid}")
                        seen_own |= marker in found
                    elif kind in ("done", "error", "stopped"):
                        if not first:
                            self.streaming_now -= 1
                        status = frame.get("status", kind)
                        self.answers[status] = self.answers.get(status, 0) + 1
                        if kind != "done":
                            self.error(f"stream {n}: {kind} {frame.get('message', '')}")
                        elif status == "complete" and not seen_own:
                            self.error(f"stream {n}: answer {qid} never echoed its marker")
                        break
        except Exception as exc:
            self.error(f"stream {n} ({k}): {exc!r}")
        finally:
            await ws.close()


async def baseline_ttft(questions: list[str], runs: int) -> list[float]:
    """The fake model's own time to first token, called directly in this process."""
    from assistant import llm

    model = llm.get_chat_model()
    times = []
    for n in range(runs):
        messages = [("system", "You are Counsel."), ("user", f"Question: {questions[n % 5]}")]
        started = time.perf_counter()
        async for _ in llm.stream_with_timeouts(
            model, messages, first_token_timeout=10, total_timeout=30
        ):
            times.append((time.perf_counter() - started) * 1000)
            break
    return times


async def sampler(run: Run, server: subprocess.Popen, samples: list[dict], stop: asyncio.Event):
    import psycopg
    import redis.asyncio as aioredis

    redis = aioredis.Redis.from_url(os.environ["REDIS_URL"])
    admin = os.environ["DATABASE_URL"]

    def pg_connections() -> int:
        with psycopg.connect(admin) as conn:
            return conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [DB_NAME]
            ).fetchone()[0]

    last = (time.monotonic(), proc_cpu_seconds(server.pid), proc_cpu_seconds("self"))
    last_threads, last_wait = threads_cpu_seconds(server.pid), runqueue_wait_seconds(server.pid)
    while not stop.is_set():
        await asyncio.sleep(SAMPLE_SECONDS)
        now = (time.monotonic(), proc_cpu_seconds(server.pid), proc_cpu_seconds("self"))
        wall = now[0] - last[0]
        threads, wait = threads_cpu_seconds(server.pid), runqueue_wait_seconds(server.pid)
        busiest = sorted(
            ((v - last_threads.get(k, 0.0), k) for k, v in threads.items()), reverse=True
        )[:2]
        last_threads, wait_pct, last_wait = threads, 100 * (wait - last_wait) / wall, wait
        info = await redis.info("clients")
        samples.append(
            {
                "t": round(now[0] - run.started, 1),
                "phase": run.phase,
                "server_rss_mib": round(proc_rss_mib(server.pid), 1),
                "server_cpu_pct": round(100 * (now[1] - last[1]) / wall, 1),
                "client_cpu_pct": round(100 * (now[2] - last[2]) / wall, 1),
                "server_busiest_threads_pct": {k: round(100 * v / wall) for v, k in busiest},
                "server_runqueue_wait_pct": round(wait_pct, 1),
                "loadavg_1m": os.getloadavg()[0],
                "streaming_now": run.streaming_now,
                "pg_connections": await asyncio.to_thread(pg_connections),
                "redis_clients": info["connected_clients"],
            }
        )
        last = now
    await redis.aclose()


def summarize(run: Run, phase: str, model_ttft: float, samples: list[dict]) -> dict:
    measured = [ms for _, ms in run.first_token.get(phase, [])]
    added = [ms - model_ttft for ms in measured]
    mine = [s for s in samples if s["phase"] == phase]
    return {
        "questions": len(measured),
        "first_token_ms": {"p50": percentile(measured, 50), "p95": percentile(measured, 95)},
        "server_added_ms": {
            "p50": percentile(added, 50),
            "p95": percentile(added, 95),
            "p99": percentile(added, 99),
        },
        "streaming_mean": statistics.fmean(s["streaming_now"] for s in mine) if mine else None,
        "server_rss_mib_max": max((s["server_rss_mib"] for s in mine), default=None),
        "server_cpu_pct_mean": statistics.fmean(s["server_cpu_pct"] for s in mine)
        if mine
        else None,
        "client_cpu_pct_mean": statistics.fmean(s["client_cpu_pct"] for s in mine)
        if mine
        else None,
        "server_busiest_thread_pct_mean": statistics.fmean(
            max(s["server_busiest_threads_pct"].values(), default=0) for s in mine
        )
        if mine
        else None,
        "server_runqueue_wait_pct_mean": statistics.fmean(
            s["server_runqueue_wait_pct"] for s in mine
        )
        if mine
        else None,
        "loadavg_1m_mean": statistics.fmean(s["loadavg_1m"] for s in mine) if mine else None,
        "pg_connections_max": max((s["pg_connections"] for s in mine), default=None),
        "redis_clients_max": max((s["redis_clients"] for s in mine), default=None),
    }


async def drive(args, run: Run, server: subprocess.Popen) -> dict:
    samples: list[dict] = []
    stop_sampling = asyncio.Event()
    sampling = asyncio.create_task(sampler(run, server, samples, stop_sampling))
    base = await baseline_ttft(run.questions, 60)
    model_ttft = statistics.median(base)
    # The first questions warm the server (embedding model, tokenizer); not counted.
    stop_warm = asyncio.Event()
    warm = [asyncio.create_task(run.stream(n, stop_warm)) for n in range(5)]
    await asyncio.sleep(8)
    stop_warm.set()
    await asyncio.gather(*warm)

    stop_idle = asyncio.Event()
    idle_ids = range(args.streaming_max, args.streaming_max + args.idle)
    idle = []
    connect_started = time.monotonic()
    for start in range(0, args.idle, 50):  # in batches, as a busy morning would
        idle += [asyncio.create_task(run.idle(n, stop_idle)) for n in idle_ids[start : start + 50]]
        await asyncio.sleep(0.2)
    connect_seconds = time.monotonic() - connect_started

    phases = [("steady", args.streaming, args.minutes * 60)]
    phases += [(f"ramp-{n}", n, args.step_seconds) for n in args.ramp]
    for phase, sessions, seconds in phases:
        run.phase, run.spread = phase, args.spread
        stop = asyncio.Event()
        tasks = [asyncio.create_task(run.stream(n, stop)) for n in range(sessions)]
        print(f"  {phase}: {sessions} streaming + {args.idle} idle for {seconds:.0f} s", flush=True)
        await asyncio.sleep(seconds)
        stop.set()
        await asyncio.gather(*tasks)
    stop_idle.set()
    await asyncio.gather(*idle)
    stop_sampling.set()
    await sampling
    return {
        "model_ttft_ms": {"p50": model_ttft, "p95": percentile(base, 95)},
        "idle_connect_seconds": connect_seconds,
        "phases": {p: summarize(run, p, model_ttft, samples) for p, _, _ in phases},
        "samples": samples,
        "first_token_timeline": {
            p: [(round(t, 2), round(ms, 1)) for t, ms in v] for p, v in run.first_token.items()
        },
    }


def chart(payload: dict, path: Path) -> None:
    """Two panels: server RSS and windowed p95 over time; p95 over the ramp."""
    samples = payload["samples"]
    width, height, pad = 760, 300, 50
    panel = (width - 3 * pad) / 2
    t_max = max(s["t"] for s in samples) or 1
    rss_max = max(s["server_rss_mib"] for s in samples) * 1.1
    model = payload["model_ttft_ms"]["p50"]
    timeline = sorted(
        (t, ms - model)
        for phase, v in payload["first_token_timeline"].items()
        if phase != "warm-up"  # the first questions load the embedding model
        for t, ms in v
    )
    windows = []
    for start in range(0, int(t_max), 10):
        values = [ms for t, ms in timeline if start <= t < start + 10]
        if len(values) >= 5:
            windows.append((start + 5, percentile(values, 95)))
    lat_max = max([ms for _, ms in windows] + [1]) * 1.1

    def x1(t: float) -> float:
        return pad + panel * t / t_max

    def y(v: float, top: float) -> float:
        return height - pad - (height - 2 * pad) * v / top

    rss = " ".join(f"{x1(s['t']):.1f},{y(s['server_rss_mib'], rss_max):.1f}" for s in samples)
    p95 = " ".join(f"{x1(t):.1f},{y(v, lat_max):.1f}" for t, v in windows)
    ramp = [
        (int(p.split("-")[1]), v["server_added_ms"]["p95"])
        for p, v in payload["phases"].items()
        if p.startswith("ramp-") and v["server_added_ms"]["p95"] is not None
    ]
    ramp_max = max([v for _, v in ramp] + [1]) * 1.1
    n_max = max([n for n, _ in ramp] + [1])
    x0 = 2 * pad + panel

    def x2(n: float) -> float:
        return x0 + panel * n / n_max

    ramp_line = " ".join(f"{x2(n):.1f},{y(v, ramp_max):.1f}" for n, v in ramp)
    dots = "".join(
        f'<circle cx="{x2(n):.1f}" cy="{y(v, ramp_max):.1f}" r="3" fill="#b5482a"/>'
        f'<text x="{x2(n):.1f}" y="{y(v, ramp_max) - 8:.1f}" text-anchor="middle">{v:.0f}</text>'
        for n, v in ramp
    )
    bottom = height - pad
    starts: dict[str, float] = {}
    for sample in samples:
        starts.setdefault(sample["phase"], sample["t"] - SAMPLE_SECONDS)
    marks = "".join(
        f'<line x1="{x1(t):.1f}" y1="{pad}" x2="{x1(t):.1f}" y2="{bottom}" stroke="#ccc" '
        f'stroke-dasharray="3,3"/><text x="{x1(t) + 2:.1f}" y="{pad + 10 + 11 * (i % 2)}" '
        f'fill="#666" font-size="9">{phase}</text>'
        for i, (phase, t) in enumerate(starts.items())
        if phase != "warm-up"
    )
    rss_top, lat_top = rss_max / 1.1, lat_max / 1.1
    ticks = "".join(
        f'<text x="{x2(n):.1f}" y="{bottom + 16}" text-anchor="middle">{n}</text>' for n, _ in ramp
    )
    svg = f"""<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" \
font-family="sans-serif" font-size="11">
<rect width="100%" height="100%" fill="white"/>
<text x="{pad}" y="20" font-size="13">Over time: server RSS (MiB, blue, max {rss_top:.0f}) \
and server-added first-token p95 per 10 s (ms, red, max {lat_top:.0f})</text>
<line x1="{pad}" y1="{bottom}" x2="{pad + panel}" y2="{bottom}" stroke="#888"/>
<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{bottom}" stroke="#888"/>{marks}
<polyline points="{rss}" fill="none" stroke="#2a6fb5" stroke-width="1.5"/>
<polyline points="{p95}" fill="none" stroke="#b5482a" stroke-width="1.5"/>
<text x="{pad}" y="{bottom + 16}">0 s</text>
<text x="{pad + panel}" y="{bottom + 16}" text-anchor="end">{t_max:.0f} s</text>
<text x="{x0}" y="40" font-size="13">Ramp: server-added p95 (ms) by streaming sessions</text>
<line x1="{x0}" y1="{bottom}" x2="{x0 + panel}" y2="{bottom}" stroke="#888"/>
<line x1="{x0}" y1="{pad}" x2="{x0}" y2="{bottom}" stroke="#888"/>
<polyline points="{ramp_line}" fill="none" stroke="#b5482a" stroke-width="1.5"/>{dots}
{ticks}
</svg>
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(svg)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=2.0, help="length of the steady phase")
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--streaming", type=int, default=100)
    parser.add_argument("--ramp", default="25,50,100,200", help="streaming sessions per step")
    parser.add_argument("--step-seconds", type=float, default=30.0)
    parser.add_argument(
        "--spread", type=float, default=9.0, help="seconds over which a phase's sessions start"
    )
    args = parser.parse_args()
    args.ramp = [int(n) for n in args.ramp.split(",") if n]
    args.streaming_max = max([args.streaming, 5, *args.ramp])
    # Each socket is a file descriptor here and one in the server (which inherits the limit).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 2 * (args.idle + args.streaming_max) + 1000
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < need:
        sys.exit(f"RLIMIT_NOFILE hard limit {hard} is below the {need} descriptors needed")

    started = time.monotonic()
    cookies = setup(args.idle + args.streaming_max)
    print(f"setup (database, demo, {len(cookies)} users): {time.monotonic() - started:.0f} s")
    manifest = json.loads((ROOT / "demo" / "manifest.json").read_text())
    questions = [
        q["question"] for q in manifest["questions"] if q["collection"] in ("company", "sales")
    ]
    port = free_port()
    server = start_server(port)
    run = Run(f"ws://127.0.0.1:{port}/ws/chat/", cookies, questions)
    cpu_start = (proc_cpu_seconds(server.pid), proc_cpu_seconds("self"))
    try:
        payload = asyncio.run(drive(args, run, server))
    finally:
        cpu_end = (proc_cpu_seconds(server.pid), proc_cpu_seconds("self"))
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    payload.update(
        {
            "settings": {
                "idle": args.idle,
                "streaming": args.streaming,
                "minutes": args.minutes,
                "ramp": args.ramp,
                "step_seconds": args.step_seconds,
                "fake_tokens_per_second": 30,
                "raised": "CHAT_RATE_PER_MINUTE=100000 LLM_MAX_CONCURRENCY=100000",
            },
            "errors": len(run.errors),
            "error_examples": run.errors[:20],
            "mixed_tokens": run.mixed,
            "deltas": run.deltas,
            "answers": run.answers,
            "cpu_seconds": {
                "server": cpu_end[0] - cpu_start[0],
                "client": cpu_end[1] - cpu_start[1],
            },
            "wall_seconds": time.monotonic() - run.started,
            "cpu_count": os.cpu_count(),
        }
    )
    questions_total = sum(run.answers.values()) or 1
    payload["server_cpu_ms_per_question"] = (
        1000 * payload["cpu_seconds"]["server"] / questions_total
    )
    base = next(iter(v for k, v in payload["phases"].items() if k.startswith("ramp-")), None)
    doubled = None
    if base and base["server_added_ms"]["p95"] is not None:
        for phase, v in payload["phases"].items():
            p95 = v["server_added_ms"]["p95"]
            limit = 2 * max(base["server_added_ms"]["p95"], 1.0)
            if phase.startswith("ramp-") and p95 is not None and p95 >= limit:
                doubled = int(phase.split("-")[1])
                break
    payload["ramp_p95_doubles_at"] = doubled

    print(
        f"\nwebsocket load, one node (FAKE model at 30 tokens/s; model's own first token "
        f"{payload['model_ttft_ms']['p50']:.1f} ms)"
    )
    header = (
        f"{'phase':>10} {'streams':>8} {'questions':>9} {'added p50':>9} {'added p95':>9} "
        f"{'RSS MiB':>8} {'srv CPU%':>8} {'1 thr%':>6} {'wait%':>6} {'cli CPU%':>8} "
        f"{'load1':>6} {'PG':>4} {'Redis':>5}"
    )
    print(header)
    for phase, v in payload["phases"].items():
        added = v["server_added_ms"]

        def fmt(value, spec: str = ".1f") -> str:
            return "-" if value is None else format(value, spec)

        print(
            f"{phase:>10} {fmt(v['streaming_mean']):>8} {v['questions']:>9} "
            f"{fmt(added['p50']):>9} {fmt(added['p95']):>9} "
            f"{fmt(v['server_rss_mib_max'], '.0f'):>8} "
            f"{fmt(v['server_cpu_pct_mean'], '.0f'):>8} "
            f"{fmt(v['server_busiest_thread_pct_mean'], '.0f'):>6} "
            f"{fmt(v['server_runqueue_wait_pct_mean'], '.0f'):>6} "
            f"{fmt(v['client_cpu_pct_mean'], '.0f'):>8} "
            f"{fmt(v['loadavg_1m_mean'], '.2f'):>6} {fmt(v['pg_connections_max'], 'd'):>4} "
            f"{fmt(v['redis_clients_max'], 'd'):>5}"
        )
    print(
        f"idle sockets: {args.idle} (connected in {payload['idle_connect_seconds']:.1f} s); "
        f"errors: {payload['errors']}; mixed tokens: {run.mixed} of {run.deltas} deltas; "
        f"answers: {run.answers}"
    )
    print(
        f"CPU seconds: server {payload['cpu_seconds']['server']:.0f}, clients "
        f"{payload['cpu_seconds']['client']:.0f} over {payload['wall_seconds']:.0f} s wall "
        f"on {os.cpu_count()} cores ({payload['server_cpu_ms_per_question']:.0f} ms of server CPU "
        f"per question, streaming included); p95 doubles at: {doubled or 'not within the ramp'}"
    )
    print(
        "streams: mean sessions streaming at a time; 1 thr%: the busiest server thread's CPU; "
        "wait%: time the server's threads waited for a CPU (other work on the machine)"
    )
    for line in run.errors[:10]:
        print("  error:", line)
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "load.json").write_text(json.dumps(payload, indent=2))
    chart(payload, ROOT / "docs" / "img" / "load.svg")


if __name__ == "__main__":
    main()
