"""Administration pages for collections and documents."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
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
from accounts.selectors import collection_list, collections_managed_by
from ingestion import selectors, services
from ingestion.api import size_limited_upload
from ingestion.models import Collection, Document
from ingestion.rls import managing_collections_view

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
        "managers": collection.managers.all(),
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
    # The capability first; then the whole view (template included) in the user's management
    # scope: row-level security shows the web role the documents of the collections this user
    # manages, and no other (docs/security.md). The views filter by the same set in SQL.
    return capability_required(Capability.MANAGE_DOCUMENTS)(managing_collections_view(view))


def _managed_or_404(request: HttpRequest, pk: int) -> Document:
    """A document the user manages; any other is "not found", as for a reader."""
    document = selectors.document_get_managed(user=request.user, document_id=pk)
    if document is None:
        raise Http404("No such document.")
    return document


@manage_documents
def document_index(request: HttpRequest) -> HttpResponse:
    collection = request.GET.get("collection", "")
    state = request.GET.get("state", "")
    documents = selectors.document_list(
        user=request.user,
        collection_id=int(collection) if collection.isascii() and collection.isdigit() else None,
        state=state if state in Document.State.values else "",
    )
    page = Paginator(documents, 50).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "collections": collections_managed_by(user=request.user),
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
    document = _managed_or_404(request, pk)
    managed = collections_managed_by(user=request.user)
    version_form = DocumentVersionForm()
    validity_form = DocumentValidityForm(
        initial={"valid_from": document.valid_from, "valid_until": document.valid_until}
    )
    move_form = DocumentMoveForm(
        initial={"collection": document.collection_id}, collections=managed
    )
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
                move_form = DocumentMoveForm(request.POST, collections=managed)
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
            "replaces": _replaced(request, document),
            "versions": document.versions.all(),
            "events": events,
            "version_form": version_form,
            "validity_form": validity_form,
            "move_form": move_form,
            "max_upload_mb": settings.INGEST_MAX_UPLOAD_MB,
            **_content(request, document),
        },
    )


def _replaced(request: HttpRequest, document: Document) -> Document | None:
    """The document this one replaces, if the user manages it too (else not even its title)."""
    if document.supersedes_id is None:
        return None
    return selectors.document_get_managed(user=request.user, document_id=document.supersedes_id)


def _content(request: HttpRequest, document: Document) -> dict:
    """What of the document's content the page may show: passages and the stored file only
    where the manager may also read the collection; otherwise nothing (the template says so)."""
    preview = selectors.document_preview_for_manager(user=request.user, document_id=document.pk)
    return {"may_read": preview is not None, "preview": preview}


@manage_documents
def document_original(request: HttpRequest, pk: int) -> FileResponse:
    """The stored file of a managed document's latest version, for managers who read it too."""
    version = selectors.document_original_for_manager(user=request.user, document_id=pk)
    if version is None:
        raise Http404("No such document.")
    return FileResponse(
        version.file.open("rb"),
        as_attachment=True,
        filename=version.original_name or f"document-{pk}",
    )


def _next_or_list(request: HttpRequest) -> str:
    """Where to go after a form: the posted `next` if it is a path on this site, else the
    documents list (never another host: an open redirect would lend our name to phishing)."""
    target = request.POST.get("next", "")
    # A path: `redirect()` would try anything else as a view name first (a 500 for `²`).
    if target.startswith("/") and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return reverse("ingestion:document_list")


@manage_documents
@require_POST
def document_retry(request: HttpRequest, pk: int) -> HttpResponse:
    document = _managed_or_404(request, pk)
    try:
        services.document_retry(actor=request.user, document=document)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, f"“{document.title}” is queued again.")
    return HttpResponseRedirect(_next_or_list(request))


@manage_documents
def document_delete(request: HttpRequest, pk: int) -> HttpResponse:
    document = _managed_or_404(request, pk)
    if request.method == "POST":
        services.document_delete(actor=request.user, document=document)
        messages.success(request, f"Deleted “{document.title}”, its chunks and its files.")
        return redirect("ingestion:document_list")
    return render(request, "ingestion/document_confirm_delete.html", {"document": document})


@manage_documents
def index_overview(request: HttpRequest) -> HttpResponse:
    stats = selectors.index_stats(user=request.user)
    return render(request, "ingestion/index_stats.html", {"stats": stats})


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
