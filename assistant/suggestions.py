"""Suggested questions for an empty chat, drawn from the documents the asker may read now.

A new employee sees what Counsel can answer for them. The titles and headings come through the
search chokepoint's own readable filter (ingestion.selectors, inside `reading_as`): a document of
a collection the user cannot read, or an outdated one, never suggests anything.
"""

from __future__ import annotations

from ingestion.rls import reading_as
from ingestion.selectors import documents_for_user, searchable_chunks

MAX_SUGGESTIONS = 4


def suggested_questions(*, user, limit: int = MAX_SUGGESTIONS) -> list[str]:
    """Up to `limit` questions, one per recently indexed readable document: about its first
    heading that differs from its title, else about the document itself."""
    with reading_as(user=user):
        documents = list(
            documents_for_user(user=user)
            .order_by("-indexed_at", "-pk")
            .values_list("pk", "title")[:limit]
        )
        headings: dict[int, str] = {}
        rows = (
            searchable_chunks(user=user)
            .filter(document_id__in=[pk for pk, _ in documents])
            .exclude(heading="")
            .order_by("document_id", "ordinal")
            .values_list("document_id", "heading")
        )
        for document_id, heading in rows:
            headings.setdefault(document_id, heading)
    return [_question(title, headings.get(pk, "")) for pk, title in documents]


def _question(title: str, heading: str) -> str:
    # A chunk's heading may be a path ("Travel policy > Hotels"): its last part is the topic.
    topic = heading.split(">")[-1].strip().strip("#").strip()
    if topic and topic.casefold() != title.casefold():
        return f"What does the {title} say about {topic}?"
    return f"What does the {title} cover?"
