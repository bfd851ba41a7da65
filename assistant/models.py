from django.conf import settings
from django.db import models


class Conversation(models.Model):
    """A user's conversation. Only its owner ever sees it (accounts.selectors.user_may_see)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations"
    )
    title = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at", "-id"]
        indexes = [models.Index(fields=["user", "-updated_at"])]

    def __str__(self) -> str:
        return self.title or f"Conversation {self.pk}"


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user", "User"
        ASSISTANT = "assistant", "Assistant"

    class Status(models.TextChoices):
        COMPLETE = "complete", "Complete"
        REFUSED = "refused", "No answer in the documents"
        CANCELLED = "cancelled", "Stopped"
        ERROR = "error", "Error"

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField()
    # Server-rendered, sanitised HTML of an assistant answer (Markdown → nh3 allow-list).
    content_html = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.COMPLETE)
    client_id = models.CharField(max_length=64, blank=True)
    # Of an assistant answer: which route answered and why, shown under it (also after a reload).
    route = models.CharField(max_length=16, blank=True)
    route_reason = models.TextField(blank=True)
    adapter = models.CharField(max_length=200, blank=True)
    # The supporting quote shown before the answer: the exact sentence(s) of a source the asker
    # could read when it was asked, never generated. {"citation": n, "text": ...}; {} for none.
    quote = models.JSONField(default=dict, blank=True)
    # What the claim check found: {"checked": n figures, "unsupported": ["14", ...],
    # "looped": bool}; {} when no check ran (refusals, errors, the adapter-only route).
    grounding = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["conversation", "created_at", "id"]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:60]}"


class Citation(models.Model):
    """A source shown under an answer: the document, version, place and the text used.

    Kept by value (snippet, heading, page) so the answer stays explainable after re-indexing;
    opening the document is checked again, each time, for the person who clicks.
    """

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="citations")
    number = models.PositiveSmallIntegerField(
        help_text="Its place among the sources the model was given"
    )
    document = models.ForeignKey(
        "ingestion.Document", null=True, on_delete=models.SET_NULL, related_name="+"
    )
    collection_id = models.PositiveBigIntegerField()
    chunk_id = models.PositiveBigIntegerField()
    document_title = models.CharField(max_length=300)
    version = models.PositiveIntegerField()
    heading = models.CharField(max_length=500, blank=True)
    page = models.PositiveIntegerField(null=True, blank=True)
    snippet = models.TextField()
    score = models.FloatField()
    referenced = models.BooleanField(
        default=False, help_text="The quote or a figure of the answer comes from it."
    )

    class Meta:
        ordering = ["message", "number"]

    def __str__(self) -> str:
        return f"[{self.number}] {self.document_title}"


class AnswerSource(models.Model):
    """A collection an answer was built from: its passages' collections and, on the adapter
    routes, the adapter's profile (what it was trained on).

    A stored answer is shown only while its reader may still read every one of these
    (assistant.selectors.thread_for_user); citations alone would miss the adapter's knowledge.
    """

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="sources")
    collection_id = models.PositiveBigIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["message", "collection_id"], name="answer_source_once_per_collection"
            )
        ]

    def __str__(self) -> str:
        return f"{self.message_id} ← collection {self.collection_id}"


class Feedback(models.Model):
    message = models.OneToOneField(Message, on_delete=models.CASCADE, related_name="feedback")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    rating = models.SmallIntegerField(choices=[(1, "Helpful"), (-1, "Not helpful")])
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.rating:+d} on {self.message_id}"
