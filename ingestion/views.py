"""Administration pages for collections (documents come with the ingestion issue)."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render

from accounts.capabilities import Capability
from accounts.decorators import capability_required
from accounts.forms import CollectionForm, add_service_errors
from accounts.models import AuditEvent
from accounts.selectors import collection_list
from ingestion import services
from ingestion.models import Collection

manage_users = capability_required(Capability.MANAGE_USERS)


@manage_users
def collection_index(request: HttpRequest) -> HttpResponse:
    return render(request, "ingestion/collection_list.html", {"collections": collection_list()})


@manage_users
def collection_create(request: HttpRequest) -> HttpResponse:
    form = CollectionForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            collection = services.collection_create(actor=request.user, **form.cleaned_data)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"Created the collection {collection.name}.")
            return redirect("ingestion:collection_detail", pk=collection.pk)
    return render(request, "ingestion/collection_form.html", {"form": form})


@manage_users
def collection_detail(request: HttpRequest, pk: int) -> HttpResponse:
    collection = get_object_or_404(Collection, pk=pk)
    initial = {
        "name": collection.name,
        "description": collection.description,
        "readers": collection.readers.all(),
    }
    form = CollectionForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            services.collection_update(
                actor=request.user, collection=collection, **form.cleaned_data
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"Saved the collection {collection.name}.")
            return redirect("ingestion:collection_detail", pk=collection.pk)
    events = AuditEvent.objects.filter(target_type="collection", target_id=str(collection.pk))
    return render(
        request,
        "ingestion/collection_detail.html",
        {"collection": collection, "form": form, "events": events[:20]},
    )
