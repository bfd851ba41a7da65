"""What the answer stands on: the supporting quote, the short excerpts the model reads, and the
claim check of the finished answer.

    readable passages ─▶ quote (exact sentences, shown before the first token)
                      ─▶ excerpts around the best sentences (a short prompt: prefill is most of
                         the wait on a CPU) ─▶ model ─▶ figures checked against those excerpts

Pure functions over search hits; the chat service calls them. The text matching itself is in
:mod:`assistant.grounding`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from assistant import grounding
from assistant.prompts import Source
from ingestion.selectors import SearchHit


@dataclass(frozen=True)
class Evidence:
    hits: list[SearchHit]  # in prompt order: the quote's passage first
    sources: list[Source]  # the excerpts the model is given, numbered 1..n like the hits
    quote: grounding.Quote | None  # source_index refers to `hits`

    def quote_payload(self) -> dict:
        """The quote as the socket and the stored message carry it ({} for none)."""
        if self.quote is None:
            return {}
        hit = self.hits[self.quote.source_index]
        return {
            "citation": self.quote.source_index + 1,
            "text": self.quote.text,
            "title": hit.document_title,
            "heading": hit.heading,
            "page": hit.page,
            "document": hit.document_id,
            "chunk": hit.chunk_id,
            # The passage on the document page (the same anchor as the citations').
            "url": f"/documents/{hit.document_id}/#chunk-{hit.chunk_id}",
        }


def evidence_gather(
    *,
    question: str,
    candidates: Sequence[SearchHit],
    max_sources: int,
    excerpt_chars: int,
    similarity: Callable[[list[str]], Sequence[float]] | None = None,
) -> Evidence:
    """The quote among the readable candidates, and an excerpt of each of the best passages.

    `similarity` (texts -> cosine similarity to the question, from the embedding model) lets
    the quote be chosen by meaning too, not only by the words it shares with the question.
    The quote's passage goes first, then the others by their own best sentence (search order
    among equals). Each passage is cut to whole sentences around its own best sentence for this
    question (or its beginning when none shares a word with it), so that the model reads a few
    hundred tokens instead of four whole chunks.
    """
    candidates = list(candidates)
    if not candidates:
        return Evidence(hits=[], sources=[], quote=None)
    scores = [0.0] * len(candidates)
    quote = grounding.quote_select(
        question=question,
        passages=[h.text for h in candidates],
        similarity=similarity,
        passage_scores=scores,
    )
    # The passages whose best sentence answers best, search order among equals: a fact in the
    # third search hit reaches the prompt when its sentence matches better than the second's.
    order = sorted(range(len(candidates)), key=lambda i: -scores[i])
    if quote is not None:
        order.remove(quote.source_index)
        order.insert(0, quote.source_index)
    hits = [candidates[i] for i in order[:max_sources]]
    sources = []
    for number, hit in enumerate(hits, start=1):
        if quote is not None and number == 1:
            start, end = quote.start, quote.end
        else:
            own = grounding.quote_select(question=question, passages=[hit.text])
            start, end = (own.start, own.end) if own is not None else (0, 0)
        text = grounding.excerpt_around(hit.text, start, end, max_chars=excerpt_chars)
        sources.append(Source(number, hit.document_title, hit.heading, hit.page, text))
    if quote is not None:
        quote = grounding.Quote(
            source_index=0, text=quote.text, start=quote.start, end=quote.end, score=quote.score
        )
    return Evidence(hits=hits, sources=sources, quote=quote)


# The system prompt asks for this sentence when the sources do not say (assistant/prompts.py).
_NOT_FOUND = re.compile(r"\b(?:could not|couldn't|cannot|can't) find\b", re.IGNORECASE)


def says_not_found(answer: str) -> bool:
    """The model said the sources do not answer: the quote shown meanwhile is withdrawn."""
    return bool(_NOT_FOUND.search(answer[:300]))


@dataclass
class ClaimCheck:
    figures: list[grounding.Figure] = field(default_factory=list)
    unsupported: list[grounding.Figure] = field(default_factory=list)
    # Sources (1-based) that hold a figure of the answer: marked as referenced under it.
    supporting: set[int] = field(default_factory=set)

    def payload(self, *, looped: bool) -> dict:
        return {
            "checked": len(self.figures),
            "unsupported": [f.text for f in self.unsupported],
            "looped": looped,
        }


def claim_check(*, answer: str, sources: Sequence[Source], question: str) -> ClaimCheck:
    """Every figure of ``answer`` looked up in the excerpts the model was given."""
    # What the model read of each source: its title and heading too (names come from them).
    texts = [f"{s.title}\n{s.heading}\n{s.text}" for s in sources]
    figures = grounding.figures_in(answer)
    unsupported = grounding.figures_unsupported(answer=answer, sources=texts, question=question)
    missing = {(f.start, f.end) for f in unsupported}
    spans = {(f.start, f.end) for f in figures} - missing
    supporting = set()
    for source, text in zip(sources, texts, strict=True):
        # One look at each source: does it hold any of the answer's supported figures?
        absent = {
            (f.start, f.end) for f in grounding.figures_unsupported(answer=answer, sources=[text])
        }
        if spans - absent:
            supporting.add(source.number)
    return ClaimCheck(figures=figures, unsupported=unsupported, supporting=supporting)
