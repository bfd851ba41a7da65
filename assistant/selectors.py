"""Reading stored answers: shown only while their reader may still read what they came from.

An answer is derived from documents: its text, its quote, its citations' titles and headings
repeat them. When a role is revoked, the documents' links already 404 (the document viewer asks
the access module); the answers built from them must not keep showing their facts either. The
rule is decided in SQL, per message, against the reader's readable collections now
(`accounts.selectors.readable_collection_ids_query`, the one place access is computed).
"""

from __future__ import annotations

from django.db.models import Exists, OuterRef, Q, QuerySet

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


def answer_for_user(*, user, message_id: int | None = None, client_id: str = "") -> Message | None:
    """One of `user`'s own answers, annotated `withheld` by the same rule as `thread_for_user`
    (the live page fetches answers one by one: previews, "why this answer", a reconnect)."""
    if message_id is None and not client_id:
        return None
    messages = Message.objects.filter(conversation__user=user, role=Message.Role.ASSISTANT)
    if message_id is not None:
        messages = messages.filter(pk=message_id)
    else:
        messages = messages.filter(client_id=client_id[:64]).order_by("-id")
    first = messages.values_list("conversation_id", "pk").first()
    if first is None:
        return None
    conversation = Conversation.objects.get(pk=first[0])
    return thread_for_user(conversation=conversation, user=user).filter(pk=first[1]).first()


def conversations_for_user(*, user, query: str = "") -> QuerySet[Conversation]:
    """`user`'s own conversations, newest first; with `query`, those whose title or any message
    contains it (case-insensitive, in SQL: the list may be long and is paginated)."""
    conversations = Conversation.objects.filter(user=user)
    query = " ".join(query.split())[:200]
    if query:
        matching = Message.objects.filter(conversation=OuterRef("pk"), content__icontains=query)
        conversations = conversations.filter(Q(title__icontains=query) | Exists(matching))
    return conversations
