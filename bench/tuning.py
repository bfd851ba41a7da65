"""Adapters on the demo company: training time, peak memory, held-out accuracy, prompt tokens,
and what serving an adapter costs on the model server.

    .venv/bin/python bench/tuning.py [--roles Sales HR] [--max-steps 0] [--epochs 3]
    .venv/bin/python bench/tuning.py --roles --all-collections   # the largest demo profile

For each role's access profile: the demo documents are indexed (once, into the bench database
`counsel_tuning_bench`), a training set is generated, LoRA is trained in this process on the
adapters' base (TUNING_BASE_MODEL, de-quantised) exactly as the `train` worker does
(tuning.services.adapter_train), converted to a GGUF LoRA and evaluated on llama.cpp: held-out
paraphrased questions answered by the base model with no context, the adapter with no context,
RAG (base model + retrieval) and the hybrid (adapter + one retrieved passage), the leak probe,
and the prompt tokens per answer of each route. The baseline is in the same run: the base
model's accuracy on the same questions. Peak memory is this process's peak resident size
(ru_maxrss), which also includes the embedding model used for indexing and retrieval.

Serving (``--serving-runs``, after training): the adapter's time to first token and decode speed
through a llama.cpp server that has it loaded (as the adapters' server has), against the base
alone on a server without adapters, on the same retrieval-sized prompt, interleaved, one
request at a time, prompt cache off (every run reads its whole prompt).

Prints tables and writes bench/results/tuning.json.
"""

from __future__ import annotations

import argparse
import os
import time

from common import DEFAULT_DATABASE_URL, log, machine_info, setup_django, table, write_json

