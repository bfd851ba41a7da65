"""Writes to the query log and its review tables: appends, review marks, exports, retention.

Every write to the three log tables goes through this module. Appends to the entry chain are
serialised by a transaction-scoped advisory lock, held until the surrounding transaction (the
chat's answer transaction) commits, so the next append always sees this one's hash.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.capabilities import Capability
from accounts.selectors import user_has_capability
from accounts.services import audit_record
from compliance import chain
from compliance.models import (
    QueryLogAccess,
    QueryLogEntry,
    QueryLogExport,
    QueryLogReview,
    QueryLogVerification,
)

logger = logging.getLogger(__name__)

# Any constant shared by every writer of the chain; pg_advisory_xact_lock(bigint).
_APPEND_LOCK = 0x436F_756E_7365_6C31  # "Counsel1"

_CHAIN_MANAGED = {"prev_hash", "entry_hash", "id", "search"}


def _lock_chain() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_APPEND_LOCK])


def _tip_hash() -> str:
    tip = QueryLogEntry.objects.order_by("-id").values_list("entry_hash", flat=True).first()
    return tip or chain.GENESIS


def _insert(fields: dict, prev_hash: str) -> QueryLogEntry:
    entry = QueryLogEntry(**fields)
    values = {name: getattr(entry, name) for name in chain.HASHED_FIELDS}
    entry.prev_hash = prev_hash
    entry.entry_hash = chain.entry_hash(prev_hash, values)
    entry.save(force_insert=True)
    return entry


def _used_chunk_snapshots(user, retrieved: list[dict]) -> list[dict]:
    """The text of the chunks that went into the prompt, read as the asker could read them.

    Read through the search chokepoint with the asker's own access (the ids come from their
    search a moment ago), so the log never copies a chunk its asker could not read.
    """
    from ingestion.rls import reading_as
    from ingestion.selectors import searchable_chunks

    used = [r for r in retrieved if r.get("used") and r.get("chunk")]
    if user is None or not used:
        return []
    with reading_as(user=user):
        rows = {
            row["id"]: row
            for row in searchable_chunks(user=user)
            .filter(pk__in=[r["chunk"] for r in used])
            .values(
                "id",
                "document_id",
                "document__title",
                "collection_id",
                "version",
                "heading",
                "page",
                "text",
            )
        }
    snapshots = []
    for r in used:
        row = rows.get(r["chunk"])
        snapshots.append(
            {
                "chunk": r["chunk"],
                "document": r.get("document"),
                "document_title": row["document__title"] if row else "",
                "collection": r.get("collection"),
                "version": r.get("version"),
                "heading": row["heading"] if row else "",
                "page": row["page"] if row else None,
                # None: the chunk was replaced between the search and this entry (rare).
                "text": row["text"] if row else None,
            }
        )
    return snapshots


def querylog_append(**fields) -> QueryLogEntry:
    """Append one entry to the query log, chained to the previous one.

    Takes QueryLogEntry's fields (`user`, `question`, `outcome`, `retrieved`, ...). When
    `used_chunks` is not given, the texts of the retrieved chunks marked `used` are copied into
    the entry so that it stays self-contained. Call it inside the transaction that commits what
    the entry records: the chain lock is held until that transaction ends.
    """
    unknown = _CHAIN_MANAGED.intersection(fields)
    if unknown:
        raise TypeError(f"querylog_append computes {sorted(unknown)} itself")
    if "used_chunks" not in fields:
        fields["used_chunks"] = _used_chunk_snapshots(
            fields.get("user"), fields.get("retrieved") or []
        )
    with transaction.atomic():
        _lock_chain()
        fields.setdefault("created_at", timezone.now())
        return _insert(fields, _tip_hash())


# --- review -----------------------------------------------------------------------------------


def _require_officer(user) -> None:
    if not user_has_capability(user=user, capability=Capability.REVIEW_QUERYLOG):
        raise PermissionError("only compliance officers review the query log")


def querylog_entry_open(*, officer, entry_id: int) -> QueryLogEntry | None:
    """The entry for its review page, recording that `officer` opened it (None: not found)."""
    _require_officer(officer)
    entry = QueryLogEntry.objects.filter(pk=entry_id).first()
    if entry is not None:
        QueryLogAccess.objects.create(
            entry=entry, officer=officer, officer_username=officer.get_username()
        )
    return entry


def querylog_review_add(
    *, officer, entry: QueryLogEntry, kind: str, note: str = ""
) -> QueryLogReview:
    """Mark an entry reviewed, flag it (a reason is required) or add a note. Append-only."""
    _require_officer(officer)
    note = note.strip()
    if kind not in QueryLogReview.Kind.values:
        raise ValidationError("Unknown kind of review mark.")
    if kind == QueryLogReview.Kind.FLAGGED and not note:
        raise ValidationError("Say why you flag this entry.")
    if kind == QueryLogReview.Kind.NOTE and not note:
        raise ValidationError("The note is empty.")
    if len(note) > settings.QUERYLOG_NOTE_MAX_CHARS:
        raise ValidationError(
            f"Notes are limited to {settings.QUERYLOG_NOTE_MAX_CHARS} characters."
        )
    if entry.kind != QueryLogEntry.Kind.QUESTION:
        raise ValidationError("Checkpoints are not reviewed.")
    return QueryLogReview.objects.create(
        entry=entry,
        kind=kind,
        note=note,
        reviewer=officer,
        reviewer_username=officer.get_username(),
    )


# --- export -----------------------------------------------------------------------------------

EXPORT_COLUMNS = (
    "id",
    "created_at",
    "username",
    "roles",
    "outcome",
    "route",
    "route_reason",
    "model",
    "adapter",
    "question",
    "answer",
    "error",
    "retrieved",
    "prompt_tokens",
    "completion_tokens",
    "cost_estimate",
    "first_token_ms",
    "latency_ms",
    "review_state",
    "unsupported_figures",
    "unsupported",
    "prev_hash",
    "entry_hash",
)

# Spreadsheets run a cell that starts with one of these as a formula (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: str) -> str:
    """Neutralise a CSV cell a spreadsheet would evaluate, by prefixing an apostrophe (OWASP)."""
    return "'" + value if value.startswith(_FORMULA_START) else value


def querylog_export_request(*, officer, filters: dict, export_format: str) -> QueryLogExport:
    """Queue an export of the entries matching `filters` (as cleaned by LogFilterForm)."""
    from compliance.tasks import export_querylog

    _require_officer(officer)
    if export_format not in QueryLogExport.Format.values:
        raise ValidationError("Choose CSV or JSON Lines.")
    with transaction.atomic():
        export = QueryLogExport.objects.create(
            token=secrets.token_urlsafe(24),
            requested_by=officer,
            requested_by_username=officer.get_username(),
            format=export_format,
            filters=filters,
        )
        audit_record(
            actor=officer,
            action="querylog.export",
            target=export,
            details={"format": export_format, "filters": filters},
        )
        transaction.on_commit(lambda: export_querylog.delay(export.pk))
    return export


def _row(entry: dict) -> dict:
    return {
        **{k: entry[k] for k in EXPORT_COLUMNS if k in entry},
        "created_at": entry["created_at"].isoformat(),
        "cost_estimate": str(entry["cost_estimate"]),
        "review_state": entry.get("review_state") or "unreviewed",
    }


def querylog_export_run(*, export_id: int, task_id: str = "") -> str:
    """Write an export's file and manifest; idempotent (a re-delivered task finds it claimed)."""
    from compliance.selectors import LogFilters, querylog_export_rows, querylog_filter

    # A conditional UPDATE claims the job; the same task id may take it back after its worker
    # died mid-export (acks_late + reject_on_worker_lost re-deliver it), and starts over.
    queued = Q(state=QueryLogExport.State.QUEUED)
    mine = Q(state=QueryLogExport.State.RUNNING, task_id=task_id[:64]) if task_id else Q(pk=None)
    claimed = QueryLogExport.objects.filter(queued | mine, pk=export_id).update(
        state=QueryLogExport.State.RUNNING, task_id=task_id[:64]
    )
    if not claimed:
        return "skipped"
    export = QueryLogExport.objects.get(pk=export_id)
    try:
        filters = LogFilters.from_json(export.filters)
        total = querylog_filter(filters).count()
        QueryLogExport.objects.filter(pk=export.pk).update(total=total)
        # Two random names: the URL token is not the path, and neither can be guessed.
        relative = Path(settings.QUERYLOG_EXPORT_DIR) / secrets.token_hex(16)
        folder = Path(settings.MEDIA_ROOT) / relative
        folder.mkdir(parents=True, exist_ok=True)
        name = f"querylog-{timezone.now():%Y%m%d-%H%M%S}.{export.format}"
        digest = hashlib.sha256()
        written = 0
        first_id = last_id = None
        with open(folder / name, "wb") as out:
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=EXPORT_COLUMNS, lineterminator="\r\n")
            if export.format == QueryLogExport.Format.CSV:
                writer.writeheader()
            for entry in querylog_export_rows(filters):
                row = _row(entry)
                if export.format == QueryLogExport.Format.CSV:
                    writer.writerow(
                        {
                            k: csv_safe(v)
                            if isinstance(v, str)
                            else json.dumps(v, ensure_ascii=False)
                            if isinstance(v, list | dict)
                            else v
                            for k, v in row.items()
                        }
                    )
                else:
                    buffer.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
                chunk = buffer.getvalue().encode()
                buffer.seek(0)
                buffer.truncate()
                out.write(chunk)
                digest.update(chunk)
                written += 1
                first_id = entry["id"] if first_id is None else first_id
                last_id = entry["id"]
                if written % settings.QUERYLOG_EXPORT_PROGRESS_EVERY == 0:
                    QueryLogExport.objects.filter(pk=export.pk).update(written=written)
            chunk = buffer.getvalue().encode()  # the CSV header of an empty export
            out.write(chunk)
            digest.update(chunk)
        manifest = {
            "export": export.token,
            "file": name,
            "format": export.format,
            "filters": export.filters,
            "count": written,
            "sha256": digest.hexdigest(),
            "size": (folder / name).stat().st_size,
            "first_entry_id": first_id,
            "last_entry_id": last_id,
            "chain_tip": _tip_hash(),
            "columns": list(EXPORT_COLUMNS),
            "requested_by": export.requested_by_username,
            "created_at": timezone.now().isoformat(),
            "csv_formula_prefix": "'" if export.format == "csv" else None,
        }
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
        with transaction.atomic():
            QueryLogExport.objects.filter(pk=export.pk).update(
                state=QueryLogExport.State.DONE,
                written=written,
                total=written,
                file_path=str(relative / name),
                size=manifest["size"],
                sha256=manifest["sha256"],
                manifest=manifest,
                finished_at=timezone.now(),
            )
            export.refresh_from_db()
            audit_record(
                actor=None,
                action="querylog.export_done",
                target=export,
                details={"count": written, "sha256": manifest["sha256"]},
            )
    except Exception as exc:
        logger.exception("query-log export failed", extra={"export_id": export_id})
        QueryLogExport.objects.filter(pk=export_id).update(
            state=QueryLogExport.State.FAILED,
            error=f"The export failed ({type(exc).__name__}); it has been logged.",
            finished_at=timezone.now(),
        )
        return "failed"
    return "done"


