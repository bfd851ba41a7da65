"""Reads of the query log for compliance officers: filters, pages, the verifier, dashboards.

Officers only: the views check the capability through accounts.selectors before calling these.
Nothing here reads documents or chunks; an entry carries the chunk texts it used by value.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

from django.contrib.postgres.search import SearchQuery
from django.db import connection
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from compliance import chain
from compliance.models import QueryLogAccess, QueryLogEntry, QueryLogReview

_STATUS = QueryLogReview.STATUS_KINDS
COUNT_CAP = 10_000  # counting beyond this costs a scan of every match; "10,000+" says enough

# The claim check's verdicts an officer filters by (LogFilters.grounding).
GROUNDING_CHOICES = {
    "unsupported": Q(unsupported_figures__gt=0),  # the partial index querylog_unsupported_created
    "supported": Q(unsupported_figures=0),  # checked, every figure found in the sources
    "unchecked": Q(unsupported_figures__isnull=True),  # refused, failed, user-stopped, adapter
    "looped": Q(grounding__contains={"looped": True}),  # stopped because it repeated itself
}


@dataclass(frozen=True)
class LogFilters:
    """What an officer filters the log by. Empty fields do not filter."""

    user: str = ""
    role: str = ""
    collection: int | None = None
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    route: str = ""
    model: str = ""  # the model or the adapter
    outcome: str = ""
    state: str = ""  # flagged | reviewed | unreviewed | queue (flagged or unreviewed)
    q: str = ""  # full text over questions and answers
    grounding: str = ""  # one of GROUNDING_CHOICES: what the claim check found

    def to_json(self) -> dict:
        data = asdict(self)
        for key in ("date_from", "date_to"):
            data[key] = data[key].isoformat() if data[key] else None
        return {k: v for k, v in data.items() if v not in ("", None)}

    @classmethod
    def from_json(cls, data: dict) -> LogFilters:
        values = dict(data)
        for key in ("date_from", "date_to"):
            if values.get(key):
                values[key] = dt.date.fromisoformat(values[key])
        return cls(**{k: v for k, v in values.items() if k in cls.__dataclass_fields__})


def _day_start(day: dt.date) -> dt.datetime:
    return timezone.make_aware(dt.datetime.combine(day, dt.time.min))


def _latest_status_marks() -> QuerySet[QueryLogReview]:
    newer = QueryLogReview.objects.filter(
        entry_id=OuterRef("entry_id"), kind__in=_STATUS, id__gt=OuterRef("id")
    )
    return QueryLogReview.objects.filter(kind__in=_STATUS).exclude(Exists(newer))


def querylog_filter(filters: LogFilters) -> QuerySet[QueryLogEntry]:
    """Questions matching `filters`, newest first (checkpoints are not questions)."""
    entries = QueryLogEntry.objects.filter(kind=QueryLogEntry.Kind.QUESTION)
    f = filters
    if f.user:
        entries = entries.filter(username=f.user)
    if f.role:
        entries = entries.filter(roles__contains=[f.role])
    if f.collection:
        entries = entries.filter(retrieved__contains=[{"collection": f.collection}])
    if f.date_from:
        entries = entries.filter(created_at__gte=_day_start(f.date_from))
    if f.date_to:
        entries = entries.filter(created_at__lt=_day_start(f.date_to + dt.timedelta(days=1)))
    if f.route:
        entries = entries.filter(route=f.route)
    if f.model:
        entries = entries.filter(Q(model=f.model) | Q(adapter=f.model))
    if f.outcome:
        entries = entries.filter(outcome=f.outcome)
    if f.state:
        latest = _latest_status_marks()
        flagged = latest.filter(kind=QueryLogReview.Kind.FLAGGED).values("entry_id")
        reviewed = latest.filter(kind=QueryLogReview.Kind.REVIEWED).values("entry_id")
        marked = QueryLogReview.objects.filter(kind__in=_STATUS).values("entry_id")
        if f.state == "flagged":
            entries = entries.filter(id__in=flagged)
        elif f.state == "reviewed":
            entries = entries.filter(id__in=reviewed)
        elif f.state == "unreviewed":
            entries = entries.exclude(id__in=marked)
        elif f.state == "queue":
            entries = entries.filter(Q(id__in=flagged) | ~Q(id__in=marked))
    if f.q:
        entries = entries.filter(search=SearchQuery(f.q, config="english", search_type="websearch"))
    if f.grounding in GROUNDING_CHOICES:
        entries = entries.filter(GROUNDING_CHOICES[f.grounding])
    return entries.order_by("-id")


@dataclass
class LogPage:
    entries: list[QueryLogEntry]
    newer: int | None  # cursor for the newer page (`after`), None on the first page
    older: int | None  # cursor for the older page (`before`)
    count: int
    count_capped: bool
    states: dict[int, str] = field(default_factory=dict)


def querylog_page(
    filters: LogFilters, *, before: int | None = None, after: int | None = None, size: int = 50
) -> LogPage:
    """One page of matches by keyset on the id (the chain order): constant cost at any depth."""
    matches = querylog_filter(filters)
    if after is not None:
        rows = list(matches.filter(id__gt=after).order_by("id")[: size + 1])
        has_more_newer = len(rows) > size
        rows = rows[:size][::-1]
        newer = rows[0].pk if rows and has_more_newer else None
        older = rows[-1].pk if rows else None
    else:
        page = matches.filter(id__lt=before) if before is not None else matches
        rows = list(page[: size + 1])
        older = rows[size - 1].pk if len(rows) > size else None
        rows = rows[:size]
        newer = rows[0].pk if rows and before is not None else None
    count = matches.order_by()[: COUNT_CAP + 1].count()
    states = review_states([e.pk for e in rows])
    for entry in rows:
        entry.review_state = states[entry.pk]
    return LogPage(
        entries=rows,
        newer=newer,
        older=older,
        count=min(count, COUNT_CAP),
        count_capped=count > COUNT_CAP,
        states=states,
    )


def review_states(entry_ids: list[int]) -> dict[int, str]:
    """Each entry's review state: its newest reviewed/flagged mark, else "unreviewed"."""
    states = dict.fromkeys(entry_ids, "unreviewed")
    for entry_id, kind in (
        _latest_status_marks().filter(entry_id__in=entry_ids).values_list("entry_id", "kind")
    ):
        states[entry_id] = kind
    return states


