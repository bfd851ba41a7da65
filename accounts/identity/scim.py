"""SCIM 2.0 resources (RFC 7643/7644): the subset Entra ID and Okta use.

Users and Groups: create, read, replace, patch, delete; `eq` filters on the attributes those
clients look up by; `startIndex`/`count` pagination. HTTP lives in `scim_views`; this module
turns SCIM documents into changes, each audited with the SCIM client's token as the actor.

- A user is deactivated with `active: false` (its sessions end and its sockets close,
  accounts/signals.py); DELETE deactivates, takes the directory roles away and forgets the
  SCIM identity (the person's records stay for compliance).
- A change of a group's members sets each affected member's directory roles from the mapping
  (accounts/identity/mapping.py): a removed member loses the role on their next question, and
  their open sockets close.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.db import transaction
from django.db.models import QuerySet

from accounts.capabilities import ADMINISTRATOR
from accounts.identity.mapping import directory_roles_apply
from accounts.identity.text import storable
from accounts.models import DirectoryGroup, ExternalIdentity, ScimToken, User
from accounts.services import _lock_administrators, audit_record

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
LIST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
MAX_COUNT = 200


class ScimError(Exception):
    def __init__(self, status: int, detail: str, scim_type: str = "") -> None:
        super().__init__(detail)
        self.status, self.detail, self.scim_type = status, detail, scim_type

    def document(self) -> dict:
        doc = {"schemas": [ERROR_SCHEMA], "status": str(self.status), "detail": self.detail}
        if self.scim_type:
            doc["scimType"] = self.scim_type
        return doc


# --- filters and pages -------------------------------------------------------------------------

_FILTER = re.compile(r'^\s*([A-Za-z.]+)\s+eq\s+"((?:[^"\\]|\\.)*)"\s*$', re.IGNORECASE)
USER_FILTERS = {
    "username": "username__iexact",
    "externalid": "external_identities__subject",
    "id": "pk",
    "emails.value": "email__iexact",
}
GROUP_FILTERS = {
    "displayname": "display_name__iexact",
    "externalid": "external_id",
    "id": "scim_id",
    "members.value": "members__pk",
}


def filtered(queryset: QuerySet, expression: str | None, fields: dict[str, str]) -> QuerySet:
    """`attribute eq "value"`, the filter Entra ID and Okta send; anything else is refused."""
    if not expression:
        return queryset
    match = _FILTER.match(expression) if storable(expression) else None
    if not match or match.group(1).lower() not in fields:
        raise ScimError(400, f"unsupported filter: {expression[:200]}", "invalidFilter")
    value = match.group(2).replace('\\"', '"').replace("\\\\", "\\")
    lookup = fields[match.group(1).lower()]
    if lookup in {"pk", "members__pk", "scim_id"} and not _valid_id(lookup, value):
        return queryset.none()
    if lookup == "external_identities__subject":
        return queryset.filter(
            external_identities__source=ExternalIdentity.SCIM, external_identities__subject=value
        )
    return queryset.filter(**{lookup: value})


_USER_ID = re.compile(r"[0-9]{1,18}")
_GROUP_ID = re.compile(r"[0-9a-fA-F-]{32,36}")
MAX_START = 10**9


def _valid_id(lookup: str, value: str) -> bool:
    """Ids as Counsel makes them: ASCII digits within a bigint, or a UUID."""
    pattern = _GROUP_ID if lookup == "scim_id" else _USER_ID
    return pattern.fullmatch(value) is not None


def page(queryset: QuerySet, params, render) -> dict:
    try:
        start = min(MAX_START, max(1, int(_ascii_number(params.get("startIndex"), "1"))))
        count = min(MAX_COUNT, max(0, int(_ascii_number(params.get("count"), "100"))))
    except ValueError as exc:
        raise ScimError(400, "startIndex and count are numbers", "invalidValue") from exc
    total = queryset.count()
    items = list(queryset[start - 1 : start - 1 + count]) if count else []
    return {
        "schemas": [LIST_SCHEMA],
        "totalResults": total,
        "startIndex": start,
        "itemsPerPage": len(items),
        "Resources": [render(item) for item in items],
    }


def _ascii_number(value: str | None, default: str) -> str:
    if not value:
        return default
    if re.fullmatch(r"-?[0-9]{1,12}", value) is None:
        raise ValueError(value)
    return value


# --- documents ---------------------------------------------------------------------------------


def scim_users() -> QuerySet[User]:
    """The users the SCIM client provisioned (and not deleted)."""
    return (
        User.objects.filter(external_identities__source=ExternalIdentity.SCIM)
        .distinct()
        .order_by("pk")
    )


def _external_id(user: User) -> str:
    identity = user.external_identities.filter(source=ExternalIdentity.SCIM).first()
    return identity.subject if identity else ""


def user_document(user: User, base: str) -> dict:
    return {
        "schemas": [USER_SCHEMA],
        "id": str(user.pk),
        "externalId": _external_id(user),
        "userName": user.username,
        "name": {"givenName": user.first_name, "familyName": user.last_name},
        "displayName": user.get_full_name() or user.username,
        "emails": [{"value": user.email, "type": "work", "primary": True}] if user.email else [],
        "active": user.is_active,
        "groups": [
            {"value": str(g.scim_id), "display": g.display_name}
            for g in user.directory_groups.all()
        ],
        "meta": {"resourceType": "User", "location": f"{base}/Users/{user.pk}"},
    }


def group_document(group: DirectoryGroup, base: str, *, members: bool = True) -> dict:
    doc = {
        "schemas": [GROUP_SCHEMA],
        "id": str(group.scim_id),
        "externalId": group.external_id,
        "displayName": group.display_name,
        "meta": {"resourceType": "Group", "location": f"{base}/Groups/{group.scim_id}"},
    }
    if members:
        doc["members"] = [
            {"value": str(u.pk), "display": u.username} for u in group.members.order_by("pk")
        ]
    return doc


# --- the audit trail and roles ------------------------------------------------------------------


@dataclass(frozen=True)
class Client:
    """The SCIM client making a change: its token names it in the audit trail."""

    token: ScimToken

    def audit(self, action: str, target, **details) -> None:
        audit_record(
            actor=None,
            actor_name=f"scim:{self.token.name}"[:150],
            action=action,
            target=target,
            details={"token": self.token.prefix, **details},
        )


def group_keys(user: User) -> set[str]:
    """What the mapping may name a user's SCIM groups by: display name or external id."""
    keys: set[str] = set()
    for name, external in user.directory_groups.values_list("display_name", "external_id"):
        keys.update(k for k in (name, external) if k)
    return keys


