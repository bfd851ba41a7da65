"""Answer quality through the real pipeline: retrieval, quote, prompt, model, claim check.

    .venv/bin/python bench/answers.py                       # the three local models
    .venv/bin/python bench/answers.py --models qwen2.5-coder-1.5b --limit 20
    .venv/bin/python bench/answers.py --models qwen2.5-coder-1.5b --dev   # the development set

The demo company, indexed, in a database of its own (`counsel_answers_bench`). For every model
configuration a real model server (assistant/llm/server.py, llama.cpp) is started on a free port
and every question goes through `assistant.services.chat_answer` — the function the websocket
calls — as a demo user:

- the manifest's questions and `bench/data/answers.json` (questions written in other words
  than the documents use), each asked by someone who may read the answer;
- the unanswerable questions of answers.json (nothing any collection holds answers them);
- every canary question of the manifest, asked by a demo user who may NOT read its collection.

Per model: answer holds the fact, quote holds the fact, right document cited, figures that the
cited passages do not contain shown without a mark (found by a check independent of the
product's: every digit group of the answer looked up in the cited passages), unanswerable
refused, canary leaks, quote latency, time to first token, decode speed and the model server's
memory. Baseline in the same run: a bare call to the same server with a short fixed prompt
(its time to first token and decode speed, no retrieval, no queue).

Results: a table, and JSON in bench/results/answers-<date>.json. The questions must not be
tuned against (bench/data/answers.json says how they were written); misses are listed. Tune
against `--dev` instead: bench/data/answers-dev.json, other questions written the same way about
other facts of the same documents (no canaries), results in answers-dev-<date>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import html
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    RESULTS,
    ROOT,
    log,
    machine_info,
    percentile,
    setup_demo,
    table,
)

DB_NAME = "counsel_answers_bench"
MODELS = ("qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b", "smollm2-135m")
# How an answer says "not found": the product's refusal, or the model's words for it.
_NOT_FOUND = re.compile(
    r"could not find|couldn't find|can ?not find|cannot find|not (?:mentioned|specified|stated|"
    r"provided|found|included|available)|no information|do(?:es)? not (?:say|mention|contain|"
    r"specify|provide)|don't (?:know|have)|not in the (?:documents|sources)",
    re.IGNORECASE,
)
_DIGITS = re.compile(r"\d[\d.,:]*\d|\d")


def setup() -> None:
    setup_demo(
        DB_NAME,
        {"LLM_BACKEND": "local", "CHAT_RATE_PER_MINUTE": "100000", "COUNSEL_DOTENV": "0"},
    )


def normal(text: str) -> str:
    text = html.unescape(text).lower().replace("€", "eur ").replace("\u00a0", " ")
    return " ".join(text.split())


def holds(text: str, facts: list[str]) -> bool:
    """The text holds one of the facts: as written (case and spacing aside), or, for a fact
    made of figures, each of its figures in another written form ("34 %" / "34%", "19 November
    2025" / "November 19, 2025") by the figure normaliser of assistant.grounding."""
    from assistant.grounding import figures_in

    haystack = normal(text)
    if any(normal(fact) in haystack for fact in facts):
        return True
    said = [f.keys for f in figures_in(text)]
    for fact in facts:
        wanted = [f.keys for f in figures_in(fact) if f.kind != "name"]
        if wanted and all(any(keys & other for other in said) for keys in wanted):
            return True
    return False


def refused(event: dict, answer: str) -> bool:
    return event.get("status") == "refused" or bool(_NOT_FOUND.search(answer))


def unmarked_unsupported(answer_html: str, passages: list[str]) -> list[str]:
    """Digit groups of the answer that no given text holds (the passages with their titles and
    headings, and the question) and that carry no mark."""
    outside = re.sub(r"<mark class=\"unsupported\"[^>]*>.*?</mark>", " ", answer_html)
    outside = re.sub(r"<[^>]+>", " ", outside)
    outside = outside.replace("(The answer was cut here: answers are limited to", "")
    corpus = re.sub(r"[.,:\s]", "", " ".join(passages))
    missing = []
    for match in _DIGITS.finditer(html.unescape(outside)):
        digits = re.sub(r"[.,:]", "", match.group())
        if digits not in corpus:
            missing.append(match.group())
    return missing


class Server:
    """The local model server (the same module scripts/services runs) on a free port."""

    def __init__(self, model: str, *, threads: int | None, parallel: int) -> None:
        self.model = model
        self.dir = Path(tempfile.mkdtemp(prefix=f"counsel-bench-{model}-"))
        argv = [sys.executable, "-m", "assistant.llm.server", "--model", model, "--port", "0"]
        argv += ["--parallel", str(parallel), "--server-dir", str(self.dir)]
        if threads:
            argv += ["--threads", str(threads)]
        self.log = (self.dir / "server.log").open("ab")
        self.proc = subprocess.Popen(argv, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT)
        state = self.dir / "server.json"
        deadline = time.monotonic() + 180
        while not state.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit((self.dir / "server.log").read_text()[-3000:])
            time.sleep(0.2)
        self.info = json.loads(state.read_text())
        self.url = f"http://127.0.0.1:{self.info['port']}/v1"

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)
        self.log.close()


