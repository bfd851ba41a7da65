"""HTTP for the SCIM 2.0 endpoint at /scim/v2/ (accounts/identity/scim.py does the work).

Every request needs `Authorization: Bearer scim_…`, a token an administrator made under
/manage/directory/ and has not revoked; anything else gets a SCIM 401. No session, no CSRF (a
bearer token is not sent by browsers on their own).
"""

from __future__ import annotations

import json
from collections.abc import Callable

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from accounts.identity import scim
from accounts.identity.tokens import scim_token_check
from accounts.models import DirectoryGroup

CONTENT_TYPE = "application/scim+json"
MAX_BODY = 1024 * 1024


def _answer(doc: dict | None, status: int = 200) -> JsonResponse:
    response = JsonResponse(doc or {}, status=status, content_type=CONTENT_TYPE)
    if doc is None:
        response.content = b""
    return response


def _base(request: HttpRequest) -> str:
    return request.build_absolute_uri("/scim/v2").rstrip("/")


def _body(request: HttpRequest) -> dict:
    if len(request.body) > MAX_BODY:
        raise scim.ScimError(413, "the request is too large")
    try:
        doc = json.loads(request.body or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise scim.ScimError(400, "the body is not JSON", "invalidSyntax") from exc
    if not isinstance(doc, dict):
        raise scim.ScimError(400, "the body is a JSON object", "invalidSyntax")
    return doc


def scim_endpoint(methods: set[str]) -> Callable:
    """Bearer-token auth, SCIM errors as SCIM documents, allowed methods only."""

    def decorate(view: Callable) -> Callable:
        @csrf_exempt
        def wrapper(request: HttpRequest, *args, **kwargs):
            header = request.headers.get("Authorization", "")
            scheme, _, raw = header.partition(" ")
            token = scim_token_check(raw.strip()) if scheme.lower() == "bearer" else None
            try:
                if token is None:
                    raise scim.ScimError(401, "a valid SCIM bearer token is required")
                if request.method not in methods:
                    raise scim.ScimError(405, f"{request.method} is not supported here")
                return view(request, scim.Client(token), *args, **kwargs)
            except scim.ScimError as exc:
                response = _answer(exc.document(), exc.status)
                if exc.status == 401:
                    response["WWW-Authenticate"] = 'Bearer realm="scim"'
                return response

        return wrapper

    return decorate


def _user(pk: str):
    user = scim.scim_users().filter(pk=int(pk)).first() if scim._valid_id("pk", pk) else None
    if user is None:
        raise scim.ScimError(404, "no such user")
    return user


def _group(pk: str) -> DirectoryGroup:
    group = (
        DirectoryGroup.objects.filter(scim_id=pk).first() if scim._valid_id("scim_id", pk) else None
    )
    if group is None:
        raise scim.ScimError(404, "no such group")
    return group


@scim_endpoint({"GET", "POST"})
def users(request: HttpRequest, client: scim.Client):
    base = _base(request)
    if request.method == "POST":
        user = scim.user_create(client, _body(request))
        return _answer(scim.user_document(user, base), 201)
    found = scim.find_users(request.GET).prefetch_related("directory_groups")
    return _answer(scim.page(found, request.GET, lambda u: scim.user_document(u, base)))


@scim_endpoint({"GET", "PUT", "PATCH", "DELETE"})
def user(request: HttpRequest, client: scim.Client, pk: str):
    target = _user(pk)
    if request.method == "PUT":
        target = scim.user_replace(client, target, _body(request))
    elif request.method == "PATCH":
        target = scim.user_patch(client, target, _body(request))
    elif request.method == "DELETE":
        scim.user_delete(client, target)
        return _answer(None, 204)
    target.refresh_from_db()
    return _answer(scim.user_document(target, _base(request)))


def _with_members(request: HttpRequest) -> bool:
    return "members" not in request.GET.get("excludedAttributes", "")


@scim_endpoint({"GET", "POST"})
def groups(request: HttpRequest, client: scim.Client):
    base = _base(request)
    if request.method == "POST":
        group = scim.group_create(client, _body(request))
        return _answer(scim.group_document(group, base), 201)
    members = _with_members(request)
    return _answer(
        scim.page(
            scim.find_groups(request.GET),
            request.GET,
            lambda g: scim.group_document(g, base, members=members),
        )
    )


@scim_endpoint({"GET", "PUT", "PATCH", "DELETE"})
def group(request: HttpRequest, client: scim.Client, pk: str):
    target = _group(pk)
    if request.method == "PUT":
        target = scim.group_replace(client, target, _body(request))
    elif request.method == "PATCH":
        scim.group_patch(client, target, _body(request))
        return _answer(None, 204)
    elif request.method == "DELETE":
        scim.group_delete(client, target)
        return _answer(None, 204)
    return _answer(scim.group_document(target, _base(request), members=_with_members(request)))


@scim_endpoint({"GET"})
def service_provider_config(request: HttpRequest, client: scim.Client):
    return _answer(
        {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
            "patch": {"supported": True},
            "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
            "filter": {"supported": True, "maxResults": scim.MAX_COUNT},
            "changePassword": {"supported": False},
            "sort": {"supported": False},
            "etag": {"supported": False},
            "authenticationSchemes": [
                {
                    "type": "oauthbearertoken",
                    "name": "Bearer token",
                    "description": "A token made by an administrator under /manage/directory/",
                }
            ],
        }
    )


@scim_endpoint({"GET"})
def resource_types(request: HttpRequest, client: scim.Client):
    types = [
        {"id": "User", "name": "User", "endpoint": "/Users", "schema": scim.USER_SCHEMA},
        {"id": "Group", "name": "Group", "endpoint": "/Groups", "schema": scim.GROUP_SCHEMA},
    ]
    for item in types:
        item["schemas"] = ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"]
    return _answer(
        {
            "schemas": [scim.LIST_SCHEMA],
            "totalResults": 2,
            "startIndex": 1,
            "itemsPerPage": 2,
            "Resources": types,
        }
    )