def _resync(users) -> None:
    for user in users:
        directory_roles_apply(user=user, group_keys=group_keys(user), source="scim")


# --- users -------------------------------------------------------------------------------------


def _bool(value) -> bool:
    if isinstance(value, str):  # Entra ID sends "False"
        if value.lower() not in {"true", "false"}:
            raise ScimError(400, "active is true or false", "invalidValue")
        return value.lower() == "true"
    if not isinstance(value, bool):
        raise ScimError(400, "active is true or false", "invalidValue")
    return value


def _str(value, name: str, limit: int = 150) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > limit or not storable(value):
        raise ScimError(
            400,
            f"{name} is a string of at most {limit} characters, none a control character",
            "invalidValue",
        )
    return value.strip()


def _work_email(emails) -> str:
    if not isinstance(emails, list):
        return ""
    chosen = next((e for e in emails if isinstance(e, dict) and e.get("primary")), None)
    chosen = chosen or next((e for e in emails if isinstance(e, dict)), {})
    return _str(chosen.get("value"), "emails.value", 254)


@dataclass
class UserFields:
    username: str | None = None
    external_id: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    active: bool | None = None


def user_fields(doc: dict) -> UserFields:
    if not isinstance(doc, dict):
        raise ScimError(400, "a User is a JSON object", "invalidSyntax")
    name = doc.get("name") if isinstance(doc.get("name"), dict) else {}
    return UserFields(
        username=_str(doc.get("userName"), "userName") if "userName" in doc else None,
        external_id=_str(doc.get("externalId"), "externalId", 255) if "externalId" in doc else None,
        first_name=_str(name.get("givenName"), "name.givenName") if "givenName" in name else None,
        last_name=_str(name.get("familyName"), "name.familyName") if "familyName" in name else None,
        email=_work_email(doc.get("emails")) if "emails" in doc else None,
        active=_bool(doc["active"]) if "active" in doc else None,
    )


def _set_active(client: Client, user: User, active: bool) -> None:
    if user.is_active == active:
        return
    _lock_administrators()
    if not active and user.groups.filter(name=ADMINISTRATOR).exists():
        others = User.objects.filter(is_active=True, groups__name=ADMINISTRATOR).exclude(pk=user.pk)
        if not others.exists():
            raise ScimError(409, "the last active administrator cannot be deactivated")
    user.is_active = active
    user.save(update_fields=["is_active"])  # a deactivation ends sessions (accounts/signals.py)
    client.audit("user.activate" if active else "user.deactivate", user, source="scim")


