"""The chat page and the actions around it. Conversations are their owner's alone."""

from __future__ import annotations

from django.contrib import messages as flash
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts.capabilities import Capability
from accounts.decorators import capability_required
from assistant.models import Conversation, Feedback, Message
from assistant.recording import citation_url
from assistant.selectors import thread_for_user

chat_required = capability_required(Capability.CHAT)


def _own_conversation(request: HttpRequest, pk: int) -> Conversation:
    # Someone else's conversation and a missing one look the same.
    conversation = Conversation.objects.filter(pk=pk, user=request.user).first()
    if conversation is None:
        raise Http404("No such conversation.")
    return conversation


@chat_required
def chat(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    conversation = _own_conversation(request, pk) if pk else None
    thread = []
    if conversation is not None:
        for message in thread_for_user(conversation=conversation, user=request.user):
            if message.withheld:
                # Built from documents the reader can no longer open: nothing of it is shown.
                thread.append({"message": message, "withheld": True})
                continue
            citations = [(c, citation_url(c)) for c in message.citations.all()]
            thread.append(
                {
                    "message": message,
                    "citations": citations,
                    "feedback": getattr(message, "feedback", None),
                    "quote": _stored_quote(message, citations),
                }
            )
    context = {
        "conversation": conversation,
        "conversations": Conversation.objects.filter(user=request.user)[:100],
        "thread": thread,
    }
    return render(request, "assistant/chat.html", context)


def _stored_quote(message, citations) -> dict | None:
    """The answer's supporting quote, linked through its citation (which knows whether the
    document is still there)."""
    quote = message.quote or {}
    if not quote.get("text"):
        return None
    url = next((u for c, u in citations if c.number == quote.get("citation")), None)
    return {**quote, "url": url}


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
    rating = 1 if request.POST.get("rating") == "up" else -1
    comment = request.POST.get("comment", "").strip()[:2000]
    with transaction.atomic():
        Feedback.objects.update_or_create(
            message=message, defaults={"user": request.user, "rating": rating, "comment": comment}
        )
    if request.headers.get("Accept") == "application/json":
        return HttpResponse(status=204)
    return redirect("assistant:conversation", pk=message.conversation_id)
