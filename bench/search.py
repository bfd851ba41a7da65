"""Role-filtered vector search: recall@10 and latency of the production search path.

    cd /work/main && .venv/bin/python bench/search.py --rows 100000 [--keep] [--queries N]
        [--rows-per-document 2]   # many small documents (a real company's corpus shape)

Loads synthetic 384-d embeddings (a clustered, topic-correlated mixture; see `Corpus`) into the
bench database through real Collection/Document rows, builds the HNSW index as the migration
does, and creates one role + user reading exactly one collection of 0.1 %, 1 %, 10 % and 30 % of
the rows (plus one reading everything). For each, it measures per query, interleaved:

- baseline: exact filtered search (same access filter, ORDER BY cosine distance + 0, which no
  index can serve), its latency and its top 10 (the ground truth);
- `chunk_search(user=…, query="benchmark", k=10, vector=q)`: the whole production path;
- `_vector_ranking(searchable_chunks(user=…), q, limit=10, exact=<chunk_search's choice>)`.

It also times chunk_search's parts, sweeps SEARCH_EF_SEARCH x SEARCH_MAX_SCAN_TUPLES on the
HNSW branch, derives settings (SEARCH_EXACT_MAX_ROWS included) from the sweep, re-runs
chunk_search with them, and measures the exact branch once more with the access tables'
planner statistics cleared. Table on stdout, JSON in bench/results/search-<rows>.json.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import time
from dataclasses import dataclass, field

import numpy as np
from common import (
    Clock,
    latency_summary,
    log,
    machine_info,
    postgres_info,
    psycopg_dsn,
    setup_django,
    table,
    write_json,
)

DIM = 384
# The generator's parameters; stored with the loaded data so that --keep can check them.
GENERATOR = {
    "version": 2,
    "topic_groups": 16,  # broad topics ("departments' subject areas")
    "clusters": 256,  # narrow topics, 16 per group
    "centre_jitter": 0.8,  # cluster centre = normalise(group centre + jitter * random unit)
    "subspace_rank": 8,  # each cluster varies mostly inside its own random 8-d subspace
    "spread": [0.6, 1.0],  # per-cluster scale of that in-subspace variation (uniform)
    "isotropic_noise": 0.3,  # plus this much noise in all 384 dimensions
    "common_direction": 0.55,  # plus a direction shared by all (embeddings are anisotropic)
    "cluster_zipf": 0.5,  # global cluster popularity ~ 1 / rank**0.5
    "home_share": 0.75,  # share of a collection's rows from its home clusters
    "document_share": 0.5,  # share of a document's rows from the document's own cluster
    "document_offset": 0.7,  # those rows share a document-level offset inside the cluster
    "rows_per_document": 1000,
}
TARGETS = {100_000: (0.95, 10.0), 1_000_000: (0.95, 30.0)}  # rows: (recall@10, p95 ms)
SELECTIVITIES = [("0.1%", 0.001), ("1%", 0.01), ("10%", 0.10), ("30%", 0.30)]
FILLERS = 6
K = 10


def targets_for(rows: int) -> tuple[float, float]:
    # The 100k target up to 300k rows, the 1M one above.
    return TARGETS[100_000] if rows <= 300_000 else TARGETS[1_000_000]


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@dataclass
class CollectionSpec:
    name: str
    share: float
    home: np.ndarray  # home cluster ids
    rows: int = 0
    dist: np.ndarray = field(default_factory=lambda: np.zeros(0))  # P(cluster | collection)


class Corpus:
    """The generative model. Deterministic in `seed`; the data and the queries are separate
    random streams, so queries can be drawn again without regenerating the data (--keep).

    A point of cluster c is normalise(mu_c + s_c * B_c z / sqrt(r) + n * e / sqrt(384) + a * u):
    mu_c a unit cluster centre near its topic group's centre, B_c an orthonormal 384 x r basis,
    z ~ N(0, I_r), e ~ N(0, I_384), u a direction common to all points.
    """

    def __init__(self, rows: int, seed: int):
        g = GENERATOR
        self.rows, self.seed = rows, seed
        rng = np.random.default_rng([seed, 0])
        n_groups, n_clusters, rank = g["topic_groups"], g["clusters"], g["subspace_rank"]
        per_group = n_clusters // n_groups
        self.group_of = np.repeat(np.arange(n_groups), per_group)
        groups = _unit(rng.standard_normal((n_groups, DIM)))
        jitter = _unit(rng.standard_normal((n_clusters, DIM)))
        self.centres = _unit(groups[self.group_of] + g["centre_jitter"] * jitter)
        self.bases = np.linalg.qr(rng.standard_normal((n_clusters, DIM, rank)))[0].astype(
            np.float32
        )
        self.spread = rng.uniform(*g["spread"], size=n_clusters)
        self.common = _unit(rng.standard_normal(DIM))
        ranks = rng.permutation(n_clusters) + 1
        popularity = 1.0 / ranks ** g["cluster_zipf"]
        self.popularity = popularity / popularity.sum()

        # Collections: the four measured ones and fillers ("departments") for the rest. The
        # big ones own whole topic groups; the small ones are a team's few clusters inside a
        # group that a bigger collection also covers (the hard case for a filtered index).
        def clusters_of(*group_ids: int) -> np.ndarray:
            return np.flatnonzero(np.isin(self.group_of, group_ids))

        filler_share = (1.0 - sum(s for _, s in SELECTIVITIES)) / FILLERS
        team_1 = rng.choice(clusters_of(7), 4, replace=False)
        team_01 = rng.choice(clusters_of(0), 2, replace=False)
        specs = [
            CollectionSpec("sel-0.1%", 0.001, team_01),
            CollectionSpec("sel-1%", 0.01, team_1),
            CollectionSpec("sel-10%", 0.10, clusters_of(5, 6)),
            CollectionSpec("sel-30%", 0.30, clusters_of(0, 1, 2, 3, 4)),
        ]
        filler_groups = [(7, 8), (9, 10), (11, 12), (13,), (14,), (15,)]
        specs += [
            CollectionSpec(f"filler-{i + 1}", filler_share, clusters_of(*gs))
            for i, gs in enumerate(filler_groups)
        ]
        for spec in specs:
            home = np.zeros(n_clusters)
            home[spec.home] = self.popularity[spec.home]
            spec.dist = g["home_share"] * home / home.sum() + (1 - g["home_share"]) * (
                self.popularity
            )
            spec.rows = round(spec.share * rows)
        specs[-1].rows += rows - sum(s.rows for s in specs)  # exact total
        self.collections = specs

    # -- points -----------------------------------------------------------------------------

    def points(
        self,
        clusters: np.ndarray,
        rng: np.random.Generator,
        offset: np.ndarray | None = None,
        on_offset: np.ndarray | None = None,
    ) -> np.ndarray:
        """Points of the given clusters. Rows where `on_offset` is true share the (document's)
        `offset` in their in-cluster variation: z = o * offset + sqrt(1 - o^2) * own."""
        g = GENERATOR
        n, rank = len(clusters), g["subspace_rank"]
        z = rng.standard_normal((n, rank)).astype(np.float32)
        if offset is not None:
            o = g["document_offset"]
            z[on_offset] = o * offset + math.sqrt(1 - o * o) * z[on_offset]
        local = np.empty((n, DIM), dtype=np.float32)
        for c in np.unique(clusters):
            idx = np.flatnonzero(clusters == c)
            local[idx] = (z[idx] @ self.bases[c].T) * (self.spread[c] / math.sqrt(rank))
        noise = rng.standard_normal((n, DIM)).astype(np.float32)
        x = (
            self.centres[clusters]
            + local
            + noise * (g["isotropic_noise"] / math.sqrt(DIM))
            + g["common_direction"] * self.common
        )
        return _unit(x).astype(np.float32)

    def documents(self) -> list[tuple[int, int, int]]:
        """(collection index, rows, own cluster) per document, in upload (shuffled) order."""
        rng = np.random.default_rng([self.seed, 1])
        per_doc = GENERATOR["rows_per_document"]
        docs = []
        for ci, spec in enumerate(self.collections):
            n_docs = max(1, math.ceil(spec.rows / per_doc))
            sizes = [
                spec.rows // n_docs + (1 if i < spec.rows % n_docs else 0) for i in range(n_docs)
            ]
            own = rng.choice(len(self.centres), size=n_docs, p=spec.dist)
            docs += [(ci, size, int(c)) for size, c in zip(sizes, own, strict=True)]
        order = rng.permutation(len(docs))  # collections interleave in the table, as uploads do
        return [docs[i] for i in order]

    def document_points(self, spec_index: int, size: int, own: int, rng) -> tuple:
        spec = self.collections[spec_index]
        from_own = rng.random(size) < GENERATOR["document_share"]
        clusters = np.where(from_own, own, rng.choice(len(self.centres), size=size, p=spec.dist))
        # Rows on the document's own topic share one offset: a document is about something.
        offset = rng.standard_normal(GENERATOR["subspace_rank"]).astype(np.float32)
        return clusters, self.points(clusters, rng, offset, from_own)

    def queries(self, spec_index: int | None, n: int) -> tuple[np.ndarray, list[str]]:
        """n fresh points: half from the collection's own topic mix ("in"), half from the
        whole corpus's mix ("any", usually off the collection's topics). None: all "any"."""
        rng = np.random.default_rng([self.seed, 2, 99 if spec_index is None else spec_index])
        shares = np.array([s.rows for s in self.collections], dtype=float)
        clusters, kinds = [], []
        for i in range(n):
            if spec_index is not None and i % 2 == 0:
                spec, kind = self.collections[spec_index], "in"
            else:
                spec, kind = (
                    self.collections[rng.choice(len(shares), p=shares / shares.sum())],
                    "any",
                )
            clusters.append(rng.choice(len(self.centres), p=spec.dist))
            kinds.append(kind)
        return self.points(np.array(clusters), rng), kinds

    def sample_statistics(self, n: int = 2000) -> dict:
        """Cosine statistics of n random stored rows (bench/indexing.py reports the same for
        real MiniLM embeddings of real text: the generator was tuned to match them)."""
        import psycopg
        from pgvector.psycopg import register_vector

        rng = np.random.default_rng([self.seed, 3])
        ids = (rng.choice(self.rows, size=min(n, self.rows), replace=False) + 1).tolist()
        with psycopg.connect(psycopg_dsn()) as conn:
            register_vector(conn)
            rows = conn.execute(
                "SELECT embedding FROM ingestion_chunk WHERE id = ANY(%s)", [ids]
            ).fetchall()
        vectors = np.array([row[0].to_numpy() for row in rows], dtype=np.float32)
        return cosine_statistics(vectors)


def cosine_statistics(vectors: np.ndarray) -> dict:
    sims = vectors @ vectors.T
    n = len(vectors)
    off = sims[~np.eye(n, dtype=bool)]
    np.fill_diagonal(sims, -np.inf)
    nn = np.sort(sims, axis=1)[:, ::-1]
    return {
        "n": n,
        "pair_cos_mean": float(off.mean()),
        "pair_cos_p95": float(np.percentile(off, 95)),
        "nn1_cos_mean": float(nn[:, 0].mean()),
        "nn10_cos_mean": float(nn[:, 9].mean()),
    }


# --- loading ----------------------------------------------------------------------------------

META_TABLE = "bench_search_dataset"


def stored_meta() -> dict | None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE IF NOT EXISTS {META_TABLE} (id int PRIMARY KEY, meta jsonb)")
        cursor.execute(f"SELECT meta FROM {META_TABLE} WHERE id = 1")
        row = cursor.fetchone()
    if not row:
        return None
    import json

    return row[0] if isinstance(row[0], dict) else json.loads(row[0])


def save_meta(meta: dict) -> None:
    import json

    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {META_TABLE} VALUES (1, %s) "
            "ON CONFLICT (id) DO UPDATE SET meta = EXCLUDED.meta",
            [json.dumps(meta)],
        )


def reset_tables() -> None:
    from django.contrib.auth.models import Group
    from django.db import connection

    from accounts.models import User

    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {META_TABLE}")
        cursor.execute(
            "TRUNCATE ingestion_chunk, ingestion_documentversion, ingestion_document, "
            "ingestion_collection_readers, ingestion_collection RESTART IDENTITY CASCADE"
        )
    User.objects.filter(username__startswith="bench-").delete()
    Group.objects.filter(name__startswith="bench-").delete()


def create_people(corpus: Corpus) -> None:
    """Collections, one role + user per measured collection, and one that reads all."""
    from django.contrib.auth.models import Group

    from accounts.models import User
    from ingestion.models import Collection

    collections = [
        Collection.objects.create(
            name=f"bench {s.name}", slug=f"bench-{s.name.replace('%', 'pct').replace('.', '-')}"
        )
        for s in corpus.collections
    ]
    grants = {label: [collections[i]] for i, (label, _) in enumerate(SELECTIVITIES)}
    grants["100%"] = collections
    for label, readable in grants.items():
        role = Group.objects.create(name=f"bench-role-{label}")
        role.readable_collections.set(readable)
        user = User.objects.create(username=f"bench-user-{label}", is_active=True)
        user.set_unusable_password()
        user.save()
        user.groups.set([role])


def load(corpus: Corpus, *, maintenance_work_mem: str) -> dict:
    import psycopg
    from django.db import transaction
    from django.utils import timezone
    from pgvector.psycopg import register_vector

    from ingestion.models import Collection, Document

    timings: dict[str, float] = {}
    started = time.perf_counter()
    reset_tables()
    with transaction.atomic():
        create_people(corpus)
        collection_ids = [c.pk for c in Collection.objects.order_by("pk")]
        plan = corpus.documents()
        now = timezone.now()
        documents = Document.objects.bulk_create(
            [
                Document(
                    collection_id=collection_ids[ci],
                    title=f"Synthetic document {n + 1}",
                    original_name=f"synthetic-{n + 1}.txt",
                    kind="text",
                    state=Document.State.INDEXED,
                    version=1,
                    indexed_version=1,
                    indexed_at=now,
                    chunk_count=size,
                    progress_done=size,
                    progress_total=size,
                )
                for n, (ci, size, _) in enumerate(plan)
            ],
            batch_size=1000,
        )
    timings["rows_setup_s"] = time.perf_counter() - started

    rng = np.random.default_rng([corpus.seed, 4])
    vectors = np.empty((corpus.rows, DIM), dtype=np.float32)
    row_collection = np.empty(corpus.rows, dtype=np.int32)
    generate_s = 0.0
    t0 = time.perf_counter()
    with psycopg.connect(psycopg_dsn(), autocommit=True) as conn:
        register_vector(conn)
        conn.execute("DROP INDEX IF EXISTS chunk_embedding_hnsw")
        # Per-collection indexes of an earlier run (ingestion/search_indexes.py) would be
        # maintained row by row during the COPY; they are rebuilt after the load.
        for (name,) in conn.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'ingestion_chunk'"
            " AND indexname LIKE 'chunk_hnsw_c%'"
        ).fetchall():
            conn.execute(f'DROP INDEX IF EXISTS "{name}"')
        position = 0
        with (
            conn.cursor() as cursor,
            cursor.copy(
                "COPY ingestion_chunk (document_id, collection_id, version, ordinal, text, "
                "heading, "
                "page, token_count, embedding) FROM STDIN WITH (FORMAT BINARY)"
            ) as copy,
        ):
            copy.set_types(
                [
                    "bigint",
                    "bigint",
                    "integer",
                    "integer",
                    "text",
                    "text",
                    "integer",
                    "integer",
                    "vector",
                ]
            )
            for document, (ci, size, own) in zip(documents, plan, strict=True):
                g0 = time.perf_counter()
                clusters, points = corpus.document_points(ci, size, own, rng)
                generate_s += time.perf_counter() - g0
                collection_id = collection_ids[ci]
                for ordinal in range(size):
                    cluster = int(clusters[ordinal])
                    copy.write_row(
                        (
                            document.pk,
                            collection_id,
                            1,
                            ordinal,
                            f"Synthetic passage {ordinal} of document {document.pk} on topic "
                            f"t{cluster} in area a{corpus.group_of[cluster]}.",
                            f"Section {ordinal // 20 + 1}",
                            None,
                            24,
                            points[ordinal],
                        )
                    )
                vectors[position : position + size] = points
                row_collection[position : position + size] = ci
                position += size
        timings["generate_s"] = generate_s
        timings["copy_s"] = time.perf_counter() - t0 - generate_s
        count, low, high = conn.execute(
            "SELECT count(*), min(id), max(id) FROM ingestion_chunk"
        ).fetchone()
        if (count, low, high) != (corpus.rows, 1, corpus.rows):
            raise RuntimeError(f"unexpected chunk ids after COPY: {count=} {low=} {high=}")
        log(
            f"copied {count} rows ({timings['copy_s']:.0f}s, generation {generate_s:.0f}s); "
            "building HNSW"
        )
        t0 = time.perf_counter()
        conn.execute(f"SET maintenance_work_mem = '{maintenance_work_mem}'")
        # The same index as migration 0003 (pgvector.django HnswIndex).
        conn.execute(
            "CREATE INDEX chunk_embedding_hnsw ON ingestion_chunk USING hnsw "
            "(embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)"
        )
        timings["hnsw_build_s"] = time.perf_counter() - t0
        log(f"HNSW built in {timings['hnsw_build_s']:.0f}s; VACUUM ANALYZE")
        t0 = time.perf_counter()
        conn.execute("VACUUM (ANALYZE) ingestion_chunk")
        conn.execute("ANALYZE ingestion_document")
        timings["vacuum_analyze_s"] = time.perf_counter() - t0
        sizes = conn.execute(
            "SELECT pg_relation_size('ingestion_chunk'), "
            "pg_total_relation_size('ingestion_chunk'), "
            "pg_relation_size('chunk_embedding_hnsw')"
        ).fetchone()
    timings["total_s"] = time.perf_counter() - started
    meta = {
        "rows": corpus.rows,
        "seed": corpus.seed,
        "generator": GENERATOR,
        "documents": len(plan),
        "load": timings,
        "maintenance_work_mem": maintenance_work_mem,
        "bytes": {"heap": sizes[0], "total": sizes[1], "hnsw": sizes[2]},
    }
    save_meta(meta)
    return {"meta": meta, "vectors": vectors, "row_collection": row_collection}


# --- measuring --------------------------------------------------------------------------------


def exact_top(user, q, k: int) -> list[tuple[int, float]]:
    """The baseline: exact filtered search. The same access and freshness filter
    (`searchable_chunks`); `distance + 0` cannot use the HNSW index, and index scans are off as
    well, so PostgreSQL computes every distance in the readable subset."""
    from django.db import connection, transaction
    from django.db.models import ExpressionWrapper, FloatField, Value
    from pgvector.django import CosineDistance

    from ingestion.selectors import searchable_chunks

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_indexscan = off")
        distance = ExpressionWrapper(
            CosineDistance("embedding", q) + Value(0.0), output_field=FloatField()
        )
        return list(
            searchable_chunks(user=user)
            .annotate(distance=distance)
            .order_by("distance", "pk")
            .values_list("pk", "distance")[:k]
        )


def production(user, q) -> list[int]:
    from ingestion.selectors import chunk_search

    return [hit.chunk_id for hit in chunk_search(user=user, query="benchmark", k=K, vector=q)]


def recall(found, truth) -> float:
    return len(set(found) & set(truth)) / len(truth) if truth else 1.0


def search_plan(user):
    """chunk_search's plan for `user` (exact / own index / shared index per collection)."""
    from ingestion.rls import reading_as
    from ingestion.selectors import _collection_sizes, plan_search

    with reading_as(user=user):
        sizes, table_rows = _collection_sizes(user=user, collection_ids=None)
    return plan_search(sizes, table_rows=table_rows)


