"""Administration pages for collections and documents."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from accounts.capabilities import Capability
from accounts.decorators import capability_required
from accounts.forms import (
    CollectionForm,
    DocumentMoveForm,
    DocumentValidityForm,
    DocumentVersionForm,
    add_service_errors,
)
from accounts.models import AuditEvent
from accounts.selectors import collection_list
from ingestion import selectors, services
from ingestion.api import size_limited_upload
from ingestion.models import Collection, Document
from ingestion.rls import managing_documents_view

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


def manage_documents(view):
    # The capability first; then the whole view (template included) in the administrative
    # row-level security scope, which shows the web role every document (docs/security.md).
    return capability_required(Capability.MANAGE_DOCUMENTS)(managing_documents_view(view))


@manage_documents
def document_index(request: HttpRequest) -> HttpResponse:
    collection = request.GET.get("collection", "")
    state = request.GET.get("state", "")
    documents = selectors.document_list(
        collection_id=int(collection) if collection.isascii() and collection.isdigit() else None,
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


@size_limited_upload
@manage_documents
def document_detail(request: HttpRequest, pk: int) -> HttpResponse:
    document = get_object_or_404(Document.objects.select_related("collection"), pk=pk)
    version_form = DocumentVersionForm()
    validity_form = DocumentValidityForm(
        initial={"valid_from": document.valid_from, "valid_until": document.valid_until}
    )
    move_form = DocumentMoveForm(initial={"collection": document.collection_id})
    if request.method == "POST":
        action = request.POST.get("action")
        try:
            if action == "version":
                version_form = DocumentVersionForm(request.POST, request.FILES)
                refused = request._size_limit.too_large
                if refused:
                    name, size = refused[0]
                    result = services.document_upload(
                        actor=request.user,
                        collection=document.collection,
                        stream=None,
                        filename=name,
                        size=size,
                        document=document,
                    )
                    messages.error(request, result.message)
                    return redirect("ingestion:document_detail", pk=pk)
                if version_form.is_valid():
                    upload = version_form.cleaned_data["file"]
                    result = services.document_upload(
                        actor=request.user,
                        collection=document.collection,
                        stream=upload,
                        filename=upload.name,
                        size=upload.size,
                        document=document,
                    )
                    messages.success(request, result.message)
                    return redirect("ingestion:document_detail", pk=pk)
            elif action == "validity":
                validity_form = DocumentValidityForm(request.POST)
                if validity_form.is_valid():
                    services.document_set_validity(
                        actor=request.user, document=document, **validity_form.cleaned_data
                    )
                    messages.success(request, "Validity saved; it applies to the next search.")
                    return redirect("ingestion:document_detail", pk=pk)
            elif action == "move":
                move_form = DocumentMoveForm(request.POST)
                if move_form.is_valid():
                    target = move_form.cleaned_data["collection"]
                    services.document_move(actor=request.user, document=document, collection=target)
                    messages.success(request, f"Moved to {target.name}; its readers apply now.")
                    return redirect("ingestion:document_detail", pk=pk)
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
            return redirect("ingestion:document_detail", pk=pk)
    events = AuditEvent.objects.filter(target_type="document", target_id=str(pk))[:20]
    return render(
        request,
        "ingestion/document_detail.html",
        {
            "document": document,
            "versions": document.versions.all(),
            "events": events,
            "version_form": version_form,
            "validity_form": validity_form,
            "move_form": move_form,
            "max_upload_mb": settings.INGEST_MAX_UPLOAD_MB,
        },
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


# --- reading documents (any user, through the access check) ------------------------------------


@capability_required(Capability.CHAT)
def document_view(request: HttpRequest, pk: int) -> HttpResponse:
    """A document as its reader sees it: its chunks in order, anchored for citations.

    Missing, expired, superseded and forbidden documents are the same 404.
    """
    document = selectors.document_get_for_user(user=request.user, document_id=pk)
    passages = selectors.document_passages_for_user(user=request.user, document_id=pk)
    if document is None or passages is None:
        raise Http404("No such document.")
    chunks = []
    for chunk, shown in passages:
        chunk.shown_text = shown
        chunks.append(chunk)
    return render(request, "ingestion/document_view.html", {"document": document, "chunks": chunks})


@capability_required(Capability.CHAT)
def document_download(request: HttpRequest, pk: int) -> FileResponse:
    version = selectors.document_file_for_user(user=request.user, document_id=pk)
    if version is None:
        raise Http404("No such document.")
    return FileResponse(
        version.file.open("rb"),
        as_attachment=True,
        filename=version.original_name or f"document-{pk}",
    )
