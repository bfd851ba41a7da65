"""A stored answer as the page shows it: citations with their previews, the quote, and "why this
answer".

Everything here is read from the answer's own stored rows (its text, quote, grounding, and the
citations' snippets kept by value); callers pass only answers their reader may still read
(`assistant.selectors.thread_for_user` / `answer_for_user`, `withheld` false), so nothing here
needs to ask the access module again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from assistant import grounding
from assistant.models import Citation, Message
from assistant.recording import citation_url


@dataclass
class CitationView:
    citation: Citation
    url: str | None
    # The stored snippet split around the sentence the answer used: (before, used, after).
    # `used` is empty when the snippet was a source the answer did not quote.
    before: str
    used: str
    after: str
    figures: list[str] = field(default_factory=list)  # the answer's figures found in it


@dataclass
class FigureCheck:
    text: str
    supported_by: list[int]  # citation numbers whose stored passage contains it


def answer_item(message: Message) -> dict:
    """What the answer template needs for one readable answer."""
    quote = message.quote or {}
    checks = figure_checks(message)
    citations = [_citation_view(c, quote, checks) for c in message.citations.all()]
    return {
        "message": message,
        "citations": citations,
        "feedback": getattr(message, "feedback", None),
        "quote": _stored_quote(quote, citations),
        "checks": checks,
        "unsupported": (message.grounding or {}).get("unsupported", []),
    }


def _stored_quote(quote: dict, citations: list[CitationView]) -> dict | None:
    """The answer's supporting quote, linked through its citation (which knows whether the
    document is still there)."""
    if not quote.get("text"):
        return None
    url = next((v.url for v in citations if v.citation.number == quote.get("citation")), None)
    return {**quote, "url": url}


def _citation_view(citation: Citation, quote: dict, checks: list[FigureCheck]) -> CitationView:
    snippet = citation.snippet
    text = quote.get("text", "") if quote.get("citation") == citation.number else ""
    at = snippet.find(text) if text else -1
    if at < 0:
        before, used, after = snippet, "", ""
    else:
        before, used, after = snippet[:at], text, snippet[at + len(text) :]
    figures = [c.text for c in checks if citation.number in c.supported_by]
    return CitationView(citation, citation_url(citation), before, used, after, figures)


def figure_checks(message: Message) -> list[FigureCheck]:
    """Each figure of the answer and the cited passages that contain it, looked up again in the
    stored snippets with the claim check's own rules (assistant.grounding); the figures the
    check found in no source are listed with none."""
    if not message.grounding or not message.content:
        return []
    citations = list(message.citations.all())
    found = {}
    for c in citations:
        absent = {
            (f.start, f.end)
            for f in grounding.figures_unsupported(answer=message.content, sources=[c.snippet])
        }
        for f in grounding.figures_in(message.content):
            if (f.start, f.end) not in absent:
                found.setdefault((f.start, f.end), []).append(c.number)
    return [
        FigureCheck(f.text, found.get((f.start, f.end), []))
        for f in grounding.figures_in(message.content)
    ]