def explain_search(user, q) -> str:
    """EXPLAIN of the search statement chunk_search sends, under the settings it sets: both
    captured from a real call, so the plan is the one the code gets."""
    from django.db import connection, transaction

    statements: list[tuple[str, object]] = []

    def capture(execute, sql, params, many, context):
        statements.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(capture):
        production(user, q)
    with transaction.atomic(), connection.cursor() as cursor:
        for sql, params in statements:
            if "set_config(" in sql:
                cursor.execute(sql, params)
        sql, params = next((sql, p) for sql, p in statements if " live (id, title)" in sql)
        cursor.execute("EXPLAIN " + sql, params)
        return "\n".join(row[0] for row in cursor.fetchall())


def plan_summary(plan: str) -> str:
    own = len(set(re.findall(r"chunk_hnsw_c\d+", plan)))
    parts = []
    if own:
        parts.append(f"own index x{own}")
    if "chunk_embedding_hnsw" in plan:
        parts.append("shared hnsw")
    if "Seq Scan on ingestion_chunk" in plan:
        parts.append("table scan")
    elif re.search(r"Bitmap Heap Scan on ingestion_chunk|Index Scan using \S+collection", plan):
        parts.append("collection index + sort")
    return " + ".join(parts) or "?"


CLOCK = Clock()


