import sys

from django.contrib.auth.decorators import login_required
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template import loader

from accounts.capabilities import Capability
from accounts.selectors import user_capabilities


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """Send each person to what their roles let them do first."""
    caps = user_capabilities(user=request.user)
    if Capability.CHAT in caps:
        return redirect("assistant:chat")
    if Capability.MANAGE_DOCUMENTS in caps:
        return redirect("ingestion:document_list")
    return render(request, "home.html")


# Seconds a browser or client is told to wait before retrying while the database is away.
RETRY_AFTER_SECONDS = 5


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: a database that does not answer (PostgreSQL restarting) is a 503 "briefly
    unavailable" page with Retry-After, any other error a plain 500 page.

    Django calls this while the exception is being handled, so sys.exc_info() names it. Both
    pages are rendered without the request's context: its context processors query the
    database, which may be what failed.
    """
    error = sys.exc_info()[1]
    if isinstance(error, OperationalError | InterfaceError):
        response = HttpResponse(loader.render_to_string("503.html"), status=503)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    return HttpResponse(loader.render_to_string("500.html"), status=500)
