"""Writes to collections, documents and chunks: uploads, the indexing pipeline, freshness.

The indexing pipeline, in the order a document goes through it:

1. `document_upload` stores the bytes under a generated name, recognises identical bytes, makes
   a new version for new bytes of an existing document, and enqueues indexing on commit.
2. `document_index` (run by a Celery task) claims the document with a conditional UPDATE, does
   the slow work outside any transaction (extract, chunk, embed), then swaps the chunk set in
   one transaction after re-checking, under a row lock, that its claim and version still hold.
   A worker killed half way leaves the previous chunk set untouched; the re-delivered task (or
   the reconciler) takes the claim over and the document ends indexed once.
3. `documents_reconcile` re-queues work whose state in PostgreSQL says it is unfinished
   (Redis may lose messages); `documents_expire` retires documents past `valid_until`.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Literal

from asgiref.sync import async_to_sync
from celery.exceptions import SoftTimeLimitExceeded
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import IntegrityError, InterfaceError, OperationalError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.text import slugify
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from accounts.models import User
from accounts.selectors import managed_collection_ids_query
from accounts.services import audit_record
from ingestion import chunking, extraction
from ingestion.models import Chunk, Collection, Document, DocumentVersion
from ingestion.signals import document_changed

logger = logging.getLogger(__name__)

# Errors worth retrying: the database or the broker was briefly unreachable.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError,
    InterfaceError,
    RedisConnectionError,
    RedisTimeoutError,
)

# The channel-layer group the documents page listens to (see ingestion.consumers).
PROGRESS_GROUP = "ingest.progress"
_PROGRESS_INTERVAL = 0.5  # seconds between progress pushes for one document

# --- who may change documents ---------------------------------------------------------------


def _check_manages(actor: User | None, *collection_ids: int) -> None:
    """Refuse unless `actor` manages every one of `collection_ids` (accounts.selectors).

    The views and the API already look documents up among the managed ones; this is the second
    check, for any other caller that passes a user. `actor` None is the system (management
    commands, workers, tests): no check. One SQL query, re-reading the grants.
    """
    if actor is None:
        return
    wanted = set(collection_ids)
    managed = managed_collection_ids_query(user=actor).filter(id__in=wanted)
    if set(managed.values_list("id", flat=True)) != wanted:
        raise PermissionDenied("Your roles do not manage this collection's documents.")


# --- collections ------------------------------------------------------------------------------


def _unique_slug(name: str, *, exclude_pk: int | None = None) -> str:
    base = slugify(name)[:100] or "collection"
    slug, n = base, 2
    taken = Collection.objects.exclude(pk=exclude_pk) if exclude_pk else Collection.objects
    while taken.filter(slug=slug).exists():
        slug, n = f"{base}-{n}", n + 1
    return slug


def _clean_name(name: str, *, exclude_pk: int | None = None) -> str:
    name = " ".join(name.split())
    if not name:
        raise ValidationError("A collection needs a name.")
    clash = Collection.objects.filter(name__iexact=name)
    if exclude_pk:
        clash = clash.exclude(pk=exclude_pk)
    if clash.exists():
        raise ValidationError(f"A collection called {name!r} exists already.")
    return name


@transaction.atomic
def collection_create(
    *,
    actor: User | None,
    name: str,
    description: str = "",
    readers: Iterable[Group] = (),
    managers: Iterable[Group] = (),
    slug: str | None = None,
) -> Collection:
    name = _clean_name(name)
    readers, managers = list(readers), list(managers)
    collection = Collection.objects.create(
        name=name,
        slug=slug or _unique_slug(name),
        description=description.strip(),
    )
    collection.readers.set(readers)
    collection.managers.set(managers)
    audit_record(
        actor=actor,
        action="collection.create",
        target=collection,
        details={
            "readers": sorted(r.name for r in readers),
            "managers": sorted(r.name for r in managers),
        },
    )
    return collection


@transaction.atomic
def collection_update(
    *,
    actor: User,
    collection: Collection,
    name: str,
    description: str,
    readers: Iterable[Group],
    managers: Iterable[Group] | None = None,
) -> Collection:
    """Rename a collection and set the roles that read it and the roles that manage its
    documents (None: unchanged); effective on the next question or page.

    No chunk is touched: chunks carry the collection id, and who reads or manages a collection
    is looked up in the same SQL statement as every search and every management page.
    """
    Collection.objects.select_for_update().get(pk=collection.pk)
    details: dict = {}
    name = _clean_name(name, exclude_pk=collection.pk)
    if name != collection.name:
        details["name"] = {"before": collection.name, "after": name}
        collection.name = name
    description = description.strip()
    if description != collection.description:
        details["description"] = {"before": collection.description, "after": description}
        collection.description = description
    collection.save()
    _set_roles(collection.readers, readers, "readers", details)
    if managers is not None:
        _set_roles(collection.managers, managers, "managers", details)
    if details:
        audit_record(actor=actor, action="collection.update", target=collection, details=details)
    return collection


def _set_roles(relation, roles: Iterable[Group], key: str, details: dict) -> None:
    """Set a collection's readers or managers, noting the change (by role name) for the audit."""
    roles = list(roles)
    before = sorted(relation.values_list("name", flat=True))
    after = sorted(r.name for r in roles)
    if before != after:
        relation.set(roles)
        details[key] = {"before": before, "after": after}