def timed(fn, *args, **kwargs):
    """(result, (wall, cpu, cpu-wait) seconds) - see common.Clock."""
    return CLOCK.call(fn, *args, **kwargs)


def truth_pass(user, queries, *, warmup: int) -> dict:
    for q in queries[:warmup]:
        exact_top(user, q, K)
    truth, times, top1, top10 = [], [], [], []
    for q in queries:
        rows, t = timed(exact_top, user, q, K)
        times.append(t)
        truth.append([pk for pk, _ in rows])
        top1.append(1 - rows[0][1])  # cosine similarity = 1 - distance
        top10.append(1 - rows[-1][1])
    return {
        "truth": truth,
        "baseline": latency_summary(times),
        "query_top1_cos_mean": float(np.mean(top1)),
        "query_top10_cos_mean": float(np.mean(top10)),
    }


def search_pass(user, queries, truth, kinds, *, warmup: int) -> dict:
    """chunk_search against the baseline's top 10."""
    plan = search_plan(user)
    for q in queries[:warmup]:
        production(user, q)
    times, recalls, worst = [], [], []
    for n, (q, ids) in enumerate(zip(queries, truth, strict=False)):
        found, t = timed(production, user, q)
        times.append(t)
        recalls.append(recall(found, ids))
        if recalls[-1] < 0.5:  # a query the index failed: what came back instead
            worst.append({"query": n, "recall": recalls[-1], "found": len(found)})
    return {
        "loadavg_1m": os.getloadavg()[0],
        "readable_rows": plan.rows,
        "branch": plan.label,
        "plan": plan_summary(explain_search(user, queries[0])),
        "production": {
            **latency_summary(times),
            "recall": float(np.mean(recalls)),
            "recall_min": float(np.min(recalls)),
            "recall_by_query_kind": by_kind(recalls, kinds),
            "recall_below_half": worst,
        },
    }


