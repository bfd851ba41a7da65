"""JSON API for scripts and for the documents page's drag-and-drop upload.

Authentication: `Authorization: Bearer <token>` (manage.py create_api_token) or the browser
session (then CSRF is enforced, as for any form). Each endpoint checks a capability; every read
of document content goes through ingestion.selectors.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from functools import wraps

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.uploadhandler import FileUploadHandler, SkipFile
from django.http import Http404, HttpRequest, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.middleware.csrf import CsrfViewMiddleware
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.csrf import csrf_exempt
from redis import RedisError

from accounts.capabilities import Capability
from accounts.middleware import MUST_CHANGE_FIRST
from accounts.selectors import collections_managed_by, user_for_api_token, user_has_capability
from assistant.rate import question_allowed
from assistant.recording import record_search
from ingestion import selectors, services
from ingestion.models import Collection, Document
from ingestion.rls import managing_collections


class SizeLimitUploadHandler(FileUploadHandler):
    """Stops storing a file as soon as it passes the size limit.

    The rest of that file is drained from the request without being kept, and its name is
    remembered so the view can record a refused upload with its reason.
    """

    def __init__(self, request, limit: int) -> None:
        super().__init__(request)
        self.limit = limit
        self.too_large: list[tuple[str, int]] = []

    def new_file(self, *args, **kwargs) -> None:
        super().new_file(*args, **kwargs)
        self.received = 0

    def receive_data_chunk(self, raw_data: bytes, start: int):
        self.received += len(raw_data)
        if self.received > self.limit:
            self.too_large.append((self.file_name, self.received))
            raise SkipFile()
        return raw_data

    def file_complete(self, file_size: int):
        return None


def _error(message: str, status: int) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


def api_view(capability: Capability):
    """Authenticate (token or session + CSRF), then require `capability`."""

    def decorator(view):
        @csrf_exempt  # enforced below for session requests, not for bearer tokens
        @wraps(view)
        def wrapped(request: HttpRequest, *args, **kwargs):
            header = request.headers.get("Authorization", "")
            if header.startswith("Bearer "):
                user = user_for_api_token(raw=header.removeprefix("Bearer ").strip())
                if user is None:
                    return _error("Invalid, expired or revoked token.", 401)
                if user.must_change_password:  # as for the session (accounts/middleware.py)
                    return _error(MUST_CHANGE_FIRST, 403)
                request.user = user
            else:
                if not request.user.is_authenticated:
                    return _error("Sign in or send a bearer token.", 401)
                if request.method == "POST":
                    # Before the CSRF check reads the multipart body: oversized files are
                    # refused as they arrive, not after being stored.
                    install_size_limit(request)
                refused = CsrfViewMiddleware(lambda r: None).process_view(request, None, (), {})
                if refused is not None:
                    return _error("CSRF check failed; reload the page.", 403)
            if not user_has_capability(user=request.user, capability=capability):
                return _error(f"Your roles do not allow this ({capability.label}).", 403)
            if capability == Capability.MANAGE_DOCUMENTS:
                # Document administration sees the documents of the collections this user
                # manages (row-level security scope); the views filter by the same set in SQL.
                with managing_collections(user=request.user):
                    return view(request, *args, **kwargs)
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


def document_json(document: Document) -> dict:
    return {
        "id": document.pk,
        "title": document.title,
        "original_name": document.original_name,
        "collection": {"id": document.collection_id, "name": document.collection.name},
        "kind": document.kind,
        "version": document.version,
        "indexed_version": document.indexed_version,
        "state": document.state,
        "reason": document.state_reason,
        "progress": {
            "done": document.progress_done,
            "total": document.progress_total,
            "percent": document.progress_percent,
        },
        "chunks": document.chunk_count,
        "pages": document.page_count,
        "size": document.size,
        "valid_from": document.valid_from.isoformat() if document.valid_from else None,
        "valid_until": document.valid_until.isoformat() if document.valid_until else None,
        "created_at": document.created_at.isoformat(),
        "updated_at": document.updated_at.isoformat(),
        "url": reverse("ingestion:document_detail", args=[document.pk]),
    }


def _when(value: str | None, field: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parse_datetime(value)
    except ValueError:  # well-formed but impossible, e.g. month 13
        parsed = None
    if parsed is None:
        raise ValidationError(f"{field} must be an ISO 8601 date-time, got {value!r}.")
    return parsed


def _is_id(value: str) -> bool:
    # str.isdigit() also accepts "²" and "٣", which int() and the database refuse; ids are
    # positive bigints.
    return value.isascii() and value.isdigit() and 0 < len(value) <= 18


def _managed_or_404(request: HttpRequest, pk) -> Document:
    """A document the caller manages; any other is "not found", as for a reader."""
    found = selectors.document_get_managed(user=request.user, document_id=pk)
    if found is None:
        raise Http404("No such document.")
    return found


def _managed_collection(request: HttpRequest, ref) -> Collection | None:
    """A collection the caller manages, by id or slug; None for any other (same as unknown)."""
    managed = collections_managed_by(user=request.user)
    lookup = {"pk": ref} if _is_id(str(ref)) else {"slug": ref}
    return managed.filter(**lookup).first()


def install_size_limit(request: HttpRequest) -> None:
    # Must run before anything reads request.POST or request.FILES (the CSRF check does).
    if not hasattr(request, "_size_limit"):
        request._size_limit = SizeLimitUploadHandler(request, services.max_upload_bytes())
        request.upload_handlers.insert(0, request._size_limit)


def size_limited_upload(view):
    """For pages that take uploads: the size limit goes in before the CSRF check reads the body.

    Django's CSRF middleware would parse the multipart body before the view could add its
    upload handler, so the view is exempted from the middleware and checks CSRF itself, after.
    """

    @csrf_exempt
    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs):
        if request.method == "POST":
            install_size_limit(request)
            if CsrfViewMiddleware(lambda r: None).process_view(request, None, (), {}) is not None:
                raise PermissionDenied("CSRF check failed; reload the page and try again.")
        return view(request, *args, **kwargs)

    return wrapped


@api_view(Capability.MANAGE_DOCUMENTS)
def documents(request: HttpRequest) -> JsonResponse:
    """GET: list documents (?collection=&state=). POST multipart: upload one or many `file`s."""
    if request.method == "GET":
        collection = request.GET.get("collection")
        found = selectors.document_list(
            user=request.user,
            collection_id=int(collection) if collection and _is_id(collection) else None,
            state=request.GET.get("state", ""),
        )[:500]
        return JsonResponse({"documents": [document_json(d) for d in found]})
    if request.method != "POST":
        return _error("Use GET or POST.", 405)
    install_size_limit(request)
    try:
        request.FILES  # noqa: B018 - parse the body here, where a malformed one gets a reason
    except MultiPartParserError:
        return _error("The request body is not valid multipart/form-data.", 400)
    try:
        collection_ref = request.POST.get("collection", "")
        target = request.POST.get("document", "")
        supersedes = request.POST.get("supersedes", "")
        common = {
            "valid_from": _when(request.POST.get("valid_from"), "valid_from"),
            "valid_until": _when(request.POST.get("valid_until"), "valid_until"),
        }
    except ValidationError as exc:
        return _error(" ".join(exc.messages), 400)
    if "\x00" in "".join(request.POST.values()):
        return _error("Fields may not contain NUL characters.", 400)
    document = _managed_or_404(request, target) if _is_id(target) else None
    if document is None:
        collection = _managed_collection(request, collection_ref)
        if collection is None:
            return _error("Choose a collection you manage (id or slug).", 400)
    else:
        collection = document.collection
    if _is_id(supersedes):
        # Replacing a document retires it: that needs the right on its collection too.
        common["supersedes"] = _managed_or_404(request, supersedes)
    files = request.FILES.getlist("file")
    refused = request._size_limit.too_large
    if not files and not refused:
        return _error("Send one or more files in the `file` field.", 400)
    if document is not None and len(files) + len(refused) != 1:
        return _error("A new version takes exactly one file.", 400)
    results = []
    for name, size in refused:
        result = services.document_upload(
            actor=request.user,
            collection=collection,
            stream=None,
            filename=name,
            size=size,
            document=document,
        )
        results.append(result)
    for upload in files:
        try:
            result = services.document_upload(
                actor=request.user,
                collection=collection,
                stream=upload,
                filename=upload.name,
                size=upload.size,
                title=request.POST.get("title", "") if len(files) == 1 else "",
                document=document,
                **common,
            )
        except ValidationError as exc:
            return _error(" ".join(exc.messages), 400)
        results.append(result)
    body = {
        "results": [
            {"outcome": r.outcome, "message": r.message, "document": document_json(r.document)}
            for r in results
        ]
    }
    return JsonResponse(body, status=201 if any(r.outcome != "refused" for r in results) else 200)


@api_view(Capability.MANAGE_DOCUMENTS)
def document(request: HttpRequest, pk: int) -> JsonResponse:
    """GET a document; DELETE it (chunks and files too)."""
    found = _managed_or_404(request, pk)
    if request.method == "GET":
        return JsonResponse(document_json(found))
    if request.method == "DELETE":
        services.document_delete(actor=request.user, document=found)
        return JsonResponse({"deleted": pk})
    return _error("Use GET or DELETE.", 405)


@api_view(Capability.MANAGE_DOCUMENTS)
def document_retry(request: HttpRequest, pk: int) -> JsonResponse:
    if request.method != "POST":
        return _error("Use POST.", 405)
    found = _managed_or_404(request, pk)
    try:
        services.document_retry(actor=request.user, document=found)
    except ValidationError as exc:
        return _error(" ".join(exc.messages), 400)
    found.refresh_from_db()
    return JsonResponse(document_json(found))


@api_view(Capability.MANAGE_DOCUMENTS)
def document_move(request: HttpRequest, pk: int) -> JsonResponse:
    if request.method != "POST":
        return _error("Use POST.", 405)
    found = _managed_or_404(request, pk)
    try:
        payload = json.loads(request.body or b"{}")
        # The target must be managed too: a move needs the right on both collections.
        collection = collections_managed_by(user=request.user).get(pk=int(payload["collection"]))
        services.document_move(actor=request.user, document=found, collection=collection)
    except (ValueError, KeyError, TypeError, Collection.DoesNotExist):
        return _error('Send {"collection": <id of a collection you manage>}.', 400)
    except ValidationError as exc:
        return _error(" ".join(exc.messages), 400)
    found.refresh_from_db()
    return JsonResponse(document_json(found))


@api_view(Capability.CHAT)
def search(request: HttpRequest) -> JsonResponse:
    """GET ?q=…&k=…: the chunks the caller may read that best match, with their sources.

    A search returns document text, so it is a question like the chat's: logged in the query
    log (exactly the passages returned) and counted in the asker's question rate.
    """
    started, started_clock = timezone.now(), time.monotonic()
    query = request.GET.get("q", "").strip()[:2000]
    if not query:
        return _error("Give a query in `q`.", 400)
    try:
        k = int(request.GET.get("k", "5"))
    except ValueError:
        return _error("`k` must be a number.", 400)
    try:
        allowed = question_allowed(request.user.pk)
    except RedisError:
        return _error("Search is briefly unavailable; please try again in a moment.", 503)
    if not allowed:
        return _error(
            f"You have asked {settings.CHAT_RATE_PER_MINUTE} questions this minute; "
            "please wait a moment.",
            429,
        )
    hits = selectors.chunk_search(user=request.user, query=query, k=k)
    record_search(
        user=request.user, query=query, hits=hits, started=started, started_clock=started_clock
    )
    return JsonResponse(
        {
            "query": query,
            "results": [
                {
                    "document_id": h.document_id,
                    "document_title": h.document_title,
                    "version": h.version,
                    "heading": h.heading,
                    "page": h.page,
                    "text": h.text,
                    "score": round(h.score, 5),
                    "similarity": None if h.similarity is None else round(h.similarity, 4),
                }
                for h in hits
            ],
        }
    )