TARGET_TRAIN_S = 900  # the target: the demo's largest profile in 15 min on 2 cores
TARGET_SERVING_OVERHEAD = 0.20  # an adapter adds at most 20 % to TTFT and decode time
ALL_ROLE = "Bench: every collection"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--roles", nargs="*", default=["Sales", "HR"])
    parser.add_argument(
        "--all-collections",
        action="store_true",
        help=f"also a bench role ({ALL_ROLE!r}) that reads every demo collection: the largest "
        "profile the demo company has (no collection is left for its leak probe)",
    )
    parser.add_argument("--max-steps", type=int, default=0, help="0: as the epochs need")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument(
        "--examples", type=int, default=None, help="training pairs at most (TUNING_MAX_EXAMPLES)"
    )
    parser.add_argument("--eval-questions", type=int, default=30)
    parser.add_argument("--probe-questions", type=int, default=20)
    parser.add_argument(
        "--serving-runs", type=int, default=5, help="TTFT/decode runs per side (0: none)"
    )
    parser.add_argument(
        "--serving-only",
        action="store_true",
        help="measure only what serving an adapter costs, with a LoRA of the training's shape "
        "(rank, layers) and random weights on the base: its cost does not depend on its values",
    )
    parser.add_argument(
        "--evaluate-only",
        action="store_true",
        help="evaluate each role's latest trained adapter again (after a change to the "
        "evaluation) instead of training a new one",
    )
    args = parser.parse_args()
    os.environ.setdefault(
        "BENCH_DATABASE_URL", DEFAULT_DATABASE_URL.replace("counsel_bench", "counsel_tuning_bench")
    )
    os.environ["LLM_BACKEND"] = "local"
    if args.examples:
        os.environ["TUNING_MAX_EXAMPLES"] = str(args.examples)
    os.environ["TUNING_EVAL_QUESTIONS"] = str(args.eval_questions)
    os.environ["TUNING_LEAK_PROBE_QUESTIONS"] = str(args.probe_questions)
    if args.serving_only:
        setup_django()
        return serving_only(args.serving_runs)
    os.environ.setdefault("LLM_ADAPTER_DIR", "bench/results/adapters")
    # Its manifest stays with the bench's adapters, not the development server's.
    os.environ.setdefault("LLM_ADAPTER_SERVER_DIR", "bench/results/llm-adapters")
    setup_django()

    from io import StringIO

    from django.conf import settings
    from django.contrib.auth.models import Group
    from django.core.management import call_command

    from accounts.selectors import access_profile_for_role
    from ingestion import services as ingestion
    from ingestion.models import Document
    from tuning import services
    from tuning.models import Adapter, TrainingExample

    call_command("load_demo", stdout=StringIO())
    pending = Document.objects.exclude(state=Document.State.INDEXED)
    if pending.exists():
        log(f"indexing {pending.count()} demo documents")
        for document in pending:
            ingestion.document_index(document_id=document.pk, task_id="bench")
    roles = list(args.roles)
    if args.all_collections:
        from accounts.models import User
        from ingestion.models import Collection

        everything, _ = Group.objects.get_or_create(name=ALL_ROLE)
        for collection in Collection.objects.all():
            collection.readers.add(everything)
        # A member, so that the evaluation can measure retrieval as one of them would see it.
        member, _ = User.objects.get_or_create(username="bench-every-collection")
        member.groups.add(everything)
        roles.append(ALL_ROLE)
    rows, results = [], []
    for role in roles:
        profile = access_profile_for_role(role=Group.objects.get(name=role))
        Adapter.objects.filter(profile_key=profile.key, state=Adapter.State.TRAINING).update(
            state=Adapter.State.FAILED, state_reason="abandoned by a previous bench run"
        )
        started = time.monotonic()
        if args.evaluate_only:
            adapter = (
                Adapter.objects.filter(profile_key=profile.key, trained_at__isnull=False)
                .order_by("-version")
                .first()
            )
            if adapter is None:
                raise SystemExit(f"{role}: no trained adapter to evaluate; train one first")
            log(f"{role}: evaluating {adapter.name} again")
            outcome = evaluate_again(adapter)
        else:
            adapter = services.adapter_create(
                actor=None, profile_key=profile.key, epochs=args.epochs, max_steps=args.max_steps
            )
            log(f"{role}: training {adapter.name}")
            outcome = services.adapter_train(adapter_id=adapter.pk, task_id=f"bench-{adapter.pk}")
        wall = time.monotonic() - started
        adapter.refresh_from_db()
        m = adapter.metrics
        held, leak, tokens = m.get("heldout", {}), m.get("leak", {}), m.get("prompt_tokens", {})
        result = {
            "role": role,
            "profile": profile.key,
            "outcome": outcome,
            "documents": adapter.documents.count(),
            "examples": adapter.examples.filter(split=TrainingExample.Split.TRAIN).count(),
            "steps": adapter.step,
            "train_seconds": adapter.train_seconds,
            "wall_seconds": round(wall, 1),
            "peak_memory_mb": adapter.peak_memory_mb,
            "adapter_bytes": adapter.size_bytes,
            "heldout": held,
            "leak": {"n": leak.get("n"), "leaks": leak.get("leaks")},
            "prompt_tokens": tokens,
            "state_reason": adapter.state_reason,
            "base_model": adapter.base_model,
        }
        if args.serving_runs and adapter.state in ("ready", "active"):
            result["serving"] = serving_speed(adapter, runs=args.serving_runs)
        results.append(result)
        rows.append(
            [
                role,
                result["documents"],
                result["examples"],
                result["steps"],
                f"{(adapter.train_seconds or 0):.0f}",
                f"{wall:.0f}",
                f"{(adapter.peak_memory_mb or 0):.0f}",
                held.get("n"),
                held.get("base"),
                held.get("adapter"),
                held.get("rag"),
                held.get("hybrid"),
                held.get("rag_short"),
                f"{leak.get('leaks')}/{leak.get('n')}",
                tokens.get("tuned"),
                tokens.get("rag"),
                tokens.get("hybrid"),
            ]
        )
    print(
        table(
            [
                "role",
                "docs",
                "pairs",
                "steps",
                "train s",
                "total s",
                "peak MB",
                "held-out",
                "base",
                "adapter",
                "RAG",
                "hybrid",
                "RAG 1 src",
                "leaks",
                "tokens tuned",
                "tokens RAG",
                "tokens hybrid",
            ],
            rows,
            markdown=True,
        )
    )
    serving_rows = [
        [r["role"], side, *(f"{v:.3f}" if isinstance(v, float) else v for v in figures.values())]
        for r in results
        for side, figures in (r.get("serving") or {}).get("medians", {}).items()
    ]
    if serving_rows:
        print(
            table(
                ["role", "served", "TTFT s", "decode tok/s", "prompt tokens"],
                serving_rows,
                markdown=True,
            )
        )
    write_json(
        "tuning.json",
        {
            "machine": {**machine_info(), "loadavg_end": os.getloadavg()},
            "args": vars(args),
            "base_model": settings.TUNING_BASE_MODEL,
            "results": results,
            "target_train_seconds": TARGET_TRAIN_S,
            "target_serving_overhead": TARGET_SERVING_OVERHEAD,
        },
    )