def by_kind(values, kinds) -> dict:
    pairs = list(zip(values, kinds, strict=False))
    return {
        kind: float(np.mean([v for v, k in pairs if k == kind]))
        for kind in sorted({k for _, k in pairs})
    }


def sweep_config(user, queries, truth, kinds, *, ef: int, max_scan: int, warmup: int) -> dict:
    """chunk_search with the given HNSW settings (they matter only where the plan uses an index)."""
    from django.test import override_settings

    with override_settings(SEARCH_EF_SEARCH=ef, SEARCH_MAX_SCAN_TUPLES=max_scan):
        for q in queries[:warmup]:
            production(user, q)
        times, recalls = [], []
        for q, ids in zip(queries, truth, strict=False):
            found, t = timed(production, user, q)
            times.append(t)
            recalls.append(recall(found, ids))
    return {
        "ef_search": ef,
        "max_scan_tuples": max_scan,
        **latency_summary(times),
        "recall": float(np.mean(recalls)),
        "recall_by_query_kind": by_kind(recalls, kinds),
    }


def breakdown_pass(user, queries, *, warmup: int) -> dict:
    """Where chunk_search's time goes: its two statements timed by wrapping their functions
    (mean ms per call; "rest" is the plan, the fusion and the Python around them)."""
    from ingestion import selectors

    parts = {"_collection_sizes": [], "_search_rows": []}
    originals = {name: getattr(selectors, name) for name in parts}

    def wrap(name):
        def timed_part(*args, **kwargs):
            result, sample = timed(originals[name], *args, **kwargs)
            parts[name].append(sample)
            return result

        return timed_part

    for q in queries[:warmup]:
        production(user, q)
    totals = []
    for name in parts:
        setattr(selectors, name, wrap(name))
    try:
        for q in queries:
            totals.append(timed(production, user, q)[1])
    finally:
        for name, fn in originals.items():
            setattr(selectors, name, fn)

    def mean(samples, i):
        return 1000 * sum(x[i] for x in samples) / len(samples)

    out = {
        name: {"wall_ms": mean(samples, 0), "cpu_ms": mean(samples, 1)}
        for name, samples in parts.items()
    }
    total = {"wall_ms": mean(totals, 0), "cpu_ms": mean(totals, 1)}
    out["rest"] = {
        key: total[key] - sum(out[name][key] for name in parts) for key in ("wall_ms", "cpu_ms")
    }
    out["total"] = total
    return out


