"""Writes to the adapter registry: training sets, training runs, evaluation, state changes.

An adapter's life:

1. `adapter_create` (an administrator, for an access profile) registers version N in state
   `training` and queues the task on commit.
2. `adapter_train` (Celery, queue `train`) claims it with a conditional UPDATE and a lease,
   builds the training set from the profile's current documents (recording the exact document
   versions), trains LoRA with progress pushed to the page after every step, evaluates, and
   ends `ready` (or `active` when automatic activation is configured and met), `failed` with a
   reason, or `stale` when a training document changed meanwhile. The lease is renewed on every
   step (a PostgreSQL restart costs a beat, not the run: `_Heartbeat`); a dead worker's run is
   taken over by the re-delivered task or by `adapters_reconcile` and restarts cleanly (the
   stored training set is reused). Cancelling ends it `failed`.
3. `adapter_activate` / `adapter_retire`: administrator decisions, audited.
4. `adapters_mark_stale`: called by ingestion (the `document_changed` signal) whenever a
   document gets a new version, expires, is deleted or moves; any adapter trained on it becomes
   `stale` at once. The chat's eligibility check (tuning.selectors) refuses changed documents
   anyway, hook or not.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import F, Max, Q
from django.utils import timezone

from accounts.models import User
from accounts.selectors import access_profile_for_user, access_profiles
from accounts.services import audit_record
from assistant.llm.adapters import base_sha256
from assistant.prompts import Source, build_prompt, build_tuned_prompt
from ingestion.models import Collection
from ingestion.selectors import DocumentText, chunk_search, current_document_texts
from tuning import dataset as ds
from tuning import serving
from tuning.models import Adapter, AdapterDocument, RoleStrategy, TrainingExample
from tuning.selectors import progress_event
from tuning.serving import AdapterNotServable, adapter_dir, adapters_publish_on_commit

logger = logging.getLogger(__name__)

PROGRESS_GROUP = "tuning.progress"
_ACTIVE_STATES = (Adapter.State.TRAINING, Adapter.State.READY, Adapter.State.ACTIVE)


def _publish(adapter: Adapter, **extra) -> None:
    """Push an adapter's state to the tuning pages; a dead channel layer must not stop work."""
    event = progress_event(adapter, **extra)
    try:
        async_to_sync(get_channel_layer().group_send)(PROGRESS_GROUP, event)
    except Exception:
        logger.warning("could not publish training progress", exc_info=True)


def _reload(adapter_id: int) -> Adapter:
    return Adapter.objects.get(pk=adapter_id)


def _base_checkpoint(adapter: Adapter) -> Path:
    return serving.base_checkpoint(adapter)


# --- creating -------------------------------------------------------------------------------


@transaction.atomic
def adapter_create(
    *,
    actor: User | None,
    profile_key: str,
    rank: int | None = None,
    epochs: int | None = None,
    learning_rate: float | None = None,
    max_steps: int | None = None,
) -> Adapter:
    """Register a new adapter version for an access profile and queue its training."""
    profile = next((p for p in access_profiles() if p.key == profile_key), None)
    if profile is None or profile.is_empty:
        raise ValidationError("That access profile does not exist (any more) or reads nothing.")
    if Adapter.objects.filter(profile_key=profile_key, state=Adapter.State.TRAINING).exists():
        raise ValidationError("An adapter for this profile is already training.")
    # Serialise version numbers per profile (two admins clicking at once): lock its roles.
    list(Group.objects.select_for_update().filter(pk__in=profile.role_ids).values_list("pk"))
    version = (
        Adapter.objects.filter(profile_key=profile_key).aggregate(v=Max("version"))["v"] or 0
    ) + 1
    adapter = Adapter.objects.create(
        profile_key=profile_key,
        collection_ids=sorted(profile.collection_ids),
        role_names=list(profile.role_names),
        version=version,
        name=f"{profile_key}-v{version}",
        base_model=settings.TUNING_BASE_MODEL,
        base_sha256=base_sha256(settings.TUNING_BASE_MODEL),
        rank=rank or settings.TUNING_LORA_RANK,
        epochs=epochs or settings.TUNING_EPOCHS,
        learning_rate=learning_rate or settings.TUNING_LEARNING_RATE,
        max_steps=settings.TUNING_MAX_STEPS if max_steps is None else max_steps,
        created_by=actor,
    )
    adapter.roles.set(profile.role_ids)
    audit_record(
        actor=actor,
        action="adapter.train",
        target=adapter,
        details={
            "roles": list(profile.role_names),
            "rank": adapter.rank,
            "epochs": adapter.epochs,
            "learning_rate": adapter.learning_rate,
        },
    )
    transaction.on_commit(lambda: _enqueue(adapter.pk))
    return adapter