def querylog_entry_history(*, entry: QueryLogEntry) -> dict:
    """An entry's review marks and notes (oldest first) and who opened it (newest first)."""
    return {
        "reviews": list(QueryLogReview.objects.filter(entry=entry).order_by("id")),
        "accesses": list(QueryLogAccess.objects.filter(entry=entry).order_by("-id")[:50]),
        "state": review_states([entry.pk])[entry.pk],
    }


@dataclass(frozen=True)
class EntryGrounding:
    """What an entry's claim check found, for its page (`ran` False: no check ran)."""

    ran: bool
    checked: int = 0
    unsupported: list[str] = field(default_factory=list)
    looped: bool = False
    quote: dict = field(default_factory=dict)  # {"chunk", "document", "text"} or {}
    quote_title: str = ""  # the quoted document's title, from the entry's own used chunks
    # The yes/no check's confidence that the passages answer the question, when it ran.
    answerable: float | None = None

    @property
    def answerable_percent(self) -> int | None:
        return None if self.answerable is None else round(self.answerable * 100)


def querylog_entry_grounding(*, entry: QueryLogEntry) -> EntryGrounding:
    """An entry's claim check and supporting quote, from what the entry itself recorded."""
    data = entry.grounding if isinstance(entry.grounding, dict) else {}
    quote = data.get("quote") if isinstance(data.get("quote"), dict) else {}
    title = ""
    if quote:
        # The quoted chunk among those the model was given (by document when it has no id).
        field_name = "chunk" if quote.get("chunk") else "document"
        for used in entry.used_chunks or []:
            if isinstance(used, dict) and used.get(field_name) == quote.get(field_name):
                title = used.get("document_title") or ""
                break
    return EntryGrounding(
        ran=entry.unsupported_figures is not None,
        checked=int(data.get("checked") or 0),
        unsupported=[str(f) for f in data.get("unsupported") or []],
        looped=bool(data.get("looped")),
        quote=quote,
        quote_title=title,
        answerable=_share(data.get("answerable")),
    )