def evaluate_again(adapter) -> str:
    """The evaluation of tuning.services on an adapter already trained (its PEFT files on disk),
    converted and loaded on llama.cpp again as the training run does."""
    from transformers import AutoTokenizer

    from tuning import services, serving

    base_dir = serving.base_checkpoint(adapter)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    with serving.adapter_package(adapter=adapter, base_dir=base_dir) as server:
        metrics = services.adapter_evaluate(adapter=adapter, server=server, tokenizer=tokenizer)
    adapter.metrics = {**adapter.metrics, **metrics}
    adapter.save(update_fields=["metrics"])
    return "evaluated"


def serving_only(runs: int) -> None:
    """Serving cost of an adapter of the trained shape (random weights) on TUNING_BASE_MODEL."""
    import tempfile
    from pathlib import Path

    import torch
    from django.conf import settings
    from peft import LoraConfig, get_peft_model

    from assistant.llm.adapters import gguf_file
    from assistant.llm.bases import checkpoint_dir
    from assistant.llm.lora_gguf import adapter_to_gguf
    from tuning import training
    from tuning.models import Adapter

    base = settings.TUNING_BASE_MODEL
    rank = settings.TUNING_LORA_RANK
    folder = Path(tempfile.mkdtemp(prefix="counsel-serving-")) / "random-lora"
    _tokenizer, model = training.load_base(checkpoint_dir(base), threads=settings.TUNING_THREADS)
    torch.manual_seed(0)
    config = LoraConfig(
        r=rank,
        lora_alpha=2 * rank,
        target_modules=training.TARGET_MODULES,
        init_lora_weights=False,
        task_type="CAUSAL_LM",
    )
    get_peft_model(model, config).save_pretrained(folder)
    del model
    adapter_to_gguf(
        peft_dir=folder,
        base_dir=checkpoint_dir(base),
        output=gguf_file(folder),
        converter=Path(settings.LLM_CONVERTER_DIR),
    )
    adapter = Adapter(name="random-lora", base_model=base)
    messages = [
        {"role": "system", "content": SERVING_SYSTEM},
        {"role": "user", "content": SERVING_USER},
    ]
    result = serving_speed(adapter, runs=runs, messages=messages, gguf=gguf_file(folder))
    log(f"serving {base}, rank {rank}: {result['medians']} overhead {result['overhead']}")
    write_json(
        "tuning-serving.json",
        {
            "machine": {**machine_info(), "loadavg_end": os.getloadavg()},
            "base_model": base,
            "rank": rank,
            "target_serving_overhead": TARGET_SERVING_OVERHEAD,
            **result,
        },
    )


# A retrieval-sized prompt of the chat's shape (system message, two passages, the question).
SERVING_SYSTEM = (
    "You answer employees' questions using only the numbered sources below. Answer in one or "
    "two sentences with the exact figures the sources give."
)
SERVING_USER = (
    "[1] Pricing and Discount Policy — Discounts\nSales representatives may grant dealers a "
    "discount of up to 12% on the list price without further approval. Discounts between 12% "
    "and 20% need the approval of the regional sales manager, recorded in the CRM before the "
    "quote is sent. Any discount above 20% needs written approval from the VP Sales, and the "
    "floor price may never be undercut. Volume bonuses are paid quarterly on net revenue.\n\n"
    "[2] Travel and expenses policy — Hotels\nEmployees book hotels through the travel desk. "
    "A hotel night may cost at most EUR 140 in Munich, Paris and London and EUR 110 elsewhere; "
    "breakfast is included where the hotel offers it. Receipts are submitted within 30 days "
    "of the trip, through the expenses tool, with the booking reference.\n\n"
    "Question: What is the highest discount I can give a dealer without approval from the VP "
    "Sales?"
)