def querylog_export_downloaded(*, officer, export: QueryLogExport, what: str) -> None:
    _require_officer(officer)
    audit_record(actor=officer, action=f"querylog.export_{what}", target=export, details={})


# --- verification -----------------------------------------------------------------------------


def querylog_verification_request(*, officer=None) -> QueryLogVerification:
    """Queue a full verification of the chain (an officer's "Verify now", or the daily run).

    A verification already queued or running is returned instead of starting a second one.
    """
    from compliance.tasks import verify_chain

    if officer is not None:
        _require_officer(officer)
    pending = QueryLogVerification.objects.filter(
        state__in=[QueryLogVerification.State.QUEUED, QueryLogVerification.State.RUNNING]
    ).first()
    if pending is not None:
        return pending
    verification = QueryLogVerification.objects.create(
        requested_by_username=officer.get_username() if officer else "system"
    )
    transaction.on_commit(lambda: verify_chain.delay(verification.pk))
    return verification


def querylog_verification_run(*, verification_id: int) -> str:
    """Run a queued verification and store its verdict (a broken chain is logged as an error)."""
    from compliance.selectors import querylog_verify

    claimed = QueryLogVerification.objects.filter(
        pk=verification_id, state=QueryLogVerification.State.QUEUED
    ).update(state=QueryLogVerification.State.RUNNING, created_at=timezone.now())
    if not claimed:
        return "skipped"
    try:
        result = querylog_verify()
    except Exception:
        logger.exception("query-log verification failed")
        QueryLogVerification.objects.filter(pk=verification_id).update(
            state=QueryLogVerification.State.FAILED, finished_at=timezone.now()
        )
        return "failed"
    if not result.intact:
        logger.error("query-log chain broken: %s", result.message())
    QueryLogVerification.objects.filter(pk=verification_id).update(
        state=QueryLogVerification.State.DONE,
        intact=result.intact,
        checked=result.checked,
        first_bad_id=result.first_bad_id,
        reason=result.reason,
        tip_id=result.tip_id,
        tip_hash=result.tip_hash,
        finished_at=timezone.now(),
    )
    return "intact" if result.intact else "broken"