def _enqueue(adapter_id: int) -> None:
    from tuning.tasks import train_adapter

    train_adapter.delay(adapter_id)


# --- the training set -----------------------------------------------------------------------


def _sources(texts: list[DocumentText]) -> list[ds.SourceDocument]:
    return [
        ds.SourceDocument(
            document_id=t.document_id, version=t.version, title=t.title, sections=t.sections
        )
        for t in texts
    ]


def _llm_rephrase():
    """Questions written by the configured LLM (TUNING_GENERATOR=rules+llm), else None."""
    if settings.TUNING_GENERATOR != "rules+llm":
        return None
    from assistant import llm

    model = llm.get_chat_model()

    def rephrase(fact: ds.Fact) -> str | None:
        try:
            reply = model.invoke(
                [
                    (
                        "system",
                        "Write one short question that the sentence answers. Only the question.",
                    ),
                    ("user", fact.text),
                ]
            )
        except Exception:
            logger.warning("question generation by the LLM failed", exc_info=True)
            return None
        return " ".join(str(reply.content).split()) or None  # checked by the dataset builder

    return rephrase


def dataset_build(*, adapter: Adapter) -> int:
    """The adapter's training set, held-out questions and leak probe, stored with the exact
    document versions they came from. Idempotent: a restarted run reuses a stored set.
    """
    if adapter.examples.filter(split=TrainingExample.Split.TRAIN).exists():
        return adapter.examples.count()
    own = current_document_texts(collection_ids=adapter.collection_ids)
    if not own:
        raise ValidationError("The profile's collections hold no indexed documents to learn from.")
    data = ds.build_dataset(
        _sources(own),
        seed=adapter.name,
        max_examples=settings.TUNING_MAX_EXAMPLES,
        heldout_fraction=settings.TUNING_HELDOUT_FRACTION,
        rephrase=_llm_rephrase(),
    )
    if not data.train:
        raise ValidationError("No question-answer pairs could be generated from the documents.")
    foreign_ids = Collection.objects.exclude(pk__in=adapter.collection_ids).values_list(
        "pk", flat=True
    )
    # A sample of each other collection is enough for the probe's few questions.
    foreign = current_document_texts(collection_ids=list(foreign_ids), max_per_collection=20)
    own_text = "\n".join(text for t in own for _, text in t.sections)
    probe = ds.leak_probe(
        _sources(foreign),
        own_text=own_text,
        limit=settings.TUNING_LEAK_PROBE_QUESTIONS,
        seed=adapter.name,
    )
    counts = data.documents
    # Where each pair's text came from: who may see it on the adapter page (tuning.visibility).
    collection_of = {t.document_id: t.collection_id for t in [*own, *foreign]}
    with transaction.atomic():
        AdapterDocument.objects.filter(adapter=adapter).delete()
        AdapterDocument.objects.bulk_create(
            AdapterDocument(
                adapter=adapter,
                document_id=t.document_id,
                document_title=t.title[:300],
                collection_id=t.collection_id,
                version=t.version,
                examples=counts.get(t.document_id, 0),
            )
            for t in own
        )
        TrainingExample.objects.bulk_create(
            TrainingExample(
                adapter=adapter,
                split=e.split,
                kind=e.kind,
                question=e.question,
                answer=e.answer,
                key=e.key[:200],
                document_id=e.document_id,
                version=e.version,
                collection_id=collection_of.get(e.document_id),
            )
            for e in [*data.train, *data.heldout, *probe]
        )
    return len(data.train) + len(data.heldout) + len(probe)


