"""Administration pages for collections and documents."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from accounts.capabilities import Capability
from accounts.decorators import capability_required
from accounts.forms import CollectionForm, add_service_errors
from accounts.models import AuditEvent
from accounts.selectors import collection_list
from ingestion import selectors, services
from ingestion.models import Collection, Document

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


# --- documents --------------------------------------------------------------------------------

manage_documents = capability_required(Capability.MANAGE_DOCUMENTS)


@manage_documents
def document_index(request: HttpRequest) -> HttpResponse:
    collection = request.GET.get("collection", "")
    state = request.GET.get("state", "")
    documents = selectors.document_list(
        collection_id=int(collection) if collection.isdigit() else None,
        state=state if state in Document.State.values else "",
    )
    page = Paginator(documents, 50).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "collections": Collection.objects.order_by("name"),
        "states": Document.State.choices,
        "collection": collection,
        "state": state,
        "max_upload_mb": settings.INGEST_MAX_UPLOAD_MB,
        "extra": f"collection={collection}&state={state}",
    }
    return render(request, "ingestion/document_list.html", context)


@manage_documents
def document_detail(request: HttpRequest, pk: int) -> HttpResponse:
    document = get_object_or_404(Document.objects.select_related("collection"), pk=pk)
    events = AuditEvent.objects.filter(target_type="document", target_id=str(pk))[:20]
    return render(
        request,
        "ingestion/document_detail.html",
        {"document": document, "versions": document.versions.all(), "events": events},
    )


@manage_documents
@require_POST
def document_retry(request: HttpRequest, pk: int) -> HttpResponse:
    document = get_object_or_404(Document, pk=pk)
    try:
        services.document_retry(actor=request.user, document=document)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, f"“{document.title}” is queued again.")
    return redirect(request.POST.get("next") or "ingestion:document_list")


@manage_documents
def document_delete(request: HttpRequest, pk: int) -> HttpResponse:
    document = get_object_or_404(Document.objects.select_related("collection"), pk=pk)
    if request.method == "POST":
        services.document_delete(actor=request.user, document=document)
        messages.success(request, f"Deleted “{document.title}”, its chunks and its files.")
        return redirect("ingestion:document_list")
    return render(request, "ingestion/document_confirm_delete.html", {"document": document})


@manage_documents
def index_overview(request: HttpRequest) -> HttpResponse:
    return render(request, "ingestion/index_stats.html", {"stats": selectors.index_stats()})
