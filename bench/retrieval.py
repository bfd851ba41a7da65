"""Retrieval quality on a public test collection: dense, keyword and fused, against the
published figures for BM25 and for the embedding model.

    cd /work/main && .venv/bin/python bench/retrieval.py [--keep] [--queries N] [--corpus PATH]

The collection is BEIR ArguAna, test split (bench/data/arguana/README.md: 8,674 documents,
1,406 queries, one relevant document each; the corpus file is not in the repository, see there).
Every document goes through Counsel's real upload and indexing path (extraction, chunking,
all-MiniLM-L6-v2 embeddings, the chunk table) into a bench database of its own, in one
collection read by one user. For each query it runs the production search statement of
`chunk_search` (ingestion.selectors: the access scope, the plan, the vector search and the
keyword search) with a deep candidate list, and ranks documents by their best chunk:

- dense: the vector ranking alone;
- keyword: `ingestion_chunk_text_search` alone (any term, rarer terms weigh more);
- fused: weighted reciprocal rank fusion, as `chunk_search` fuses (SEARCH_KEYWORD_WEIGHT,
  SEARCH_RRF_K), for a grid of weights and k.

The fusion parameters are chosen on the even-numbered queries and reported on the odd-numbered
ones (and on all), so the reported figure is not tuned to its own questions. As every published
figure does, a query's own document (ArguAna's queries are documents too) is removed from its
ranking. Prints nDCG@10 and recall@100 per method, the share of queries with no keyword
candidate, the chosen weights, and the published BM25 and all-MiniLM-L6-v2 figures; JSON in
bench/results/retrieval-arguana.json.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import math
import os
import time
from pathlib import Path

from common import log, machine_info, postgres_info, setup_django, table, write_json

HERE = Path(__file__).resolve().parent
DATA = HERE / "data" / "arguana"
CORPUS_SHA256 = "aab75e9042ac9c7441bcae5f89e88467dd9f77e7f284b7cecfb5987157e95305"
DEPTH = 200  # candidates per half: enough chunks for recall@100 over documents
PUBLISHED = {
    # bench/data/arguana/README.md has the sources.
    "BM25 (Anserini, flat)": (0.3970, 0.9324),
    "BM25 (Anserini, multifield)": (0.4142, 0.9431),
    "all-MiniLM-L6-v2 (MTEB)": (0.50167, 0.97724),
}
WEIGHTS = [0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0]
RRF_KS = [10, 30, 60, 100]


def read_jsonl_gz(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def load_collection(corpus_path: Path) -> tuple[list[dict], list[dict], dict[str, set[str]]]:
    digest = hashlib.sha256(corpus_path.read_bytes()).hexdigest()
    if digest != CORPUS_SHA256:
        raise SystemExit(f"{corpus_path}: sha256 {digest}, expected {CORPUS_SHA256} (README)")
    corpus = read_jsonl_gz(corpus_path)
    queries = read_jsonl_gz(DATA / "queries.jsonl.gz")
    qrels: dict[str, set[str]] = {}
    for line in (DATA / "qrels.tsv").read_text().splitlines():
        qid, did, grade = line.split("\t")
        if int(grade) > 0:
            qrels.setdefault(qid, set()).add(did)
    return corpus, queries, qrels


def index_corpus(corpus: list[dict], *, keep: bool) -> tuple[object, dict[int, str]]:
    """The collection, its reader, and {document pk: corpus id}, indexed for real."""
    from django.contrib.auth.models import Group

    from accounts.models import User
    from ingestion import services
    from ingestion.keywords import keyword_stats_refresh
    from ingestion.models import Collection, Document
    from ingestion.search_indexes import search_indexes_sync

    collection = Collection.objects.filter(slug="arguana").first()
    if keep and collection is not None:
        ids = dict(Document.objects.filter(collection=collection).values_list("pk", "title"))
        # Done when every document was indexed or refused (one ArguAna text is 2 characters).
        unfinished = Document.objects.filter(collection=collection).exclude(
            state__in=["indexed", "failed"]
        )
        # Identical texts are one document (Counsel keeps the same bytes once per collection).
        distinct = len({(d["title"], d["text"]) for d in corpus})
        if len(ids) >= distinct - 1 and not unfinished.exists():
            log(f"reusing the indexed collection ({len(ids)} documents)")
            keyword_stats_refresh()
            return User.objects.get(username="bench-arguana"), ids
    if collection is not None:
        for document in Document.objects.filter(collection=collection):
            services.document_delete(actor=None, document=document)
        collection.delete()
    collection = Collection.objects.create(name="ArguAna", slug="arguana")
    role, _ = Group.objects.get_or_create(name="bench-arguana")
    role.readable_collections.set([collection])
    user, _ = User.objects.get_or_create(username="bench-arguana", defaults={"is_active": True})
    user.groups.set([role])
    started = time.perf_counter()
    for n, doc in enumerate(corpus, start=1):
        # The topic tags as the heading (MTEB embeds title and text together), the text below.
        body = f"# {doc['title']}\n\n{doc['text']}\n" if doc["title"] else f"{doc['text']}\n"
        data = body.encode()
        _retrying(lambda d=doc["id"], b=data: _index_one(services, collection, d, b))
        if n % 500 == 0:
            log(f"indexed {n}/{len(corpus)} ({time.perf_counter() - started:.0f}s)")
    search_indexes_sync()
    keyword_stats_refresh()
    ids = dict(Document.objects.filter(collection=collection).values_list("pk", "title"))
    return user, ids


def _index_one(services, collection, corpus_id: str, data: bytes) -> None:
    result = services.document_upload(
        actor=None,
        collection=collection,
        stream=io.BytesIO(data),
        filename=f"{corpus_id}.md",
        size=len(data),
        title=corpus_id,  # the corpus id, to map results back
    )
    if result.document.state != "indexed":
        services.document_index(document_id=result.document.pk, task_id="bench")


def _retrying(work, attempts: int = 5):
    """Run `work`, again after a PostgreSQL restart (other work on this machine restarts it)."""
    from django.db import OperationalError, close_old_connections, connection

    for attempt in range(attempts):
        try:
            return work()
        except OperationalError:
            if attempt == attempts - 1:
                raise
            log("database unavailable; retrying in 5 s")
            connection.close()
            close_old_connections()
            time.sleep(5)
    return None


def rankings(user, query: str, vector) -> tuple[list[tuple], int]:
    """The production search statement with a deep candidate list: rows of (chunk, document,
    distance, keyword rank)."""
    from ingestion.rls import reading_as
    from ingestion.selectors import _collection_sizes, _search_rows, plan_search

    with reading_as(user=user):
        sizes, table_rows = _collection_sizes(user=user, collection_ids=None)
        plan = plan_search(sizes, table_rows=table_rows)
        rows = _search_rows(plan, query=query, vector=vector, limit=DEPTH)
    return [(r[0], r[1], r[9], r[10]) for r in rows], sum(1 for r in rows if r[10] is not None)


LATENCY_QUERIES = 300
TYPED_WORDS = 12  # ArguAna's queries are whole paragraphs; people type about a dozen words


def search_latency(user, queries: list[dict], *, words: int | None = None) -> dict:
    """The whole production path, `chunk_search(k=10)` with the query vector given (the
    embedding is timed elsewhere): p50/p95 over `queries` (their first `words` words: the
    length people type), after a warm-up."""
    from common import percentile

    from ingestion.embedding import embed_query
    from ingestion.selectors import chunk_search

    texts = [" ".join(q["text"].split()[:words]) if words else q["text"] for q in queries]
    vectors = [(text, embed_query(text)) for text in texts]
    for text, vector in vectors[:20]:
        chunk_search(user=user, query=text, k=10, vector=vector)
    times = []
    for text, vector in vectors:
        t0 = time.perf_counter()
        chunk_search(user=user, query=text, k=10, vector=vector)
        times.append((time.perf_counter() - t0) * 1000)
    return {"n": len(times), "p50": percentile(times, 50), "p95": percentile(times, 95)}


def ranked_documents(scored: dict[int, float], chunk_doc: dict[int, int]) -> list[int]:
    """Documents by their best chunk's score."""
    best: dict[int, float] = {}
    for chunk, score in scored.items():
        doc = chunk_doc[chunk]
        best[doc] = max(best.get(doc, -math.inf), score)
    return sorted(best, key=lambda d: (-best[d], d))