def _apply_user(client: Client, user: User, fields: UserFields) -> None:
    changed = {}
    for attr, value in (
        ("username", fields.username),
        ("first_name", fields.first_name),
        ("last_name", fields.last_name),
        ("email", fields.email),
    ):
        if value is not None and getattr(user, attr) != value:
            changed[attr] = {"before": getattr(user, attr), "after": value}
            setattr(user, attr, value)
    if "username" in changed:
        if not fields.username:
            raise ScimError(400, "userName is required", "invalidValue")
        if User.objects.filter(username__iexact=fields.username).exclude(pk=user.pk).exists():
            raise ScimError(409, "userName is taken", "uniqueness")
    if changed:
        user.save(update_fields=list(changed))
        client.audit("user.update", user, source="scim", changes=changed)
    if fields.external_id is not None:
        ExternalIdentity.objects.filter(user=user, source=ExternalIdentity.SCIM).update(
            subject=fields.external_id or user.username
        )
    if fields.active is not None:
        _set_active(client, user, fields.active)


@transaction.atomic
def user_create(client: Client, doc: dict) -> User:
    fields = user_fields(doc)
    if not fields.username:
        raise ScimError(400, "userName is required", "invalidValue")
    subject = fields.external_id or fields.username
    if User.objects.filter(username__iexact=fields.username).exists() or (
        ExternalIdentity.objects.filter(source=ExternalIdentity.SCIM, subject=subject).exists()
    ):
        raise ScimError(409, f"a user {fields.username!r} exists already", "uniqueness")
    user = User(
        username=fields.username,
        first_name=fields.first_name or "",
        last_name=fields.last_name or "",
        email=fields.email or "",
        is_active=fields.active if fields.active is not None else True,
    )
    user.set_unusable_password()
    user.save()
    ExternalIdentity.objects.create(user=user, source=ExternalIdentity.SCIM, subject=subject)
    client.audit("user.create", user, source="scim", email=user.email, active=user.is_active)
    return user


@transaction.atomic
def user_replace(client: Client, user: User, doc: dict) -> User:
    fields = user_fields(doc)
    fields.active = True if fields.active is None else fields.active
    for attr in ("first_name", "last_name", "email"):
        if getattr(fields, attr) is None:
            setattr(fields, attr, "")
    _apply_user(client, user, fields)
    return user


_USER_PATHS = {
    "active": "active",
    "username": "userName",
    "externalid": "externalId",
    "name.givenname": "givenName",
    "name.familyname": "familyName",
    'emails[type eq "work"].value': "email",
}


def _user_patch_fields(operations: list) -> UserFields:
    doc: dict = {}
    for op in operations:
        kind = str(op.get("op", "")).lower()
        if kind not in {"add", "replace", "remove"}:
            raise ScimError(400, f"unknown op {op.get('op')!r}", "invalidSyntax")
        path = str(op.get("path") or "").strip()
        value = op.get("value") if kind != "remove" else None
        if not path:
            if not isinstance(value, dict):
                raise ScimError(400, "an op without a path carries an object", "invalidValue")
            for key, item in value.items():
                _user_patch_path(doc, key, item)
        else:
            _user_patch_path(doc, path, value)
    return user_fields(doc)


def _user_patch_path(doc: dict, path: str, value) -> None:
    target = _USER_PATHS.get(path.lower())
    if target in {"givenName", "familyName"}:
        doc.setdefault("name", {})[target] = value
    elif target == "email":
        doc["emails"] = [{"value": value, "primary": True}]
    elif target is not None:
        doc[target] = value
    elif path.lower() == "name" and isinstance(value, dict):
        doc["name"] = value
    elif path.lower() == "emails":
        doc["emails"] = value
    # Other attributes (title, department, …) are not kept by Counsel: ignored, as RFC 7644
    # lets a provider do for attributes it does not support.


@transaction.atomic
def user_patch(client: Client, user: User, doc: dict) -> User:
    _apply_user(client, user, _user_patch_fields(_operations(doc)))
    return user


@transaction.atomic
def user_delete(client: Client, user: User) -> None:
    """Deactivate, leave every SCIM group, lose the directory roles, forget the SCIM identity.
    The person's conversations and query-log entries stay (compliance)."""
    _set_active(client, user, False)
    user.directory_groups.clear()
    directory_roles_apply(user=user, group_keys=(), source="scim")
    ExternalIdentity.objects.filter(user=user, source=ExternalIdentity.SCIM).delete()
    client.audit("user.scim_delete", user, source="scim")


# --- groups ------------------------------------------------------------------------------------


def _operations(doc: dict) -> list:
    ops = doc.get("Operations") if isinstance(doc, dict) else None
    if not isinstance(ops, list) or not all(isinstance(op, dict) for op in ops):
        raise ScimError(400, "a PATCH carries a list of Operations", "invalidSyntax")
    return ops


def _member_ids(value) -> set[int]:
    if value is None:
        return set()
    if not isinstance(value, list):
        value = [value]
    ids = set()
    for item in value:
        raw = item.get("value") if isinstance(item, dict) else item
        if isinstance(raw, bool) or not isinstance(raw, str | int) or not _valid_id("pk", str(raw)):
            raise ScimError(400, f"unknown member {str(raw)[:40]!r}", "invalidValue")
        ids.add(int(raw))
    known = set(scim_users().filter(pk__in=ids).values_list("pk", flat=True))
    if known != ids:
        raise ScimError(400, f"unknown members: {sorted(ids - known)}", "invalidValue")
    return ids


