"""Who reads which audit trail (separation of duties).

Administrators read the trail of access changes; compliance officers read the trail of their own
work on the query log (exports and their filters, downloads, retention). An export's filters say
what the officers are investigating ("user sam, text 'embezzlement'"), which the people who
administer access, and might be investigated, must not read. Entries opened by officers are
recorded separately (`compliance.QueryLogAccess`, shown on each entry).
"""

from __future__ import annotations

from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from accounts.models import AuditEvent

# Actions of the compliance app's services (compliance/services.py).
COMPLIANCE_PREFIX = "querylog."


def audit_events_for_administrators() -> QuerySet[AuditEvent]:
    return AuditEvent.objects.exclude(action__startswith=COMPLIANCE_PREFIX)


def audit_events_for_officers() -> QuerySet[AuditEvent]:
    return AuditEvent.objects.filter(action__startswith=COMPLIANCE_PREFIX)


def audit_page(request: HttpRequest, events, template: str) -> HttpResponse:
    """A filterable, paginated audit trail of `events` (each trail is its readers' own)."""
    action = request.GET.get("action", "").strip()[:64]
    actor = request.GET.get("actor", "").strip()[:150]
    if action:
        events = events.filter(action__startswith=action)
    if actor:
        events = events.filter(actor_username__iexact=actor)
    page = Paginator(events, 50).get_page(request.GET.get("page"))
    actions = events.order_by().values_list("action", flat=True).distinct()
    return render(
        request,
        template,
        {"page": page, "action": action, "actor": actor, "actions": sorted(actions)},
    )
