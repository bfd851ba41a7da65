"""LoRA training and batched generation with PEFT on the embedded base model (no database).

The base model is the converted checkpoint the local chat backend serves
(`LLM_LOCAL_MODEL_DIR`), so an adapter trained here loads there, and — saved in the standard
PEFT layout (`adapter_config.json` + `adapter_model.safetensors`) — in vLLM by name.

A plain PyTorch loop rather than transformers' Trainer: the loop reports every step (loss,
progress), asks after every step whether to stop (cancellation), and needs no Trainer flags
for the CPU (docs/tuning.md).
"""

from __future__ import annotations

import math
import random
import resource
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assistant.prompts import TUNED_SYSTEM_PROMPT

# All projection layers of a Llama-style block (SmolLM2 is one).
TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
MAX_EXAMPLE_TOKENS = 256


class TrainingCancelled(Exception):
    """The progress callback asked to stop."""


@dataclass
class TrainResult:
    steps: int
    seconds: float
    peak_memory_mb: float
    final_loss: float | None
    size_bytes: int


def peak_memory_mb() -> float:
    # ru_maxrss is in KiB on Linux: the peak resident size of this (worker) process.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_base(model_dir: Path, *, threads: int = 0) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if threads > 0:
        torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    return tokenizer, model


def _chat(question: str, answer: str | None = None) -> list[dict[str, str]]:
    messages = [
        {"role": "system", "content": TUNED_SYSTEM_PROMPT},
        {"role": "user", "content": question},
    ]
    if answer is not None:
        messages.append({"role": "assistant", "content": answer})
    return messages


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def encode_example(tokenizer, question: str, answer: str) -> tuple[list[int], list[int]]:
    """Token ids and labels: the loss is on the answer only, not on the prompt."""
    prompt = tokenizer.apply_chat_template(
        _chat(question), tokenize=False, add_generation_prompt=True
    )
    full = tokenizer.apply_chat_template(_chat(question, answer), tokenize=False)
    prompt_ids, full_ids = _ids(tokenizer, prompt), _ids(tokenizer, full)
    full_ids = full_ids[:MAX_EXAMPLE_TOKENS]
    cut = min(len(prompt_ids), len(full_ids))
    labels = [-100] * cut + full_ids[cut:]
    return full_ids, labels


# Batches are formed from pools of this many batches' worth of shuffled examples sorted by
# length, so that examples of similar length are padded together (a fifth of the tokens were
# padding); the batches' order is shuffled again, so an epoch is still in random order.
BUCKET_BATCHES = 8


def batch_order(lengths: Sequence[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Indices of the examples per batch for one epoch: every example exactly once."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    pool = batch_size * BUCKET_BATCHES
    batches = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start : start + pool], key=lambda i: lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def _batches(encoded, batch_size: int, pad_id: int, rng: random.Random):
    import torch

    for indices in batch_order([len(ids) for ids, _ in encoded], batch_size, rng):
        part = [encoded[i] for i in indices]
        width = max(len(ids) for ids, _ in part)
        input_ids = torch.full((len(part), width), pad_id, dtype=torch.long)
        labels = torch.full((len(part), width), -100, dtype=torch.long)
        mask = torch.zeros((len(part), width), dtype=torch.long)
        for row, (ids, labs) in enumerate(part):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            labels[row, : len(labs)] = torch.tensor(labs)
            mask[row, : len(ids)] = 1
        yield {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


def planned_steps(examples: int, *, batch_size: int, epochs: int, max_steps: int) -> int:
    steps = math.ceil(examples / batch_size) * epochs
    return min(steps, max_steps) if max_steps else steps


def train_lora(
    *,
    tokenizer,
    model,
    examples: Sequence[tuple[str, str]],
    output_dir: Path,
    rank: int,
    epochs: int,
    learning_rate: float,
    batch_size: int,
    max_steps: int,
    seed: int,
    on_step: Callable[[int, int, float], bool],
) -> tuple[Any, TrainResult]:
    """Train a LoRA adapter on (question, answer) pairs; returns the PEFT model and figures.

    `on_step(step, total, loss)` is called after every optimiser step; returning False stops
    the run (TrainingCancelled). The adapter is saved to `output_dir` at the end only.
    """
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    rng = random.Random(seed)  # noqa: S311 - reproducible shuffling
    config = LoraConfig(
        r=rank,
        lora_alpha=2 * rank,
        lora_dropout=0.05,
        target_modules=TARGET_MODULES,
        task_type="CAUSAL_LM",
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        peft_model = get_peft_model(model, config)
    encoded = [encode_example(tokenizer, q, a) for q, a in examples]
    total = planned_steps(len(encoded), batch_size=batch_size, epochs=epochs, max_steps=max_steps)
    optimiser = torch.optim.AdamW(
        [p for p in peft_model.parameters() if p.requires_grad], lr=learning_rate
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: min(1.0, (step + 1) / max(1, total // 10)) * (1 - step / total)
    )
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    started = time.monotonic()
    step, loss_value = 0, None
    peft_model.train()
    while step < total:
        for batch in _batches(encoded, batch_size, pad_id, rng):
            loss = peft_model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(peft_model.parameters(), 1.0)
            optimiser.step()
            schedule.step()
            optimiser.zero_grad()
            step += 1
            loss_value = float(loss.detach())
            if not on_step(step, total, loss_value):
                raise TrainingCancelled
            if step >= total:
                break
    peft_model.eval()
    output_dir.mkdir(parents=True, exist_ok=True)
    peft_model.save_pretrained(str(output_dir))
    size = sum(f.stat().st_size for f in output_dir.iterdir() if f.is_file())
    return peft_model, TrainResult(
        steps=step,
        seconds=time.monotonic() - started,
        peak_memory_mb=peak_memory_mb(),
        final_loss=loss_value,
        size_bytes=size,
    )


def generate(
    tokenizer,
    model,
    conversations: Sequence[list[dict[str, str]]],
    *,
    max_new_tokens: int,
    batch_size: int = 8,
    on_batch: Callable[[int], None] | None = None,
) -> list[str]:
    """Greedy answers to chat conversations, in batches (left-padded). `on_batch(n)` is told
    after each batch how many answers it added."""
    import torch

    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    answers: list[str] = []
    for start in range(0, len(conversations), batch_size):
        part = conversations[start : start + batch_size]
        texts = [
            tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
            for c in part
        ]
        batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            output = model.generate(
                **batch,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
        width = batch["input_ids"].shape[1]
        answers.extend(
            tokenizer.decode(row[width:], skip_special_tokens=True).strip() for row in output
        )
        if on_batch is not None:
            on_batch(len(part))
    return answers


def tuned_conversation(question: str) -> list[dict[str, str]]:
    return _chat(question)