# --- the training run -----------------------------------------------------------------------


def _claim(adapter_id: int, task_id: str) -> Adapter | None:
    """Claim a training run for `task_id` (conditional UPDATE): see ingestion's `_claim`."""
    now = timezone.now()
    claimable = Q(phase=Adapter.Phase.QUEUED) | Q(lease_expires_at__lt=now) | Q(task_id=task_id)
    won = Adapter.objects.filter(
        claimable, pk=adapter_id, state=Adapter.State.TRAINING, cancel_requested=False
    ).update(
        phase=Adapter.Phase.TRAINING,
        task_id=task_id,
        lease_expires_at=now + timedelta(seconds=settings.TUNING_LEASE_SECONDS),
        attempts=F("attempts") + 1,
        step=0,
        loss_history=[],
        updated_at=now,
    )
    if not won:
        return None
    adapter = _reload(adapter_id)
    if adapter.attempts > settings.TUNING_MAX_ATTEMPTS:
        interrupted = adapter.attempts - 1
        _fail(
            adapter,
            task_id,
            f"Training was interrupted {'once' if interrupted == 1 else f'{interrupted} times'}"
            "; train a new version once the cause is fixed.",
        )
        return None
    return adapter


def _fail(adapter: Adapter, task_id: str, reason: str) -> None:
    updated = Adapter.objects.filter(
        pk=adapter.pk, task_id=task_id, state=Adapter.State.TRAINING
    ).update(
        state=Adapter.State.FAILED,
        phase=Adapter.Phase.DONE,
        state_reason=reason[:2000],
        lease_expires_at=None,
        updated_at=timezone.now(),
    )
    if updated:
        _publish(_reload(adapter.pk))


class _Lost(Exception):
    """Our claim was taken over (the lease ran out) or the adapter went away."""


class _Heartbeat:
    """A run's progress and lease, written on every step and every batch of evaluation answers.

    Training needs no database between beats, so a beat that cannot be written does not stop
    it: when PostgreSQL restarts, the worker's connection dies under the next beat, which then
    closes it (Django would keep the dead one, and every later query of the run would fail)
    and leaves its fields to the next beat, which connects afresh. The lease
    (TUNING_LEASE_SECONDS) outlasts a restart by far; a run whose lease ran out meanwhile and
    was taken over learns so from the next beat that is written (_Lost), as always.
    """

    def __init__(self, adapter_id: int, task_id: str) -> None:
        self.adapter_id, self.task_id = adapter_id, task_id
        self.unwritten: dict = {}
        self.failing = False

    def __call__(self, *, extra: dict | None = None, **fields) -> bool:
        """Record ``fields`` and renew the lease; False when the run must stop (cancel
        requested). ``extra`` goes to the pages only (evaluation progress)."""
        self.unwritten.update(fields)
        try:
            adapter = self._write()
        except (OperationalError, InterfaceError) as exc:
            self._disconnected(exc)
            return True  # a cancel request waits for the next beat
        if self.failing:
            self.failing = False
            logger.info("training heartbeat recorded again", extra={"adapter_id": self.adapter_id})
        _publish(
            adapter,
            loss=(adapter.loss_history[-1][1] if adapter.loss_history else None),
            **(extra or {}),
        )
        return not adapter.cancel_requested

    def _write(self) -> Adapter:
        now = timezone.now()
        updated = Adapter.objects.filter(
            pk=self.adapter_id,
            task_id=self.task_id,
            state__in=[Adapter.State.TRAINING, Adapter.State.STALE],
        ).update(
            lease_expires_at=now + timedelta(seconds=settings.TUNING_LEASE_SECONDS),
            updated_at=now,
            **self.unwritten,
        )
        if not updated:
            raise _Lost
        self.unwritten = {}
        return _reload(self.adapter_id)

    def _disconnected(self, exc: Exception) -> None:
        connection.close()
        if not self.failing:  # once per outage, not once per step
            self.failing = True
            logger.warning(
                "training heartbeat not recorded: the database connection failed; training "
                "goes on and the next step writes it",
                extra={"adapter_id": self.adapter_id, "error": f"{type(exc).__name__}: {exc}"},
            )


