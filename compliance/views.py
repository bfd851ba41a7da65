"""The compliance officer's pages: the log, an entry, exports, integrity, dashboards.

Every view requires the "review the query log" capability (accounts.decorators, which asks
accounts.selectors); administrators and employees get 403. Views validate input, call one
selector or service and render.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from accounts.capabilities import Capability
from accounts.decorators import capability_required
from accounts.selectors import user_may_see
from accounts.trails import audit_events_for_officers, audit_page
from compliance import charts, selectors, services
from compliance.forms import DashboardForm, ExportForm, LogFilterForm, ReviewForm
from compliance.models import QueryLogExport

officers_only = capability_required(Capability.REVIEW_QUERYLOG)


def _cursor(value: str | None) -> int | None:
    # isascii: "²".isdigit() is true, but int() refuses it; 18 digits stay within a bigint.
    ok = value and value.isascii() and value.isdigit() and len(value) <= 18
    return int(value) if ok else None


@officers_only
def log_list(request: HttpRequest) -> HttpResponse:
    form = LogFilterForm(request.GET or None)
    page = None
    if not request.GET or form.is_valid():
        filters = form.filters() if request.GET else selectors.LogFilters()
        page = selectors.querylog_page(
            filters,
            before=_cursor(request.GET.get("before")),
            after=_cursor(request.GET.get("after")),
            size=settings.QUERYLOG_PAGE_SIZE,
        )
    query = request.GET.copy()
    for key in ("before", "after"):
        query.pop(key, None)
    return render(
        request,
        "compliance/log_list.html",
        {
            "form": form,
            "page": page,
            "query": query.urlencode(),
            "export_form": ExportForm(),
            "last_week": _last_week(),
        },
    )


@officers_only
def queue(request: HttpRequest) -> HttpResponse:
    """The review queue: flagged entries and entries nobody reviewed yet."""
    return redirect(reverse("compliance:log_list") + "?state=queue")


def _last_week() -> dict:
    today = timezone.localdate()
    monday = today - dt.timedelta(days=today.weekday() + 7)
    return {"from": monday, "to": monday + dt.timedelta(days=6)}


@officers_only
def entry_detail(request: HttpRequest, pk: int) -> HttpResponse:
    # Opening an entry shows the chunk texts that were used: the view itself is logged.
    entry = services.querylog_entry_open(officer=request.user, entry_id=pk)
    if entry is None:
        raise Http404("No such entry.")
    return render(
        request,
        "compliance/entry_detail.html",
        {
            "entry": entry,
            "form": ReviewForm(),
            "back": request.GET.get("back", ""),
            "grounding": selectors.querylog_entry_grounding(entry=entry),
            **selectors.querylog_entry_history(entry=entry),
        },
    )


@officers_only
@require_POST
def entry_review(request: HttpRequest, pk: int) -> HttpResponse:
    entry = selectors.querylog_entry_get(entry_id=pk)
    if entry is None:
        raise Http404("No such entry.")
    form = ReviewForm(request.POST)
    if form.is_valid():
        try:
            services.querylog_review_add(
                officer=request.user,
                entry=entry,
                kind=form.cleaned_data["kind"],
                note=form.cleaned_data["note"],
            )
        except ValidationError as exc:
            form.add_error("note", exc)
        else:
            labels = {"reviewed": "Marked reviewed.", "flagged": "Flagged.", "note": "Note added."}
            messages.success(request, labels[form.cleaned_data["kind"]])
            return redirect(reverse("compliance:entry_detail", args=[pk]))
    # The note the officer typed is kept on the re-rendered page, with the reason it was refused.
    return render(
        request,
        "compliance/entry_detail.html",
        {
            "entry": entry,
            "form": form,
            "grounding": selectors.querylog_entry_grounding(entry=entry),
            **selectors.querylog_entry_history(entry=entry),
        },
        status=400,
    )


# --- export -----------------------------------------------------------------------------------


@officers_only
@require_POST
def export_create(request: HttpRequest) -> HttpResponse:
    filters_form = LogFilterForm(request.POST)
    export_form = ExportForm(request.POST)
    if not (filters_form.is_valid() and export_form.is_valid()):
        messages.error(request, "The export was not started: check the filters.")
        return redirect(reverse("compliance:log_list"))
    export = services.querylog_export_request(
        officer=request.user,
        filters=filters_form.filters().to_json(),
        export_format=export_form.cleaned_data["format"],
    )
    return redirect(reverse("compliance:export_detail", args=[export.token]))


def _export_or_404(request: HttpRequest, token: str) -> QueryLogExport:
    export = QueryLogExport.objects.filter(token=token).first()
    if export is None or not user_may_see(user=request.user, obj=export):
        raise Http404("No such export.")
    return export


@officers_only
def export_list(request: HttpRequest) -> HttpResponse:
    return render(request, "compliance/export_list.html", {"exports": selectors.querylog_exports()})


@officers_only
def export_detail(request: HttpRequest, token: str) -> HttpResponse:
    return render(
        request, "compliance/export_detail.html", {"export": _export_or_404(request, token)}
    )


@officers_only
def export_status(request: HttpRequest, token: str) -> JsonResponse:
    export = _export_or_404(request, token)
    return JsonResponse(
        {
            "state": export.state,
            "total": export.total,
            "written": export.written,
            "percent": export.percent,
            "sha256": export.sha256,
            "error": export.error,
            "download": reverse("compliance:export_download", args=[export.token])
            if export.state == QueryLogExport.State.DONE
            else None,
            "manifest": reverse("compliance:export_manifest", args=[export.token])
            if export.state == QueryLogExport.State.DONE
            else None,
        }
    )


def _export_file(export: QueryLogExport, name: str | None = None) -> Path:
    if export.state != QueryLogExport.State.DONE or not export.file_path:
        raise Http404("The export is not ready.")
    path = Path(settings.MEDIA_ROOT) / export.file_path
    if name:
        path = path.with_name(name)
    if not path.is_file():
        raise Http404("The export file is gone.")
    return path


@officers_only
def export_download(request: HttpRequest, token: str) -> FileResponse:
    export = _export_or_404(request, token)
    path = _export_file(export)
    services.querylog_export_downloaded(officer=request.user, export=export, what="download")
    content_type = "text/csv" if export.format == "csv" else "application/x-ndjson"
    response = FileResponse(
        open(path, "rb"),  # noqa: SIM115 - FileResponse closes it
        as_attachment=True,
        filename=path.name,
        content_type=content_type,
    )
    response["X-Content-Type-Options"] = "nosniff"
    return response


@officers_only
def export_manifest(request: HttpRequest, token: str) -> FileResponse:
    export = _export_or_404(request, token)
    path = _export_file(export, "manifest.json")
    services.querylog_export_downloaded(officer=request.user, export=export, what="manifest")
    return FileResponse(
        open(path, "rb"),
        filename=f"{Path(export.file_path).stem}.manifest.json",
        content_type="application/json",
    )


# --- integrity and dashboards -----------------------------------------------------------------


@officers_only
def integrity(request: HttpRequest) -> HttpResponse:
    """The latest verifications of the chain (a full walk takes seconds per 100k entries, so it
    runs on the worker: daily, and when an officer asks)."""
    verifications = selectors.querylog_verifications()
    return render(
        request,
        "compliance/integrity.html",
        {
            "verifications": verifications,
            "latest": next((v for v in verifications if v.state == "done"), None),
            "pending": next((v for v in verifications if v.state in ("queued", "running")), None),
            "retention_days": settings.QUERYLOG_RETENTION_DAYS,
            "checkpoints": selectors.querylog_checkpoints(),
        },
    )


@officers_only
@require_POST
def integrity_verify(request: HttpRequest) -> HttpResponse:
    services.querylog_verification_request(officer=request.user)
    messages.success(request, "Verification started; this page shows the verdict when it is done.")
    return redirect(reverse("compliance:integrity"))


@officers_only
def dashboard(request: HttpRequest) -> HttpResponse:
    form = DashboardForm(request.GET or None)
    today = timezone.localdate()
    start, end = today - dt.timedelta(days=27), today
    if request.GET and form.is_valid():
        start = form.cleaned_data["date_from"] or start
        end = form.cleaned_data["date_to"] or end
        if start > end or (end - start).days > 366:
            form.add_error("date_to", "Choose a range of at most a year, start before end.")
            start, end = today - dt.timedelta(days=27), today
    data = selectors.querylog_dashboard(start=start, end=end)
    usage_tokens = [
        (f"{u['role']} · {u['route']}", u["prompt_tokens"] + u["completion_tokens"])
        for u in data.usage
    ]
    usage_cost = [(f"{u['role']} · {u['route']}", float(u["cost"])) for u in data.usage]
    grounded_rows = [
        (day, checked, supported, 100 * supported / checked)
        for day, (checked, supported) in sorted(data.grounded_day.items())
    ]
    return render(
        request,
        "compliance/dashboard.html",
        {
            "form": form,
            "start": start,
            "end": end,
            "data": data,
            "grounded_rows": grounded_rows,
            "charts": {
                "roles": charts.stacked_bars(
                    "Questions per day, by role", data.days, data.per_role_day, "questions"
                ),
                "routes": charts.stacked_bars(
                    "Route mix per day: retrieval and adapter",
                    data.days,
                    data.per_route_day,
                    colors={"rag": "#2563eb", "adapter": "#7c3aed"},
                ),
                "outcomes": charts.stacked_bars(
                    "Refusals, errors and stopped answers per day",
                    data.days,
                    data.outcomes_day,
                    colors={"refused": "#d97706", "error": "#dc2626", "stopped": "#6b7280"},
                ),
                "latency": charts.lines(
                    "Median latency per day (answered questions)",
                    data.days,
                    data.latency_day,
                    "ms",
                ),
                "feedback": charts.stacked_bars(
                    "Thumbs up and down per day",
                    data.days,
                    data.feedback_day,
                    colors={"helpful": "#059669", "not helpful": "#dc2626"},
                ),
                "grounded": charts.share(
                    "Groundedness per day: checked answers with every figure in the sources",
                    data.days,
                    data.grounded_day,
                    "every figure supported",
                ),
                "tokens": charts.hbars(
                    "Tokens (prompt + completion) per role and route", usage_tokens, "tokens"
                ),
                "cost": charts.hbars("Estimated cost per role and route", usage_cost, digits=4),
            },
        },
    )


@officers_only
def audit(request: HttpRequest) -> HttpResponse:
    """The officers' own trail: exports with their filters, downloads, retention."""
    return audit_page(request, audit_events_for_officers(), "compliance/audit_list.html")
