"""The query log and what compliance officers do with it.

Four tables, three of them logs:

- `QueryLogEntry` — one row per question asked (and a *checkpoint* row per retention run),
  append-only and hash-chained: each row stores the hash of the previous row and
  SHA-256(previous hash ‖ canonical JSON of its own content) (see compliance/chain.py).
- `QueryLogReview` — review marks (reviewed, flagged) and notes, append-only: an entry's review
  state is the newest mark, never an edit of the entry.
- `QueryLogAccess` — who opened which entry, when (opening an entry shows the chunk texts that
  were used, so the view itself is logged), append-only.
- `QueryLogExport` — export jobs (state, progress, file, hash). Job state, not a log: it is
  updated as the job runs, and every export is also recorded in the audit trail.

Database triggers (migration 0003) refuse UPDATE, DELETE and TRUNCATE on the three log tables;
retention deletes old rows only through the privileged function `compliance_querylog_purge`
(docs/compliance.md).
"""

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVector, SearchVectorField
from django.db import models
from django.utils import timezone


class QueryLogEntry(models.Model):
    """One question asked, whatever became of it: answered, refused, stopped or failed.

    Written in the same transaction as the answer it records (compliance.services
    .querylog_append); an answer whose entry did not commit is never confirmed to the user.
    """

    class Outcome(models.TextChoices):
        ANSWERED = "answered", "Answered"
        REFUSED = "refused", "Refused (nothing relevant it may read)"
        CANCELLED = "cancelled", "Stopped by the user"
        ERROR = "error", "Error"
        CHECKPOINT = "checkpoint", "Retention checkpoint"

    class Kind(models.TextChoices):
        QUESTION = "question", "Question"
        CHECKPOINT = "checkpoint", "Retention checkpoint"

    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.QUESTION)
    # No database constraint and no cascade: deleting a user must neither fail on, nor rewrite,
    # the log (the row keeps the id and the username it was written with).
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
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
    # The chunks that went into the prompt, by value, as they were when the answer was written:
    # [{"chunk", "document", "document_title", "collection", "version", "heading", "page",
    #   "text"}]. The record stays self-contained after the document is re-indexed or deleted.
    used_chunks = models.JSONField(default=list)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    cost_estimate = models.DecimalField(
        max_digits=14,
        decimal_places=8,
        default=0,
        help_text="Estimated cost of this answer from the configured per-token prices.",
    )
    first_token_ms = models.PositiveIntegerField(null=True)
    # The claim check (assistant.grounding): figures of the answer the sources the model was
    # given do not contain. None when no check ran (refusal, error, adapter-only answer).
    unsupported_figures = models.PositiveIntegerField(null=True, blank=True)
    # {"quote": {"chunk", "document", "text"} | {}, "checked": n, "unsupported": [...],
    #  "looped": bool, "answerable": the yes/no check's confidence that the passages answer}
    grounding = models.JSONField(default=dict, blank=True)
    latency_ms = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    # Set by querylog_append under the append lock (not auto_now_add: the hash covers it).
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    # What a retention run removed ({"removed", "first_id", "last_id", "through", ...}).
    checkpoint = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64, default="")
    entry_hash = models.CharField(max_length=64, default="")
    search = models.GeneratedField(
        expression=SearchVector("question", weight="A", config="english")
        + SearchVector("answer", weight="B", config="english"),
        output_field=SearchVectorField(),
        db_persist=True,
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "query log entries"
        indexes = [
            models.Index(fields=["user", "-created_at"]),
            models.Index(fields=["outcome", "-created_at"]),
            models.Index(name="querylog_username_created", fields=["username", "-created_at"]),
            models.Index(name="querylog_route_created", fields=["route", "-created_at"]),
            models.Index(name="querylog_model_created", fields=["model", "-created_at"]),
            models.Index(name="querylog_adapter_created", fields=["adapter", "-created_at"]),
            models.Index(
                name="querylog_unsupported_created",
                fields=["-created_at"],
                condition=models.Q(unsupported_figures__gt=0),
            ),
            GinIndex(name="querylog_search_gin", fields=["search"]),
            # `roles @> '["Sales"]'` and `retrieved @> '[{"collection": 3}]'`.
            GinIndex(name="querylog_roles_gin", fields=["roles"], opclasses=["jsonb_path_ops"]),
            GinIndex(
                name="querylog_retrieved_gin", fields=["retrieved"], opclasses=["jsonb_path_ops"]
            ),
        ]
        constraints = [
            # A linear chain: no two rows may claim the same predecessor, nor share a hash.
            models.UniqueConstraint(fields=["prev_hash"], name="querylog_unique_prev_hash"),
            models.UniqueConstraint(fields=["entry_hash"], name="querylog_unique_entry_hash"),
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.username}: {self.question[:60]}"


class QueryLogReview(models.Model):
    """A review mark or note on an entry, by an officer. Append-only.

    The entry's review state is its newest `reviewed` or `flagged` mark; notes leave it as it is.
    A flag is resolved by marking the entry reviewed (with a note saying why).
    """

    class Kind(models.TextChoices):
        REVIEWED = "reviewed", "Marked reviewed"
        FLAGGED = "flagged", "Flagged"
        NOTE = "note", "Note"

    STATUS_KINDS = (Kind.REVIEWED, Kind.FLAGGED)

    entry = models.ForeignKey(
        QueryLogEntry, on_delete=models.DO_NOTHING, related_name="reviews", db_constraint=True
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    note = models.TextField(blank=True)
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    reviewer_username = models.CharField(max_length=150)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["entry", "id"]
        indexes = [models.Index(name="querylog_review_entry", fields=["entry", "kind", "-id"])]

    def __str__(self) -> str:
        return f"{self.kind} on {self.entry_id} by {self.reviewer_username}"


class QueryLogAccess(models.Model):
    """An officer opened an entry (and so read the chunk texts it used). Append-only."""

    entry = models.ForeignKey(QueryLogEntry, on_delete=models.DO_NOTHING, related_name="accesses")
    officer = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    officer_username = models.CharField(max_length=150)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(name="querylog_access_entry", fields=["entry", "-id"])]

    def __str__(self) -> str:
        return f"{self.officer_username} opened {self.entry_id}"


class QueryLogExport(models.Model):
    """An export of a filtered selection of the log, produced by a Celery task."""

    class Format(models.TextChoices):
        CSV = "csv", "CSV"
        JSONL = "jsonl", "JSON Lines"

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    # The public handle in URLs; the file itself lives under a second, unrelated random name.
    token = models.CharField(max_length=64, unique=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    requested_by_username = models.CharField(max_length=150)
    format = models.CharField(max_length=8, choices=Format.choices)
    filters = models.JSONField(default=dict)
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED)
    total = models.PositiveIntegerField(default=0)
    written = models.PositiveIntegerField(default=0)
    file_path = models.CharField(max_length=300, blank=True)  # relative to MEDIA_ROOT
    size = models.PositiveBigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True)
    manifest = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    task_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"export {self.pk} ({self.format}, {self.state})"

    @property
    def percent(self) -> int:
        if self.state == self.State.DONE:
            return 100
        return int(100 * self.written / self.total) if self.total else 0


class QueryLogVerification(models.Model):
    """One run of the chain verifier (daily from beat, or asked for by an officer)."""

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    requested_by_username = models.CharField(max_length=150)  # "system" for the daily run
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED)
    intact = models.BooleanField(null=True)
    checked = models.PositiveBigIntegerField(default=0)
    first_bad_id = models.PositiveBigIntegerField(null=True)
    reason = models.TextField(blank=True)
    tip_id = models.PositiveBigIntegerField(null=True)
    tip_hash = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"verification {self.pk} ({self.state})"

    @property
    def seconds(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.created_at).total_seconds()