def _share(value) -> float | None:
    return float(value) if isinstance(value, int | float) and 0 <= value <= 1 else None


# Export columns that are not columns of the table: computed for each row below.
_EXPORT_COMPUTED = ("review_state", "unsupported")


def querylog_export_rows(filters: LogFilters) -> Iterator[dict]:
    """Every matching entry as a dict, oldest first, streamed from a server-side cursor.

    Besides the table's columns each row has `review_state`, `unsupported_figures` (None: no
    claim check ran) and `unsupported`, the figures the claim check did not find ([] if none).
    """
    from compliance.services import EXPORT_COLUMNS

    columns = [c for c in EXPORT_COLUMNS if c not in _EXPORT_COMPUTED]
    columns += [c for c in ("unsupported_figures", "grounding") if c not in columns]
    keep_grounding = "grounding" in EXPORT_COLUMNS  # else read for `unsupported` only
    matches = querylog_filter(filters).order_by("id").values(*columns)
    batch: list[dict] = []
    for row in matches.iterator(chunk_size=1000):
        batch.append(row)
        if len(batch) == 1000:
            yield from _with_states(batch, keep_grounding=keep_grounding)
            batch = []
    yield from _with_states(batch, keep_grounding=keep_grounding)


def _with_states(rows: list[dict], *, keep_grounding: bool = False) -> Iterator[dict]:
    states = review_states([r["id"] for r in rows]) if rows else {}
    for row in rows:
        grounding = row["grounding"] if keep_grounding else row.pop("grounding")
        yield {
            **row,
            "unsupported": list((grounding or {}).get("unsupported") or []),
            "review_state": states[row["id"]],
        }


# --- integrity --------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyResult:
    intact: bool
    checked: int
    first_bad_id: int | None = None
    reason: str = ""
    tip_id: int | None = None
    tip_hash: str = ""
    checkpoints: int = 0

    def message(self) -> str:
        if self.intact:
            return f"intact: {self.checked} entries, chain tip {self.tip_hash or chain.GENESIS}"
        return f"broken at entry {self.first_bad_id}: {self.reason}"


def querylog_verify(*, batch_size: int = 2000) -> VerifyResult:
    """Walk the chain in id order and report "intact" or the first entry where it breaks.

    The first remaining entry must link to the genesis hash or to the anchor recorded by the
    newest retention checkpoint (the entries before it were removed by retention).
    """
    latest_checkpoint = (
        QueryLogEntry.objects.filter(kind=QueryLogEntry.Kind.CHECKPOINT)
        .order_by("-id")
        .values_list("checkpoint", flat=True)
        .first()
    )
    starts = {chain.GENESIS}
    if latest_checkpoint and latest_checkpoint.get("anchor"):
        starts.add(latest_checkpoint["anchor"])
    rows = (
        QueryLogEntry.objects.order_by("id")
        .values("id", "prev_hash", "entry_hash", *chain.HASHED_FIELDS)
        .iterator(chunk_size=batch_size)
    )
    previous: str | None = None
    checked = checkpoints = 0
    last_id = None
    for row in rows:
        if previous is None and row["prev_hash"] not in starts:
            return VerifyResult(
                False,
                checked,
                row["id"],
                "the first entry does not link to the start of the log nor to a retention "
                "checkpoint: entries before it were removed outside the retention path",
            )
        if previous is not None and row["prev_hash"] != previous:
            return VerifyResult(
                False,
                checked,
                row["id"],
                "it does not link to the entry before it: an entry was removed or inserted",
            )
        if chain.entry_hash(row["prev_hash"], row, from_db=True) != row["entry_hash"]:
            return VerifyResult(
                False, checked, row["id"], "its content does not match its hash: it was altered"
            )
        previous, last_id = row["entry_hash"], row["id"]
        checked += 1
        checkpoints += row["kind"] == QueryLogEntry.Kind.CHECKPOINT
    return VerifyResult(True, checked, None, "", last_id, previous or "", checkpoints)


