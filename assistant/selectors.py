"""Reading stored answers: shown only while their reader may still read what they came from.

An answer is derived from documents: its text, its quote, its citations' titles and headings
repeat them. When a role is revoked, the documents' links already 404 (the document viewer asks
the access module); the answers built from them must not keep showing their facts either. The
rule is decided in SQL, per message, against the reader's readable collections now
(`accounts.selectors.readable_collection_ids_query`, the one place access is computed).
"""

from __future__ import annotations

from django.db.models import Exists, OuterRef, QuerySet

from accounts.selectors import readable_collection_ids_query
from assistant.models import AnswerSource, Citation, Conversation, Message


def thread_for_user(*, conversation: Conversation, user) -> QuerySet[Message]:
    """The conversation's messages, each annotated `withheld`: an answer built from a
    collection `user` may not read now (its passages' collections, or the adapter's profile).

    Citations are checked as well as the recorded sources, so an answer whose sources were
    somehow not recorded is still withheld when one of its citations is unreadable.
    """
    readable = readable_collection_ids_query(user=user)
    unreadable_source = AnswerSource.objects.filter(message=OuterRef("pk")).exclude(
        collection_id__in=readable
    )
    unreadable_citation = Citation.objects.filter(message=OuterRef("pk")).exclude(
        collection_id__in=readable
    )
    return (
        conversation.messages.annotate(
            withheld=Exists(unreadable_source) | Exists(unreadable_citation)
        )
        .prefetch_related("citations")
        .select_related("feedback")
    )