def fused(rows, weight: float, k: int) -> dict[int, float]:
    by_distance = sorted((r for r in rows if r[2] is not None), key=lambda r: (r[2], r[0]))
    by_text = sorted((r for r in rows if r[3] is not None), key=lambda r: (-r[3], r[0]))
    scores: dict[int, float] = {}
    for rank, r in enumerate(by_distance, start=1):
        scores[r[0]] = scores.get(r[0], 0.0) + 1.0 / (k + rank)
    for rank, r in enumerate(by_text, start=1):
        scores[r[0]] = scores.get(r[0], 0.0) + weight / (k + rank)
    return scores


def ndcg10(ranked: list[str], relevant: set[str]) -> float:
    dcg = sum(1 / math.log2(i + 2) for i, d in enumerate(ranked[:10]) if d in relevant)
    ideal = sum(1 / math.log2(i + 2) for i in range(min(10, len(relevant))))
    return dcg / ideal if ideal else 0.0


def recall100(ranked: list[str], relevant: set[str]) -> float:
    return len(set(ranked[:100]) & relevant) / len(relevant) if relevant else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default=str(DATA / "corpus.jsonl.gz"))
    parser.add_argument("--keep", action="store_true", help="reuse the indexed collection")
    parser.add_argument("--queries", type=int, help="only the first N queries (a quick look)")
    args = parser.parse_args()
    started = time.perf_counter()
    os.environ.setdefault(
        "BENCH_DATABASE_URL", "postgres://counsel:counsel@127.0.0.1:55432/counsel_retrieval_bench"
    )
    corpus, queries, qrels = load_collection(Path(args.corpus))
    setup_django()
    from ingestion.embedding import embed_query

    user, doc_ids = index_corpus(corpus, keep=args.keep)
    queries = [q for q in queries if q["id"] in qrels][: args.queries or None]
    log(f"{len(queries)} queries")
    runs = []
    for n, q in enumerate(queries, start=1):
        vector = embed_query(q["text"])
        rows, keyword_candidates = _retrying(lambda q=q, v=vector: rankings(user, q["text"], v))
        runs.append((q, rows, keyword_candidates))
        if n % 200 == 0:
            log(f"searched {n}/{len(queries)}")

    def evaluate(scorer, subset) -> tuple[float, float]:
        nd, rc = [], []
        for q, rows, _ in subset:
            chunk_doc = {r[0]: r[1] for r in rows}
            ranked = [doc_ids[d] for d in ranked_documents(scorer(rows), chunk_doc)]
            ranked = [d for d in ranked if d != q["id"]]  # a query's own document
            nd.append(ndcg10(ranked, qrels[q["id"]]))
            rc.append(recall100(ranked, qrels[q["id"]]))
        return sum(nd) / len(nd), sum(rc) / len(rc)

    def dense(rows):
        return {r[0]: -r[2] for r in rows if r[2] is not None}

    def keyword(rows):
        return {r[0]: r[3] for r in rows if r[3] is not None}

    tune = [r for i, r in enumerate(runs) if i % 2 == 0]
    held = [r for i, r in enumerate(runs) if i % 2 == 1]
    grid = {
        (w, k): evaluate(lambda rows, w=w, k=k: fused(rows, w, k), tune)[0]
        for w in WEIGHTS
        for k in RRF_KS
    }
    best_w, best_k = max(grid, key=lambda wk: (grid[wk], -abs(wk[0] - 1.0)))
    from django.conf import settings

    current = (settings.SEARCH_KEYWORD_WEIGHT, settings.SEARCH_RRF_K)
    methods = {
        "dense": dense,
        "keyword": keyword,
        f"fused, settings (w={current[0]:g}, k={current[1]})": (
            lambda rows: fused(rows, current[0], current[1])
        ),
        f"fused, chosen on even queries (w={best_w:g}, k={best_k})": (
            lambda rows: fused(rows, best_w, best_k)
        ),
    }
    results = {}
    for name, scorer in methods.items():
        results[name] = {
            "all": evaluate(scorer, runs),
            "held_out": evaluate(scorer, held),
        }
    no_keyword = sum(1 for _, _, n in runs if n == 0) / len(runs)
    latency = search_latency(user, queries[:LATENCY_QUERIES])
    typed = search_latency(user, queries[:LATENCY_QUERIES], words=TYPED_WORDS)
    rows_out = [
        [name, r["all"][0], r["all"][1], r["held_out"][0], r["held_out"][1]]
        for name, r in results.items()
    ]
    rows_out += [[f"published: {name}", nd, rc, "", ""] for name, (nd, rc) in PUBLISHED.items()]
    print()
    print(
        table(
            ["method", "nDCG@10", "R@100", "nDCG@10 (odd)", "R@100 (odd)"], rows_out, markdown=True
        )
    )
    print(f"\nQueries with no keyword candidate: {no_keyword:.1%} of {len(runs)}.")
    print(
        f"chunk_search(k=10, vector given) on {len(doc_ids)} short documents: "
        f"p50 {latency['p50']:.1f} ms, p95 {latency['p95']:.1f} ms ({latency['n']} queries); "
        f"their first {TYPED_WORDS} words: p50 {typed['p50']:.1f} ms, p95 {typed['p95']:.1f} ms."
    )
    print(f"Fusion grid on the even queries (nDCG@10): best w={best_w:g}, k={best_k}.")
    path = write_json(
        "retrieval-arguana.json",
        {
            "machine": machine_info(),
            "postgres": postgres_info(),
            "queries": len(runs),
            "documents": len(doc_ids),
            "depth": DEPTH,
            "results": results,
            "published": PUBLISHED,
            "no_keyword_candidates": no_keyword,
            "chunk_search_ms": latency,
            f"chunk_search_ms_first_{TYPED_WORDS}_words": typed,
            "grid_even_queries": {f"w={w:g},k={k}": v for (w, k), v in grid.items()},
            "chosen": {"weight": best_w, "rrf_k": best_k},
            "settings": {"weight": current[0], "rrf_k": current[1]},
            "seconds": time.perf_counter() - started,
        },
    )
    log(f"JSON: {path.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
