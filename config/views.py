from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

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