# Tables the access subquery reads. Each holds a handful of rows, fewer than autovacuum's
# analyze threshold (50 changed rows), so on a real deployment they may never be analysed.
ACCESS_TABLES = [
    "auth_group",
    "accounts_user",
    "accounts_user_groups",
    "ingestion_collection",
    "ingestion_collection_readers",
]


def clear_access_table_statistics() -> None:
    """Put the access tables back to "never analysed" (PostgreSQL 18's pg_clear_*_stats)."""
    from django.db import connection

    with connection.cursor() as cursor:
        for name in ACCESS_TABLES:
            cursor.execute("SELECT pg_clear_relation_stats('public', %s)", [name])
            cursor.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass "
                "AND attnum > 0 AND NOT attisdropped",
                [name],
            )
            for (column,) in cursor.fetchall():
                cursor.execute(
                    "SELECT pg_clear_attribute_stats('public', %s, %s, false)", [name, column]
                )


def analyze_all() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def unanalysed_pass(users: dict, query_sets: dict, *, n: int, warmup: int) -> dict:
    """chunk_search while the access tables have no planner statistics; ANALYZEs everything
    afterwards."""
    out: dict = {}
    clear_access_table_statistics()
    try:
        for label, user in users.items():
            queries = query_sets[label][0][:n]
            for q in queries[:warmup]:
                production(user, q)
            times = [timed(production, user, q)[1] for q in queries]
            out[label] = {
                **latency_summary(times),
                "plan": plan_summary(explain_search(user, queries[0])),
            }
    finally:
        analyze_all()
    return out


