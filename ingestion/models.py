from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.auth.models import Group
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVector, SearchVectorField
from django.db import models
from pgvector.django import HnswIndex, VectorField

# all-MiniLM-L6-v2, the packaged embedding model. A different model means a migration.
EMBEDDING_DIMENSIONS = 384


class Collection(models.Model):
    """A named set of documents, the roles that may read it and the roles that manage it.

    A user reads the union of their roles' collections. Every document lives in exactly one
    collection and every chunk row carries its collection id, so access is one SQL filter.
    """

    name = models.CharField(max_length=120, unique=True)
    slug = models.SlugField(max_length=120, unique=True)
    description = models.TextField(blank=True)
    readers = models.ManyToManyField(
        Group,
        related_name="readable_collections",
        blank=True,
        help_text="Roles whose members may read this collection's documents.",
    )
    # Who may upload, replace, move and delete this collection's documents: members of these
    # roles who also hold "manage documents" (and every holder of "manage users"). Kept apart
    # from `readers`: a role may manage documents it may not read (accounts.selectors).
    managers = models.ManyToManyField(
        Group,
        related_name="managed_collections",
        blank=True,
        help_text="Roles whose members, holding “manage documents”, manage its documents.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Chunks stored in this collection, kept by a trigger on the chunk table (ingestion/rls.py,
    # CHUNK_COUNT_TRIGGER) in the same statement as every insert, delete or move: the search
    # plans from it without counting rows per question (issue 16). It includes chunks that are
    # out of date or replaced; it sizes the search, never decides what is searched.
    chunk_count = models.PositiveBigIntegerField(default=0, db_default=0, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


def _original_path(instance: DocumentVersion, filename: str) -> str:
    # Stored under a generated name: the uploaded name is data to display, never a path.
    return f"documents/{uuid.uuid4().hex}"


class Document(models.Model):
    """One document in one collection; its bytes live in versions, its text in chunks."""

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        PROCESSING = "processing", "Processing"
        INDEXED = "indexed", "Indexed"
        FAILED = "failed", "Failed"
        EXPIRED = "expired", "Expired"

    collection = models.ForeignKey(Collection, on_delete=models.PROTECT, related_name="documents")
    title = models.CharField(max_length=300)
    # The uploaded file name, cleaned of control characters: shown (escaped), never used as a path.
    original_name = models.CharField(max_length=255, blank=True)
    kind = models.CharField(max_length=16, blank=True)
    version = models.PositiveIntegerField(default=1, help_text="Latest uploaded version.")
    indexed_version = models.PositiveIntegerField(
        null=True, blank=True, help_text="Version whose chunks are searchable."
    )
    content_hash = models.CharField(max_length=64, blank=True, help_text="SHA-256 of `version`.")
    size = models.PositiveBigIntegerField(default=0)
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED)
    state_reason = models.TextField(blank=True)
    progress_done = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    chunk_count = models.PositiveIntegerField(default=0)
    page_count = models.PositiveIntegerField(null=True, blank=True)
    valid_from = models.DateTimeField(null=True, blank=True)
    valid_until = models.DateTimeField(null=True, blank=True)
    supersedes = models.OneToOneField(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="superseded_by",
        help_text="An earlier document this one replaces once it is indexed.",
    )
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    indexed_at = models.DateTimeField(null=True, blank=True)
    # The indexing claim: which task holds it, until when (see services.document_index).
    attempts = models.PositiveIntegerField(default=0)
    task_id = models.CharField(max_length=64, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["state", "lease_expires_at"])]
        constraints = [
            # The same bytes twice in one collection are one document (also under concurrency).
            models.UniqueConstraint(
                fields=["collection", "content_hash"],
                condition=~models.Q(content_hash=""),
                name="document_unique_bytes_per_collection",
            ),
        ]

    def __str__(self) -> str:
        return self.title

    @property
    def progress_percent(self) -> int:
        if self.state == self.State.INDEXED:
            return 100
        if not self.progress_total:
            return 0
        return min(100, round(100 * self.progress_done / self.progress_total))


class DocumentVersion(models.Model):
    """The bytes of one upload of a document, kept for re-indexing and download."""

    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    file = models.FileField(upload_to=_original_path, max_length=200, blank=True)
    content_hash = models.CharField(max_length=64, blank=True)
    size = models.PositiveBigIntegerField(default=0)
    original_name = models.CharField(max_length=255, blank=True)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["document", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["document", "version"], name="version_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.document} v{self.version}"


class Chunk(models.Model):
    """A piece of a document's text with its embedding. Read only through ingestion.selectors.

    `collection_id` is copied from the document so that the access filter is a plain column
    test inside the vector search; moving a document updates it, no re-embedding needed.
    """

    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="chunks")
    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="+")
    version = models.PositiveIntegerField()
    ordinal = models.PositiveIntegerField()
    text = models.TextField()
    heading = models.CharField(max_length=500, blank=True)
    page = models.PositiveIntegerField(null=True, blank=True)
    token_count = models.PositiveIntegerField(default=0)
    embedding = VectorField(dimensions=EMBEDDING_DIMENSIONS)
    # The document's freshness, copied here so that the search filters candidates by plain
    # columns of the row it is looking at, instead of joining every candidate to the list of
    # live documents (a cost that grew with documents x candidates: issue 16). Kept in the same
    # transaction as every change to it (ingestion.services._chunk_freshness_sync); the search
    # checks its winners against the documents table once more (ingestion.freshness.fresh), so
    # a stale copy could cost a result, never admit one.
    superseded = models.BooleanField(
        default=False, db_default=False, help_text="An indexed document replaces this one."
    )
    valid_from = models.DateTimeField(null=True, blank=True)
    valid_until = models.DateTimeField(null=True, blank=True)
    search_vector = models.GeneratedField(
        expression=SearchVector("heading", weight="A", config="english")
        + SearchVector("text", weight="B", config="english"),
        output_field=SearchVectorField(),
        db_persist=True,
    )

    class Meta:
        ordering = ["document", "ordinal"]
        indexes = [
            HnswIndex(
                name="chunk_embedding_hnsw",
                fields=["embedding"],
                m=16,
                ef_construction=64,
                opclasses=["vector_cosine_ops"],
            ),
            GinIndex(name="chunk_search_vector_gin", fields=["search_vector"]),
        ]
        constraints = [
            models.UniqueConstraint(fields=["document", "ordinal"], name="chunk_unique_ordinal"),
        ]

    def __str__(self) -> str:
        return f"{self.document_id}#{self.ordinal}"


class KeywordStat(models.Model):
    """How many chunks of a collection hold a term (its document frequency), for ranking
    keyword matches by how rare their terms are (BM25's idf). The row with the empty term
    counts the collection's chunks. Refreshed by the periodic search maintenance task
    (ingestion.keywords); the search sums the rows of the collections its user may read, so
    what other collections hold never changes a reader's ranking.
    """

    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="+")
    term = models.TextField()
    df = models.PositiveIntegerField()
    refreshed_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["collection", "term"], name="keyword_stat_term_once")
        ]
        indexes = [models.Index(fields=["term", "collection"], name="keyword_stat_term")]

    def __str__(self) -> str:
        return f"{self.collection_id}:{self.term}={self.df}"
