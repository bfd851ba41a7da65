"""Training sets, eligibility, staleness and routing in the chat (FAKE model, real database).

The training run itself, on the real base model, is in test_tuning_training.py.
"""

from __future__ import annotations

import io
import json
import logging
from datetime import timedelta
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import Group
from django.db import connection
from django.test import Client
from django.utils import timezone

from assistant.models import Message
from assistant.services import Ask, chat_answer
from compliance.models import QueryLogEntry
from ingestion import services as ingestion
from ingestion.models import Collection, Document
from tests.tuning_support import (
    backend_pid,
    load_demo,
    registered_adapter,
    sales_profile_key,
    terminate_backend,
    user,
)
from tuning import services
from tuning.models import Adapter, AdapterDocument, RoleStrategy, TrainingExample
from tuning.selectors import adapter_for_user, adapter_unservable_documents

pytestmark = pytest.mark.django_db(transaction=True)
MANIFEST = json.loads(Path("demo/manifest.json").read_text())
QUESTION = "What is the highest discount I can give a dealer without approval from the VP Sales?"


def ask(username: str, question: str = QUESTION) -> tuple[list[dict], QueryLogEntry]:
    user_id = user(username).pk

    async def run():
        return [e async for e in chat_answer(Ask(user_id=user_id, question=question))]

    events = async_to_sync(run)()
    return events, QueryLogEntry.objects.order_by("-id").first()


@pytest.fixture
def demo():
    load_demo("sales")  # the Sales adapter is trained on what is indexed: enough, and quick


def test_training_set_comes_only_from_the_profile_and_records_versions():
    load_demo("company", "sales", "hr")
    adapter = services.adapter_create(actor=user("admin"), profile_key=sales_profile_key())
    services.dataset_build(adapter=adapter)
    train = list(adapter.examples.filter(split=TrainingExample.Split.TRAIN))
    heldout = list(adapter.examples.filter(split=TrainingExample.Split.HELDOUT))
    probe = list(adapter.examples.filter(split=TrainingExample.Split.PROBE))
    assert len(train) >= 50 and heldout and probe
    assert any(e.kind == "refusal" for e in train)
    assert any(e.kind == "number" for e in train)
    # Held-out questions are worded differently from every training question.
    train_questions = {e.question for e in train}
    assert not any(e.question in train_questions for e in heldout)
    # Exact versions, and only documents the profile reads.
    sales_ids = set(
        Collection.objects.filter(slug__in=["company", "sales"]).values_list("pk", flat=True)
    )
    rows = list(AdapterDocument.objects.filter(adapter=adapter))
    assert {r.collection_id for r in rows} <= sales_ids
    assert {r.document_id for r in rows} == set(
        Document.objects.filter(collection_id__in=sales_ids).values_list("pk", flat=True)
    )
    versions = {r.document_id: r.version for r in rows}
    assert all(versions[e.document_id] == e.version for e in train if e.document_id)
    # Not one HR canary in anything the adapter learns from; the probe asks about foreign facts.
    hr_tokens = [c["token"] for c in MANIFEST["canaries"] if c["collection"] == "hr"]
    learnt = " ".join(e.question + " " + e.answer for e in train)
    assert not [t for t in hr_tokens if t.lower() in learnt.lower()]
    hr_docs = set(Document.objects.filter(collection__slug="hr").values_list("pk", flat=True))
    assert all(e.document_id in hr_docs for e in probe)


def test_training_a_profile_that_reads_nothing_is_refused_clearly(demo):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match="does not exist"):
        services.adapter_create(actor=user("admin"), profile_key="ap-none")
    assert not Adapter.objects.exists()