# --- dashboards -------------------------------------------------------------------------------


@dataclass
class Dashboard:
    days: list[dt.date]
    per_role_day: dict[str, dict[dt.date, int]]
    per_route_day: dict[str, dict[dt.date, int]]
    outcomes_day: dict[str, dict[dt.date, int]]
    latency_day: dict[str, dict[dt.date, float]]
    feedback_day: dict[str, dict[dt.date, int]]
    # Answered questions the claim check ran on, per day: (checked, with every figure supported).
    grounded_day: dict[dt.date, tuple[int, int]]
    usage: list[dict]  # per role and route: questions, tokens, cost
    totals: dict


def _rows(sql: str, params: list) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def querylog_dashboard(*, start: dt.date, end: dt.date) -> Dashboard:
    """Aggregates for the charts, from `start` to `end` inclusive, each one SQL GROUP BY.

    An entry whose asker held several roles counts once for each role in the per-role figures.
    """
    since, until = _day_start(start), _day_start(end + dt.timedelta(days=1))
    tz = timezone.get_current_timezone_name()
    day = "(e.created_at AT TIME ZONE %s)::date"
    scope = "e.kind = 'question' AND e.created_at >= %s AND e.created_at < %s"
    # An answer the claim check ran on (refused, failed, user-stopped, adapter-only: NULL).
    is_checked = "WHERE e.outcome = 'answered' AND e.unsupported_figures IS NOT NULL"
    days = [start + dt.timedelta(days=n) for n in range((end - start).days + 1)]

    def series(rows) -> dict[str, dict[dt.date, int]]:
        out: dict[str, dict[dt.date, int]] = defaultdict(dict)
        for d, key, value in rows:
            out[key][d] = value
        return dict(sorted(out.items()))

    per_role = series(
        _rows(
            f"""SELECT {day}, coalesce(r.role, '(no role)'), count(*)
                FROM compliance_querylogentry e
                LEFT JOIN LATERAL jsonb_array_elements_text(e.roles) AS r(role) ON true
                WHERE {scope} GROUP BY 1, 2""",  # noqa: S608 - constant fragments, values are parameters
            [tz, since, until],
        )
    )
    per_route = series(
        _rows(
            f"""SELECT {day}, e.route, count(*) FROM compliance_querylogentry e
                WHERE {scope} GROUP BY 1, 2""",  # noqa: S608 - constant fragments, values are parameters
            [tz, since, until],
        )
    )
    outcome_rows = _rows(
        f"""SELECT {day},
                   count(*) FILTER (WHERE e.outcome = 'refused'),
                   count(*) FILTER (WHERE e.outcome = 'error'),
                   count(*) FILTER (WHERE e.outcome = 'cancelled'),
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY e.latency_ms)
                       FILTER (WHERE e.outcome = 'answered'),
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY e.first_token_ms)
                       FILTER (WHERE e.outcome = 'answered'),
                   count(*) FILTER ({is_checked}),
                   count(*) FILTER ({is_checked} AND e.unsupported_figures = 0)
            FROM compliance_querylogentry e WHERE {scope} GROUP BY 1""",  # noqa: S608
        [tz, since, until],
    )
    outcomes: dict[str, dict[dt.date, int]] = {"refused": {}, "error": {}, "stopped": {}}
    latency: dict[str, dict[dt.date, float]] = {"answer": {}, "first token": {}}
    grounded: dict[dt.date, tuple[int, int]] = {}
    for d, refused, errors, stopped, median, first, checked, supported in outcome_rows:
        outcomes["refused"][d], outcomes["error"][d], outcomes["stopped"][d] = (
            refused,
            errors,
            stopped,
        )
        if median is not None:
            latency["answer"][d] = float(median)
        if first is not None:
            latency["first token"][d] = float(first)
        if checked:
            grounded[d] = (checked, supported)
    feedback: dict[str, dict[dt.date, int]] = {"helpful": {}, "not helpful": {}}
    for d, up, down in _rows(
        f"""SELECT {day}, count(*) FILTER (WHERE f.rating > 0), count(*) FILTER (WHERE f.rating < 0)
            FROM compliance_querylogentry e
            JOIN assistant_feedback f ON f.message_id = e.answer_message_id
            WHERE {scope} GROUP BY 1""",  # noqa: S608
        [tz, since, until],
    ):
        feedback["helpful"][d], feedback["not helpful"][d] = up, down
    usage = [
        {
            "role": role,
            "route": route,
            "questions": n,
            "prompt_tokens": int(prompt or 0),
            "completion_tokens": int(completion or 0),
            "cost": cost or 0,
        }
        for role, route, n, prompt, completion, cost in _rows(
            f"""SELECT coalesce(r.role, '(no role)'), e.route, count(*), sum(e.prompt_tokens),
                       sum(e.completion_tokens), sum(e.cost_estimate)
                FROM compliance_querylogentry e
                LEFT JOIN LATERAL jsonb_array_elements_text(e.roles) AS r(role) ON true
                WHERE {scope} GROUP BY 1, 2 ORDER BY 1, 2""",  # noqa: S608
            [since, until],
        )
    ]
    (totals_row,) = _rows(
        f"""SELECT count(*), count(*) FILTER (WHERE e.outcome = 'refused'),
                   count(*) FILTER (WHERE e.outcome = 'error'),
                   coalesce(sum(e.prompt_tokens + e.completion_tokens), 0),
                   coalesce(sum(e.cost_estimate), 0),
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY e.latency_ms)
                       FILTER (WHERE e.outcome = 'answered'),
                   count(*) FILTER ({is_checked}),
                   count(*) FILTER ({is_checked} AND e.unsupported_figures > 0)
            FROM compliance_querylogentry e WHERE {scope}""",  # noqa: S608
        [since, until],
    )
    questions, refused, errors, tokens, cost, median, checked, unsupported = totals_row
    return Dashboard(
        days=days,
        per_role_day=per_role,
        per_route_day=per_route,
        outcomes_day=outcomes,
        latency_day=latency,
        feedback_day=feedback,
        grounded_day=grounded,
        usage=usage,
        totals={
            "questions": questions,
            "refused": refused,
            "errors": errors,
            "tokens": tokens,
            "cost": cost,
            "median_latency_ms": None if median is None else round(median),
            # The claim check: answers it ran on, and those with a figure not in the sources.
            "checked": checked,
            "unsupported": unsupported,
            "grounded_percent": (
                None if not checked else round(100 * (checked - unsupported) / checked, 1)
            ),
        },
    )


def querylog_entry_get(*, entry_id: int) -> QueryLogEntry | None:
    return QueryLogEntry.objects.filter(pk=entry_id).first()


def querylog_exports(*, limit: int = 100) -> list:
    from compliance.models import QueryLogExport

    return list(QueryLogExport.objects.order_by("-id")[:limit])


def querylog_checkpoints(*, limit: int = 20) -> list[QueryLogEntry]:
    return list(
        QueryLogEntry.objects.filter(kind=QueryLogEntry.Kind.CHECKPOINT).order_by("-id")[:limit]
    )


def querylog_verifications(*, limit: int = 10) -> list:
    from compliance.models import QueryLogVerification

    return list(QueryLogVerification.objects.order_by("-id")[:limit])