# --- uploads ----------------------------------------------------------------------------------

# Control characters and bidirectional overrides: a file name like "invoice\u202egpj.exe"
# must not display as something it is not.
_UNSAFE_NAME_CHARS = re.compile(r"[\x00-\x1f\x7f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


def clean_filename(name: str) -> str:
    """The uploaded name made safe to store and display: last path part, no control characters."""
    name = unicodedata.normalize("NFC", str(name or ""))
    name = re.split(r"[\\/]", name)[-1]
    name = _UNSAFE_NAME_CHARS.sub("", name).strip().strip(".") or "upload"
    return name[:255]


def title_from_filename(name: str) -> str:
    stem = name.rsplit(".", 1)[0] if "." in name else name
    title = " ".join(re.sub(r"[_\-]+", " ", stem).split())
    return (title[:1].upper() + title[1:])[:300] or "Untitled document"


def max_upload_bytes() -> int:
    return settings.INGEST_MAX_UPLOAD_MB * 1024 * 1024


def extraction_limits() -> extraction.Limits:
    return extraction.Limits(
        max_bytes=max_upload_bytes(),
        max_text_chars=settings.INGEST_MAX_TEXT_CHARS,
        max_pages=settings.INGEST_MAX_PAGES,
    )


@dataclass(frozen=True)
class UploadResult:
    document: Document
    outcome: Literal["created", "new_version", "unchanged", "duplicate", "refused"]

    @property
    def message(self) -> str:
        d = self.document
        return {
            "created": f"{d.original_name}: queued for indexing.",
            "new_version": f"{d.original_name}: version {d.version} queued for indexing.",
            "unchanged": f"{d.original_name}: identical to the current version; nothing to do.",
            "duplicate": f"{d.original_name}: already in this collection as “{d.title}”.",
            "refused": f"{d.original_name}: {d.state_reason}",
        }[self.outcome]


def _store(stream: IO[bytes]) -> tuple[str, str, int]:
    """Copy an upload into storage under a generated name; return (name, sha256, size)."""
    digest = hashlib.sha256()
    size = 0

    class _Hashing(File):
        def chunks(self, chunk_size=None):
            nonlocal size
            for block in super().chunks(chunk_size):
                digest.update(block)
                size += len(block)
                yield block

    if hasattr(stream, "seek"):
        stream.seek(0)
    name = default_storage.save(
        DocumentVersion.file.field.generate_filename(None, ""), _Hashing(stream)
    )
    return name, digest.hexdigest(), size


def _enqueue_index(document_id: int) -> None:
    from ingestion.tasks import index_document

    # After commit: the worker must find the row (and its new version) when it runs.
    transaction.on_commit(lambda: index_document.delay(document_id))


def _refused_upload(
    *, actor: User | None, collection: Collection, filename: str, size: int, reason: str
) -> UploadResult:
    with transaction.atomic():
        document = Document.objects.create(
            collection=collection,
            title=title_from_filename(filename),
            original_name=filename,
            size=size,
            state=Document.State.FAILED,
            state_reason=reason,
            uploaded_by=actor,
        )
        audit_record(
            actor=actor, action="document.refused", target=document, details={"reason": reason}
        )
    return UploadResult(document, "refused")


def document_upload(
    *,
    actor: User | None,
    collection: Collection,
    stream: IO[bytes],
    filename: str,
    size: int,
    title: str = "",
    document: Document | None = None,
    supersedes: Document | None = None,
    valid_from: datetime | None = None,
    valid_until: datetime | None = None,
) -> UploadResult:
    """Accept an upload into `collection` (or as a new version of `document`).

    Too-large files are refused from their declared size, before anything is stored. Identical
    bytes are recognised: the same bytes in the same collection are the same document, and the
    same bytes as a document's current version are no new version. Anything else is stored
    under a generated name and queued; what is wrong with its content is found by the
    pipeline, which ends the document `failed` with a reason the admin can read.
    """
    filename = clean_filename(filename)
    if document is not None:
        collection = document.collection
    _check_manages(actor, collection.pk, *([supersedes.collection_id] if supersedes else []))
    if size > max_upload_bytes():
        reason = (
            f"The file is {size / 1024 / 1024:.1f} MB; the limit is "
            f"{settings.INGEST_MAX_UPLOAD_MB} MB."
        )
        return _refused_upload(
            actor=actor, collection=collection, filename=filename, size=size, reason=reason
        )
    if valid_from and valid_until and valid_until <= valid_from:
        raise ValidationError("“Valid until” must be after “valid from”.")
    stored, digest, stored_size = _store(stream)
    try:
        if document is not None:
            result = _new_version(
                actor=actor,
                document=document,
                stored=stored,
                digest=digest,
                size=stored_size,
                filename=filename,
            )
        else:
            result = _new_document(
                actor=actor,
                collection=collection,
                stored=stored,
                digest=digest,
                size=stored_size,
                filename=filename,
                title=title,
                supersedes=supersedes,
                valid_from=valid_from,
                valid_until=valid_until,
            )
    except BaseException:
        default_storage.delete(stored)
        raise
    if result.outcome in ("unchanged", "duplicate"):
        default_storage.delete(stored)
    return result


def _new_document(
    *,
    actor,
    collection,
    stored,
    digest,
    size,
    filename,
    title,
    supersedes,
    valid_from,
    valid_until,
) -> UploadResult:
    existing = Document.objects.filter(collection=collection, content_hash=digest).first()
    if existing:
        return UploadResult(existing, "duplicate")
    try:
        with transaction.atomic():
            document = Document.objects.create(
                collection=collection,
                title=(title or title_from_filename(filename))[:300],
                original_name=filename,
                content_hash=digest,
                size=size,
                uploaded_by=actor,
                supersedes=supersedes,
                valid_from=valid_from,
                valid_until=valid_until,
            )
            DocumentVersion.objects.create(
                document=document,
                version=1,
                file=stored,
                content_hash=digest,
                size=size,
                original_name=filename,
                uploaded_by=actor,
            )
            audit_record(
                actor=actor,
                action="document.upload",
                target=document,
                details={"collection": collection.name, "sha256": digest, "size": size},
            )
            _enqueue_index(document.pk)
    except IntegrityError:
        # The same bytes were uploaded concurrently and the other upload won the unique
        # constraint: this one is the duplicate.
        existing = Document.objects.filter(collection=collection, content_hash=digest).first()
        if existing is None:
            raise
        return UploadResult(existing, "duplicate")
    return UploadResult(document, "created")


def _new_version(*, actor, document, stored, digest, size, filename) -> UploadResult:
    with transaction.atomic():
        document = Document.objects.select_for_update().get(pk=document.pk)
        if document.content_hash == digest:
            return UploadResult(document, "unchanged")
        clash = (
            Document.objects.filter(collection=document.collection, content_hash=digest)
            .exclude(pk=document.pk)
            .first()
        )
        if clash:
            raise ValidationError(f"These bytes are already the document “{clash.title}”.")
        document.version += 1
        DocumentVersion.objects.create(
            document=document,
            version=document.version,
            file=stored,
            content_hash=digest,
            size=size,
            original_name=filename,
            uploaded_by=actor,
        )
        # The previous version's chunks stay searchable until the new ones replace them.
        document.content_hash, document.size, document.original_name = digest, size, filename
        document.state, document.state_reason = Document.State.QUEUED, ""
        document.progress_done = document.progress_total = document.attempts = 0
        document.task_id, document.lease_expires_at = "", None
        document.save()
        audit_record(
            actor=actor,
            action="document.version",
            target=document,
            details={"version": document.version, "sha256": digest, "size": size},
        )
        _changed([document.pk], "has a new version")
        _enqueue_index(document.pk)
    return UploadResult(document, "new_version")


def document_import_path(
    *, actor: User | None, collection: Collection, path: Path, title: str = ""
) -> UploadResult:
    """Upload a file from disk (bulk import command). Size is checked from stat() first."""
    size = path.stat().st_size
    if size > max_upload_bytes():
        return document_upload(
            actor=actor, collection=collection, stream=None, filename=path.name, size=size
        )
    with path.open("rb") as handle:
        return document_upload(
            actor=actor,
            collection=collection,
            stream=handle,
            filename=path.name,
            size=size,
            title=title,
        )


# --- the indexing pipeline --------------------------------------------------------------------


def _changed(document_ids: list[int], reason: str) -> None:
    """Tell listeners (tuning: adapters trained on these documents) in this transaction."""
    document_changed.send(sender=Document, document_ids=document_ids, reason=reason)


def _publish(document_id: int, **fields) -> None:
    """Push a document's state to the documents page; a dead channel layer must not stop work."""
    try:
        async_to_sync(get_channel_layer().group_send)(
            PROGRESS_GROUP, {"type": "document.progress", "id": document_id, **fields}
        )
    except Exception:
        logger.warning("could not publish indexing progress", exc_info=True)


def _claim(document_id: int, task_id: str) -> int | None:
    """Claim a document for `task_id`; the version to index, or None if someone else has it.

    One conditional UPDATE, so two workers never both win. A claim can be taken over when its
    lease ran out (the worker died or hung) or by the same task id (Celery re-delivered the
    task whose worker was killed: the dead attempt cannot swap in anything any more).
    """
    now = timezone.now()
    claimable = Q(state=Document.State.QUEUED) | Q(
        Q(state=Document.State.PROCESSING) & (Q(lease_expires_at__lt=now) | Q(task_id=task_id))
    )
    won = Document.objects.filter(claimable, pk=document_id).update(
        state=Document.State.PROCESSING,
        task_id=task_id,
        lease_expires_at=now + timedelta(seconds=settings.INGEST_LEASE_SECONDS),
        attempts=F("attempts") + 1,
        progress_done=0,
        progress_total=0,
        state_reason="",
        updated_at=now,
    )
    if not won:
        return None
    document = Document.objects.only("version", "attempts").get(pk=document_id)
    if document.attempts > settings.INGEST_MAX_ATTEMPTS:
        _fail(
            document_id,
            task_id,
            f"Indexing was interrupted {document.attempts - 1} times; it is not retried "
            "automatically. Use Retry once the cause is fixed.",
        )
        return None
    return document.version


def _fail(document_id: int, task_id: str, reason: str) -> None:
    updated = Document.objects.filter(
        pk=document_id, task_id=task_id, state=Document.State.PROCESSING
    ).update(
        state=Document.State.FAILED,
        state_reason=reason[:2000],
        lease_expires_at=None,
        updated_at=timezone.now(),
    )
    if updated:
        _publish(document_id, state=Document.State.FAILED, reason=reason)


def _progress(document_id: int, task_id: str, done: int, total: int) -> None:
    Document.objects.filter(pk=document_id, task_id=task_id).update(
        progress_done=done, progress_total=total
    )
    _publish(document_id, state=Document.State.PROCESSING, done=done, total=total)


def document_index(*, document_id: int, task_id: str) -> str:
    """Index one document end to end; safe to run twice, concurrently, or after a crash.

    Returns what happened ("indexed", "failed", "skipped", "superseded") for logs and tests.
    Bad content ends the document `failed` with a readable reason. Transient errors
    (database, broker) propagate so the task retries with backoff.
    """
    version = _claim(document_id, task_id)
    if version is None:
        return "skipped"
    _publish(document_id, state=Document.State.PROCESSING, done=0, total=0)
    try:
        row = DocumentVersion.objects.get(document_id=document_id, version=version)
        document = Document.objects.get(pk=document_id)
        # Local storage in this deployment; object storage would download to a temp file here.
        path = Path(default_storage.path(row.file.name))
        extracted = extraction.extract(path, filename=row.original_name, limits=extraction_limits())
        title = document.title
        pieces = chunking.chunk_sections(
            extracted.sections,
            title=title,
            tokenizer=chunking.load_tokenizer(),
            max_tokens=settings.INGEST_CHUNK_TOKENS,
            overlap_tokens=settings.INGEST_CHUNK_OVERLAP,
        )
        if not pieces:
            raise extraction.Rejected("No text could be extracted from this file.")
        vectors = _embed_with_progress(document_id, task_id, pieces)
    except extraction.Rejected as exc:
        _fail(document_id, task_id, exc.reason)
        return "failed"
    except DocumentVersion.DoesNotExist:
        _fail(document_id, task_id, "The stored file of this version is missing.")
        return "failed"
    except (FileNotFoundError, PermissionError):
        logger.exception("stored file unreadable", extra={"document_id": document_id})
        _fail(document_id, task_id, "The stored file could not be read; upload it again.")
        return "failed"
    except TRANSIENT_ERRORS:
        raise  # the task retries with backoff; the claim is ours to take again (same task id)
    except SoftTimeLimitExceeded:
        _fail(document_id, task_id, "Indexing took longer than the time limit and was stopped.")
        return "failed"
    except Exception as exc:
        # A bug or an input our parsers choke on: the admin sees a plain message, the log has
        # the traceback, and the document does not sit in `processing` until its lease ends.
        logger.exception("indexing failed unexpectedly", extra={"document_id": document_id})
        _fail(
            document_id,
            task_id,
            f"Indexing failed unexpectedly ({type(exc).__name__}). The error is logged; "
            "try again, or contact your administrator if it persists.",
        )
        return "failed"
    return _swap(
        document_id=document_id,
        task_id=task_id,
        version=version,
        extracted=extracted,
        pieces=pieces,
        vectors=vectors,
    )


def _embed_with_progress(document_id: int, task_id: str, pieces: list) -> list:
    from ingestion.embedding import embed_texts

    total = len(pieces)
    batch = max(settings.EMBEDDING_BATCH_SIZE, 1) * 2
    vectors: list = []
    last_push = 0.0
    _progress(document_id, task_id, 0, total)
    for start in range(0, total, batch):
        part = pieces[start : start + batch]
        vectors.extend(embed_texts([p.embedding_text for p in part]))
        now = time.monotonic()
        if now - last_push >= _PROGRESS_INTERVAL or start + batch >= total:
            _progress(document_id, task_id, min(start + batch, total), total)
            last_push = now
    return vectors


def _swap(*, document_id, task_id, version, extracted, pieces, vectors) -> str:
    with transaction.atomic():
        document = Document.objects.select_for_update().get(pk=document_id)
        if (
            document.task_id != task_id
            or document.version != version
            or document.state != Document.State.PROCESSING
        ):
            # A newer version arrived, or another attempt took the claim over: its result wins.
            return "superseded"
        # Replace the whole chunk set in this one transaction: searches see the old set or the
        # new one, never a mix, never a partial set.
        Chunk.objects.filter(document_id=document_id).delete()
        Chunk.objects.bulk_create(
            [
                Chunk(
                    document_id=document_id,
                    collection_id=document.collection_id,
                    version=version,
                    ordinal=piece.ordinal,
                    text=piece.text,
                    heading=piece.heading[:500],
                    page=piece.page,
                    token_count=piece.token_count,
                    embedding=vector,
                )
                for piece, vector in zip(pieces, vectors, strict=True)
            ],
            batch_size=500,
        )
        now = timezone.now()
        document.state = Document.State.INDEXED
        document.state_reason = ""
        document.indexed_version = version
        document.indexed_at = now
        if extracted.title and document.title == title_from_filename(document.original_name):
            document.title = extracted.title[:300]  # the document's own title beats its file name
        document.kind = extracted.kind
        document.page_count = extracted.pages
        document.chunk_count = len(pieces)
        document.progress_done = document.progress_total = len(pieces)
        document.lease_expires_at = None
        document.save()
        # The new chunks take the document's dates; the document it replaces leaves the search.
        _chunk_freshness_sync([document_id, document.supersedes_id])
    _publish(
        document_id,
        state=Document.State.INDEXED,
        done=len(pieces),
        total=len(pieces),
        title=document.title,
    )
    logger.info(
        "document indexed",
        extra={"document_id": document_id, "version": version, "chunks": len(pieces)},
    )
    return "indexed"


# --- maintenance ------------------------------------------------------------------------------


# Each chunk carries its document's freshness (Chunk.superseded, valid_from, valid_until) so that
# the search filters candidates without joining them to the documents. One statement brings the
# chunks of the given documents in line with the documents table, writing only rows that differ.
_FRESHNESS_SYNC = """
UPDATE ingestion_chunk c
   SET valid_from = d.valid_from, valid_until = d.valid_until, superseded = f.superseded
  FROM ingestion_document d,
       LATERAL (SELECT EXISTS (SELECT 1 FROM ingestion_document s
                               WHERE s.supersedes_id = d.id AND s.indexed_version IS NOT NULL)
                       AS superseded) f
 WHERE d.id = ANY(%s) AND c.document_id = d.id
   AND (c.valid_from IS DISTINCT FROM d.valid_from OR c.valid_until IS DISTINCT FROM d.valid_until
        OR c.superseded IS DISTINCT FROM f.superseded)
"""


def _chunk_freshness_sync(document_ids: Iterable[int | None]) -> int:
    """Copy the documents' freshness onto their chunks, in the caller's transaction: every
    change to a document's dates, to what replaces it, or to its chunk set calls this."""
    ids = sorted({i for i in document_ids if i is not None})
    if not ids:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(_FRESHNESS_SYNC, [ids])
        return cursor.rowcount


def documents_reconcile() -> list[int]:
    """Re-queue documents whose state says unfinished but whose work is not happening.

    Queued for longer than a lease (the broker lost the message) or processing past the lease
    (the worker died or hangs). The claim makes a duplicate delivery harmless.
    """
    from ingestion.tasks import index_document

    now = timezone.now()
    stale_queue = now - timedelta(seconds=settings.INGEST_LEASE_SECONDS)
    stuck = list(
        Document.objects.filter(
            Q(state=Document.State.QUEUED, updated_at__lt=stale_queue)
            | Q(state=Document.State.PROCESSING, lease_expires_at__lt=now)
        ).values_list("pk", flat=True)
    )
    for document_id in stuck:
        index_document.delay(document_id)
    if stuck:
        logger.warning("re-queued unfinished documents", extra={"document_ids": stuck})
    return stuck


def documents_expire() -> list[int]:
    """Mark documents past `valid_until` expired and drop their chunks.

    Search already excludes them by date in its query; this makes the state visible to admins
    and frees the index.
    """
    now = timezone.now()
    expired = []
    for document_id in (
        Document.objects.filter(valid_until__lte=now)
        .exclude(state=Document.State.EXPIRED)
        .values_list("pk", flat=True)
    ):
        with transaction.atomic():
            updated = Document.objects.filter(pk=document_id, valid_until__lte=now).update(
                state=Document.State.EXPIRED,
                state_reason=f"Expired (valid until {now:%Y-%m-%d %H:%M} UTC or earlier).",
                chunk_count=0,
                updated_at=now,
            )
            if updated:
                Chunk.objects.filter(document_id=document_id).delete()
                _changed([document_id], "expired")
                expired.append(document_id)
    for document_id in expired:
        _publish(document_id, state=Document.State.EXPIRED)
    return expired


@transaction.atomic
def document_retry(*, actor: User | None, document: Document) -> Document:
    document = Document.objects.select_for_update().get(pk=document.pk)
    _check_manages(actor, document.collection_id)
    if not document.versions.exists():
        raise ValidationError("This upload was refused before it was stored; upload it again.")
    document.state, document.state_reason = Document.State.QUEUED, ""
    document.attempts, document.task_id, document.lease_expires_at = 0, "", None
    document.progress_done = document.progress_total = 0
    document.save()
    audit_record(actor=actor, action="document.retry", target=document)
    _enqueue_index(document.pk)
    return document


@transaction.atomic
def document_delete(*, actor: User | None, document: Document) -> None:
    """Delete a document, its chunks and its stored files (the files once the row is gone)."""
    document = Document.objects.select_for_update().select_related("collection").get(pk=document.pk)
    _check_manages(actor, document.collection_id)
    names = [n for n in document.versions.values_list("file", flat=True) if n]
    audit_record(
        actor=actor,
        action="document.delete",
        target=document,
        details={"collection": document.collection.name, "versions": len(names)},
    )
    document_id, replaced = document.pk, document.supersedes_id
    document.delete()  # cascades to chunks and versions
    # The document it replaced (if any) is current again, unless another successor is indexed.
    _chunk_freshness_sync([replaced])
    _changed([document_id], "was deleted")

    def remove_files() -> None:
        for name in names:
            default_storage.delete(name)

    transaction.on_commit(remove_files)


@transaction.atomic
def document_move(*, actor: User | None, document: Document, collection: Collection) -> Document:
    """Move a document to another collection: its readers change at once, nothing re-embedded."""
    document = Document.objects.select_for_update().get(pk=document.pk)
    _check_manages(actor, document.collection_id, collection.pk)
    before = document.collection
    if before.pk == collection.pk:
        return document
    if (
        document.content_hash
        and Document.objects.filter(collection=collection, content_hash=document.content_hash)
        .exclude(pk=document.pk)
        .exists()
    ):
        raise ValidationError(f"“{collection.name}” already holds the same file.")
    document.collection = collection
    document.save(update_fields=["collection", "updated_at"])
    Chunk.objects.filter(document_id=document.pk).update(collection_id=collection.pk)
    _changed([document.pk], f"moved to “{collection.name}”")
    audit_record(
        actor=actor,
        action="document.move",
        target=document,
        details={"before": before.name, "after": collection.name},
    )
    return document


@transaction.atomic
def document_set_validity(
    *,
    actor: User | None,
    document: Document,
    valid_from: datetime | None,
    valid_until: datetime | None,
) -> Document:
    """Change when a document may be retrieved; effective on the next search.

    An expired document given a later `valid_until` is queued again (its chunks were dropped).
    """
    if valid_from and valid_until and valid_until <= valid_from:
        raise ValidationError("“Valid until” must be after “valid from”.")
    document = Document.objects.select_for_update().get(pk=document.pk)
    _check_manages(actor, document.collection_id)
    before = {"valid_from": document.valid_from, "valid_until": document.valid_until}
    document.valid_from, document.valid_until = valid_from, valid_until
    revive = document.state == Document.State.EXPIRED and (
        valid_until is None or valid_until > timezone.now()
    )
    if revive:
        document.state, document.state_reason = Document.State.QUEUED, ""
        document.attempts, document.task_id, document.lease_expires_at = 0, "", None
    document.save()
    _chunk_freshness_sync([document.pk])
    _changed([document.pk], "changed its validity dates")
    audit_record(
        actor=actor,
        action="document.validity",
        target=document,
        details={
            key: {
                "before": str(before[key]) if before[key] else None,
                "after": str(value) if value else None,
            }
            for key, value in (("valid_from", valid_from), ("valid_until", valid_until))
        },
    )
    if revive:
        _enqueue_index(document.pk)
    return document


def reindex(*, collection: Collection | None = None, document: Document | None = None) -> int:
    """Queue documents for indexing again (all, one collection, or one document)."""
    documents = Document.objects.exclude(versions__isnull=True)
    if document is not None:
        documents = documents.filter(pk=document.pk)
    elif collection is not None:
        documents = documents.filter(collection=collection)
    ids = list(documents.values_list("pk", flat=True).distinct())
    for document_id in ids:
        with transaction.atomic():
            Document.objects.filter(pk=document_id).update(
                state=Document.State.QUEUED,
                attempts=0,
                task_id="",
                lease_expires_at=None,
                updated_at=timezone.now(),
            )
            _enqueue_index(document_id)
    return len(ids)