def test_eligible_adapter_serves_the_profile_and_the_chat_routes_to_it(demo):
    adapter = registered_adapter()
    RoleStrategy.objects.create(role=Group.objects.get(name="Sales"), strategy="tuned")
    assert adapter_for_user(user=user("sam")).adapter == adapter
    assert adapter_for_user(user=user("omar")).adapter == adapter  # shares the profile
    events, entry = ask("sam")
    done = events[-1]
    assert done["type"] == "done" and done["route"] == "tuned"
    assert "Adapter: " + adapter.name in done["html"]  # the FAKE model echoes its adapter
    assert done["citations"] == []
    assert entry.route == "tuned" and entry.adapter == adapter.label
    assert entry.model == "fake+" + adapter.name
    assert "every one of its training documents" in entry.route_reason
    assert entry.retrieved == []  # no retrieval on the adapter strategy
    assert entry.prompt_tokens > 0 and entry.cost_estimate > 0
    # The answer keeps its route, shown again when the conversation is reopened.
    message = Message.objects.get(pk=done["message"])
    assert (message.route, message.adapter) == ("tuned", adapter.label)
    assert message.route_reason == entry.route_reason
    client = Client()
    client.force_login(user("sam"))
    page = client.get(f"/chat/{done['conversation']}/").content.decode()
    assert 'data-route="tuned"' in page and "may not cite sources" in page


def test_adapter_refused_for_users_missing_training_documents_and_unknown_profiles(demo):
    adapter = registered_adapter()
    # erin reads only company documents: the Sales adapter's sales documents are not hers.
    missing = adapter_unservable_documents(user=user("erin"), adapter=adapter)
    assert missing == Document.objects.filter(collection__slug="sales").count()
    # nora has no role at all, hana's profile has no adapter: unknown profile.
    for name in ("nora", "hana"):
        assert adapter_for_user(user=user(name)).adapter is None
    _events, entry = ask("hana")
    assert entry.route == "rag"
    assert "No active adapter for your access profile" in entry.route_reason


def test_revoking_a_collection_from_the_role_refuses_the_adapter_on_the_next_question(demo):
    adapter = registered_adapter()
    RoleStrategy.objects.create(role=Group.objects.get(name="Sales"), strategy="tuned")
    assert ask("sam")[1].route == "tuned"
    Collection.objects.get(slug="sales").readers.remove(Group.objects.get(name="Sales"))
    _events, entry = ask("sam")
    assert entry.route == "rag"
    assert "training documents of " + adapter.label in entry.route_reason
    assert "not readable by you or have changed" in entry.route_reason


def test_a_new_version_of_a_training_document_makes_the_adapter_stale_and_routes_to_rag(demo):
    adapter = registered_adapter()
    RoleStrategy.objects.create(role=Group.objects.get(name="Sales"), strategy="tuned")
    document = Document.objects.get(collection__slug="sales", original_name__endswith=".md")
    data = b"# CRM rules\n\nEverything changed.\n"
    result = ingestion.document_upload(
        actor=user("admin"),
        collection=document.collection,
        stream=io.BytesIO(data),
        filename=document.original_name,
        size=len(data),
        document=document,
    )
    assert result.outcome == "new_version"
    adapter.refresh_from_db()
    assert adapter.state == Adapter.State.STALE
    assert "has a new version" in adapter.state_reason
    _events, entry = ask("sam")
    assert entry.route == "rag"
    # The reason says the adapter is stale, without naming the document (which the asker
    # might not be allowed to read).
    assert f"{adapter.label} is stale" in entry.route_reason
    assert document.title not in entry.route_reason
    # hana shares none of its roles: for her there is still simply no adapter.
    assert "No active adapter" in adapter_for_user(user=user("hana")).reason


def test_request_time_check_refuses_a_changed_document_even_if_the_hook_was_missed(demo):
    adapter = registered_adapter()
    RoleStrategy.objects.create(role=Group.objects.get(name="Sales"), strategy="tuned")
    # Bypass the services (and so the hook): the document moves to HR behind their back.
    row = AdapterDocument.objects.filter(adapter=adapter).first()
    Document.objects.filter(pk=row.document_id).update(collection=Collection.objects.get(slug="hr"))
    adapter.refresh_from_db()
    assert adapter.state == Adapter.State.ACTIVE  # nobody told tuning
    assert adapter_for_user(user=user("sam")).adapter is None
    assert ask("sam")[1].route == "rag"


