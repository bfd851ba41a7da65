"""The chat page and the actions around it. Conversations are their owner's alone."""

from __future__ import annotations

from django.contrib import messages as flash
from django.core.paginator import Paginator
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts.capabilities import Capability
from accounts.decorators import capability_required
from assistant.models import Conversation, Feedback, Message
from assistant.presentation import answer_item
from assistant.selectors import answer_for_user, conversations_for_user, thread_for_user
from assistant.suggestions import suggested_questions

chat_required = capability_required(Capability.CHAT)


def _own_conversation(request: HttpRequest, pk: int) -> Conversation:
    # Someone else's conversation and a missing one look the same.
    conversation = Conversation.objects.filter(pk=pk, user=request.user).first()
    if conversation is None:
        raise Http404("No such conversation.")
    return conversation


CONVERSATIONS_PER_PAGE = 50


@chat_required
def chat(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    conversation = _own_conversation(request, pk) if pk else None
    thread = []
    if conversation is not None:
        for message in thread_for_user(conversation=conversation, user=request.user):
            if message.withheld:
                # Built from documents the reader can no longer open: nothing of it is shown.
                thread.append({"message": message, "withheld": True})
            elif message.role == Message.Role.ASSISTANT:
                thread.append(answer_item(message))
            else:
                thread.append({"message": message})
    query = request.GET.get("q", "")
    page = Paginator(
        conversations_for_user(user=request.user, query=query), CONVERSATIONS_PER_PAGE
    ).get_page(request.GET.get("page"))
    context = {
        "conversation": conversation,
        "conversations": page,
        "query": query,
        "thread": thread,
        # Only on an empty chat: they cost a query, and a thread has its own topic.
        "suggestions": [] if thread else suggested_questions(user=request.user),
    }
    return render(request, "assistant/chat.html", context)


@chat_required
def answer(request: HttpRequest, pk: int) -> HttpResponse:
    """One answer as the thread shows it (previews, "why this answer"): the live page swaps it
    in once an answer is recorded."""
    return _answer_fragment(request, answer_for_user(user=request.user, message_id=pk))


@chat_required
def answer_recover(request: HttpRequest) -> HttpResponse:
    """The recorded answer to the question the page tagged `question` (its client id): after a
    dropped socket, the page shows what was recorded instead of losing the answer."""
    found = answer_for_user(user=request.user, client_id=request.GET.get("question", ""))
    return _answer_fragment(request, found)


def _answer_fragment(request: HttpRequest, message: Message | None) -> HttpResponse:
    # Someone else's answer and a missing one look the same; a withheld one shows its notice.
    if message is None:
        raise Http404("No such answer.")
    item = {"message": message, "withheld": True} if message.withheld else answer_item(message)
    return render(request, "assistant/_answer.html", {"item": item})


@chat_required
@require_POST
def conversation_rename(request: HttpRequest, pk: int) -> HttpResponse:
    conversation = _own_conversation(request, pk)
    title = " ".join(request.POST.get("title", "").split())[:200]
    if title:
        conversation.title = title
        conversation.save(update_fields=["title", "updated_at"])
    return redirect("assistant:conversation", pk=pk)


@chat_required
@require_POST
def conversation_delete(request: HttpRequest, pk: int) -> HttpResponse:
    conversation = _own_conversation(request, pk)
    # The query log keeps its own copy of every question: deleting a conversation removes it
    # from the user's view, not from the compliance record.
    conversation.delete()
    flash.success(request, "Conversation deleted.")
    return redirect("assistant:chat")


@chat_required
@require_POST
def message_feedback(request: HttpRequest, pk: int) -> HttpResponse:
    message = Message.objects.filter(
        pk=pk, role=Message.Role.ASSISTANT, conversation__user=request.user
    ).first()
    if message is None:
        raise Http404("No such answer.")
    comment = request.POST.get("comment", "").strip()[:2000]
    with transaction.atomic():
        rating = _rating(request.POST.get("rating"), message)
        if rating is None:
            # A comment sent on its own (Enter in the comment box) before any rating: there is
            # nothing to attach it to, and guessing one turned a thumbs-down into "Helpful".
            return HttpResponse("Choose Helpful or Not helpful first.", status=400)
        Feedback.objects.update_or_create(
            message=message, defaults={"user": request.user, "rating": rating, "comment": comment}
        )
    if request.headers.get("Accept") == "application/json":
        return HttpResponse(status=204)
    return redirect("assistant:conversation", pk=message.conversation_id)


def _rating(value: str | None, message: Message) -> int | None:
    """The rating sent, or, without one, the rating already given (a comment edited alone)."""
    if value in ("up", "down"):
        return 1 if value == "up" else -1
    existing = Feedback.objects.select_for_update().filter(message=message).first()
    return existing.rating if existing is not None else None
