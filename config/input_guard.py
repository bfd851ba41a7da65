"""Refuse request values that no part of Counsel can hold: a NUL character.

PostgreSQL cannot store NUL in text, and psycopg refuses to send it even in a query's
parameters, so a NUL in any filter or form field reached the database as a server error (the
audit trail's actor filter, the user list's search, the documents API's filters: found by
tests/test_fuzz_inputs.py). One check for every view: the query string and url-encoded bodies
are looked at before any view runs, and such a request gets a plain 400. Multipart bodies are
left to their views (the upload handlers must see them first: size limits); their text fields go
through the same forms and services, which refuse NUL.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse

MESSAGE = "The request holds a NUL character, which cannot be processed."


def _has_nul(values) -> bool:
    return any("\x00" in key or any("\x00" in v for v in vals) for key, vals in values.lists())


class RefuseNulMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if "\x00" in request.path or _has_nul(request.GET) or self._body_has_nul(request):
            if request.path.startswith("/api/"):
                return JsonResponse({"error": MESSAGE}, status=400)
            return HttpResponse(MESSAGE, status=400, content_type="text/plain; charset=utf-8")
        return self.get_response(request)

    @staticmethod
    def _body_has_nul(request: HttpRequest) -> bool:
        if request.method != "POST":
            return False
        if request.content_type != "application/x-www-form-urlencoded":
            return False
        return _has_nul(request.POST)
