"""The chat service: one question in, a stream of events out, one query-log entry written.

    question ─▶ user and roles re-read ─▶ standalone question ─▶ chunk_search (the chokepoint)
             ─▶ prompt within the token budget ─▶ model stream (timeouts) ─▶ events to the socket
             ─▶ one transaction: messages, citations, query-log entry ─▶ "done"

The consumer only relays these events. Every question gets exactly one query-log entry, also
when it is refused, stopped, or fails; the answer is confirmed ("done") only after that entry
committed, and a failed commit turns the streamed text into an error on the page.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import InterfaceError, OperationalError, connections
from django.utils import timezone

from accounts.capabilities import Capability
from accounts.models import User
from accounts.selectors import (
    profile_key,
    user_has_capability,
    user_readable_collection_ids,
)
from assistant import llm, router
from assistant.evidence import (
    ClaimCheck,
    Evidence,
    claim_check,
    evidence_gather,
    says_not_found,
)
from assistant.models import Conversation, Message
from assistant.prompts import (
    answerable_messages,
    answerable_probability,
    build_prompt,
    build_tuned_prompt,
    condense_question,
    says_no,
)
from assistant.recording import (
    AnswerRecord,
    Asker,
    RecordIncomplete,
    citation_payload,
    record_answer,
    record_unprocessed,
    storable,
)
from assistant.repetition import looping
from compliance.models import QueryLogEntry
from ingestion.embedding import embed_query_async, embed_short, on_query_thread
from ingestion.selectors import SearchHit, chunk_search, document_get_for_user
from tuning.selectors import Eligibility, adapter_for_user, strategy_for_user

logger = logging.getLogger(__name__)
stages_logger = logging.getLogger("counsel.chat.stages")

REFUSAL = (
    "I could not find anything about that in the documents you can access. Try other words, "
    "or ask someone who owns that information."
)
# Said when PostgreSQL or Redis does not answer (restarting): the question was not processed.
BRIEFLY_UNAVAILABLE = "The chat is briefly unavailable; please ask again in a moment."
# Said when the model, asked first, found no answer in the readable passages it was given.
NOT_IN_PASSAGES = (
    "I could not find the answer in the documents you can access: the passages that came "
    "closest do not say. Try other words, or ask someone who owns that information."
)
SAVE_FAILED = "Your answer could not be recorded, so it is not shown. Please ask again."
# Said when something nobody planned for broke the answer (the question is still logged).
UNEXPECTED = "Something went wrong while answering. It has been logged; please try again."
CUT_NOTE = "\n\n(The answer was cut here: answers are limited to {tokens} tokens.)"
LOOP_NOTE = "\n\n(The answer was stopped here: it had begun repeating itself.)"
# How often (in streamed pieces) the stream is checked for a loop.
_LOOP_CHECK_EVERY = 8
# A streamed piece is one token for our streaming backends; a backend sending huge pieces is cut
# by characters as well (no real token averages this many).
_MAX_CHARS_PER_TOKEN = 8
# Alternatives asked for the yes/no check's first token: enough to find both "yes" and "no"
# in their spellings ("Yes", "yes", " yes").
_ANSWERABLE_TOP_LOGPROBS = 10


class ChatRefused(Exception):
    """A question that is not processed at all (no access to the conversation, no capability)."""


@dataclass
class Ask:
    user_id: int
    question: str
    conversation_id: int | None = None
    client_id: str = ""
    # "Ask the document": search only this document (narrowing the readable set, never
    # widening it: a document the asker cannot read now refuses the question).
    document_id: int | None = None
    # Set by chat_answer when the question was stopped: the conversation it was recorded in.
    recorded_in: int | None = None


@dataclass
class _Context:
    user: User
    roles: list[str]
    readable: list[int]
    profile_key: str
    conversation: Conversation | None
    previous_questions: list[str] = field(default_factory=list)
    strategy: str = "rag"
    eligibility: Eligibility | None = None
    # The asked document's collection, when the question is limited to one document.
    document_collection: int | None = None


def _drop_dead_connections() -> None:
    """Close this thread's database connections that no longer answer, as Django's
    CONN_HEALTH_CHECKS does at the start of every HTTP request.

    The chat's queries run outside Django's request cycle. Without this check, a connection
    broken by a PostgreSQL restart could stay in the thread that runs them, and every later
    question on the socket failed ("the connection is closed") until the web process restarted
    (faults drill, tests/test_faults.py; reproduced through channels' in-process communicator).
    The check costs one `SELECT 1` per question.
    """
    for conn in connections.all(initialized_only=True):
        if conn.connection is not None and not conn.in_atomic_block and not conn.is_usable():
            conn.close()


def _load_context(ask: Ask) -> _Context:
    _drop_dead_connections()
    # Re-read on every question: a role revoked a second ago applies to this one.
    user = User.objects.filter(pk=ask.user_id, is_active=True).first()
    if user is None or not user_has_capability(user=user, capability=Capability.CHAT):
        raise ChatRefused("Your account may not use the chat.")
    conversation = None
    previous: list[str] = []
    if ask.conversation_id:
        conversation = Conversation.objects.filter(pk=ask.conversation_id, user=user).first()
        if conversation is None:
            raise ChatRefused("That conversation does not exist.")
        previous = list(
            conversation.messages.filter(role=Message.Role.USER)
            .order_by("-created_at", "-id")
            .values_list("content", flat=True)[: settings.CHAT_HISTORY_TURNS]
        )[::-1]
    readable = user_readable_collection_ids(user=user)
    document_collection = None
    if ask.document_id is not None:
        document = document_get_for_user(user=user, document_id=ask.document_id)
        if document is None:
            raise ChatRefused("That document is not available to you.")
        document_collection = document.collection_id
    # The roles, read once for the log, the strategy and the adapter check below.
    roles = list(user.groups.values_list("pk", "name"))
    role_ids = [pk for pk, _ in roles]
    strategy = strategy_for_user(user=user, role_ids=role_ids)
    return _Context(
        user=user,
        roles=sorted(name for _, name in roles),
        readable=sorted(readable),
        profile_key=profile_key(readable),
        conversation=conversation,
        previous_questions=previous,
        strategy=strategy,
        # Checked on every question, in SQL: every training document still readable and current.
        eligibility=(
            adapter_for_user(user=user, role_ids=role_ids)
            if strategy != router.RAG and document_collection is None
            else None
        ),
        document_collection=document_collection,
    )


def _similarity_to(vector):
    """Cosine similarity of texts to the question's vector (both unit length)."""

    def similarity(texts: list[str]):
        return embed_short(texts) @ vector

    return similarity


def _search(ask: Ask, ctx: _Context, standalone: str, vector) -> list[SearchHit]:
    """The chokepoint's search; for a question about one document, narrowed to it in SQL
    (its collection and its id: narrowing only, every hit is still one the user may read)."""
    if ask.document_id is None:
        return chunk_search(
            user=ctx.user, query=standalone, k=settings.CHAT_MAX_SOURCES * 2, vector=vector
        )
    return chunk_search(
        user=ctx.user,
        query=standalone,
        k=settings.CHAT_MAX_SOURCES * 2,
        vector=vector,
        collection_ids=[ctx.document_collection],
        document_ids=[ask.document_id],
    )


def _relevant(hits: list[SearchHit]) -> list[SearchHit]:
    keep = [
        h
        for h in hits
        if h.text_rank is not None or (h.similarity or 0.0) >= settings.CHAT_MIN_SIMILARITY
    ]
    return keep[: settings.CHAT_MAX_SOURCES]


@dataclass
class _Outcome:
    answer: str = ""
    status: str = Message.Status.COMPLETE
    outcome: str = QueryLogEntry.Outcome.ANSWERED
    error: str = ""
    first_token_ms: int | None = None
    completion_tokens: int = 0
    route: str = router.RAG
    route_reason: str = ""
    adapter: str = ""  # "name (vN)" of the adapter that answered
    truncated: bool = False
    looped: bool = False  # stopped because it repeated itself (kept as it was)
    unanswerable: bool = False  # the model said its passages do not answer the question
    # The yes/no check's P(yes) / (P(yes) + P(no)), when the model server sent log-probabilities.
    answerable: float | None = None
    # Token counts the model server reported (the served model's own tokenizer), when it did.
    usage_prompt_tokens: int | None = None
    usage_completion_tokens: int | None = None
    # The model's own text ends here; a note of ours (cut, loop) may follow.
    body_end: int | None = None
    evidence: Evidence | None = None
    # The collections the answer was built from beyond its passages (an adapter's profile).
    built_from: frozenset[int] = frozenset()
    # The sources the model was given, for the claim check (none for the adapter-only route).
    checked_sources: list = field(default_factory=list)
    check: ClaimCheck | None = None
    # Milliseconds from the question to the end of each stage before the first token, logged
    # at DEBUG by `counsel.chat.stages`: where the server's share of the wait goes (read by
    # bench/chat_latency.py; an operator may enable it in LOGGING).
    stages: dict[str, float] = field(default_factory=dict)

    def mark(self, stage: str, started_clock: float) -> None:
        self.stages[stage] = round((time.monotonic() - started_clock) * 1000, 2)


def _answer_record(
    *,
    ask: Ask,
    standalone: str,
    retrieved: list[SearchHit],
    used: list[SearchHit],
    prompt_tokens: int,
    model_name: str,
    result: _Outcome,
    started,
    started_clock: float,
) -> AnswerRecord:
    check = result.check
    quote = result.evidence.quote_payload() if result.evidence is not None and used else {}
    if quote and says_not_found(result.answer):
        quote = {}  # the model found no answer there: the page withdraws the quote it showed
    referenced = set(check.supporting) if check is not None else set()
    if quote:
        referenced.add(quote["citation"])
    return AnswerRecord(
        question=ask.question,
        standalone=standalone,
        answer=storable(result.answer),
        status=result.status,
        outcome=result.outcome,
        error=result.error,
        route=result.route,
        route_reason=result.route_reason,
        model=model_name,
        adapter=result.adapter,
        retrieved=retrieved,
        used=used,
        built_from=result.built_from,
        quote=quote,
        grounding=check.payload(looped=result.looped) if check is not None else {},
        answerable=result.answerable,
        unsupported=[(f.start, f.end) for f in check.unsupported] if check is not None else [],
        unsupported_count=len(check.unsupported) if check is not None else None,
        referenced=referenced,
        prompt_tokens=prompt_tokens,
        completion_tokens=result.completion_tokens,
        cost=router.Prices.from_settings().cost(
            result.route, prompt_tokens, result.completion_tokens
        ),
        first_token_ms=result.first_token_ms,
        client_id=ask.client_id,
        started=started,
        started_clock=started_clock,
    )


def _route_facts(ctx: _Context, eligibility, candidates, rag_prompt, tuned_prompt, hybrid_prompt):
    adapter = eligibility.adapter if eligibility is not None else None
    trained = eligibility.trained if eligibility is not None else frozenset()
    heldout = (adapter.metrics.get("heldout") or {}) if adapter is not None else {}
    return router.RouteFacts(
        strategy=ctx.strategy,
        adapter=adapter.name if adapter is not None else None,
        ineligible_reason=eligibility.reason if eligibility is not None else "",
        adapter_accuracy=heldout.get("adapter"),
        rag_accuracy=heldout.get("rag"),
        hybrid_accuracy=heldout.get("hybrid"),
        min_accuracy=settings.TUNING_ROUTER_MIN_ACCURACY,
        relevant_passages=len(candidates),
        # Transience: passages from documents (or versions) the adapter never saw.
        untrained_passages=sum((h.document_id, h.version) not in trained for h in candidates),
        context_overflow=rag_prompt is not None and len(rag_prompt.sources) < len(candidates),
        budget_tokens=settings.CHAT_CONTEXT_TOKENS,
        rag_prompt_tokens=rag_prompt.prompt_tokens if rag_prompt is not None else 0,
        tuned_prompt_tokens=tuned_prompt.prompt_tokens if tuned_prompt is not None else 0,
        hybrid_prompt_tokens=hybrid_prompt.prompt_tokens if hybrid_prompt is not None else 0,
        prices=router.Prices.from_settings(),
    )


async def chat_answer(ask: Ask) -> AsyncIterator[dict]:
    """Answer one question, yielding events for the socket.

    Events: {"type": "status", "stage"}, {"type": "queued", "position"}, {"type": "token",
    "text"}, then exactly one of {"type": "done", …} or {"type": "error", "message"}.
    Cancelling the consuming task records the question as stopped, then re-raises.
    """
    started, started_clock = timezone.now(), time.monotonic()
    # A NUL byte or half a surrogate pair cannot be stored: the question would go unrecorded.
    ask.question = storable(ask.question)
    question = " ".join(ask.question.split())
    if not question:
        yield {"type": "error", "message": "Type a question first."}
        return
    limit = settings.CHAT_MAX_MESSAGE_CHARS
    if len(ask.question) > limit:
        # Not processed, still a question someone asked: logged, cut to the limit.
        await _refused_unprocessed(
            ask,
            question=ask.question[:limit],
            error=f"Not processed: {len(ask.question)} characters, over the limit of {limit}.",
            started=started,
            started_clock=started_clock,
        )
        yield {"type": "error", "message": f"Questions are limited to {limit} characters."}
        return
    # The context first, then the embedding of the standalone question, one after the other.
    # Run side by side on two threads they were slower (bench/chat_latency.py: context 18.5 ms
    # instead of 8.3, p95 43.5 ms instead of 38.6): the embedding's Python between torch calls
    # holds the GIL, and the context thread waited for it after each of its queries.
    result = _Outcome()
    try:
        # Not abandoned if the question is stopped meanwhile: the stop is recorded below, and
        # recording it needs the context.
        ctx, stopped = await _finish(sync_to_async(_load_context)(ask))
        result.mark("context", started_clock)
    except ChatRefused as exc:
        await _refused_unprocessed(
            ask,
            question=ask.question,
            error=f"Not processed: {exc}",
            started=started,
            started_clock=started_clock,
        )
        yield {"type": "error", "message": str(exc)}
        return
    except (OperationalError, InterfaceError):
        # PostgreSQL does not answer (restarting): nothing was read or written, so there is no
        # log entry to write either. The next question connects afresh (_drop_dead_connections,
        # or the pool's check of the connection it hands out).
        logger.warning("chat database unavailable", extra={"user_id": ask.user_id}, exc_info=True)
        yield {"type": "error", "message": BRIEFLY_UNAVAILABLE}
        return
    except Exception:
        logger.exception("chat context failed", extra={"user_id": ask.user_id})
        await _to_the_end(
            sync_to_async(record_unprocessed)(
                user_id=ask.user_id,
                conversation_id=ask.conversation_id,
                question=ask.question,
                error="Reading the asker's roles and conversation failed.",
                started=started,
                started_clock=started_clock,
            )
        )
        yield {"type": "error", "message": UNEXPECTED}
        return
    standalone = question
    used: list[SearchHit] = []
    retrieved: list[SearchHit] = []
    candidates: list[SearchHit] = []
    parts: list[str] = []
    prompt_tokens = 0
    model_name = ""

    def record() -> tuple[Conversation, Message, QueryLogEntry]:
        """The question's one record, with what the stages below have found by then."""
        asker = Asker(
            user=ctx.user,
            roles=ctx.roles,
            readable=ctx.readable,
            profile_key=ctx.profile_key,
            conversation=ctx.conversation,
        )
        return record_answer(
            asker,
            _answer_record(
                ask=ask,
                standalone=standalone,
                retrieved=retrieved,
                used=used,
                prompt_tokens=prompt_tokens,
                model_name=model_name,
                result=result,
                started=started,
                started_clock=started_clock,
            ),
        )

    try:
        if stopped:
            raise asyncio.CancelledError
        standalone = condense_question(question, ctx.previous_questions)
        eligibility = ctx.eligibility
        adapter = eligibility.adapter if eligibility is not None else None
        rag_prompt = None
        search_failed = False
        if not (ctx.strategy == router.TUNED and adapter is not None):
            # The adapter strategy with an eligible adapter needs no retrieval; every other case
            # searches, also `auto`, whose decision depends on what retrieval finds.
            yield {"type": "status", "stage": "searching"}
            try:
                vector = await embed_query_async(standalone)
                result.mark("embedded", started_clock)
                retrieved = await sync_to_async(_search)(ask, ctx, standalone, vector)
                result.mark("searched", started_clock)
            except Exception:
                # Still one log entry for this question, and a plain message for the user.
                logger.exception("search failed", extra={"user_id": ask.user_id})
                result.status, result.outcome = Message.Status.ERROR, QueryLogEntry.Outcome.ERROR
                result.error = (
                    "Searching the documents failed. It has been logged; please try again."
                )
                search_failed = True
            candidates = _relevant(retrieved)
            if candidates:
                # The supporting quote goes out before anything else is computed: it is the
                # answer a person can read while the model reads its prompt (real text only).
                # On the query-embedding thread: the quote's candidates are embedded there too.
                evidence = await on_query_thread(
                    evidence_gather,
                    question=standalone,
                    candidates=candidates,
                    max_sources=settings.CHAT_PROMPT_SOURCES,
                    excerpt_chars=settings.CHAT_EXCERPT_CHARS,
                    similarity=_similarity_to(vector),
                )
                result.evidence, candidates = evidence, evidence.hits
                if evidence.quote is not None:
                    yield {"type": "quote", "quote": evidence.quote_payload()}
                    result.mark("quote", started_clock)
                # In a thread: counting tokens loads the tokenizer on first use (a second or two),
                # which must not stall the event loop that serves every other socket.
                rag_prompt = await asyncio.to_thread(
                    build_prompt,
                    question=standalone,
                    sources=evidence.sources,
                    count_tokens=llm.count_tokens,
                    budget_tokens=settings.CHAT_CONTEXT_TOKENS,
                )
        tuned_prompt = hybrid_prompt = precheck = None
        if adapter is not None:
            tuned_prompt = await asyncio.to_thread(
                build_tuned_prompt, question=standalone, count_tokens=llm.count_tokens
            )
            if rag_prompt is not None and (adapter.metrics.get("heldout") or {}).get("hybrid"):
                # The hybrid's prompt: the retrieval prompt cut to the best few passages.
                hybrid_prompt = await asyncio.to_thread(
                    build_prompt,
                    question=standalone,
                    sources=rag_prompt.sources[: settings.TUNING_HYBRID_SOURCES],
                    count_tokens=llm.count_tokens,
                    budget_tokens=settings.CHAT_CONTEXT_TOKENS,
                )
        route = router.decide(
            _route_facts(ctx, eligibility, candidates, rag_prompt, tuned_prompt, hybrid_prompt)
        )
        result.mark("routed", started_clock)
        result.route, result.route_reason = route.route, route.reason
        if search_failed and route.route == router.RAG:
            pass  # the error recorded above stands
        elif route.route == router.RAG and not candidates:
            result.answer, result.status = REFUSAL, Message.Status.REFUSED
            result.outcome = QueryLogEntry.Outcome.REFUSED
        else:
            if route.route in router.ADAPTER_ROUTES:
                prompt = tuned_prompt if route.route == router.TUNED else hybrid_prompt
                used = candidates[: len(prompt.sources)]
                result.checked_sources = prompt.sources if route.route == router.HYBRID else []
                name = adapter.name
                result.adapter = adapter.label
                # What the adapter was trained on is part of what its answer is built from.
                result.built_from = frozenset(int(c) for c in adapter.collection_ids)
                model = llm.get_chat_model(adapter=name)
                model_name = llm.model_name(adapter=name)
                result.status, result.outcome = (
                    Message.Status.COMPLETE,
                    QueryLogEntry.Outcome.ANSWERED,
                )
                result.error = ""
            else:
                prompt = rag_prompt
                used = candidates[: len(prompt.sources)]
                result.checked_sources = prompt.sources
                model = llm.get_chat_model()
                model_name = llm.model_name()
                if settings.CHAT_ANSWERABLE_CHECK:
                    precheck = answerable_messages(prompt.messages)
            prompt_tokens = prompt.prompt_tokens
            try:
                async for event in _generate(
                    model, prompt.messages, started_clock, result, parts, precheck=precheck
                ):
                    yield event
            except llm.LLMCircuitOpen as exc:
                # Not sent to the model: the breaker logged its opening once, as an error.
                logger.info("model circuit open", extra={"user_id": ask.user_id})
                result.status, result.outcome = Message.Status.ERROR, QueryLogEntry.Outcome.ERROR
                result.error = str(exc)
            except llm.LLMError as exc:
                logger.error(
                    "model failed",
                    extra={"user_id": ask.user_id, "error": str(exc), "detail": exc.detail},
                    exc_info=True,
                )
                result.answer = "".join(parts)
                result.status, result.outcome = Message.Status.ERROR, QueryLogEntry.Outcome.ERROR
                result.error = str(exc)
            else:
                if result.unanswerable:
                    # The model read the passages and found no answer there: say so, as when
                    # nothing readable was found (and withdraw the quote shown meanwhile).
                    parts[:] = [NOT_IN_PASSAGES]
                    result.status, result.outcome = (
                        Message.Status.REFUSED,
                        QueryLogEntry.Outcome.REFUSED,
                    )
                    confidence = (
                        ""
                        if result.answerable is None
                        else f" (the model's confidence that they do: {result.answerable:.0%})"
                    )
                    result.route_reason += (
                        f" The passages found do not answer the question{confidence}."
                    )
                    result.checked_sources = []
                text = "".join(parts)
                end = len(text) if result.body_end is None else result.body_end
                body = text[:end].strip()
                result.answer = (body + text[end:]).strip()
                if result.checked_sources:
                    # The claim check: every figure of the model's own text looked up in what
                    # it was given (our notes after it are not the model's claims).
                    result.check = claim_check(
                        answer=body, sources=result.checked_sources, question=standalone
                    )
            if result.usage_completion_tokens is not None:
                result.completion_tokens = result.usage_completion_tokens
            else:
                result.completion_tokens = await asyncio.to_thread(llm.count_tokens, result.answer)
            if result.usage_prompt_tokens:
                # What the server counted with the served model's tokenizer.
                prompt_tokens = result.usage_prompt_tokens
    except asyncio.CancelledError:
        # Stopped by the user or the socket closing, at any stage: still one entry per question,
        # with what was streamed so far, recorded even though the socket may be gone. A second
        # cancellation (the socket closing right after a stop) does not abandon it.
        result.answer = "".join(parts)
        result.status, result.outcome = Message.Status.CANCELLED, QueryLogEntry.Outcome.CANCELLED
        if "routed" not in result.stages:
            result.route_reason = "Stopped before a route was chosen."

        async def record_stopped() -> int | None:
            result.completion_tokens = await asyncio.to_thread(llm.count_tokens, result.answer)
            try:
                conversation, _, _ = await sync_to_async(record)()
            except RecordIncomplete:
                return None  # logged alone; there is no conversation to point at
            return conversation.pk

        ask.recorded_in = await _to_the_end(record_stopped())
        raise
    except Exception:
        # Nobody planned for this: still one entry, with what was streamed, and a plain message.
        logger.exception("chat answer failed", extra={"user_id": ask.user_id})
        result.answer = "".join(parts)
        result.status, result.outcome = Message.Status.ERROR, QueryLogEntry.Outcome.ERROR
        result.error = UNEXPECTED
    try:
        # A stop now comes too late to change the record: it is written whole, once.
        conversation, message, entry = await _to_the_end(sync_to_async(record)())
    except RecordIncomplete as exc:
        yield {"type": "error", "message": exc.message, "discard": True}
        return
    except Exception:
        logger.exception("could not record a chat answer", extra={"user_id": ask.user_id})
        yield {"type": "error", "message": SAVE_FAILED, "discard": True}
        return
    if result.outcome == QueryLogEntry.Outcome.ERROR:
        yield {"type": "error", "message": result.error, "conversation": conversation.pk}
        return
    citations = await sync_to_async(citation_payload)(message)
    yield {
        "type": "done",
        "conversation": conversation.pk,
        "conversation_title": conversation.title,
        "message": message.pk,
        "status": message.status,
        "html": message.content_html,
        "citations": citations,
        "log_entry": entry.pk,
        "route": result.route,
        "route_reason": result.route_reason,
        "adapter": result.adapter,
        "truncated": result.truncated,
        "looped": result.looped,
        "quote": message.quote,
        "grounding": message.grounding,
    }


async def _refused_unprocessed(ask: Ask, *, question: str, error: str, started, started_clock):
    """Log a question refused before anything was read for it (one entry, outcome refused)."""
    await _to_the_end(
        sync_to_async(record_unprocessed)(
            user_id=ask.user_id,
            conversation_id=ask.conversation_id,
            question=question,
            error=error,
            started=started,
            started_clock=started_clock,
            outcome=QueryLogEntry.Outcome.REFUSED,
        )
    )


async def _finish(awaitable) -> tuple:
    """Awaits to the end even if the waiting task is cancelled meanwhile.

    Returns the value and whether a cancellation came meanwhile, for the caller to honour.
    `asyncio.shield` alone keeps the work running but lets the caller go on at once: a stopped
    answer's record would then be written after its socket (or a test) had already moved on.
    """
    task = asyncio.ensure_future(awaitable)
    interrupted = False
    while True:
        try:
            return await asyncio.shield(task), interrupted
        except asyncio.CancelledError:
            if task.cancelled():  # the work itself was cancelled, not only its waiter
                raise
            interrupted = True  # and the work goes on, or has just finished


async def _to_the_end(awaitable):
    """Awaits to the end even if cancelled meanwhile, then passes the cancellation on."""
    value, interrupted = await _finish(awaitable)
    if interrupted:
        raise asyncio.CancelledError
    return value


async def _generate(
    model, messages, started_clock: float, result: _Outcome, parts: list[str], *, precheck=None
):
    """Stream the model's answer, reporting the queue position while waiting for a slot.

    The circuit breaker is asked first: while it is open the question fails at once
    (:class:`llm.LLMCircuitOpen`) instead of waiting for its own timeout. With `precheck` (the
    yes/no messages of prompts.answerable_messages) the model is first asked, in the same slot,
    whether its passages answer the question; a no sets `result.unanswerable` and nothing is
    streamed.
    """
    admission = await llm.breaker_admit()
    positions: asyncio.Queue[int] = asyncio.Queue()
    try:
        async with llm.generation_slot(on_wait=positions.put_nowait) as slot_wait:
            async for position in slot_wait(positions):
                yield {"type": "queued", "position": position}
            result.mark("admitted", started_clock)
            yield {"type": "status", "stage": "answering"}
            if precheck is not None:
                # Streamed and cut after its first word: a server that ignores max_tokens (or
                # hangs) costs no more than the answer's own first-token deadline.
                reply = ""
                check_stats = llm.StreamStats()
                check = llm.stream_with_timeouts(
                    model.bind(
                        max_tokens=2,
                        temperature=0,
                        logprobs=True,
                        top_logprobs=_ANSWERABLE_TOP_LOGPROBS,
                    ),
                    precheck,
                    first_token_timeout=settings.LLM_FIRST_TOKEN_TIMEOUT_SECONDS,
                    total_timeout=settings.LLM_TIMEOUT_SECONDS,
                    stats=check_stats,
                )
                try:
                    async for piece in check:
                        reply += piece
                        if reply.strip():
                            break
                finally:
                    await check.aclose()
                result.mark("checked", started_clock)
                # The model's confidence when the server sent it, its greedy word otherwise.
                result.answerable = answerable_probability(check_stats.top_logprobs)
                if (
                    says_no(reply)
                    if result.answerable is None
                    else result.answerable < settings.CHAT_ANSWERABLE_MIN_YES
                ):
                    result.unanswerable = True
                    await llm.breaker_success(admission)
                    return
            # The backend is told LLM_MAX_NEW_TOKENS, but the cap is enforced here as well: a
            # model server that ignores it must not stream (and hold a slot) for ever.
            max_tokens = settings.CHAT_MAX_ANSWER_TOKENS
            pieces = chars = 0
            stats = llm.StreamStats()
            stream = llm.stream_with_timeouts(
                model,
                messages,
                first_token_timeout=settings.LLM_FIRST_TOKEN_TIMEOUT_SECONDS,
                total_timeout=settings.LLM_TIMEOUT_SECONDS,
                stats=stats,
            )
            try:
                async for token in stream:
                    if result.first_token_ms is None:
                        result.first_token_ms = int((time.monotonic() - started_clock) * 1000)
                        result.mark("first_token", started_clock)
                        stages_logger.debug("chat stages", extra={"stages_ms": result.stages})
                    parts.append(token)
                    yield {"type": "token", "text": token}
                    pieces, chars = pieces + 1, chars + len(token)
                    if pieces >= max_tokens or chars >= max_tokens * _MAX_CHARS_PER_TOKEN:
                        result.truncated = True
                        break
                    if pieces % _LOOP_CHECK_EVERY == 0 and looping("".join(parts)):
                        result.looped = True
                        break
            finally:
                await stream.aclose()  # closes the model's stream: a local generation stops
            result.usage_prompt_tokens = stats.input_tokens
            if not (result.truncated or result.looped):
                result.usage_completion_tokens = stats.output_tokens
            if result.truncated or result.looped:
                result.body_end = len("".join(parts))
                note = LOOP_NOTE if result.looped else CUT_NOTE.format(tokens=max_tokens)
                parts.append(note)
                yield {"type": "token", "text": note}
    except llm.LLMError:
        await llm.breaker_failure(admission)
        raise
    except BaseException:
        # Stopped by the user or the socket closing: says nothing about the model.
        await asyncio.shield(llm.breaker_release(admission))
        raise
    await llm.breaker_success(admission)
