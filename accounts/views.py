"""Administration pages for users, roles, access profiles and the audit trail.

Each view checks the capability, validates a form, calls one service and renders. Services raise
ValidationError for refused changes (separation of duties, the last administrator, a built-in
role); the views show those messages on the form.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse_lazy
from django.views.decorators.http import require_POST

from accounts import selectors, services
from accounts.capabilities import BUILTIN_ROLES, Capability
from accounts.decorators import capability_required
from accounts.forms import (
    ApiTokenForm,
    RoleForm,
    UserCreateForm,
    UserEditForm,
    add_service_errors,
)
from accounts.identity.mapping import directory_roles_of
from accounts.models import ApiToken, AuditEvent, User
from accounts.trails import audit_events_for_administrators, audit_page
from ingestion.models import Collection

manage_users = capability_required(Capability.MANAGE_USERS)


# --- users ------------------------------------------------------------------------------------


@manage_users
def user_list(request: HttpRequest) -> HttpResponse:
    search = request.GET.get("q", "").strip()[:100]
    page = Paginator(selectors.user_list(search=search), 50).get_page(request.GET.get("page"))
    return render(request, "accounts/user_list.html", {"page": page, "q": search})


@manage_users
def user_create(request: HttpRequest) -> HttpResponse:
    form = UserCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user, password = services.user_create(actor=request.user, **form.cleaned_data)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            # Rendered, not redirected: the temporary password is shown once and never stored
            # in a URL, a message cookie or the session.
            return render(
                request,
                "accounts/temporary_password.html",
                {"target": user, "password": password, "created": True},
            )
    return render(request, "accounts/user_form.html", {"form": form})


@manage_users
def user_detail(request: HttpRequest, pk: int) -> HttpResponse:
    user = get_object_or_404(User, pk=pk)
    initial = {
        "first_name": user.first_name,
        "last_name": user.last_name,
        "email": user.email,
        "roles": user.groups.all(),
    }
    form = UserEditForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            services.user_update(
                actor=request.user,
                user=user,
                first_name=data["first_name"],
                last_name=data["last_name"],
                email=data["email"],
            )
            services.user_set_roles(actor=request.user, user=user, roles=data["roles"])
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"Saved {user.username}.")
            return redirect("accounts:user_detail", pk=user.pk)
    context = {
        "target": user,
        "form": form,
        "readable": selectors.collections_readable_by(user=user),
        "profile": selectors.access_profile_for_user(user=user),
        "capabilities": sorted(selectors.user_capabilities(user=user)),
        "events": AuditEvent.objects.filter(target_type="user", target_id=str(user.pk))[:20],
        "tokens": user.api_tokens.all(),
        # Roles from the company directory, told apart from roles granted by hand.
        "directory_roles": sorted(r.name for r in directory_roles_of(user)),
        "identities": user.external_identities.all(),
    }
    return render(request, "accounts/user_detail.html", context)


@manage_users
@require_POST
def user_set_active(request: HttpRequest, pk: int) -> HttpResponse:
    user = get_object_or_404(User, pk=pk)
    active = request.POST.get("active") == "1"
    try:
        services.user_set_active(actor=request.user, user=user, active=active)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        state = "reactivated" if active else "deactivated"
        messages.success(request, f"{user.username} is {state}.")
    return redirect("accounts:user_detail", pk=user.pk)


@manage_users
@require_POST
def user_reset_password(request: HttpRequest, pk: int) -> HttpResponse:
    user = get_object_or_404(User, pk=pk)
    password = services.user_reset_password(actor=request.user, user=user)
    return render(
        request,
        "accounts/temporary_password.html",
        {"target": user, "password": password, "created": False},
    )


# --- roles ------------------------------------------------------------------------------------


def _role_form_data(role: Group) -> dict:
    return {
        "name": role.name,
        "capabilities": [c.value for c in selectors.role_capabilities(role=role)],
        "collections": role.readable_collections.all(),
    }


@manage_users
def role_list(request: HttpRequest) -> HttpResponse:
    roles = list(selectors.role_list())
    profiles = {rid: p for p in selectors.access_profiles() for rid in p.role_ids}
    rows = [
        {
            "role": role,
            "builtin": role.name in BUILTIN_ROLES,
            "capabilities": sorted(selectors.role_capabilities(role=role)),
            "profile": profiles.get(role.pk),
        }
        for role in roles
    ]
    return render(request, "accounts/role_list.html", {"rows": rows})


@manage_users
def role_create(request: HttpRequest) -> HttpResponse:
    form = RoleForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            role = services.role_create(
                actor=request.user,
                name=form.cleaned_data["name"],
                capabilities=[Capability(c) for c in form.cleaned_data["capabilities"]],
                collections=form.cleaned_data["collections"],
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"Created the role {role.name}.")
            return redirect("accounts:role_detail", pk=role.pk)
    return render(request, "accounts/role_form.html", {"form": form})


@manage_users
def role_detail(request: HttpRequest, pk: int) -> HttpResponse:
    role = get_object_or_404(Group, pk=pk)
    builtin = role.name in BUILTIN_ROLES
    form = RoleForm(request.POST or None, initial=_role_form_data(role), builtin=builtin)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            services.role_update(
                actor=request.user,
                role=role,
                name=role.name if builtin else data["name"],
                capabilities=None if builtin else [Capability(c) for c in data["capabilities"]],
                collections=data["collections"],
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"Saved the role {role.name}.")
            return redirect("accounts:role_detail", pk=role.pk)
    context = {
        "role": role,
        "builtin": builtin,
        "form": form,
        "capabilities": sorted(selectors.role_capabilities(role=role)),
        "members": role.user_set.order_by("username"),
        "profile": selectors.access_profile_for_role(role=role),
        "collections_by_id": {c.pk: c for c in Collection.objects.all()},
    }
    return render(request, "accounts/role_detail.html", context)


@manage_users
def role_delete(request: HttpRequest, pk: int) -> HttpResponse:
    role = get_object_or_404(Group.objects.annotate(member_count=Count("user")), pk=pk)
    if request.method == "POST":
        try:
            services.role_delete(actor=request.user, role=role)
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
            return redirect("accounts:role_detail", pk=role.pk)
        messages.success(request, f"Deleted the role {role.name}.")
        return redirect("accounts:role_list")
    return render(
        request,
        "accounts/role_confirm_delete.html",
        {"role": role, "builtin": role.name in BUILTIN_ROLES},
    )


# --- profiles and audit -----------------------------------------------------------------------


@manage_users
def profile_list(request: HttpRequest) -> HttpResponse:
    collections = {c.pk: c for c in Collection.objects.all()}
    members = dict(Group.objects.annotate(n=Count("user")).values_list("pk", "n"))
    rows = [
        {
            "profile": p,
            "collections": sorted(
                (collections[c] for c in p.collection_ids if c in collections),
                key=lambda c: c.name,
            ),
            "roles": list(zip(p.role_ids, p.role_names, strict=False)),
            "members": sum(members.get(r, 0) for r in p.role_ids),
        }
        for p in selectors.access_profiles()
    ]
    return render(request, "accounts/profile_list.html", {"rows": rows})


@manage_users
def audit_list(request: HttpRequest) -> HttpResponse:
    return audit_page(request, audit_events_for_administrators(), "accounts/audit_list.html")


# --- own password -----------------------------------------------------------------------------


class _PasswordChangeView(auth_views.PasswordChangeView):
    success_url = reverse_lazy("accounts:password_change_done")

    def form_valid(self, form):
        response = super().form_valid(form)
        services.user_password_changed(user=self.request.user)
        return response


password_change = _PasswordChangeView.as_view()


# --- API tokens -----------------------------------------------------------------------------------


@login_required
def token_list(request: HttpRequest) -> HttpResponse:
    """Your own API tokens: make one (shown once, on this response only), see and revoke them."""
    form = ApiTokenForm(request.POST or None)
    created = None
    if request.method == "POST" and form.is_valid():
        try:
            _, created = services.api_token_create(
                actor=request.user,
                user=request.user,
                name=form.cleaned_data["name"],
                days=form.cleaned_data["days"],
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            form = ApiTokenForm()
    context = {"form": form, "created": created, "tokens": request.user.api_tokens.all()}
    return render(request, "accounts/token_list.html", context)


@login_required
@require_POST
def token_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    token = get_object_or_404(ApiToken, pk=pk, user=request.user)  # another's looks missing
    services.api_token_revoke(actor=request.user, token=token)
    messages.success(request, f"Revoked “{token.name}”.")
    return redirect("accounts:token_list")


@manage_users
@require_POST
def user_token_revoke(request: HttpRequest, pk: int, token_pk: int) -> HttpResponse:
    token = get_object_or_404(ApiToken, pk=token_pk, user_id=pk)
    services.api_token_revoke(actor=request.user, token=token)
    messages.success(request, f"Revoked “{token.name}” of {token.user.username}.")
    return redirect("accounts:user_detail", pk=pk)