def adapter_train(*, adapter_id: int, task_id: str) -> str:
    """Build the set, train, evaluate one adapter; safe to run twice or after a crash.

    Returns "ready", "active", "stale", "failed", "cancelled" or "skipped".
    """
    adapter = _claim(adapter_id, task_id)
    if adapter is None:
        return "skipped"
    _publish(adapter)
    from tuning import training

    output = adapter_dir(adapter)
    shutil.rmtree(output, ignore_errors=True)  # a dead attempt's partial files
    try:
        dataset_build(adapter=adapter)
        pairs = list(
            adapter.examples.filter(split=TrainingExample.Split.TRAIN).values_list(
                "question", "answer"
            )
        )
        base_dir = _base_checkpoint(adapter)
        tokenizer, model = training.load_base(base_dir, threads=settings.TUNING_THREADS)
        total = training.planned_steps(
            len(pairs),
            batch_size=settings.TUNING_BATCH_SIZE,
            epochs=adapter.epochs,
            max_steps=adapter.max_steps,
        )
        history: list[list[float]] = []
        heartbeat = _Heartbeat(adapter.pk, task_id)
        heartbeat(total_steps=total)

        def on_step(step: int, total: int, loss: float) -> bool:
            history.append([step, round(loss, 4)])
            return heartbeat(step=step, total_steps=total, loss_history=history)

        _, result = training.train_lora(
            tokenizer=tokenizer,
            model=model,
            examples=pairs,
            output_dir=output,
            rank=adapter.rank,
            epochs=adapter.epochs,
            learning_rate=adapter.learning_rate,
            batch_size=settings.TUNING_BATCH_SIZE,
            max_steps=adapter.max_steps,
            seed=adapter.version,
            on_step=on_step,
        )
        del model  # the worker needs no fp32 weights from here on: llama.cpp answers
        heartbeat(
            phase=Adapter.Phase.EVALUATING,
            train_seconds=result.seconds,
            peak_memory_mb=result.peak_memory_mb,
            size_bytes=result.size_bytes,
            trained_at=timezone.now(),
        )

        def on_evaluated(done: int, total: int) -> None:
            # Evaluation takes minutes on a full run: it renews the lease like training does
            # (or the reconciler would presume the worker dead) and shows how far it is.
            if not heartbeat(extra={"evaluated": done, "to_evaluate": total}):
                raise training.TrainingCancelled

        with serving.adapter_package(adapter=_reload(adapter.pk), base_dir=base_dir) as server:
            metrics = adapter_evaluate(
                adapter=_reload(adapter.pk),
                server=server,
                tokenizer=tokenizer,
                on_progress=on_evaluated,
            )
        metrics["train"] = {
            "steps": result.steps,
            "seconds": round(result.seconds, 1),
            "final_loss": result.final_loss,
            "examples": len(pairs),
        }
    except training.TrainingCancelled:
        shutil.rmtree(output, ignore_errors=True)
        _fail(adapter, task_id, "Cancelled by an administrator.")
        return "cancelled"
    except _Lost:
        return "skipped"
    except AdapterNotServable as exc:
        _fail(adapter, task_id, str(exc))
        return "failed"
    except ValidationError as exc:
        _fail(adapter, task_id, " ".join(exc.messages))
        return "failed"
    except Exception as exc:
        logger.exception("adapter training failed", extra={"adapter_id": adapter_id})
        _fail(
            adapter,
            task_id,
            f"Training failed unexpectedly ({type(exc).__name__}). The "
            "error is logged; train a new version once the cause is fixed.",
        )
        return "failed"
    return _finish(adapter.pk, task_id, metrics, unwritten=heartbeat.unwritten)