def check_baseline(data: dict, label: str, queries, truth, n: int = 20) -> float:
    """Agreement of the SQL baseline with a brute-force numpy search over the generated
    vectors (only when the data was generated in this run)."""
    vectors, row_collection = data["vectors"], data["row_collection"]
    if label == "100%":
        ids = np.arange(len(vectors))
    else:
        ids = np.flatnonzero(row_collection == [lbl for lbl, _ in SELECTIVITIES].index(label))
    agreement = []
    for q, expected in zip(queries[:n], truth[:n], strict=False):
        top = ids[np.argsort(-(vectors[ids] @ q))[:K]] + 1  # chunk id = row position + 1
        agreement.append(recall(top.tolist(), expected))
    return float(np.mean(agreement))


# --- main -------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--queries", type=int, help="per role (default 200; 100 above 300k rows)")
    parser.add_argument(
        "--parts-queries", type=int, help="per role for timing the parts (default 100; 30 >300k)"
    )
    parser.add_argument("--sweep-queries", type=int, help="per sweep point (default: --queries)")
    parser.add_argument("--keep", action="store_true", help="reuse the loaded data if it matches")
    parser.add_argument(
        "--rows-per-document",
        type=int,
        default=GENERATOR["rows_per_document"],
        help="chunks per document: 1000 (few large documents, the default) or 2 (many small)",
    )
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--ef-search", default="40,100,200,400", help="sweep values")
    parser.add_argument("--max-scan-tuples", default="20000,50000,100000", help="sweep values")
    parser.add_argument("--no-sweep", action="store_true")
    parser.add_argument("--maintenance-work-mem", help="HNSW build (default 2GB; 4GB above 300k)")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument(
        "--web-role",
        action="store_true",
        help="measure chunk_search as the web process's database role (row-level security); "
        "the baseline stays the owner's",
    )
    args = parser.parse_args()
    efs = [int(x) for x in args.ef_search.split(",") if x]
    if not all(1 <= ef <= 1000 for ef in efs):
        parser.error("--ef-search values must be 1..1000 (pgvector's range for hnsw.ef_search)")
    scans = [int(x) for x in args.max_scan_tuples.split(",") if x]
    big = args.rows > 300_000
    n_queries = args.queries or (100 if big else 200)
    n_parts = min(args.parts_queries or (30 if big else 100), n_queries)
    n_sweep = min(args.sweep_queries or n_queries, n_queries)
    n_unanalysed = min(20 if big else 50, n_queries)
    mwm = args.maintenance_work_mem or ("4GB" if big else "2GB")
    started = time.perf_counter()
    load_start = os.getloadavg()[0]

    setup_django()
    from django.conf import settings

    from accounts.models import User

    GENERATOR["rows_per_document"] = max(1, args.rows_per_document)
    corpus = Corpus(args.rows, args.seed)
    meta = stored_meta()
    data = None
    matches = (
        meta is not None
        and meta.get("rows") == args.rows
        and meta.get("seed") == args.seed
        and meta.get("generator") == GENERATOR
    )
    if args.keep and matches:
        log(f"reusing the loaded dataset ({args.rows} rows)")
    else:
        if args.keep:
            log("--keep: no matching dataset in the bench database; loading")
        log(f"loading {args.rows} synthetic rows (seed {args.seed})")
        data = load(corpus, maintenance_work_mem=mwm)
        meta = data["meta"]
        log(f"loaded in {meta['load']['total_s']:.0f}s")
    from ingestion.search_indexes import search_indexes_sync

    t0 = time.perf_counter()
    synced = search_indexes_sync()
    own_index_s = time.perf_counter() - t0
    log(
        f"per-collection indexes: built {synced.created or 'none'}, kept {synced.kept or 'none'} "
        f"({own_index_s:.0f}s)"
    )
    analyze_all()
    load_s = time.perf_counter() - started

    from django.db import connection

    global CLOCK
    connection.ensure_connection()
    backend_pid = connection.connection.info.backend_pid
    CLOCK = Clock(backend_pid)
    defaults = {
        "SEARCH_EXACT_MAX_ROWS": settings.SEARCH_EXACT_MAX_ROWS,
        "SEARCH_EF_SEARCH": settings.SEARCH_EF_SEARCH,
        "SEARCH_MAX_SCAN_TUPLES": settings.SEARCH_MAX_SCAN_TUPLES,
        "SEARCH_CANDIDATES": settings.SEARCH_CANDIDATES,
        "SEARCH_OWN_INDEX_MIN_ROWS": settings.SEARCH_OWN_INDEX_MIN_ROWS,
        "SEARCH_SHARED_INDEX_FRACTION": settings.SEARCH_SHARED_INDEX_FRACTION,
        "SEARCH_MAX_OWN_INDEX_SCANS": settings.SEARCH_MAX_OWN_INDEX_SCANS,
    }
    labels = [label for label, _ in SELECTIVITIES] + ["100%"]
    users = {label: User.objects.get(username=f"bench-user-{label}") for label in labels}
    query_sets = {
        label: corpus.queries(index if label != "100%" else None, n_queries)
        for index, label in enumerate(labels)
    }

    results: dict[str, dict] = {}
    for label in labels:
        queries, kinds = query_sets[label]
        t0 = time.perf_counter()
        r = truth_pass(users[label], queries, warmup=args.warmup)
        r["query_kinds"] = kinds
        if data is not None:
            r["baseline_vs_numpy"] = check_baseline(data, label, queries, r["truth"])
        results[label] = r
        log(
            f"{label:>5}: baseline p95 {r['baseline']['p95_ms']:.1f} ms "
            f"({time.perf_counter() - t0:.0f}s)"
        )
    if args.web_role:
        # From here on as the web role: row-level security shows it only the rows of the
        # collections chunk_search puts in scope (ingestion/rls.py).
        connection.close()
        connection.settings_dict["USER"] = settings.DATABASE_APP_ROLE
        connection.settings_dict["PASSWORD"] = settings.DATABASE_APP_PASSWORD
        connection.ensure_connection()
        CLOCK = Clock(connection.connection.info.backend_pid)
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_user")
            log(f"measuring as {cursor.fetchone()[0]}")
    for label in labels:
        queries, kinds = query_sets[label]
        r = results[label]
        t0 = time.perf_counter()
        r["search"] = search_pass(users[label], queries, r["truth"], kinds, warmup=args.warmup)
        p = r["search"]["production"]
        log(
            f"{label:>5}: {r['search']['branch']} ({r['search']['plan']}), chunk_search "
            f"recall {p['recall']:.3f} p95 {p['p95_ms']:.1f} ms ({time.perf_counter() - t0:.0f}s)"
        )
    for label in labels:
        results[label]["breakdown"] = breakdown_pass(
            users[label], query_sets[label][0][:n_parts], warmup=min(args.warmup, 3)
        )
    log("timed chunk_search's parts")
    if not args.no_sweep:
        for label in labels:
            r, user = results[label], users[label]
            queries, kinds = query_sets[label]
            if r["search"]["readable_rows"] <= settings.SEARCH_EXACT_MAX_ROWS:
                continue  # exact plan: the HNSW settings do not apply
            t0 = time.perf_counter()
            r["sweep"] = [
                sweep_config(
                    user,
                    queries[:n_sweep],
                    r["truth"],
                    kinds,
                    ef=ef,
                    max_scan=max_scan,
                    warmup=min(args.warmup, 5),
                )
                for ef in efs
                for max_scan in scans
            ]
            log(
                f"{label:>5}: sweep of {len(efs) * len(scans)} settings "
                f"({time.perf_counter() - t0:.0f}s)"
            )
    unanalysed = {}
    if not args.web_role:  # clearing statistics needs the owner
        unanalysed = unanalysed_pass(users, query_sets, n=n_unanalysed, warmup=min(args.warmup, 3))
        log("measured with the access tables unanalysed")
    stats = corpus.sample_statistics()
    total_s = time.perf_counter() - started

    report(
        args=args,
        results=results,
        labels=labels,
        defaults=defaults,
        counts=(n_queries, n_parts, n_sweep, n_unanalysed),
        unanalysed=unanalysed,
        stats=stats,
        times=(load_s, total_s, load_start, os.getloadavg()[0]),
    )
    for r in results.values():
        r.pop("truth", None)
    path = write_json(
        f"search-{args.rows}.json"
        if args.rows_per_document == 1000
        else f"search-{args.rows}-per-doc-{args.rows_per_document}.json",
        {
            "benchmark": "search",
            "rows": args.rows,
            "queries_per_role": n_queries,
            "parts_queries_per_role": n_parts,
            "sweep_queries": n_sweep,
            "k": K,
            "dataset": meta,
            "data_sample_statistics": stats,
            "settings": defaults,
            "machine": machine_info(),
            "postgres": postgres_info(),
            "results": results,
            "own_indexes": {"created": synced.created, "kept": synced.kept, "build_s": own_index_s},
            "access_tables_unanalysed": unanalysed,
            "time_s": {"load": load_s, "total": total_s},
            "loadavg_1m": {"start": load_start, "end": os.getloadavg()[0]},
            "web_role": args.web_role,
            "postgres_backend_pid_unchanged": connection.connection.info.backend_pid == backend_pid,
        },
    )
    print(f"JSON: {path.relative_to(path.parents[2])}")


