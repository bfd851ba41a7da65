"""Indexing throughput: the real pipeline against the embedding model's own throughput.

    cd /work/main && .venv/bin/python bench/indexing.py [--seconds 60]

Takes real documents in order (the demo company's documents, then Node.js's API manual and
Git's documentation from /usr/share/doc) until their chunks hold about `--seconds` of embedding
work (judged from a short probe of the model). In the same process it then embeds those chunk
texts with `embed_texts` at the configured batch size in one call (the baseline: the model's own
throughput), runs the real pipeline on each file - `document_upload`, then `document_index` as
the Celery task calls it - into a collection of the bench database, embeds the texts in one
call again (baseline = mean of before and after), and once more in the groups the pipeline
uses. Reports chunks/s (wall clock and per CPU-second), the ratio (target >= 90 %) and where
the pipeline's time went. Table on stdout, JSON in bench/results/indexing.json.

The task queue is not involved: `_enqueue_index` is replaced by a no-op for the run (a worker
listening on Redis must not pick up bench documents); progress messages go to Redis database 14.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import time
import uuid
from collections import defaultdict
from pathlib import Path

import numpy as np
from common import ROOT, latency_summary, log, machine_info, setup_django, table, write_json

SOURCES = [
    (ROOT / "demo" / "documents", "*/*"),
    (Path("/usr/share/doc/nodejs/api"), "*.md"),
    (Path("/usr/share/doc/git"), "**/*.txt"),
]
COLLECTION_SLUG = "bench-indexing"


def corpus_files() -> list[Path]:
    files = []
    for base, pattern in SOURCES:
        if base.is_dir():
            files += sorted(p for p in base.glob(pattern) if p.is_file() and p.stat().st_size)
    return files


class Stopwatch:
    """Wraps functions so that the time spent inside them is summed per stage."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._restore: list = []
        self.depth = 0

    def wrap(self, owner, name: str, stage: str, *, on_result=None) -> None:
        original = getattr(owner, name)

        @functools.wraps(original)
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                result = original(*args, **kwargs)
            finally:
                self.seconds[stage] += time.perf_counter() - t0
                self.calls[stage] += 1
            if on_result:
                on_result(result)
            return result

        setattr(owner, name, timed)
        self._restore.append((owner, name, original))

    def restore(self) -> None:
        for owner, name, original in reversed(self._restore):
            setattr(owner, name, original)
        self._restore.clear()


def remove_collection() -> None:
    """Delete the bench collection, its documents, chunks and stored files."""
    from django.core.files.storage import default_storage

    from ingestion.models import Collection, Document, DocumentVersion

    collection = Collection.objects.filter(slug=COLLECTION_SLUG).first()
    if collection:
        names = list(
            DocumentVersion.objects.filter(document__collection=collection).values_list(
                "file", flat=True
            )
        )
        Document.objects.filter(collection=collection).delete()
        collection.delete()
        for name in names:
            if name:
                default_storage.delete(name)


def reset_collection():
    from ingestion.models import Collection

    remove_collection()
    return Collection.objects.create(name="bench indexing", slug=COLLECTION_SLUG)


def plan_corpus(files: list[Path], seconds: float, chunking, extraction, services) -> tuple:
    """Extract and chunk files in order (as the pipeline will) until they hold about `seconds`
    of embedding work, judged from a short probe of the model.

    Returns ([(file, its chunk texts)], probe rate in chunks/s)."""
    from django.conf import settings

    from ingestion import embedding

    tokenizer = chunking.load_tokenizer()
    chosen, texts, needed, rate = [], [], None, None
    for path in files:
        name = services.clean_filename(path.name)
        try:
            extracted = extraction.extract(path, filename=name, limits=services.extraction_limits())
        except extraction.Rejected:
            continue
        pieces = chunking.chunk_sections(
            extracted.sections,
            title=services.title_from_filename(name),
            tokenizer=tokenizer,
            max_tokens=settings.INGEST_CHUNK_TOKENS,
            overlap_tokens=settings.INGEST_CHUNK_OVERLAP,
        )
        if not pieces:
            continue
        chosen.append((path, [p.embedding_text for p in pieces]))
        texts += chosen[-1][1]
        if needed is None and len(texts) >= 64:
            t0 = time.perf_counter()
            embedding.embed_texts(texts[:64])
            rate = 64 / (time.perf_counter() - t0)
            needed = int(rate * seconds)
        if needed is not None and len(texts) >= needed:
            break
    return chosen, rate