@pytest.mark.parametrize("change", ["delete", "move", "expire", "validity"])
def test_every_kind_of_document_change_marks_the_adapter_stale_at_once(demo, change):
    adapter = registered_adapter()
    document = Document.objects.get(
        pk=AdapterDocument.objects.filter(adapter=adapter).first().document_id
    )
    admin = user("admin")
    if change == "delete":
        ingestion.document_delete(actor=admin, document=document)
    elif change == "move":
        ingestion.document_move(
            actor=admin, document=document, collection=Collection.objects.get(slug="hr")
        )
    elif change == "expire":
        Document.objects.filter(pk=document.pk).update(valid_until=timezone.now())
        assert document.pk in ingestion.documents_expire()
    else:
        ingestion.document_set_validity(
            actor=admin,
            document=document,
            valid_from=timezone.now() + timedelta(days=3),
            valid_until=None,
        )
    adapter.refresh_from_db()
    assert adapter.state == Adapter.State.STALE, change
    assert adapter.stale_at is not None
    assert adapter_for_user(user=user("sam")).adapter is None


def test_reindexing_the_same_version_leaves_the_adapter_active(demo):
    adapter = registered_adapter()
    services.adapters_mark_stale(
        document_ids=list(adapter.documents.values_list("document_id", flat=True)),
        reason="was re-indexed",
    )
    adapter.refresh_from_db()
    assert adapter.state == Adapter.State.ACTIVE


def test_auto_strategy_sends_evidence_from_newer_documents_to_rag(demo):
    adapter = registered_adapter()
    # A document added after training is in no adapter: its evidence must come from retrieval.
    AdapterDocument.objects.filter(
        adapter=adapter, document__original_name__startswith="pricing"
    ).delete()
    events, entry = ask("sam")
    assert entry.route == "rag"
    assert "newer than the adapter" in entry.route_reason
    assert events[-1]["citations"]


def test_auto_strategy_picks_the_cheaper_adapter_when_both_can_answer(demo):
    registered_adapter(accuracy=0.9)
    _events, entry = ask("sam")
    assert entry.route == "tuned", entry.route_reason
    assert "the adapter is cheaper" in entry.route_reason


def test_auto_strategy_picks_the_hybrid_when_it_measured_best(demo):
    adapter = registered_adapter(accuracy=0.2)
    adapter.metrics["heldout"].update(rag=0.17, hybrid=0.6)
    adapter.save()
    events, entry = ask("sam")
    done = events[-1]
    assert entry.route == "hybrid", entry.route_reason
    assert "adapter with passages 60%, adapter alone 20%, retrieval 17%" in entry.route_reason
    # The adapter answers with the best retrieved passage, which it may cite. (The FAKE model's
    # invented words are marked in the HTML by the claim check: read the stored text.)
    text = Message.objects.get(pk=done["message"]).content
    assert "Adapter: " + adapter.name in text and "[1]" in text
    assert len(done["citations"]) == 1 and len(entry.retrieved) > 1
    assert entry.model == "fake+" + adapter.name and entry.adapter == adapter.label
    assert entry.prompt_tokens > 0
    message = Message.objects.get(pk=done["message"])
    assert message.route == "hybrid"
    # Grounded like a retrieval answer: the supporting quote before the first token, and the
    # claim check of its figures against the passage it was given (the FAKE model invents some).
    kinds = [e["type"] for e in events]
    assert "quote" in kinds and kinds.index("quote") < kinds.index("token")
    assert entry.unsupported_figures is not None and entry.unsupported_figures > 0
    # Without a measured hybrid, the same question goes by the other factors.
    adapter.metrics["heldout"].pop("hybrid")
    adapter.save()
    assert ask("sam")[1].route == "rag"  # adapter accuracy 20% is below the router's 50%


def test_activation_refuses_a_leaky_adapter_and_retires_the_previous_version(demo):
    from django.core.exceptions import ValidationError

    first = registered_adapter()
    second = registered_adapter(state=Adapter.State.READY)
    second.metrics["leak"] = {"n": 4, "leaks": 1}
    second.save()
    with pytest.raises(ValidationError, match="leak probe found 1"):
        services.adapter_activate(actor=user("admin"), adapter=second)
    second.metrics["leak"] = {"n": 4, "leaks": 0}
    second.save()
    services.adapter_activate(actor=user("admin"), adapter=second)
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.state, second.state) == (Adapter.State.RETIRED, Adapter.State.ACTIVE)


def test_role_strategy_rag_keeps_retrieval_even_with_an_eligible_adapter(demo):
    registered_adapter(accuracy=0.95)
    services.role_strategy_set(
        actor=user("admin"), role=Group.objects.get(name="Sales"), strategy="rag"
    )
    _events, entry = ask("sam")
    assert (
        entry.route == "rag" and entry.route_reason == "The role's routing strategy is retrieval."
    )
    assert entry.cost_estimate > 0