def report(*, args, results, labels, defaults, counts, unanalysed, stats, times):
    n_queries, n_parts, n_sweep, n_unanalysed = counts
    min_recall, p95_target = targets_for(args.rows)
    nan = float("nan")

    def ok(recall_: float, p95: float) -> str:
        return "yes" if recall_ >= min_recall and p95 <= p95_target else "NO"

    print()
    print(
        f"Filtered top-{K} search, {args.rows:,} rows. Targets: recall@{K} >= {min_recall}, "
        f"chunk_search p95 <= {p95_target:g} ms (wall clock). Latencies in ms; 'cpu' columns: "
        "CPU time of this process + its PostgreSQL backend (an idle-machine estimate); "
        "'wait': mean time queued for a CPU behind other work."
    )
    print(f"Settings: {defaults}")
    headers = ["role", "rows", "plan", "postgres plan", "recall", "min", "p50", "p95", "p99"]
    headers += ["cpu p50", "cpu p95", "wait", "ok", "ok (cpu)"]
    print(f"\nchunk_search ({n_queries} queries per role)")
    rows = []
    for label in labels:
        r = results[label]["search"]
        p = r["production"]
        rows.append(
            [
                label,
                r["readable_rows"],
                r["branch"],
                r["plan"],
                p["recall"],
                p["recall_min"],
                p["p50_ms"],
                p["p95_ms"],
                p["p99_ms"],
                p["cpu_p50_ms"],
                p["cpu_p95_ms"],
                p["cpu_wait_mean_ms"],
                ok(p["recall"], p["p95_ms"]),
                ok(p["recall"], p["cpu_p95_ms"]),
            ]
        )
    print(table(headers, rows))
    print(
        f"\nWhere chunk_search's time goes ({n_parts} queries per role; mean "
        "ms per call, wall / cpu)"
    )
    parts = ["_collection_sizes", "_search_rows", "rest", "total"]
    rows = []
    for label in labels:
        b = results[label]["breakdown"]
        rows.append([label] + [f"{b[p]['wall_ms']:.1f} / {b[p]['cpu_ms']:.1f}" for p in parts])
    print(table(["role", "sizes (access)", "search statement", "rest", "total"], rows))
    print(f"\nBaseline: exact filtered search ({n_queries} queries per role)")
    rows = []
    for label in labels:
        r = results[label]
        b = r["baseline"]
        rows.append(
            [
                label,
                b["p50_ms"],
                b["p95_ms"],
                b["p99_ms"],
                b["cpu_p50_ms"],
                b["cpu_p95_ms"],
                r["query_top1_cos_mean"],
                r["query_top10_cos_mean"],
                r.get("baseline_vs_numpy", nan),
            ]
        )
    print(
        table(
            ["role", "p50", "p95", "p99", "cpu p50", "cpu p95", "top1 cos", "top10 cos", "=numpy"],
            rows,
        )
    )
    swept = [label for label in labels if results[label].get("sweep")]
    if swept:
        print(f"\nchunk_search by HNSW setting ({n_sweep} queries per role and setting)")
        rows = []
        for label in swept:
            for c in results[label]["sweep"]:
                kinds = c["recall_by_query_kind"]
                rows.append(
                    [
                        label,
                        c["ef_search"],
                        c["max_scan_tuples"],
                        c["recall"],
                        kinds.get("in", nan),
                        kinds.get("any", nan),
                        c["p50_ms"],
                        c["p95_ms"],
                        c["p99_ms"],
                        c["cpu_p95_ms"],
                    ]
                )
        headers = ["role", "ef_search", "max_scan", "recall", "in-topic", "any-topic"]
        print(table([*headers, "p50", "p95", "p99", "cpu p95"], rows))
    if unanalysed:
        print(f"\nchunk_search, access tables never analysed ({n_unanalysed} queries)")
        rows = [
            [label, m["plan"], m["p50_ms"], m["p95_ms"], m["p99_ms"], m["cpu_p95_ms"]]
            for label, m in unanalysed.items()
        ]
        print(table(["role", "postgres plan", "p50", "p95", "p99", "cpu p95"], rows))
    print(
        f"\nData: {stats['n']} random stored rows: mean pair cosine {stats['pair_cos_mean']:.3f} "
        f"(p95 {stats['pair_cos_p95']:.3f}), mean cosine to the nearest other row "
        f"{stats['nn1_cos_mean']:.3f} (10th nearest {stats['nn10_cos_mean']:.3f})."
    )
    print(
        f"Time: load {times[0]:.0f}s, total {times[1]:.0f}s. Load average (1 min) at start "
        f"{times[2]:.2f}, at end {times[3]:.2f} on {os.cpu_count()} CPUs."
    )


if __name__ == "__main__":
    main()