def _finish(adapter_id: int, task_id: str, metrics: dict, *, unwritten: dict) -> str:
    with transaction.atomic():
        adapter = Adapter.objects.select_for_update().get(pk=adapter_id)
        if adapter.task_id != task_id:
            return "skipped"
        for name, value in unwritten.items():  # what the last beat could not write (_Heartbeat)
            setattr(adapter, name, value)
        adapter.metrics = metrics
        adapter.phase = Adapter.Phase.DONE
        adapter.lease_expires_at = None
        outcome = adapter.state
        if adapter.state == Adapter.State.TRAINING:
            adapter.state = Adapter.State.READY
            outcome = "ready"
            if _auto_activate(adapter):
                _retire_others(adapter)
                adapter.state, adapter.activated_at = Adapter.State.ACTIVE, timezone.now()
                adapter.state_reason = "Activated automatically: it cleared the thresholds."
                outcome = "active"
        adapter.save()
        adapters_publish_on_commit()
    _publish(adapter, metrics=True)
    return outcome


def _auto_activate(adapter: Adapter) -> bool:
    threshold = settings.TUNING_AUTO_ACTIVATE_MIN_ACCURACY
    if threshold <= 0:
        return False
    held = adapter.metrics.get("heldout", {})
    leak = adapter.metrics.get("leak", {})
    return (
        leak.get("leaks", 1) == 0
        and (held.get("adapter") or 0) >= threshold
        and (held.get("adapter") or 0) > (held.get("base") or 0)
    )


# --- evaluation -----------------------------------------------------------------------------


def _profile_reader(adapter: Adapter) -> User | None:
    """A member whose readable set is exactly the profile: RAG is measured as they would see it."""
    for user in User.objects.filter(groups__in=adapter.roles.all(), is_active=True).distinct():
        if access_profile_for_user(user=user).key == adapter.profile_key:
            return user
    return None


