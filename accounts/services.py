"""Writes to users and roles. Each change is audited in the same transaction as the change."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import Group, Permission
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Model

from accounts.capabilities import (
    ADMINISTRATOR,
    BUILTIN_ROLES,
    EXCLUSIVE,
    GRANTABLE,
    Capability,
)
from accounts.models import ApiToken, AuditEvent, DirectoryGrant, User
from ingestion.models import Collection

_TARGET_TYPES = {"auth.group": "role", "accounts.user": "user"}


def audit_record(
    *,
    actor: User | None,
    action: str,
    target: Model,
    details: dict | None = None,
    actor_name: str = "",
) -> AuditEvent:
    """Append one event to the administration audit trail (call inside the change's transaction).

    `actor_name` names an actor that is no user (the directory's SCIM client, say)."""
    return AuditEvent.objects.create(
        actor=actor,
        actor_username=actor.get_username() if actor else (actor_name or "system"),
        action=action,
        # Roles are Django groups underneath; the trail speaks the product's language.
        target_type=_TARGET_TYPES.get(target._meta.label_lower, target._meta.model_name),
        target_id=str(target.pk),
        target_repr=str(target)[:200],
        details=details or {},
    )


def capability_permissions(capabilities: Iterable[Capability]) -> list[Permission]:
    codes = [Capability(cap).value for cap in capabilities]
    perms = list(Permission.objects.filter(content_type__app_label="accounts", codename__in=codes))
    if len(perms) != len(set(codes)):
        raise RuntimeError("capability permissions are missing: run migrations")
    return perms


def builtin_roles_ensure(**kwargs) -> None:
    """Make sure the built-in roles exist with exactly their capabilities.

    Connected to post_migrate (like Django's own permission creation), so the roles come back
    after `flush` (which test cases use) and are repaired after any manual damage. Migration
    0003 creates them the first time.
    """
    from django.contrib.contenttypes.models import ContentType

    user_type = ContentType.objects.get_for_model(User)
    for role_name, caps in BUILTIN_ROLES.items():
        perms = []
        for cap in caps:
            perm, _ = Permission.objects.get_or_create(
                content_type=user_type, codename=cap.value, defaults={"name": cap.label}
            )
            perms.append(perm)
        role, _ = Group.objects.get_or_create(name=role_name)
        current = set(role.permissions.filter(content_type=user_type))
        if current != set(perms):
            role.permissions.remove(*current)
            role.permissions.add(*perms)


def _temporary_password() -> str:
    return secrets.token_urlsafe(12)


def _names(groups: Iterable[Group]) -> list[str]:
    return sorted(g.name for g in groups)


def _capabilities_of(roles: Iterable[Group]) -> set[Capability]:
    role_ids = [r.pk for r in roles]
    codes = Permission.objects.filter(
        group__id__in=role_ids, content_type__app_label="accounts"
    ).values_list("codename", flat=True)
    return {Capability(c) for c in codes if c in Capability._value2member_map_}


def _check_separation_of_duties(caps: set[Capability]) -> None:
    if all(cap in caps for cap in EXCLUSIVE):
        raise ValidationError(
            "A user cannot both manage users and review the query log (separation of duties): "
            f"choose either {ADMINISTRATOR} or Compliance officer."
        )


def _lock_administrators() -> None:
    """Serialize every change that could remove an administrator.

    Locking only the changed user's row is not enough: two administrators demoting each other
    at once lock two different rows, each still sees the other as administrator, and both
    commit, leaving none. Locking the Administrator role's row makes the second change wait for
    the first and then count what it committed (READ COMMITTED reads it after the lock).
    """
    Group.objects.select_for_update().filter(name=ADMINISTRATOR).first()


def _check_an_administrator_remains(*, changing: User, keeps_admin: bool) -> None:
    if keeps_admin:
        return
    others = (
        User.objects.filter(is_active=True, groups__name=ADMINISTRATOR)
        .exclude(pk=changing.pk)
        .exists()
    )
    if not others:
        raise ValidationError(
            "At least one active administrator must remain; appoint another one first."
        )


@transaction.atomic
def user_create(
    *,
    actor: User,
    username: str,
    first_name: str = "",
    last_name: str = "",
    email: str = "",
    roles: Iterable[Group] = (),
) -> tuple[User, str]:
    """Create a user with a temporary password, returned once, to be changed at first sign-in."""
    roles = list(roles)
    _check_separation_of_duties(_capabilities_of(roles))
    if User.objects.filter(username__iexact=username).exists():
        raise ValidationError(f"The username {username!r} is taken.")
    password = _temporary_password()
    user = User(
        username=username,
        first_name=first_name,
        last_name=last_name,
        email=email,
        must_change_password=True,
    )
    user.set_password(password)
    user.full_clean()
    user.save()
    user.groups.set(roles)
    audit_record(
        actor=actor,
        action="user.create",
        target=user,
        details={"roles": _names(roles), "email": email},
    )
    return user, password


@transaction.atomic
def user_update(*, actor: User, user: User, first_name: str, last_name: str, email: str) -> User:
    before = {"first_name": user.first_name, "last_name": user.last_name, "email": user.email}
    user.first_name, user.last_name, user.email = first_name, last_name, email
    user.full_clean()
    user.save(update_fields=["first_name", "last_name", "email"])
    after = {"first_name": first_name, "last_name": last_name, "email": email}
    changed = {k: {"before": before[k], "after": after[k]} for k in after if before[k] != after[k]}
    if changed:
        audit_record(actor=actor, action="user.update", target=user, details=changed)
    return user


@transaction.atomic
def user_set_roles(*, actor: User, user: User, roles: Iterable[Group]) -> User:
    """Replace a user's roles. Takes effect on the user's next request or question."""
    roles = list(roles)
    # Lock the user row: two administrators editing the same user serialize here, so the
    # separation and last-administrator checks see each other's result.
    _lock_administrators()
    User.objects.select_for_update().get(pk=user.pk)
    before = _names(user.groups.all())
    _check_separation_of_duties(_capabilities_of(roles))
    _check_an_administrator_remains(
        changing=user,
        keeps_admin=any(r.name == ADMINISTRATOR for r in roles) or not user.is_active,
    )
    user.groups.set(roles)
    # A directory role taken away by hand is no longer the directory's (accounts/identity).
    DirectoryGrant.objects.filter(user=user).exclude(role__in=roles).delete()
    after = _names(roles)
    if before != after:
        audit_record(
            actor=actor,
            action="user.roles",
            target=user,
            details={"before": before, "after": after},
        )
    return user


@transaction.atomic
def user_set_active(*, actor: User, user: User, active: bool) -> User:
    if user.pk == actor.pk and not active:
        raise ValidationError("You cannot deactivate your own account.")
    _lock_administrators()
    User.objects.select_for_update().get(pk=user.pk)
    if not active:
        _check_an_administrator_remains(
            changing=user, keeps_admin=not user.groups.filter(name=ADMINISTRATOR).exists()
        )
    if user.is_active != active:
        user.is_active = active
        user.save(update_fields=["is_active"])
        audit_record(
            actor=actor, action="user.activate" if active else "user.deactivate", target=user
        )
    return user


@transaction.atomic
def user_reset_password(*, actor: User, user: User) -> str:
    """Give `user` a new temporary password (returned once) and end their other sessions."""
    password = _temporary_password()
    user.set_password(password)  # also invalidates existing sessions (session auth hash)
    user.must_change_password = True
    user.save(update_fields=["password", "must_change_password"])
    audit_record(actor=actor, action="user.password_reset", target=user)
    return password


@transaction.atomic
def user_password_changed(*, user: User) -> None:
    """Record that a user chose their own password (clearing a temporary one)."""
    if user.must_change_password:
        user.must_change_password = False
        user.save(update_fields=["must_change_password"])
    audit_record(actor=user, action="user.password_change", target=user)


def _validate_role_name(name: str, *, exclude_pk: int | None = None) -> str:
    name = " ".join(name.split())
    if not name:
        raise ValidationError("A role needs a name.")
    if len(name) > 150:
        raise ValidationError("Role names have at most 150 characters.")
    clash = Group.objects.filter(name__iexact=name)
    if exclude_pk is not None:
        clash = clash.exclude(pk=exclude_pk)
    if clash.exists():
        raise ValidationError(f"A role called {name!r} exists already.")
    return name


def _check_grantable(capabilities: Iterable[Capability]) -> list[Capability]:
    caps = [Capability(c) for c in capabilities]
    refused = [c for c in caps if c not in GRANTABLE]
    if refused:
        raise ValidationError(
            "Only the built-in roles carry these capabilities: "
            + ", ".join(c.label for c in refused)
        )
    return caps


@transaction.atomic
def role_create(
    *,
    actor: User,
    name: str,
    capabilities: Iterable[Capability] = (Capability.CHAT,),
    collections: Iterable[Collection] = (),
) -> Group:
    name = _validate_role_name(name)
    caps = _check_grantable(capabilities)
    collections = list(collections)
    role = Group.objects.create(name=name)
    role.permissions.set(capability_permissions(caps))
    role.readable_collections.set(collections)
    audit_record(
        actor=actor,
        action="role.create",
        target=role,
        details={
            "capabilities": sorted(c.value for c in caps),
            "collections": sorted(c.name for c in collections),
        },
    )
    return role


@transaction.atomic
def role_update(
    *,
    actor: User,
    role: Group,
    name: str,
    capabilities: Iterable[Capability] | None,
    collections: Iterable[Collection],
) -> Group:
    """Rename a role, change its capabilities and the collections it reads.

    Built-in roles keep their name and capabilities; what they read may change.
    """
    Group.objects.select_for_update().get(pk=role.pk)
    builtin = role.name in BUILTIN_ROLES
    details: dict = {}
    name = " ".join(name.split())
    if name != role.name:
        if builtin:
            raise ValidationError(f"The built-in role {role.name!r} cannot be renamed.")
        name = _validate_role_name(name, exclude_pk=role.pk)
        details["name"] = {"before": role.name, "after": name}
        role.name = name
        role.save(update_fields=["name"])
    if capabilities is not None and not builtin:
        caps = _check_grantable(capabilities)
        before = sorted(
            role.permissions.filter(content_type__app_label="accounts").values_list(
                "codename", flat=True
            )
        )
        after = sorted(c.value for c in caps)
        if before != after:
            # Granting a capability to a role grants it to its members: keep them separated.
            for member in role.user_set.all():
                others = _capabilities_of(member.groups.exclude(pk=role.pk))
                _check_separation_of_duties(others | set(caps))
            role.permissions.set(capability_permissions(caps))
            details["capabilities"] = {"before": before, "after": after}
    collections = list(collections)
    before_c = _names(role.readable_collections.all())
    after_c = _names(collections)
    if before_c != after_c:
        role.readable_collections.set(collections)
        details["collections"] = {"before": before_c, "after": after_c}
    if details:
        audit_record(actor=actor, action="role.update", target=role, details=details)
    return role


@transaction.atomic
def role_delete(*, actor: User, role: Group) -> None:
    if role.name in BUILTIN_ROLES:
        raise ValidationError(f"The built-in role {role.name!r} cannot be deleted.")
    members = sorted(role.user_set.values_list("username", flat=True))
    collections = _names(role.readable_collections.all())
    audit_record(
        actor=actor,
        action="role.delete",
        target=role,
        details={"members": members, "collections": collections},
    )
    role.delete()


TOKEN_PREFIX = "cns_"  # noqa: S105 - a marker that makes leaked tokens greppable, no secret


@transaction.atomic
def api_token_create(
    *, actor: User | None, user: User, name: str, days: int | None = None
) -> tuple[ApiToken, str]:
    """Create a bearer token for `user`, valid `days` (API_TOKEN_DAYS by default, at most
    API_TOKEN_MAX_DAYS); the raw token is returned once and never stored."""
    from django.utils import timezone

    days = settings.API_TOKEN_DAYS if days is None else days
    if not 1 <= days <= settings.API_TOKEN_MAX_DAYS:
        raise ValidationError(
            f"A token lives between 1 and {settings.API_TOKEN_MAX_DAYS} days.", code="days"
        )
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user,
        name=name.strip()[:100] or "API token",
        prefix=raw[:10],
        digest=hashlib.sha256(raw.encode()).hexdigest(),
        expires_at=timezone.now() + timedelta(days=days),
    )
    audit_record(
        actor=actor,
        action="token.create",
        target=user,
        details={"name": token.name, "expires_at": token.expires_at.isoformat()},
    )
    return token, raw


@transaction.atomic
def api_token_revoke(*, actor: User | None, token: ApiToken) -> None:
    from django.utils import timezone

    ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    audit_record(
        actor=actor, action="token.revoke", target=token.user, details={"name": token.name}
    )