def use_server(server: Server) -> None:
    from django.conf import settings

    settings.LLM_BACKEND = "local"
    settings.LLM_MODEL = server.model
    settings.LLM_BASE_URL = server.url
    settings.LLM_SERVER_DIR = server.dir
    settings.LLM_API_KEY = ""
    settings.LLM_FIRST_TOKEN_TIMEOUT_SECONDS = 120.0
    settings.LLM_TIMEOUT_SECONDS = 300.0
    from assistant.llm.catalog import MODELS as KNOWN

    # As settings would give it for this model (CHAT_ANSWERABLE_CHECK=true|false overrides).
    settings.CHAT_ANSWERABLE_CHECK = {"true": True, "false": False}.get(
        os.environ.get("CHAT_ANSWERABLE_CHECK", "").lower(), KNOWN[server.model].answerable_check
    )
    # CHAT_ANSWERABLE_MIN_YES=0 never refuses on the check and records its confidence for every
    # question: what bench/answerable.py sweeps a threshold over.
    minimum = os.environ.get("CHAT_ANSWERABLE_MIN_YES")
    settings.CHAT_ANSWERABLE_MIN_YES = (
        float(minimum) if minimum else KNOWN[server.model].answerable_min_yes
    )


async def bare_call(runs: int = 3) -> dict:
    """The baseline: the same server, a short fixed prompt, no retrieval and no queue."""
    from assistant import llm

    messages = [
        ("system", "You are Counsel. Answer briefly."),
        ("user", "Source: Canteen\nThe canteen opens at 11:30.\n\nQuestion: When can I eat?"),
    ]
    ttfts, speeds = [], []
    for _ in range(runs):
        stats = llm.StreamStats()
        started = time.monotonic()
        first = None
        async for _piece in llm.stream_with_timeouts(
            llm.get_chat_model(), messages, first_token_timeout=60, total_timeout=120, stats=stats
        ):
            first = first or time.monotonic()
        ended = time.monotonic()
        ttfts.append((first - started) * 1000)
        if stats.output_tokens and stats.output_tokens > 1 and ended > first:
            speeds.append((stats.output_tokens - 1) / (ended - first))
    return {"ttft_ms": sorted(ttfts)[len(ttfts) // 2], "decode_tps": max(speeds or [0.0])}


async def ask(user_id: int, question: str) -> dict:
    """One question through the chat service, with the times its events arrived."""
    from assistant.services import Ask, chat_answer

    started = time.monotonic()
    out: dict = {"quote_ms": None, "first_token_ms": None, "text": "", "quote": {}}
    out["queued_ms"] = None
    async for event in chat_answer(Ask(user_id=user_id, question=question)):
        now = (time.monotonic() - started) * 1000
        if event["type"] == "queued" and out["queued_ms"] is None:
            out["queued_ms"] = now
        if event["type"] == "quote":
            out["quote_ms"] = now
            out["quote"] = event["quote"]
        elif event["type"] == "token":
            if out["first_token_ms"] is None:
                out["first_token_ms"] = now
            out["text"] += event["text"]
        elif event["type"] in ("done", "error"):
            out["end_ms"] = now
            out["event"] = event
    return out


def entry_for(event: dict):
    from compliance.models import QueryLogEntry

    return QueryLogEntry.objects.filter(pk=event.get("log_entry")).first()


def questions() -> tuple[list[dict], list[dict], list[dict]]:
    from compliance.demo import ASKERS

    manifest = json.loads((ROOT / "demo" / "manifest.json").read_text())
    data = json.loads((ROOT / "bench" / "data" / "answers.json").read_text())
    answerable = [
        {
            "id": f"manifest-{n:02d}",
            "group": "manifest",
            "asker": ASKERS[q["collection"]][0],
            "question": q["question"],
            "facts": [q["answer_contains"]],
            "document": q["document"],
        }
        for n, q in enumerate(manifest["questions"], start=1)
    ]
    answerable += [{**q, "group": "paraphrased"} for q in data["answerable"]]
    readers = {slug: set(users) for slug, users in ASKERS.items()}
    everyone = sorted(set().union(*readers.values()) | {"nora"})
    probes = []
    for n, canary in enumerate(manifest["canaries"], start=1):
        outsider = next(u for u in everyone if u not in readers[canary["collection"]])
        probes.append({"id": f"canary-{n:02d}", "asker": outsider, **canary})
    return answerable, data["unanswerable"], probes


def titles_by_path() -> dict[str, str]:
    manifest = json.loads((ROOT / "demo" / "manifest.json").read_text())
    return {d["file"]: d["title"] for c in manifest["collections"].values() for d in c["documents"]}


async def run_model(model: str, args, users, answerable, unanswerable, probes) -> dict:
    from django.core.cache import cache

    titles = titles_by_path()
    server = Server(model, threads=args.threads, parallel=args.parallel)
    use_server(server)
    log(f"{model}: server up in {server.info['load_seconds']} s ({server.url})")
    try:
        baseline = await bare_call()
        # Warm-up: the embedding model, the tokenizer and the server's prompt cache of the
        # system message load on the first question, as after any restart; not measured.
        await ask(users[answerable[0]["asker"]], "Where is the headquarters?")
        rows, misses = [], []
        for kind, items in (("answer", answerable), ("none", unanswerable), ("canary", probes)):
            for item in items[: args.limit or None]:
                cache.clear()  # the per-user rate limit is not what is measured
                result = await ask(users[item["asker"]], item["question"])
                event = result.get("event", {})
                entry = await asyncio.to_thread(entry_for, event)
                answer = entry.answer if entry else result["text"]
                passages = [
                    f"{c.get('document_title', '')}\n{c.get('heading', '')}\n{c['text'] or ''}"
                    for c in (entry.used_chunks if entry else [])
                ]
                cited = {c["title"] for c in event.get("citations", [])}
                row = {
                    "id": item["id"],
                    "kind": kind,
                    "group": item.get("group", kind),
                    "asker": item["asker"],
                    "question": item["question"],
                    "answer": answer,
                    "status": event.get("status", event.get("type")),
                    "quote": result["quote"].get("text", ""),
                    "quote_ms": result["quote_ms"],
                    "first_token_ms": result["first_token_ms"],
                    "end_ms": result.get("end_ms"),
                    "completion_tokens": entry.completion_tokens if entry else 0,
                    "prompt_tokens": entry.prompt_tokens if entry else 0,
                    "unsupported_marked": entry.unsupported_figures if entry else None,
                    "answerable": (entry.grounding or {}).get("answerable") if entry else None,
                    "unmarked": unmarked_unsupported(
                        event.get("html", ""), [*passages, item["question"]]
                    ),
                }
                row["cited"] = sorted(cited)
                if kind == "answer":
                    score(row, item, titles)
                elif kind == "none":
                    row["refused"] = refused(event, answer)
                else:
                    seen = " ".join([answer, row["quote"], *cited, *passages])
                    row["leak"] = item["token"].lower() in seen.lower()
                if result["first_token_ms"] and row["completion_tokens"] > 1:
                    seconds = (result["end_ms"] - result["first_token_ms"]) / 1000
                    row["decode_tps"] = (row["completion_tokens"] - 1) / max(seconds, 1e-3)
                rows.append(row)
                flag = ""
                if kind == "answer" and not row["answer_ok"]:
                    flag, _ = "MISS", misses.append(row["id"])
                if kind == "none" and not row["refused"]:
                    flag = "NOT REFUSED"
                if kind == "canary" and row["leak"]:
                    flag = "LEAK"
                log(
                    f"{model} {item['id']:<15} ttft {row['first_token_ms'] or 0:7.0f} ms "
                    f"{flag:<11} {answer[:90]!r}"
                )
        rss = server.rss_mib()
    finally:
        server.stop()
    return summarise(model, rows, baseline, rss, args)


def summarise(model: str, rows: list[dict], baseline: dict, rss: float, args) -> dict:
    from django.conf import settings

    def share(items, key) -> float:
        return 100 * sum(bool(r[key]) for r in items) / len(items) if items else float("nan")

    answers = [r for r in rows if r["kind"] == "answer"]
    nones = [r for r in rows if r["kind"] == "none"]
    canaries = [r for r in rows if r["kind"] == "canary"]
    quotes = [r["quote_ms"] for r in rows if r["quote_ms"] is not None]
    ttft = [r["first_token_ms"] for r in answers if r["first_token_ms"] is not None]
    speeds = [r["decode_tps"] for r in answers if r.get("decode_tps")]
    by_group = {
        group: {
            "n": len(items),
            "answer_ok": share(items, "answer_ok"),
            "quote_ok": share(items, "quote_ok"),
            "document_ok": share(items, "document_ok"),
        }
        for group in ("manifest", "paraphrased", "dev")
        if (items := [r for r in answers if r["group"] == group])
    }
    return {
        "model": model,
        "threads": args.threads,
        "parallel": args.parallel,
        "answerable_check": settings.CHAT_ANSWERABLE_CHECK,
        "answerable_min_yes": settings.CHAT_ANSWERABLE_MIN_YES,
        "questions": len(answers),
        "answer_ok": share(answers, "answer_ok"),
        "quote_ok": share(answers, "quote_ok"),
        "document_ok": share(answers, "document_ok"),
        "by_group": by_group,
        "unmarked_unsupported": sum(len(r["unmarked"]) for r in rows if r["kind"] != "canary"),
        "marked_unsupported": sum(r["unsupported_marked"] or 0 for r in rows),
        "unanswerable": len(nones),
        "refused": share(nones, "refused"),
        "canaries": len(canaries),
        "canary_leaks": sum(r["leak"] for r in canaries),
        "quote_p50_ms": percentile(quotes, 50) if quotes else None,
        "quote_p95_ms": percentile(quotes, 95) if quotes else None,
        "ttft_p50_ms": percentile(ttft, 50) if ttft else None,
        "ttft_p95_ms": percentile(ttft, 95) if ttft else None,
        "decode_tps_p50": percentile(speeds, 50) if speeds else None,
        "prompt_tokens_p50": percentile([r["prompt_tokens"] for r in answers], 50),
        "baseline_ttft_ms": baseline["ttft_ms"],
        "baseline_decode_tps": baseline["decode_tps"],
        "server_rss_mib": rss,
        "misses": [r["id"] for r in answers if not r["answer_ok"]],
        "not_refused": [r["id"] for r in nones if not r["refused"]],
        "rows": rows,
    }


async def run_concurrent(model: str, args, users: dict, answerable: list[dict]) -> dict:
    """`args.concurrent` people ask at the same moment, `args.rounds` times: when does each see
    something (the quote, a queue position or text), when the first token, does anyone time out.

    The chat's own settings apply: LLM_FIRST_TOKEN_TIMEOUT_SECONDS (30 s from a free slot) and
    LLM_MAX_CONCURRENCY = the server's parallel slots, so the others queue and see their place.
    """
    from django.conf import settings

    server = Server(model, threads=args.threads, parallel=args.parallel)
    use_server(server)
    settings.LLM_FIRST_TOKEN_TIMEOUT_SECONDS = 30.0
    settings.LLM_TIMEOUT_SECONDS = 90.0
    settings.LLM_MAX_CONCURRENCY = args.parallel
    log(f"{model}: {args.concurrent} at once, {args.parallel} slots, {args.rounds} rounds")
    try:
        await ask(users[answerable[0]["asker"]], "Where is the headquarters?")  # warm-up
        # Different people at once (one running answer per user), each asking what they may
        # read, so that every question reaches the model.
        pool = [q for q in answerable if q["group"] == "paraphrased"]
        samples = []
        for round_ in range(args.rounds):
            batch: list[dict] = []
            for q in pool:
                if len(batch) < args.concurrent and q["asker"] not in {b["asker"] for b in batch}:
                    batch.append(q)
            pool = [q for q in pool if q not in batch] + batch  # next round, other questions
            results = await asyncio.gather(*(ask(users[q["asker"]], q["question"]) for q in batch))
            for result in results:
                seen = [
                    t
                    for t in (result["quote_ms"], result["queued_ms"], result["first_token_ms"])
                    if t is not None
                ]
                event = result.get("event", {})
                samples.append(
                    {
                        "visible_ms": min(seen) if seen else None,
                        "quote_ms": result["quote_ms"],
                        "queued_ms": result["queued_ms"],
                        "first_token_ms": result["first_token_ms"],
                        "end_ms": result.get("end_ms"),
                        "error": event.get("message") if event.get("type") == "error" else None,
                    }
                )
            log(
                f"round {round_ + 1}: first tokens "
                + ", ".join(f"{(r['first_token_ms'] or 0) / 1000:.1f}s" for r in results)
            )
    finally:
        server.stop()

    def dist(key: str) -> tuple:
        values = [s[key] for s in samples if s[key] is not None]
        if not values:
            return (None, None, None)
        return (percentile(values, 50), percentile(values, 95), max(values))

    return {
        "model": model,
        "concurrent": args.concurrent,
        "parallel": args.parallel,
        "questions": len(samples),
        "errors": [s["error"] for s in samples if s["error"]],
        "visible_ms": dist("visible_ms"),
        "quote_ms": dist("quote_ms"),
        "first_token_ms": dist("first_token_ms"),
        "end_ms": dist("end_ms"),
        "visible_within_10s": sum(
            s["visible_ms"] is not None and s["visible_ms"] <= 10_000 for s in samples
        ),
        "samples": samples,
    }


def score(row: dict, item: dict, titles: dict[str, str]) -> None:
    """The answer-quality verdicts of one answerable question's row."""
    row["answer_ok"] = holds(row["answer"], item["facts"])
    row["quote_ok"] = holds(row["quote"], item["facts"])
    if "cited" in row:  # runs before the titles were stored keep their verdict
        row["document_ok"] = titles[item["document"]] in row["cited"]


def rescore(path: Path, args) -> None:
    """Score a run's stored answers again (after a fix to the scoring, not to the answers)."""
    data = json.loads(path.read_text())
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    import django

    django.setup()
    answerable, _, _ = questions()
    by_id = {q["id"]: q for q in answerable}
    titles = titles_by_path()
    results = []
    for result in data["results"]:
        for row in result["rows"]:
            if row["kind"] == "answer":
                score(row, by_id[row["id"]], titles)
        results.append(summarise(result["model"], result["rows"], _baseline(result), 0, args))
        results[-1]["server_rss_mib"] = result["server_rss_mib"]
    report(results, path.with_name(path.stem + "-rescored.json"), data["machine"])


def _baseline(result: dict) -> dict:
    return {"ttft_ms": result["baseline_ttft_ms"], "decode_tps": result["baseline_decode_tps"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--limit", type=int, default=0, help="questions per kind (0: all)")
    parser.add_argument("--threads", type=int, default=0, help="0: every core")
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument(
        "--rescore", metavar="JSON", help="score the answers of an earlier run again, run nothing"
    )
    parser.add_argument(
        "--concurrent", type=int, default=0, help="N people asking at once (the load mode)"
    )
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the load mode")
    parser.add_argument("--only", default="", help="comma-separated question ids (a quick check)")
    parser.add_argument(
        "--dev",
        action="store_true",
        help="the development set (bench/data/answers-dev.json) instead of the held-out one and "
        "the manifest: tune against these, report answers.json",
    )
    args = parser.parse_args()
    if args.rescore:
        return rescore(Path(args.rescore), args)
    setup()
    if args.concurrent:
        return concurrent_main(args)
    from django.conf import settings
    from django.contrib.auth import get_user_model

    from assistant.llm.catalog import MODELS as KNOWN
    from assistant.llm.catalog import model_install

    answerable, unanswerable, probes = questions()
    if args.dev:
        data = json.loads((ROOT / "bench" / "data" / "answers-dev.json").read_text())
        answerable = [{**q, "group": "dev"} for q in data["answerable"]]
        unanswerable, probes = data["unanswerable"], []
    if args.only:
        only = set(args.only.split(","))
        answerable, unanswerable, probes = (
            [q for q in items if q["id"] in only] for items in (answerable, unanswerable, probes)
        )
    users = {u.username: u.pk for u in get_user_model().objects.all()}
    results = []
    for model in args.models.split(","):
        model_install(KNOWN[model], Path(settings.LLM_MODELS_DIR), log=log)
        results.append(asyncio.run(run_model(model, args, users, answerable, unanswerable, probes)))
    RESULTS.mkdir(parents=True, exist_ok=True)
    kind = "-dev" if args.dev else ""
    out = RESULTS / f"answers{kind}-{dt.datetime.now():%Y%m%d-%H%M}.json"
    report(results, out, machine_info())


def concurrent_main(args) -> None:
    from django.contrib.auth import get_user_model

    answerable, _, _ = questions()
    users = {u.username: u.pk for u in get_user_model().objects.all()}
    # Only people who may read what they ask: each asks questions of their own collections.
    rows = []
    for model in args.models.split(","):
        rows.append(asyncio.run(run_concurrent(model, args, users, answerable)))
    headers = ["model", "at once", "slots", "questions", "errors", "visible p50/p95/max s",
               "quote p50/p95 ms", "first token p50/p95/max s", "visible ≤ 10 s"]  # fmt: skip

    def secs(triple) -> str:
        return "/".join("-" if v is None else f"{v / 1000:.1f}" for v in triple)

    print(
        table(
            headers,
            [
                (
                    r["model"],
                    r["concurrent"],
                    r["parallel"],
                    r["questions"],
                    len(r["errors"]),
                    secs(r["visible_ms"]),
                    "/".join("-" if v is None else f"{v:.0f}" for v in r["quote_ms"][:2]),
                    secs(r["first_token_ms"]),
                    f"{r['visible_within_10s']}/{r['questions']}",
                )
                for r in rows
            ],
            markdown=True,
        )
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"answers-concurrent-{dt.datetime.now():%Y%m%d-%H%M}.json"
    out.write_text(json.dumps({"machine": machine_info(), "results": rows}, indent=1))
    log(f"wrote {out}")


def report(results: list[dict], out: Path, machine: dict) -> None:
    headers = [
        "model", "fact %", "quote %", "doc %", "unmarked", "refused %", "leaks",
        "quote p50/p95 ms", "TTFT p50/p95 s", "decode tok/s", "bare TTFT s", "bare tok/s",
        "RSS MiB",
    ]  # fmt: skip
    body = [
        (
            r["model"],
            r["answer_ok"],
            r["quote_ok"],
            r["document_ok"],
            r["unmarked_unsupported"],
            r["refused"],
            f"{r['canary_leaks']}/{r['canaries']}",
            f"{r['quote_p50_ms'] or 0:.0f}/{r['quote_p95_ms'] or 0:.0f}",
            f"{(r['ttft_p50_ms'] or 0) / 1000:.1f}/{(r['ttft_p95_ms'] or 0) / 1000:.1f}",
            r["decode_tps_p50"] or float("nan"),
            r["baseline_ttft_ms"] / 1000,
            r["baseline_decode_tps"],
            r["server_rss_mib"],
        )
        for r in results
    ]
    print(table(headers, body, markdown=True))
    for r in results:
        print(f"{r['model']}: by group {json.dumps(r['by_group'])}")
        print(f"  misses: {', '.join(r['misses']) or '-'}")
        print(f"  not refused: {', '.join(r['not_refused']) or '-'}")
    out.write_text(json.dumps({"machine": machine, "results": results}, indent=1))
    log(f"wrote {out}")


if __name__ == "__main__":
    main()
