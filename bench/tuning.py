"""Adapters on the demo company: training time, peak memory, held-out accuracy, prompt tokens.

    .venv/bin/python bench/tuning.py [--roles Sales HR] [--max-steps 0] [--epochs 3]
    .venv/bin/python bench/tuning.py --roles --all-collections   # the largest demo profile

For each role's access profile: the demo documents are indexed (once, into the bench database
`counsel_tuning_bench`), a training set is generated, LoRA is trained in this process on the
embedded base model exactly as the `train` worker does (tuning.services.adapter_train), and the
evaluation is run: held-out paraphrased questions answered by the base model with no context,
the adapter with no context and RAG (base model + retrieval), the leak probe, and the prompt
tokens per answer of both routes. The baseline is in the same run: the base model's accuracy on
the same questions. Peak memory is this process's peak resident size (ru_maxrss), which also
includes the embedding model used for indexing and retrieval.

Prints a table and writes bench/results/tuning.json.
"""

from __future__ import annotations

import argparse
import os
import time

from common import DEFAULT_DATABASE_URL, log, machine_info, setup_django, table, write_json

TARGET_TRAIN_S = 600  # the design's target: a 50-document profile in 10 min on the CPU
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
    os.environ.setdefault("LLM_ADAPTER_DIR", "bench/results/adapters")
    setup_django()

    from io import StringIO

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
        }
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
    write_json(
        "tuning.json",
        {
            "machine": machine_info(),
            "args": vars(args),
            "results": results,
            "target_train_seconds": TARGET_TRAIN_S,
        },
    )


def evaluate_again(adapter) -> str:
    """The evaluation of tuning.services on an adapter already trained (its files on disk)."""
    from pathlib import Path

    from django.conf import settings
    from peft import PeftModel

    from tuning import services, training

    tokenizer, model = training.load_base(
        Path(settings.LLM_LOCAL_MODEL_DIR), threads=settings.TUNING_THREADS
    )
    model = PeftModel.from_pretrained(model, str(services.adapter_dir(adapter)))
    metrics = services.adapter_evaluate(adapter=adapter, model=model, tokenizer=tokenizer)
    adapter.metrics = {**adapter.metrics, **metrics}
    adapter.save(update_fields=["metrics"])
    return "evaluated"


if __name__ == "__main__":
    main()