def _display_name(value) -> str:
    name = _str(value, "displayName", 255)
    if not name:
        raise ScimError(400, "displayName is required", "invalidValue")
    return name


def _set_members(client: Client, group: DirectoryGroup, ids: set[int]) -> None:
    before = set(group.members.values_list("pk", flat=True))
    if before == ids:
        return
    group.members.set(User.objects.filter(pk__in=ids))
    client.audit(
        "directory_group.members",
        group,
        source="scim",
        added=sorted(ids - before),
        removed=sorted(before - ids),
    )
    _resync(User.objects.filter(pk__in=before ^ ids))


def _rename(client: Client, group: DirectoryGroup, name: str, external_id: str | None) -> None:
    if DirectoryGroup.objects.filter(display_name__iexact=name).exclude(pk=group.pk).exists():
        raise ScimError(409, f"a group {name!r} exists already", "uniqueness")
    before = (group.display_name, group.external_id)
    group.display_name = name
    if external_id is not None:
        group.external_id = external_id
    if before != (group.display_name, group.external_id):
        group.save()
        client.audit(
            "directory_group.update",
            group,
            source="scim",
            before=list(before),
            after=[group.display_name, group.external_id],
        )
        _resync(group.members.all())  # the mapping may name the group by either


@transaction.atomic
def group_create(client: Client, doc: dict) -> DirectoryGroup:
    if not isinstance(doc, dict):
        raise ScimError(400, "a Group is a JSON object", "invalidSyntax")
    name = _display_name(doc.get("displayName"))
    if DirectoryGroup.objects.filter(display_name__iexact=name).exists():
        raise ScimError(409, f"a group {name!r} exists already", "uniqueness")
    group = DirectoryGroup.objects.create(
        display_name=name, external_id=_str(doc.get("externalId"), "externalId", 255)
    )
    client.audit("directory_group.create", group, source="scim", external_id=group.external_id)
    _set_members(client, group, _member_ids(doc.get("members")))
    return group


@transaction.atomic
def group_replace(client: Client, group: DirectoryGroup, doc: dict) -> DirectoryGroup:
    if not isinstance(doc, dict):
        raise ScimError(400, "a Group is a JSON object", "invalidSyntax")
    external = _str(doc.get("externalId"), "externalId", 255) if "externalId" in doc else None
    _rename(client, group, _display_name(doc.get("displayName")), external)
    _set_members(client, group, _member_ids(doc.get("members")))
    return group


_MEMBER_FILTER = re.compile(r'^members\[value eq "(\d{1,18})"\]$', re.IGNORECASE)


@transaction.atomic
def group_patch(client: Client, group: DirectoryGroup, doc: dict) -> DirectoryGroup:
    members = set(group.members.values_list("pk", flat=True))
    for op in _operations(doc):
        kind = str(op.get("op", "")).lower()
        path = str(op.get("path") or "").strip()
        value = op.get("value")
        one = _MEMBER_FILTER.match(path)
        if kind == "add" and path.lower() == "members":
            members |= _member_ids(value)
        elif kind == "remove" and path.lower() == "members":
            members -= _member_ids(value) if value is not None else members
        elif kind == "remove" and one:
            members.discard(int(one.group(1)))
        elif kind == "replace" and path.lower() == "members":
            members = _member_ids(value)
        elif kind == "replace" and path.lower() in {"displayname", "externalid"}:
            doc_value = {path: value}
            _rename_from(client, group, doc_value)
        elif kind == "replace" and not path and isinstance(value, dict):
            _rename_from(client, group, value)
        else:
            raise ScimError(400, f"unsupported operation {kind} {path!r}", "invalidPath")
    _set_members(client, group, members)
    return group


def _rename_from(client: Client, group: DirectoryGroup, value: dict) -> None:
    lowered = {str(k).lower(): v for k, v in value.items()}
    name = _display_name(lowered.get("displayname", group.display_name))
    external = _str(lowered["externalid"], "externalId", 255) if "externalid" in lowered else None
    _rename(client, group, name, external)


@transaction.atomic
def group_delete(client: Client, group: DirectoryGroup) -> None:
    members = list(group.members.all())
    client.audit(
        "directory_group.delete", group, source="scim", members=[u.username for u in members]
    )
    group.delete()
    _resync(members)


def find_groups(params) -> QuerySet[DirectoryGroup]:
    return filtered(DirectoryGroup.objects.order_by("pk"), params.get("filter"), GROUP_FILTERS)


def find_users(params) -> QuerySet[User]:
    return filtered(scim_users(), params.get("filter"), USER_FILTERS)
