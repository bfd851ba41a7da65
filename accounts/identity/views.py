"""/manage/directory/: the group → role mapping and the SCIM client's tokens (administrators)."""

from __future__ import annotations

import re

from django.contrib import messages
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from accounts.capabilities import Capability
from accounts.decorators import capability_required
from accounts.identity import mapping, tokens
from accounts.models import DirectoryGroupMapping, ScimToken

manage_users = capability_required(Capability.MANAGE_USERS)


@manage_users
def directory(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        role = Group.objects.filter(pk=_int(request.POST.get("role"))).first()
        try:
            if role is None:
                raise ValidationError("Choose a role.")
            mapping.mapping_add(
                actor=request.user,
                directory_group=request.POST.get("directory_group", "")[:300],
                role=role,
            )
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
        else:
            messages.success(
                request, "Mapped. Members get the role at their next sign-in or update."
            )
        return redirect("accounts:directory")
    context = {
        "mappings": DirectoryGroupMapping.objects.select_related("role"),
        "roles": Group.objects.order_by("name"),
        "tokens": ScimToken.objects.all(),
        "new_token": request.session.pop("new_scim_token", None),
    }
    return render(request, "accounts/directory.html", context)


def _int(value) -> int | None:
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,18}", value):
        return int(value)
    return None


@manage_users
@require_POST
def mapping_remove(request: HttpRequest, pk: int) -> HttpResponse:
    mapping.mapping_remove(
        actor=request.user, mapping=get_object_or_404(DirectoryGroupMapping, pk=pk)
    )
    messages.success(request, "Removed. Members lose the role at their next sign-in or update.")
    return redirect("accounts:directory")


@manage_users
@require_POST
def scim_token_create(request: HttpRequest) -> HttpResponse:
    _token, raw = tokens.scim_token_create(
        actor=request.user, name=request.POST.get("name", "")[:100]
    )
    request.session["new_scim_token"] = raw  # shown once, on the next page
    return redirect("accounts:directory")


@manage_users
@require_POST
def scim_token_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    tokens.scim_token_revoke(actor=request.user, token=get_object_or_404(ScimToken, pk=pk))
    messages.success(request, "Revoked: the SCIM client's next request is refused.")
    return redirect("accounts:directory")