def cpu_clock(backend_pid: int | None):
    """Process CPU time (all threads, torch's included) plus the PostgreSQL backend's."""

    def read() -> float:
        backend = 0.0
        if backend_pid:
            with contextlib.suppress(OSError):
                backend = int(Path(f"/proc/{backend_pid}/schedstat").read_text().split()[0]) / 1e9
        return time.process_time() + backend

    return read


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="embedding work to index")
    parser.add_argument("--keep-documents", action="store_true", help="leave them indexed")
    args = parser.parse_args()
    started = time.perf_counter()
    load_start = os.getloadavg()[0]
    setup_django()
    from django.conf import settings
    from django.db import connection
    from search import cosine_statistics

    from ingestion import chunking, embedding, extraction, services

    services._enqueue_index = lambda document_id: None  # the bench calls document_index itself

    collection = reset_collection()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM ingestion_chunk")
        rows_before = cursor.fetchone()[0]
    connection.ensure_connection()
    cpu = cpu_clock(connection.connection.info.backend_pid)

    # Warm: a worker has its model and tokenizer loaded after its first document.
    t0 = time.perf_counter()
    chunking.load_tokenizer()
    embedding.embed_texts(["warm-up"] * 8)
    warm_s = time.perf_counter() - t0
    plan, probe_rate = plan_corpus(corpus_files(), args.seconds, chunking, extraction, services)
    planned_texts = [t for _, doc_texts in plan for t in doc_texts]
    log(
        f"model loaded in {warm_s:.1f}s; probe {probe_rate:.1f} chunks/s, so {len(plan)} files, "
        f"{len(planned_texts)} chunks; {rows_before} chunks already in the table"
    )
    batch_size = settings.EMBEDDING_BATCH_SIZE
    group = max(batch_size, 1) * 2  # what services._embed_with_progress hands embed_texts

    embed = embedding.embed_texts  # the model alone: never through the stage timers below

    def corpus_one_call() -> tuple[float, float, np.ndarray]:
        w0, c0 = time.perf_counter(), cpu()
        vectors = embed(planned_texts, batch_size=batch_size)
        return time.perf_counter() - w0, cpu() - c0, vectors

    # Reference, before and after the per-document run: every chunk in one call, sorted by
    # length across documents - which a pipeline indexing one document at a time cannot do.
    corpus_before = corpus_one_call()
    log(f"model alone, all chunks in one call: {len(planned_texts) / corpus_before[0]:.1f}/s")

    texts: list[str] = []
    watch = Stopwatch()
    watch.wrap(extraction, "extract", "extract")
    watch.wrap(
        chunking,
        "chunk_sections",
        "chunk (tokenise + split)",
        on_result=lambda pieces: texts.extend(p.embedding_text for p in pieces),
    )
    watch.wrap(embedding, "embed_texts", "embed")
    watch.wrap(services, "_claim", "claim (db)")
    watch.wrap(services, "_progress", "progress (db + channel layer)")
    watch.wrap(services, "_swap", "swap chunks in (db)")

    def pipeline(path: Path) -> dict | None:
        size = path.stat().st_size
        t0 = time.perf_counter()
        with path.open("rb") as handle:
            result = services.document_upload(
                actor=None, collection=collection, stream=handle, filename=path.name, size=size
            )
        t_upload = time.perf_counter() - t0
        if result.outcome != "created":
            return None  # the same bytes as a file already taken
        before = len(texts)
        w0, c0 = time.perf_counter(), cpu()
        outcome = services.document_index(
            document_id=result.document.pk, task_id=f"bench-{uuid.uuid4().hex}"
        )
        t_index, c_index = time.perf_counter() - w0, cpu() - c0
        if outcome != "indexed":
            del texts[before:]
            result.document.refresh_from_db()
            failed.append((str(path), outcome, result.document.state_reason))
            return None
        return {
            "file": str(path),
            "bytes": size,
            "chunks": len(texts) - before,
            "upload_s": t_upload,
            "index_s": t_index,
            "index_cpu_s": c_index,
        }

    def model_alone(doc_texts: list[str], per_call: int) -> tuple[float, float]:
        w0, c0 = time.perf_counter(), cpu()
        for start in range(0, len(doc_texts), per_call):
            embed(doc_texts[start : start + per_call], batch_size=batch_size)
        return time.perf_counter() - w0, cpu() - c0

    # Per document, in rotating order so that all three see the same machine: the pipeline,
    # the model alone on the document's chunk texts in one call (the baseline), and the model
    # alone in the pipeline's groups of 2 x batch.
    per_document, failed = [], []
    for i, (path, doc_texts) in enumerate(plan):
        steps = ["pipeline", "one_call", "groups"]
        steps = steps[i % 3 :] + steps[: i % 3]
        out: dict = {}
        for step in steps:
            if step == "pipeline":
                out["pipeline"] = pipeline(path)
            elif step == "one_call":
                out["one_call"] = model_alone(doc_texts, len(doc_texts))
            else:
                out["groups"] = model_alone(doc_texts, group)
        if out["pipeline"] is None:
            continue
        if out["pipeline"]["chunks"] != len(doc_texts):
            raise RuntimeError(f"{path}: the pipeline made other chunks than the plan")
        per_document.append(
            {
                **out["pipeline"],
                "model_one_call_s": out["one_call"][0],
                "model_one_call_cpu_s": out["one_call"][1],
                "model_groups_s": out["groups"][0],
                "model_groups_cpu_s": out["groups"][1],
            }
        )
        log(f"{i + 1}/{len(plan)} {path.name}: {len(doc_texts)} chunks")
    watch.restore()
    docs = len(per_document)
    chunks = sum(d["chunks"] for d in per_document)
    if chunks != len(texts):
        raise RuntimeError(f"{chunks} chunks indexed but {len(texts)} texts captured")

    def total(key: str) -> float:
        return sum(d[key] for d in per_document)

    index_s, index_cpu, upload_s = total("index_s"), total("index_cpu_s"), total("upload_s")
    one_s, one_cpu = total("model_one_call_s"), total("model_one_call_cpu_s")
    groups_s, groups_cpu = total("model_groups_s"), total("model_groups_cpu_s")
    log(f"pipeline: {docs} documents, {chunks} chunks in {index_s:.1f}s")

    corpus_after = corpus_one_call()
    vectors = corpus_after[2]
    corpus_s = (corpus_before[0] + corpus_after[0]) / 2
    corpus_cpu = (corpus_before[1] + corpus_after[1]) / 2

    tokenizer = chunking.load_tokenizer()
    tokens = [len(tokenizer(t, verbose=False)["input_ids"]) for t in texts]
    sample = np.random.default_rng(0).permutation(len(vectors))[:2000]
    real_stats = cosine_statistics(vectors[sample]) if len(sample) >= 100 else None

    def rates(seconds: float, cpu_seconds: float, n: int = chunks) -> tuple[float, float]:
        return n / seconds, n / cpu_seconds

    base, base_cpu = rates(one_s, one_cpu)
    measured = {
        "model_one_call_per_document": (one_s, one_cpu),
        "model_pipeline_groups": (groups_s, groups_cpu),
        "pipeline_document_index": (index_s, index_cpu),
        "model_one_call_whole_corpus": (corpus_s, corpus_cpu),
    }
    summary = {}
    for key, (sec, cpu_sec) in measured.items():
        n = len(planned_texts) if key == "model_one_call_whole_corpus" else chunks
        rate, cpu_rate = rates(sec, cpu_sec, n)
        summary[key] = {
            "seconds": sec,
            "cpu_seconds": cpu_sec,
            "chunks_per_s": rate,
            "chunks_per_cpu_s": cpu_rate,
            "ratio": rate / base,
            "ratio_cpu": cpu_rate / base_cpu,
        }
    stages = dict(watch.seconds)
    stages["other (python, rows)"] = max(0.0, index_s - sum(stages.values()))

    print()
    print(
        f"Indexing throughput: {docs} real documents ({total('bytes'):,} bytes), {chunks} chunks "
        f"of {np.mean(tokens):.0f} tokens on average (max {max(tokens)}), batch size "
        f"{batch_size}. Target: pipeline >= 90 % of the model alone."
    )
    print(
        "Per document, interleaved. chunks/s on the wall clock, and per CPU-second (this process,"
        " all threads, + its PostgreSQL backend)."
    )
    labels = {
        "model_one_call_per_document": "model alone, a document's chunks in one call (baseline)",
        "model_pipeline_groups": "model alone, in the pipeline's groups of 2 x batch",
        "pipeline_document_index": "pipeline: document_index",
        "model_one_call_whole_corpus": "model alone, all chunks in one call (before/after mean)",
    }
    print(
        table(
            ["what", "seconds", "chunks/s", "ratio", "chunks/cpu-s", "cpu ratio"],
            [
                [
                    labels[key],
                    m["seconds"],
                    m["chunks_per_s"],
                    m["ratio"],
                    m["chunks_per_cpu_s"],
                    m["ratio_cpu"],
                ]
                for key, m in summary.items()
            ],
        )
    )
    print(
        f"(all chunks in one call: {len(planned_texts) / corpus_before[0]:.1f} chunks/s before "
        f"the per-document run, {len(planned_texts) / corpus_after[0]:.1f} after)"
    )
    print(f"\nWhere document_index's {index_s:.1f}s went")
    print(
        table(
            ["stage", "seconds", "share", "calls"],
            [
                [stage, sec, sec / index_s, watch.calls.get(stage, "")]
                for stage, sec in sorted(stages.items(), key=lambda item: -item[1])
            ],
        )
    )
    print(f"document_upload (store file, rows, audit): {upload_s:.1f}s in total")
    if failed:
        print(f"\n{len(failed)} documents failed: {failed[:3]}")
    if real_stats:
        print(
            f"\nMiniLM embeddings of these chunks ({real_stats['n']} sampled): mean pair cosine "
            f"{real_stats['pair_cos_mean']:.3f} (p95 {real_stats['pair_cos_p95']:.3f}), mean "
            f"cosine to the nearest other chunk {real_stats['nn1_cos_mean']:.3f} (10th "
            f"{real_stats['nn10_cos_mean']:.3f})."
        )
    total_s = time.perf_counter() - started
    load_end = os.getloadavg()[0]
    print(
        f"Time: total {total_s:.0f}s (model load {warm_s:.1f}s). Load average (1 min) at start "
        f"{load_start:.2f}, at end {load_end:.2f} on {os.cpu_count()} CPUs."
    )

    if not args.keep_documents:
        remove_collection()
    path = write_json(
        "indexing.json",
        {
            "benchmark": "indexing",
            "documents": docs,
            "chunks": chunks,
            "bytes": sum(d["bytes"] for d in per_document),
            "tokens_mean": float(np.mean(tokens)),
            "tokens_max": int(max(tokens)),
            "batch_size": batch_size,
            "chunk_rows_in_table_before": rows_before,
            "pipeline_s": index_s,
            "upload_s": upload_s,
            "ratio": summary["pipeline_document_index"]["ratio"],
            "ratio_cpu": summary["pipeline_document_index"]["ratio_cpu"],
            "measurements": summary,
            "per_document_index_s": latency_summary([d["index_s"] for d in per_document]),
            "stages_s": stages,
            "stage_calls": dict(watch.calls),
            "failed": failed,
            "documents_detail": per_document,
            "real_embedding_statistics": real_stats,
            "machine": machine_info(),
            "loadavg_1m": {"start": load_start, "end": load_end},
            "time_s": {"model_load": warm_s, "total": total_s},
        },
    )
    print(f"JSON: {path.relative_to(path.parents[2])}")


if __name__ == "__main__":
    main()