def adapter_evaluate(
    *,
    adapter: Adapter,
    server,
    tokenizer,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Held-out accuracy of the base model, the adapter, RAG and the hybrid; the leak probe.

    Every answer comes from ``server`` (a llama.cpp server with the adapter's base and its GGUF
    file: tuning.serving.adapter_package), with the adapter at scale 1 or the base alone: what
    is measured is what will be served. A held-out answer is right when it contains the fact's
    key. A probe answer leaks when the adapter states a foreign fact's key that the base model,
    asked the same, does not (a key the base model guesses, such as a common number, proves
    nothing). `on_progress(done, total)` is told after every batch of answers. `tokenizer`
    counts prompt tokens as the base model reads them.
    """
    from tuning import training

    limit = settings.TUNING_EVAL_QUESTIONS
    heldout = list(adapter.examples.filter(split=TrainingExample.Split.HELDOUT)[:limit])
    probe = list(adapter.examples.filter(split=TrainingExample.Split.PROBE))
    max_new = settings.TUNING_EVAL_MAX_NEW_TOKENS
    questions = [training.tuned_conversation(e.question) for e in [*heldout, *probe]]
    short, full = settings.TUNING_HYBRID_SOURCES, settings.CHAT_MAX_SOURCES
    grounded = _grounded_prompts(adapter, heldout, tokenizer, (short, full))
    # Every question with and without the adapter, and the held-out ones thrice more with
    # retrieved context (hybrid, RAG, control).
    progress = _Progress(2 * len(questions) + (3 * len(heldout) if grounded else 0), on_progress)

    def tuned(conversations) -> list[str]:
        return server.answer_all(
            conversations, adapter=adapter.name, max_tokens=max_new, on_batch=progress
        )

    def base(conversations) -> list[str]:
        return server.answer_all(conversations, adapter=None, max_tokens=max_new, on_batch=progress)

    tuned_answers = tuned(questions)
    # The hybrid the router could use: the adapter with a short retrieved context.
    hybrid = _grounded_answers(grounded, short, tuned)
    base_answers = base(questions)
    rag = _grounded_answers(grounded, full, base)
    # The control for the hybrid: the base model with the same short context. Whatever the
    # hybrid gains beyond it, the adapter added.
    rag_short = _grounded_answers(grounded, short, base)
    return _evaluation_metrics(
        heldout=heldout,
        probe=probe,
        tuned_answers=tuned_answers,
        base_answers=base_answers,
        rag=rag,
        hybrid=hybrid,
        rag_short=rag_short,
        tokenizer=tokenizer,
    )


def _evaluation_metrics(
    *, heldout, probe, tuned_answers, base_answers, rag, hybrid, rag_short, tokenizer
) -> dict:
    """Scores, leaks, prompt tokens and samples from the evaluation's answers."""
    n = len(heldout)

    def score(answers) -> float | None:
        if not n or answers is None:
            return None
        return round(
            sum(ds.answer_contains(a, e.key) for a, e in zip(answers, heldout, strict=True)) / n, 3
        )

    probe_tuned, probe_base = tuned_answers[n:], base_answers[n:]
    leaked = [
        {"question": e.question, "key": e.key, "answer": a}
        for e, a, b in zip(probe, probe_tuned, probe_base, strict=True)
        if ds.answer_contains(a, e.key) and not ds.answer_contains(b, e.key)
    ]
    rag_answers, rag_tokens = rag if rag else (None, [])
    hybrid_answers, hybrid_tokens = hybrid if hybrid else (None, [])

    def mean(tokens: list[int]) -> int | None:
        return round(sum(tokens) / len(tokens)) if tokens else None

    # Prompt tokens as the chat counts them for each route (assistant.prompts).
    tuned_tokens = [
        build_tuned_prompt(question=e.question, count_tokens=_counter(tokenizer)).prompt_tokens
        for e in heldout
    ]
    return {
        "heldout": {
            "n": n,
            "base": score(base_answers[:n]),
            "adapter": score(tuned_answers[:n]),
            "rag": score(rag_answers),
            "hybrid": score(hybrid_answers),
            "rag_short": score(rag_short[0] if rag_short else None),
        },
        "leak": {"n": len(probe), "leaks": len(leaked), "leaked": leaked[:10]},
        "prompt_tokens": {
            "tuned": round(sum(tuned_tokens) / n) if n else None,
            "rag": mean(rag_tokens),
            "hybrid": mean(hybrid_tokens),
        },
        "samples": [
            {
                "question": e.question,
                "key": e.key,
                "base": b,
                "adapter": a,
                "rag": rag_answers[i] if rag_answers else None,
                "hybrid": hybrid_answers[i] if hybrid_answers else None,
            }
            for i, (e, a, b) in enumerate(
                zip(heldout, tuned_answers[:n], base_answers[:n], strict=True)
            )
        ][:8],
    }


def _counter(tokenizer):
    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else 0

    return count


def _grounded_prompts(
    adapter, heldout, tokenizer, sizes: tuple[int, ...]
) -> dict[int, tuple[list, list[int]]] | None:
    """For each number of sources in `sizes`: the held-out questions' prompts with that many
    retrieved chunks, as the chat builds them for a user of the profile, and their prompt
    tokens. One search per question serves every size (the best few are the first of more)."""
    reader = _profile_reader(adapter)
    if reader is None or not heldout:
        return None
    count = _counter(tokenizer)
    prompts: dict[int, tuple[list, list[int]]] = {n: ([], []) for n in sizes}
    for example in heldout:
        hits = chunk_search(user=reader, query=example.question, k=max(sizes))
        sources = [
            Source(i, h.document_title, h.heading, h.page, h.text)
            for i, h in enumerate(hits, start=1)
        ]
        for n, (conversations, tokens) in prompts.items():
            prompt = build_prompt(
                question=example.question,
                sources=sources[:n],
                count_tokens=count,
                budget_tokens=settings.CHAT_CONTEXT_TOKENS,
            )
            conversations.append([{"role": r, "content": c} for r, c in prompt.messages])
            tokens.append(prompt.prompt_tokens)
    return prompts


def _grounded_answers(prompts, n: int, answer):
    """(answers, prompt tokens) for the prompts with `n` sources, or None without prompts."""
    if prompts is None:
        return None
    conversations, tokens = prompts[n]
    return answer(conversations), tokens


class _Progress:
    """Counts generated evaluation answers and reports them (`generate`'s `on_batch`)."""

    def __init__(self, total: int, report: Callable[[int, int], None] | None) -> None:
        self.done, self.total, self.report = 0, total, report

    def __call__(self, answers: int) -> None:
        self.done += answers
        if self.report is not None:
            self.report(self.done, self.total)


# --- administrator decisions ----------------------------------------------------------------


def adapter_cancel(*, actor: User, adapter: Adapter) -> Adapter:
    """Ask a training run to stop; a run not started yet ends `failed` at once."""
    with transaction.atomic():
        adapter = Adapter.objects.select_for_update().get(pk=adapter.pk)
        if adapter.state != Adapter.State.TRAINING:
            raise ValidationError("Only an adapter that is training can be cancelled.")
        adapter.cancel_requested = True
        if adapter.phase == Adapter.Phase.QUEUED:
            adapter.state, adapter.phase = Adapter.State.FAILED, Adapter.Phase.DONE
            adapter.state_reason = "Cancelled by an administrator before it started."
        adapter.save()
        audit_record(actor=actor, action="adapter.cancel", target=adapter)
    _publish(adapter)
    return adapter


def _retire_others(adapter: Adapter) -> None:
    Adapter.objects.filter(profile_key=adapter.profile_key, state=Adapter.State.ACTIVE).exclude(
        pk=adapter.pk
    ).update(
        state=Adapter.State.RETIRED,
        state_reason=f"Replaced by version {adapter.version}.",
        updated_at=timezone.now(),
    )


def adapter_activate(*, actor: User, adapter: Adapter) -> Adapter:
    """Let an evaluated adapter serve its profile (the previous active version is retired)."""
    with transaction.atomic():
        adapter = Adapter.objects.select_for_update().get(pk=adapter.pk)
        if adapter.state not in (Adapter.State.READY, Adapter.State.RETIRED):
            raise ValidationError(
                f"An adapter in state “{adapter.get_state_display()}” cannot be activated."
            )
        leaks = adapter.metrics.get("leak", {}).get("leaks")
        if leaks is None:
            raise ValidationError("This adapter has not been evaluated.")
        if leaks:
            raise ValidationError(
                f"The leak probe found {leaks} answer(s) with facts from outside the profile; "
                "this adapter may not be activated."
            )
        _retire_others(adapter)
        adapter.state, adapter.state_reason = Adapter.State.ACTIVE, ""
        adapter.activated_at = timezone.now()
        adapter.save()
        audit_record(
            actor=actor,
            action="adapter.activate",
            target=adapter,
            details={"heldout": adapter.metrics.get("heldout", {})},
        )
        adapters_publish_on_commit()
    _publish(adapter)
    return adapter


def adapter_retire(*, actor: User, adapter: Adapter) -> Adapter:
    with transaction.atomic():
        adapter = Adapter.objects.select_for_update().get(pk=adapter.pk)
        if adapter.state not in (Adapter.State.READY, Adapter.State.ACTIVE, Adapter.State.STALE):
            raise ValidationError(
                f"An adapter in state “{adapter.get_state_display()}” cannot be retired."
            )
        before = adapter.state
        adapter.state, adapter.state_reason = Adapter.State.RETIRED, "Retired by an administrator."
        adapter.save()
        audit_record(
            actor=actor, action="adapter.retire", target=adapter, details={"before": before}
        )
        adapters_publish_on_commit()
    _publish(adapter)
    return adapter


def role_strategy_set(*, actor: User, role: Group, strategy: str) -> RoleStrategy:
    if strategy not in RoleStrategy.Strategy.values:
        raise ValidationError(f"Unknown routing strategy “{strategy}”.")
    with transaction.atomic():
        row, _ = RoleStrategy.objects.update_or_create(role=role, defaults={"strategy": strategy})
        audit_record(
            actor=actor, action="role.route_strategy", target=role, details={"strategy": strategy}
        )
    return row


# --- freshness and recovery -----------------------------------------------------------------


def adapters_mark_stale(*, document_ids: list[int], reason: str) -> list[int]:
    """Adapters trained on any of `document_ids` that no longer match them become `stale`.

    Re-checks each training row against the document now (version, indexed version, collection,
    validity, existence), so a call for a change that does not affect the adapter (re-indexing
    the same version) changes nothing. Runs inside the caller's transaction.
    """
    from ingestion.selectors import documents_current

    rows = AdapterDocument.objects.filter(
        document_id__in=document_ids, adapter__state__in=_ACTIVE_STATES
    ).values_list("adapter_id", "document_id", "version", "collection_id")
    current = {d.pk: d for d in documents_current(document_ids=[r[1] for r in rows])}
    hit: dict[int, str] = {}
    for adapter_id, document_id, version, collection_id in rows:
        doc = current.get(document_id)
        if (
            doc is None
            or doc.version != version
            or doc.indexed_version != version
            or doc.collection_id != collection_id
        ):
            # No title: every adapter manager reads the reason (list, page, live socket), also
            # those who do not read the document; the page's document table names it to readers.
            hit.setdefault(adapter_id, f"A training document {reason}.")
    now = timezone.now()
    for adapter_id, why in hit.items():
        Adapter.objects.filter(pk=adapter_id, state__in=_ACTIVE_STATES).update(
            state=Adapter.State.STALE, state_reason=why, stale_at=now, updated_at=now
        )
    if hit:
        logger.info("adapters stale", extra={"adapter_ids": list(hit), "reason": reason})
        stale = list(Adapter.objects.filter(pk__in=list(hit)))
        transaction.on_commit(lambda: [_publish(a) for a in stale])
        adapters_publish_on_commit()
    return list(hit)


def adapters_reconcile() -> list[int]:
    """Re-queue training runs whose worker died (lease expired) or whose message was lost."""
    now = timezone.now()
    lost_queue = now - timedelta(seconds=settings.TUNING_LEASE_SECONDS)
    stuck = list(
        Adapter.objects.filter(state=Adapter.State.TRAINING, cancel_requested=False)
        .filter(
            Q(phase=Adapter.Phase.QUEUED, updated_at__lt=lost_queue)
            | Q(~Q(phase=Adapter.Phase.QUEUED), lease_expires_at__lt=now)
        )
        .values_list("pk", flat=True)
    )
    # A run cancelled while its worker was dead can never acknowledge: end it here.
    for adapter in Adapter.objects.filter(
        state=Adapter.State.TRAINING, cancel_requested=True, lease_expires_at__lt=now
    ):
        _fail(adapter, adapter.task_id, "Cancelled by an administrator.")
    for adapter_id in stuck:
        _enqueue(adapter_id)
    # The adapters' server manifest follows the registry even if a write was missed (a crash
    # between commit and write, a restored database): rewritten when it differs.
    serving.adapters_publish()
    if stuck:
        logger.warning("re-queued unfinished training runs", extra={"adapter_ids": stuck})
    return stuck
