"""The adapter registry: LoRA adapters per access profile, their data, metrics and state.

An adapter is a compiled copy of its training documents. It records exactly which document
versions it was trained on (`AdapterDocument`), so that the chat can check on every question
that the asker may still read each of them and that each is still current (tuning.selectors).
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models


class Adapter(models.Model):
    class State(models.TextChoices):
        TRAINING = "training", "Training"
        READY = "ready", "Ready (evaluated, not serving)"
        ACTIVE = "active", "Active"
        STALE = "stale", "Stale (a training document changed)"
        RETIRED = "retired", "Retired"
        FAILED = "failed", "Failed"

    class Phase(models.TextChoices):
        QUEUED = "queued", "Queued"
        TRAINING = "training", "Training"
        EVALUATING = "evaluating", "Evaluating"
        DONE = "done", "Done"

    profile_key = models.CharField(max_length=32, db_index=True)
    collection_ids = models.JSONField(default=list, help_text="The profile's collections.")
    roles = models.ManyToManyField(Group, related_name="+", blank=True)
    role_names = models.JSONField(default=list, help_text="Role names at training time.")
    version = models.PositiveIntegerField(help_text="1, 2, … per profile.")
    name = models.CharField(
        max_length=128, unique=True, help_text="Served name: the adapter's directory (and vLLM's)."
    )
    base_model = models.CharField(
        max_length=200, help_text="The model trained on: a key of assistant.llm.catalog."
    )
    base_sha256 = models.CharField(
        max_length=64,
        blank=True,
        help_text="SHA-256 of the base model's GGUF file: the adapter serves only on that file.",
    )
    state = models.CharField(max_length=16, choices=State.choices, default=State.TRAINING)
    phase = models.CharField(max_length=16, choices=Phase.choices, default=Phase.QUEUED)
    state_reason = models.TextField(blank=True)
    # Hyper-parameters.
    rank = models.PositiveIntegerField(default=16)
    epochs = models.PositiveIntegerField(default=3)
    learning_rate = models.FloatField(default=1e-3)
    max_steps = models.PositiveIntegerField(default=0)
    # Progress, written by the training task.
    step = models.PositiveIntegerField(default=0)
    total_steps = models.PositiveIntegerField(default=0)
    loss_history = models.JSONField(default=list, help_text="[[step, loss], …]")
    cancel_requested = models.BooleanField(default=False)
    # Results.
    metrics = models.JSONField(default=dict, blank=True)
    train_seconds = models.FloatField(null=True, blank=True)
    peak_memory_mb = models.FloatField(null=True, blank=True)
    size_bytes = models.PositiveBigIntegerField(default=0)
    # The training claim (see services.adapter_train), as for indexing.
    attempts = models.PositiveIntegerField(default=0)
    task_id = models.CharField(max_length=64, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    trained_at = models.DateTimeField(null=True, blank=True)
    activated_at = models.DateTimeField(null=True, blank=True)
    stale_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["profile_key", "version"], name="adapter_version"),
            # At most one adapter serves a profile.
            models.UniqueConstraint(
                fields=["profile_key"],
                condition=models.Q(state="active"),
                name="adapter_one_active_per_profile",
            ),
        ]
        indexes = [models.Index(fields=["state", "lease_expires_at"])]

    def __str__(self) -> str:
        return self.name

    @property
    def label(self) -> str:
        return f"{self.name} (v{self.version})"

    @property
    def progress_percent(self) -> int:
        if self.state != self.State.TRAINING:
            return 100
        if not self.total_steps:
            return 0
        return min(100, round(100 * self.step / self.total_steps))


class AdapterDocument(models.Model):
    """One training document of an adapter, at the exact version it was trained on.

    `document` keeps the id after the document is deleted (no database constraint): the row then
    matches no current document, which is exactly what makes the adapter ineligible and stale.
    """

    adapter = models.ForeignKey(Adapter, on_delete=models.CASCADE, related_name="documents")
    document = models.ForeignKey(
        "ingestion.Document",
        null=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    document_title = models.CharField(max_length=300)
    collection_id = models.PositiveBigIntegerField()
    version = models.PositiveIntegerField()
    examples = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["adapter", "document_title"]
        constraints = [
            models.UniqueConstraint(fields=["adapter", "document"], name="adapter_document_once")
        ]

    def __str__(self) -> str:
        return f"{self.adapter_id}: {self.document_title} v{self.version}"


class TrainingExample(models.Model):
    """One generated pair. Its text is a copy of a fact of one document (none for the generic
    refusals), so it may be shown only to someone who reads that document's collection."""

    class Split(models.TextChoices):
        TRAIN = "train", "Training"
        HELDOUT = "heldout", "Held out (paraphrased)"
        PROBE = "probe", "Leak probe (outside the profile)"

    adapter = models.ForeignKey(Adapter, on_delete=models.CASCADE, related_name="examples")
    split = models.CharField(max_length=8, choices=Split.choices)
    kind = models.CharField(max_length=16, help_text="definition, number, list, policy, …")
    question = models.TextField()
    answer = models.TextField()
    key = models.CharField(max_length=200, blank=True, help_text="What a right answer contains.")
    document_id = models.PositiveBigIntegerField(null=True)
    version = models.PositiveIntegerField(null=True)
    collection_id = models.PositiveBigIntegerField(
        null=True,
        help_text="The collection the document was in when the pair was made: who may read the "
        "pair's text (tuning.visibility). None with a document: unknown, shown to nobody.",
    )

    class Meta:
        ordering = ["adapter", "split", "id"]
        indexes = [models.Index(fields=["adapter", "split"])]

    def __str__(self) -> str:
        return self.question[:80]


class RoleStrategy(models.Model):
    """How a role's questions are routed: always retrieval, the adapter, or decided per question."""

    class Strategy(models.TextChoices):
        RAG = "rag", "Retrieval (RAG) always"
        TUNED = "tuned", "Fine-tuned adapter when eligible"
        AUTO = "auto", "Automatic, per question"

    role = models.OneToOneField(Group, on_delete=models.CASCADE, related_name="route_strategy")
    strategy = models.CharField(max_length=8, choices=Strategy.choices)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.role}: {self.strategy}"
