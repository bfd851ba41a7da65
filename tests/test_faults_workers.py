"""Faults of the workers (drills, issue 8): Redis restarted while documents are being indexed,
PostgreSQL restarted under a worker, and a worker killed in the middle of training an adapter.

Everything is real: Celery worker processes started with the production command line
(tests/conftest.py, CeleryWorker), Redis and PostgreSQL really stopped and started
(scripts/services), real indexing with the embedding model and real LoRA training on the
embedded base model. The periodic reconcilers that Celery beat runs every minute are called by
the test instead (every two seconds), with the short leases of the test settings.
"""

from __future__ import annotations

import io
import os
import subprocess
import time

import pytest
from django.db import connections

from config.celery import app, ping
from ingestion import services as ingestion
from ingestion.models import Chunk, Document
from tests.conftest import ROOT, CeleryWorker, reset_broker_connections
from tests.factories import CollectionFactory
from tests.test_ingestion_worker import long_text
from tests.tuning_support import load_demo, sales_profile_key, user
from tuning import services as tuning
from tuning.models import Adapter

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def wait_for(predicate, what: str, timeout: float = 120, every: float = 0.2, then=None):
    """Poll `predicate` until it returns something true; `then` runs between polls."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        if then is not None:
            then()
        time.sleep(every)


def _service(command: str, name: str) -> None:
    subprocess.run(
        [str(ROOT / "scripts" / "services"), command, name],
        check=True,
        capture_output=True,
        env=os.environ,
        timeout=60,
    )


@pytest.fixture
def worker(transactional_db):
    workers: list[CeleryWorker] = []

    def start(**kwargs) -> CeleryWorker:
        workers.append(CeleryWorker(**kwargs).start())
        return workers[-1]

    yield start
    for w in workers:
        w.stop()


def upload(collection, name: str, data: bytes) -> Document:
    return ingestion.document_upload(
        actor=None, collection=collection, stream=io.BytesIO(data), filename=name, size=len(data)
    ).document


# --- Redis restarted during indexing ---------------------------------------------------------


def test_redis_restart_during_indexing_loses_no_document(worker):
    w = worker(queues="ingest", label="faults-ingest-worker")
    sales = CollectionFactory(name="Sales", slug="sales")
    big = upload(sales, "big.md", long_text(400))
    queued = [upload(sales, f"small-{n}.md", long_text(3 + n)) for n in range(3)]
    wait_for(lambda: Document.objects.get(pk=big.pk).progress_done > 0, "embedding to start")

    restarted = time.monotonic()
    _service("restart", "redis")  # no persistence: the queue and the unacknowledged task go
    reset_broker_connections(app)
    documents = [big, *queued]

    def all_indexed() -> bool:
        states = set(
            Document.objects.filter(pk__in=[d.pk for d in documents]).values_list(
                "state", flat=True
            )
        )
        return states == {Document.State.INDEXED}

    requeued: list[int] = []
    wait_for(
        all_indexed,
        "every document to be indexed after the restart",
        timeout=600,
        every=2,
        then=lambda: requeued.extend(ingestion.documents_reconcile()),  # beat's job
    )
    recovery = time.monotonic() - restarted
    print(f"\nindexing recovered {recovery:.1f}s after the Redis restart; re-queued {requeued}")
    # The lost messages were re-queued from PostgreSQL's state, and each document's chunks are
    # one complete set.
    assert {d.pk for d in queued} <= set(requeued)
    for document in Document.objects.filter(pk__in=[d.pk for d in documents]):
        ordinals = list(Chunk.objects.filter(document=document).values_list("ordinal", flat=True))
        assert len(ordinals) == len(set(ordinals)) == document.chunk_count > 0
    # The worker consumes again after the reconnect: a new task goes through at once.
    assert ping.apply_async(queue="ingest").get(timeout=60)["worker"] == w.name


# --- PostgreSQL restarted under a worker -----------------------------------------------------


def test_postgres_restart_the_worker_runs_the_next_tasks(worker):
    w = worker(queues="default,ingest", label="faults-pg-worker")
    assert ping.delay("before").get(timeout=30)["worker"] == w.name  # it holds a connection
    _service("stop", "postgres")
    try:
        with pytest.raises(Exception, match=r"connection|server") as failed:
            ping.delay("down").get(timeout=30)
        assert "OperationalError" in type(failed.value).__name__
    finally:
        _service("start", "postgres")
        connections.close_all()  # this thread's connection died with the server
    # Every task after the restart works: Celery's Django fix-up drops dead connections
    # before each task (CONN_HEALTH_CHECKS, CONN_MAX_AGE=0).
    results = [ping.delay(f"after-{n}").get(timeout=30) for n in range(3)]
    assert [r["payload"] for r in results] == ["after-0", "after-1", "after-2"]
    sales = CollectionFactory(name="Sales", slug="sales")
    document = upload(sales, "after.md", long_text(3))
    wait_for(
        lambda: Document.objects.get(pk=document.pk).state == Document.State.INDEXED,
        "a document uploaded after the restart to be indexed",
    )


# --- a worker killed during training ---------------------------------------------------------


def _adapter(pk: int) -> Adapter:
    return Adapter.objects.get(pk=pk)


def _start_training(max_steps: int) -> Adapter:
    load_demo("sales")
    adapter = tuning.adapter_create(
        actor=user("admin"), profile_key=sales_profile_key(), max_steps=max_steps
    )
    # On commit the task is queued; wait until the worker is inside the training loop.
    wait_for(
        lambda: (a := _adapter(adapter.pk)).phase == Adapter.Phase.TRAINING and a.step >= 1,
        "training to reach its first step",
        timeout=300,
    )
    return adapter


@pytest.mark.timeout(900)
def test_worker_process_killed_mid_training_is_redone_and_ends_ready(worker):
    w = worker(queues="train", label="faults-train-worker")
    adapter = _start_training(max_steps=4)
    killed = w.pool_processes()
    assert killed, "the prefork pool has a child process"
    killed[0].kill()  # SIGKILL: the task is re-queued (task_reject_on_worker_lost)
    at = time.monotonic()

    final = wait_for(
        lambda: (a := _adapter(adapter.pk)).state != Adapter.State.TRAINING and a,
        "the re-delivered task to finish training",
        timeout=800,
        every=1,
    )
    print(f"\nkilled training run ended {final.state} {time.monotonic() - at:.1f}s after the kill")
    assert final.state == Adapter.State.READY, final.state_reason
    assert final.attempts == 2  # the killed attempt and the one that finished
    assert final.step == 4 and len(final.loss_history) == 4  # restarted from scratch
    assert final.metrics["heldout"]["n"] >= 1


@pytest.mark.timeout(600)
def test_worker_killed_mid_training_past_the_attempt_limit_ends_failed_with_a_reason(worker):
    w = worker(queues="train", label="faults-train-worker", env={"TUNING_MAX_ATTEMPTS": "1"})
    adapter = _start_training(max_steps=50)
    w.pool_processes()[0].kill()
    at = time.monotonic()

    final = wait_for(
        lambda: (a := _adapter(adapter.pk)).state != Adapter.State.TRAINING and a,
        "the re-delivered task to give up",
        timeout=120,
    )
    print(f"\nkilled training run ended {final.state} {time.monotonic() - at:.1f}s after the kill")
    assert final.state == Adapter.State.FAILED
    assert final.state_reason.startswith("Training was interrupted once;"), final.state_reason
    assert final.phase == Adapter.Phase.DONE and final.lease_expires_at is None


@pytest.mark.timeout(600)
def test_training_worker_lost_with_its_machine_is_failed_by_the_reconciler(worker, settings):
    # The whole worker dies at once (machine lost): nobody re-queues the task; the lease runs
    # out and the reconciler (beat, every minute) re-queues it for another worker.
    first = worker(queues="train", label="faults-train-worker", env={"TUNING_LEASE_SECONDS": "10"})
    adapter = _start_training(max_steps=50)
    first.kill()
    lost = time.monotonic()
    assert _adapter(adapter.pk).state == Adapter.State.TRAINING
    worker(queues="train", label="faults-train-worker-2", env={"TUNING_MAX_ATTEMPTS": "1"})

    requeued: list[int] = []
    final = wait_for(
        lambda: (a := _adapter(adapter.pk)).state != Adapter.State.TRAINING and a,
        "the reconciler to re-queue the run and the second worker to end it",
        timeout=300,
        every=2,
        then=lambda: requeued.extend(tuning.adapters_reconcile()),
    )
    print(f"\ntraining run ended {time.monotonic() - lost:.1f}s after its worker was lost")
    assert requeued and set(requeued) == {adapter.pk}
    assert final.state == Adapter.State.FAILED
    assert "interrupted" in final.state_reason