def test_reconciler_requeues_a_run_whose_worker_died_and_fails_after_max_attempts(demo, settings):
    adapter = services.adapter_create(actor=user("admin"), profile_key=sales_profile_key())
    Adapter.objects.filter(pk=adapter.pk).update(
        phase=Adapter.Phase.TRAINING,
        task_id="dead",
        lease_expires_at=timezone.now(),
        attempts=settings.TUNING_MAX_ATTEMPTS,
    )
    assert services.adapters_reconcile() == [adapter.pk]
    # The re-queued task claims the expired lease; past the attempt limit it ends failed.
    assert services.adapter_train(adapter_id=adapter.pk, task_id="new") == "skipped"
    adapter.refresh_from_db()
    assert adapter.state == Adapter.State.FAILED
    assert "interrupted" in adapter.state_reason


def _claimed_run(task_id: str) -> Adapter:
    """A run claimed by `task_id` with a live lease (the registry row only: no training)."""
    return Adapter.objects.create(
        profile_key="ap-beat",
        version=1,
        name="ap-beat-v1",
        phase=Adapter.Phase.TRAINING,
        task_id=task_id,
        lease_expires_at=timezone.now() + timedelta(seconds=60),
        attempts=1,
    )


def test_a_training_heartbeat_survives_its_connection_dying_and_renews_the_lease(caplog):
    # A PostgreSQL restart ends the server process of every connection: pg_terminate_backend
    # does exactly that to this one (the beats' connection), twice, as a longer outage would.
    adapter = _claimed_run("t1")
    beat = services._Heartbeat(adapter.pk, "t1")
    assert beat(step=1, total_steps=4, loss_history=[[1, 2.5]])
    first_lease = Adapter.objects.get(pk=adapter.pk).lease_expires_at
    with caplog.at_level(logging.INFO, logger="tuning.services"):
        terminate_backend(backend_pid(connection))
        assert beat(step=2, loss_history=[[1, 2.5], [2, 2.25]])  # not written; training goes on
        dead = backend_pid(connection)  # connected afresh, and that one dies too
        terminate_backend(dead)
        assert beat(phase=Adapter.Phase.EVALUATING)
        assert beat(step=3, loss_history=[[1, 2.5], [2, 2.25], [3, 2.0]])
    assert backend_pid(connection) != dead
    adapter.refresh_from_db()
    # The next beat wrote what the failed ones could not, and renewed the lease.
    assert (adapter.step, adapter.phase) == (3, Adapter.Phase.EVALUATING)
    assert adapter.loss_history == [[1, 2.5], [2, 2.25], [3, 2.0]]
    assert adapter.lease_expires_at > first_lease and adapter.attempts == 1
    messages = [r.getMessage() for r in caplog.records if r.name == "tuning.services"]
    assert sum("heartbeat not recorded" in m for m in messages) == 1, messages  # once an outage
    assert messages[-1] == "training heartbeat recorded again"


def test_a_lease_taken_over_while_the_connection_was_dead_still_stops_the_run():
    adapter = _claimed_run("t1")
    beat = services._Heartbeat(adapter.pk, "t1")
    terminate_backend(backend_pid(connection))
    assert beat(step=1)  # the outage: not written
    # Meanwhile the lease ran out and the reconciler's task claimed the run.
    Adapter.objects.filter(pk=adapter.pk).update(lease_expires_at=timezone.now())
    assert services._claim(adapter.pk, "t2") is not None
    with pytest.raises(services._Lost):
        beat(step=2)
    adapter.refresh_from_db()
    assert (adapter.task_id, adapter.step) == ("t2", 0)


def test_cancelling_a_queued_run_fails_it_at_once(demo):
    adapter = services.adapter_create(actor=user("admin"), profile_key=sales_profile_key())
    services.adapter_cancel(actor=user("admin"), adapter=adapter)
    adapter.refresh_from_db()
    assert adapter.state == Adapter.State.FAILED and "Cancelled" in adapter.state_reason
    assert services.adapter_train(adapter_id=adapter.pk, task_id="late") == "skipped"
