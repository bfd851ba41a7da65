"""The one record of each question: the conversation's rows and the query-log entry.

Every question, by any path (the chat, the search API), leaves exactly one query-log entry. The
conversation's rows (the question, the answer, its citations, what it was built from) are
written in the same transaction as the entry when they can be; when they cannot (the
conversation was deleted while the answer was written, a value the database refuses), the entry
is written alone, with the reason, so that no failure of the user's own rows loses the record.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from accounts.models import User
from accounts.selectors import profile_key, user_readable_collection_ids
from assistant import router
from assistant.models import AnswerSource, Citation, Conversation, Message
from assistant.rendering import answer_html
from compliance.models import QueryLogEntry
from compliance.services import querylog_append
from ingestion.selectors import SearchHit

logger = logging.getLogger(__name__)

CONVERSATION_GONE = (
    "This conversation was deleted while the answer was being written, so the answer was not "
    "kept. Ask again in another conversation."
)
# Characters PostgreSQL cannot store in text (NUL) and UTF-16 halves without their pair (which
# UTF-8 cannot encode): shown as the replacement character rather than failing the record.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(text: str) -> str:
    """`text` with every character the database cannot hold replaced by U+FFFD."""
    return _UNSTORABLE.sub("\ufffd", text)


class ConversationGone(Exception):
    """The conversation an answer belongs to was deleted while the answer was written."""


class RecordIncomplete(Exception):
    """The conversation's rows could not be written; the query-log entry alone was (`entry`).

    `message` is what the user is told.
    """

    def __init__(self, message: str, entry: QueryLogEntry | None) -> None:
        super().__init__(message)
        self.message = message
        self.entry = entry


@dataclass
class AnswerRecord:
    """What the chat service found for one question, to be recorded once."""

    question: str
    standalone: str
    answer: str
    status: str
    outcome: str
    error: str
    route: str
    route_reason: str
    model: str
    adapter: str
    retrieved: list[SearchHit]
    used: list[SearchHit]
    # The collections the answer was built from beyond its passages: an adapter's profile.
    built_from: frozenset[int]
    quote: dict
    grounding: dict
    unsupported: list[tuple[int, int]]
    unsupported_count: int | None
    referenced: set[int]
    prompt_tokens: int
    completion_tokens: int
    cost: object
    first_token_ms: int | None
    client_id: str
    started: object
    started_clock: float
    # The yes/no check's confidence that the passages answer the question (chat_answer).
    answerable: float | None = None


@dataclass
class Asker:
    """Who asked, as read for this question (roles and readable collections at that moment)."""

    user: User
    roles: list[str]
    readable: list[int]
    profile_key: str
    conversation: Conversation | None


def record_answer(
    asker: Asker, record: AnswerRecord
) -> tuple[Conversation, Message, QueryLogEntry]:
    """Write the question's conversation rows and its query-log entry in one transaction.

    Raises :class:`RecordIncomplete` when only the entry could be written.
    """
    fields = _entry_fields(asker, record)
    try:
        with transaction.atomic():
            conversation = _conversation_for(asker, record)
            question, answer = _messages(conversation, record)
            entry = querylog_append(
                **fields,
                conversation_id=conversation.pk,
                question_message_id=question.pk,
                answer_message_id=answer.pk,
            )
        return conversation, answer, entry
    except ConversationGone:
        logger.info("conversation deleted while answering", extra={"user_id": asker.user.pk})
        reason, told = (
            "the conversation was deleted while the answer was written",
            CONVERSATION_GONE,
        )
    except Exception as exc:
        logger.exception("could not write a conversation's rows", extra={"user_id": asker.user.pk})
        reason = f"the conversation's rows could not be saved ({type(exc).__name__})"
        told = (
            "Your answer could not be kept in the conversation, so it is not shown. It has been "
            "logged; please ask again."
        )
    fields["error"] = " ".join(
        filter(None, [fields["error"], f"Not kept in the conversation: {reason}."])
    )
    with transaction.atomic():
        entry = querylog_append(
            **fields,
            conversation_id=asker.conversation.pk if asker.conversation is not None else None,
        )
    raise RecordIncomplete(told, entry)


def record_unprocessed(
    *,
    user_id: int,
    conversation_id: int | None,
    question: str,
    error: str,
    started,
    started_clock: float,
    outcome: str = QueryLogEntry.Outcome.ERROR,
) -> QueryLogEntry:
    """The entry of a question that was not processed: refused before anything was searched
    (too long, a conversation that is not the asker's, no chat capability any more), or failed
    before anything about its asker could be read. Nothing of the documents was read for it."""
    user = User.objects.filter(pk=user_id).first()
    with transaction.atomic():
        return querylog_append(
            user=user,
            username=user.get_username() if user is not None else "",
            conversation_id=conversation_id,
            question=storable(question),
            outcome=outcome,
            error=error,
            retrieved=[],
            latency_ms=_elapsed_ms(started_clock),
            started_at=started,
            finished_at=timezone.now(),
        )


def record_search(
    *, user, query: str, hits: list[SearchHit], started, started_clock: float
) -> QueryLogEntry:
    """The entry of one search through the API: the query, and exactly the passages returned."""
    readable = sorted(user_readable_collection_ids(user=user))
    with transaction.atomic():
        return querylog_append(
            user=user,
            username=user.get_username(),
            roles=sorted(user.groups.values_list("name", flat=True)),
            readable_collections=readable,
            profile_key=profile_key(readable),
            question=query,
            standalone_question=query,
            outcome=QueryLogEntry.Outcome.ANSWERED if hits else QueryLogEntry.Outcome.REFUSED,
            route=router.SEARCH_API,
            route_reason="Searched through the API (/api/search/); no model was asked.",
            retrieved=[_retrieved(h, used=True) for h in hits],
            latency_ms=_elapsed_ms(started_clock),
            started_at=started,
            finished_at=timezone.now(),
        )


# --- the parts ----------------------------------------------------------------------------------


def _elapsed_ms(started_clock: float) -> int:
    return int((time.monotonic() - started_clock) * 1000)


def _retrieved(hit: SearchHit, *, used: bool) -> dict:
    return {
        "chunk": hit.chunk_id,
        "document": hit.document_id,
        "version": hit.version,
        "collection": hit.collection_id,
        "score": round(hit.score, 6),
        "similarity": None if hit.similarity is None else round(hit.similarity, 4),
        "used": used,
    }


def _conversation_for(asker: Asker, record: AnswerRecord) -> Conversation:
    if asker.conversation is None:
        return Conversation.objects.create(user=asker.user, title=record.question[:80])
    # Locked until the answer commits: a delete in another tab waits for it, or came first.
    conversation = Conversation.objects.select_for_update().filter(pk=asker.conversation.pk).first()
    if conversation is None:
        raise ConversationGone
    Conversation.objects.filter(pk=conversation.pk).update(updated_at=timezone.now())
    return conversation


def _messages(conversation: Conversation, record: AnswerRecord) -> tuple[Message, Message]:
    question = Message.objects.create(
        conversation=conversation,
        role=Message.Role.USER,
        content=record.question,
        client_id=record.client_id[:64],
    )
    answer = Message.objects.create(
        conversation=conversation,
        role=Message.Role.ASSISTANT,
        content=record.answer,
        content_html=(
            answer_html(record.answer, unsupported=record.unsupported) if record.answer else ""
        ),
        status=record.status,
        client_id=record.client_id[:64],
        route=record.route if record.answer else "",
        route_reason=record.route_reason if record.answer else "",
        adapter=record.adapter,
        quote=record.quote,
        grounding=record.grounding,
    )
    Citation.objects.bulk_create(
        Citation(
            message=answer,
            number=n,
            document_id=hit.document_id,
            collection_id=hit.collection_id,
            chunk_id=hit.chunk_id,
            document_title=hit.document_title[:300],
            version=hit.version,
            heading=hit.heading[:500],
            page=hit.page,
            snippet=hit.text,
            score=hit.score,
            referenced=n in record.referenced,
        )
        for n, hit in enumerate(record.used, start=1)
    )
    # What the answer was built from, for showing it later only to people who may still read
    # all of it (assistant.selectors.thread_for_user).
    sources = {hit.collection_id for hit in record.used} | set(record.built_from)
    AnswerSource.objects.bulk_create(
        AnswerSource(message=answer, collection_id=c) for c in sorted(sources)
    )
    return question, answer


def _entry_fields(asker: Asker, record: AnswerRecord) -> dict:
    return {
        "user": asker.user,
        "username": asker.user.get_username(),
        "roles": asker.roles,
        "readable_collections": asker.readable,
        "profile_key": asker.profile_key,
        "question": record.question,
        "standalone_question": record.standalone,
        "answer": record.answer,
        "outcome": record.outcome,
        "error": record.error,
        "route": record.route,
        "route_reason": record.route_reason,
        "model": record.model,
        "adapter": record.adapter,
        "retrieved": [_retrieved(h, used=h in record.used) for h in record.retrieved],
        "prompt_tokens": record.prompt_tokens,
        "completion_tokens": record.completion_tokens,
        "cost_estimate": record.cost,
        "first_token_ms": record.first_token_ms,
        "unsupported_figures": record.unsupported_count,
        "grounding": _entry_grounding(record),
        "latency_ms": _elapsed_ms(record.started_clock),
        "started_at": record.started,
        "finished_at": timezone.now(),
    }


def _entry_grounding(record: AnswerRecord) -> dict:
    """The message's grounding, with what only the log keeps: the quote's ids and the yes/no
    check's confidence (the reason for a refusal, for the officer who reviews it)."""
    grounding = dict(record.grounding)
    if record.quote:
        grounding["quote"] = {k: record.quote[k] for k in ("chunk", "document", "text")}
    if record.answerable is not None:
        grounding["answerable"] = round(record.answerable, 4)
    return grounding


def citation_payload(message: Message) -> list[dict]:
    return [
        {
            "number": c.number,
            "title": c.document_title,
            "heading": c.heading,
            "page": c.page,
            "referenced": c.referenced,
            "url": citation_url(c),
        }
        for c in message.citations.all()
    ]


def citation_url(citation: Citation) -> str | None:
    if citation.document_id is None:
        return None
    anchor = f"#chunk-{citation.chunk_id}"
    return f"/documents/{citation.document_id}/{anchor}"