def serving_prompt(adapter) -> list[dict]:
    """A retrieval-sized prompt: the chat's own, for a held-out question, two passages."""
    from django.conf import settings

    from assistant.llm import count_tokens
    from assistant.prompts import Source, build_prompt
    from ingestion.selectors import chunk_search
    from tuning.models import TrainingExample
    from tuning.services import _profile_reader

    question = adapter.examples.filter(split=TrainingExample.Split.HELDOUT).first().question
    hits = chunk_search(user=_profile_reader(adapter), query=question, k=2)
    prompt = build_prompt(
        question=question,
        sources=[
            Source(i, h.document_title, h.heading, h.page, h.text) for i, h in enumerate(hits, 1)
        ],
        count_tokens=count_tokens,
        budget_tokens=settings.CHAT_CONTEXT_TOKENS,
    )
    return [{"role": r, "content": c} for r, c in prompt.messages]


def serving_speed(adapter, *, runs: int, messages=None, gguf=None) -> dict:
    """TTFT and decode rate of the adapter on a server that loaded it, against the base alone
    (a server without adapters), interleaved; medians and every run."""
    import statistics

    from django.conf import settings

    from assistant.llm.adapters import gguf_file
    from assistant.llm.private_server import PrivateServer
    from tuning.serving import adapter_dir

    messages = messages or serving_prompt(adapter)
    threads = settings.LLM_SERVER_THREADS
    gguf = gguf or gguf_file(adapter_dir(adapter))
    runs_by_side: dict[str, list[dict]] = {
        "base alone": [],
        "adapter": [],
        "base, adapter loaded": [],
    }
    with (
        PrivateServer(model=adapter.base_model, adapters={}, threads=threads, parallel=1) as bare,
        PrivateServer(
            model=adapter.base_model, adapters={adapter.name: gguf}, threads=threads, parallel=1
        ) as loaded,
    ):
        sides = [
            ("base alone", bare, None),
            ("adapter", loaded, adapter.name),
            ("base, adapter loaded", loaded, None),
        ]
        for server, name in ((bare, None), (loaded, adapter.name)):  # warm-up
            stream_timing(server, messages, name)
        for _ in range(runs):
            for side, server, name in sides:
                runs_by_side[side].append(stream_timing(server, messages, name))
    medians = {
        side: {
            "ttft_s": statistics.median(r["ttft_s"] for r in timings),
            "decode_tokens_per_s": statistics.median(r["decode_tokens_per_s"] for r in timings),
            "prompt_tokens": timings[0]["prompt_tokens"],
        }
        for side, timings in runs_by_side.items()
    }
    base, tuned = medians["base alone"], medians["adapter"]
    return {
        "medians": medians,
        "overhead": {
            "ttft": round(tuned["ttft_s"] / base["ttft_s"] - 1, 3),
            "decode_time": round(base["decode_tokens_per_s"] / tuned["decode_tokens_per_s"] - 1, 3),
        },
        "runs": runs_by_side,
    }


def stream_timing(server, messages: list[dict], adapter: str | None) -> dict:
    """One streamed answer of 64 tokens (end of text ignored): client-side time to the first
    token, and llama.cpp's own decode rate."""
    import json

    import httpx

    body = {
        "messages": messages,
        "max_tokens": 64,
        "temperature": 0,
        "stream": True,
        "cache_prompt": False,
        "ignore_eos": True,
        "lora": server.lora_field(adapter),
    }
    started = time.perf_counter()
    first = None
    timings: dict = {}
    with httpx.stream(
        "POST",
        f"{server.url}/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {server.key}"},
        timeout=300,
    ) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            delta = (chunk.get("choices") or [{}])[0].get("delta", {}).get("content")
            if delta and first is None:
                first = time.perf_counter() - started
            timings = chunk.get("timings") or timings
    return {
        "ttft_s": round(first or 0.0, 3),
        "decode_tokens_per_s": round(timings.get("predicted_per_second", 0.0), 2),
        "prompt_tokens": timings.get("prompt_n"),
    }


if __name__ == "__main__":
    main()