# --- retention --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PurgeResult:
    removed: int
    checkpoint: QueryLogEntry | None


def querylog_purge(*, older_than: dt.datetime | None = None) -> PurgeResult:
    """Remove the entries older than the retention period, through the privileged path.

    Removes the oldest run of entries created before the cutoff (with their review marks and
    access records) by calling the SECURITY DEFINER function `compliance_querylog_purge`, then
    appends a checkpoint entry saying what was removed and the hash the first remaining entry
    links to, so `verify_querylog` still reports the retained chain intact. Audited.
    """
    if older_than is None:
        days = settings.QUERYLOG_RETENTION_DAYS
        if not days:
            return PurgeResult(0, None)
        older_than = timezone.now() - dt.timedelta(days=days)
    with transaction.atomic():
        _lock_chain()
        tip = _tip_hash()
        before = QueryLogEntry.objects.filter(created_at__lt=older_than).order_by("id")
        first = before.values("id", "prev_hash").first()
        if first is None:
            return PurgeResult(0, None)
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM compliance_querylog_purge(%s)", [older_than])
            removed, keep_from = cursor.fetchone()
        if not removed:
            return PurgeResult(0, None)
        remaining_head = (
            QueryLogEntry.objects.order_by("id").values_list("prev_hash", flat=True).first()
        )
        now = timezone.now()
        checkpoint = _insert(
            {
                "kind": QueryLogEntry.Kind.CHECKPOINT,
                "username": "system",
                "question": f"Retention removed {removed} entries created before "
                f"{older_than:%Y-%m-%d %H:%M} UTC.",
                "outcome": QueryLogEntry.Outcome.CHECKPOINT,
                "route": "",
                "started_at": now,
                "finished_at": now,
                "created_at": now,
                "checkpoint": {
                    "removed": removed,
                    "first_id": first["id"],
                    "last_id": keep_from - 1,
                    "cutoff": older_than.isoformat(),
                    "retention_days": settings.QUERYLOG_RETENTION_DAYS,
                    "removed_first_prev_hash": first["prev_hash"],
                    # The hash the oldest remaining entry links to (this checkpoint's own
                    # predecessor when nothing older remains): the verifier's new starting point.
                    "anchor": remaining_head or tip,
                },
            },
            tip,
        )
        audit_record(
            actor=None,
            action="querylog.retention",
            target=checkpoint,
            details={"removed": removed, "through_id": keep_from - 1, "cutoff": str(older_than)},
        )
    logger.info("query-log retention removed %s entries", removed)
    return PurgeResult(removed, checkpoint)
