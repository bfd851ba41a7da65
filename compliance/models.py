from django.conf import settings
from django.db import models


class QueryLogEntry(models.Model):
    """One question asked, whatever became of it: answered, refused, stopped or failed.

    Written in the same transaction as the answer it records; an answer whose entry did not
    commit is never confirmed to the user. The compliance issue adds the hash chain, the
    append-only triggers, review and export on top of these rows.
    """

    class Outcome(models.TextChoices):
        ANSWERED = "answered", "Answered"
        REFUSED = "refused", "Refused (nothing relevant it may read)"
        CANCELLED = "cancelled", "Stopped by the user"
        ERROR = "error", "Error"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    username = models.CharField(max_length=150)
    roles = models.JSONField(default=list, help_text="Role names at the time of the question.")
    readable_collections = models.JSONField(default=list)
    profile_key = models.CharField(max_length=32, blank=True)
    conversation_id = models.PositiveBigIntegerField(null=True)
    question_message_id = models.PositiveBigIntegerField(null=True)
    answer_message_id = models.PositiveBigIntegerField(null=True)
    question = models.TextField()
    standalone_question = models.TextField(blank=True)
    answer = models.TextField(blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    error = models.TextField(blank=True)
    route = models.CharField(max_length=16, default="rag")
    route_reason = models.TextField(blank=True)
    model = models.CharField(max_length=200, blank=True)
    adapter = models.CharField(max_length=200, blank=True)
    # [{"chunk": id, "document": id, "version": n, "collection": id, "score": s, "similarity": s}]
    retrieved = models.JSONField(default=list)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    cost_estimate = models.DecimalField(
        max_digits=14,
        decimal_places=8,
        default=0,
        help_text="Estimated cost of this answer from the configured per-token prices.",
    )
    first_token_ms = models.PositiveIntegerField(null=True)
    latency_ms = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["user", "-created_at"]),
            models.Index(fields=["outcome", "-created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.username}: {self.question[:60]}"
