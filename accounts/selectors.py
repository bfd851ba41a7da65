"""The access module: every "who may read or do what" question in Counsel is answered here.

- Which collections may this user read?  `readable_collection_ids_query` (an SQL subquery for
  the search chokepoint and every other query that must be filtered in the database) and
  `user_readable_collection_ids`.
- Whose documents may this user manage (upload, replace, move, delete)?
  `managed_collection_ids_query` (an SQL subquery, like the readable one),
  `user_managed_collection_ids`, `user_can_manage_collection`.
- May this user see this object?  `user_may_see`, one rule per kind of object, failing closed for
  any kind it does not know.
- What may this user do?  `user_capabilities` / `user_has_capability`.
- Which access profile does a role (or a user) have?  `access_profiles`,
  `access_profile_for_role`, `access_profile_for_user`.

Everything is read from the database on every call: no cache, so a revoked role or a changed
collection takes effect on the next question, also on an open websocket. Inactive and anonymous
users read nothing and can do nothing.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from django.contrib.auth.models import Group, Permission
from django.contrib.postgres.aggregates import ArrayAgg
from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from accounts.capabilities import BUILTIN_ROLES, Capability
from accounts.models import ApiToken, User
from ingestion.freshness import fresh
from ingestion.models import Collection, Document
from ingestion.rls import reading_as

_CollectionReaders = Collection.readers.through
_CollectionManagers = Collection.managers.through


def _active(user) -> bool:
    return (
        user is not None
        and getattr(user, "is_authenticated", False)
        and getattr(user, "is_active", False)
        and user.pk is not None
    )


# --- data access ------------------------------------------------------------------------------


def readable_collection_ids_query(*, user) -> QuerySet:
    """The ids of the collections `user` may read, as a lazy SQL subquery.

    Meant for `.filter(collection_id__in=readable_collection_ids_query(user=user))`: the filter
    runs inside PostgreSQL, in the same statement as the search, before any LIMIT. The user's
    roles and active flag are re-read by the query itself, never taken from the (possibly stale)
    user object in memory.
    """
    if not _active(user):
        return _CollectionReaders.objects.none().values("collection_id")
    return _CollectionReaders.objects.filter(
        group__user__pk=user.pk, group__user__is_active=True
    ).values("collection_id")


def user_readable_collection_ids(*, user) -> frozenset[int]:
    """The ids of the collections `user` may read: the union of their roles' grants."""
    return frozenset(
        readable_collection_ids_query(user=user).values_list("collection_id", flat=True)
    )


def user_can_read_collection(*, user, collection_id: int | None) -> bool:
    if collection_id is None:
        return False
    return readable_collection_ids_query(user=user).filter(collection_id=collection_id).exists()


def collections_readable_by(*, user) -> QuerySet[Collection]:
    return Collection.objects.filter(id__in=readable_collection_ids_query(user=user))


def _holds(user, capability: Capability) -> QuerySet[Permission]:
    """`capability` among the permissions of the user's roles, as a subquery that re-reads the
    roles and the active flag (for `Exists`)."""
    return Permission.objects.filter(
        group__user__pk=user.pk,
        group__user__is_active=True,
        content_type__app_label="accounts",
        codename=capability.value,
    )


def managed_collection_ids_query(*, user) -> QuerySet:
    """The ids of the collections whose documents `user` may manage, as a lazy SQL subquery.

    The rule: the user holds "manage documents" and one of their roles is among the
    collection's `managers`; or the user holds "manage users", who edits every collection's
    readers and managers anyway, and so manages every collection (also one created later).
    Like the readable query, everything is re-read by the query itself.
    """
    if not _active(user):
        return Collection.objects.none().values("id")
    manager_role = _CollectionManagers.objects.filter(
        collection_id=OuterRef("pk"), group__user__pk=user.pk
    )
    return (
        Collection.objects.filter(
            Exists(_holds(user, Capability.MANAGE_USERS))
            | (Exists(_holds(user, Capability.MANAGE_DOCUMENTS)) & Exists(manager_role))
        )
        .order_by()
        .values("id")
    )


def user_managed_collection_ids(*, user) -> frozenset[int]:
    """The ids of the collections whose documents `user` may manage."""
    return frozenset(managed_collection_ids_query(user=user).values_list("id", flat=True))


def user_can_manage_collection(*, user, collection_id: int | None) -> bool:
    if collection_id is None:
        return False
    return managed_collection_ids_query(user=user).filter(id=collection_id).exists()


def collections_managed_by(*, user) -> QuerySet[Collection]:
    """The collections `user` manages, by name (upload and move choices)."""
    return Collection.objects.filter(id__in=managed_collection_ids_query(user=user)).order_by(
        "name"
    )


def user_manages_every_collection(*, user) -> bool:
    """Whether `user` manages all collections, present and future ("manage users"): only such a
    user may see figures about the whole index, such as the size of the chunk table."""
    return _active(user) and _holds(user, Capability.MANAGE_USERS).exists()


# --- capabilities -----------------------------------------------------------------------------


def user_capabilities(*, user) -> frozenset[Capability]:
    """What `user` may do, from the permissions of their roles.

    Deliberately not `user.has_perm`: Django grants a superuser every permission, which would
    let a break-glass superuser read the query log and defeat separation of duties. In Counsel
    capabilities come from roles only; `is_superuser` opens the Django admin and nothing else.
    """
    if not _active(user):
        return frozenset()
    codenames = (
        Permission.objects.filter(
            group__user__pk=user.pk,
            group__user__is_active=True,
            content_type__app_label="accounts",
            codename__in=[cap.value for cap in Capability],
        )
        .values_list("codename", flat=True)
        .distinct()
    )
    return frozenset(Capability(code) for code in codenames)


def user_has_capability(*, user, capability: Capability) -> bool:
    return capability in user_capabilities(user=user)


def role_capabilities(*, role: Group) -> frozenset[Capability]:
    codenames = role.permissions.filter(
        content_type__app_label="accounts", codename__in=[cap.value for cap in Capability]
    ).values_list("codename", flat=True)
    return frozenset(Capability(code) for code in codenames)


# --- may this user see this object? -----------------------------------------------------------


def _by_collection(user, obj) -> bool:
    return user_can_read_collection(user=user, collection_id=getattr(obj, "collection_id", None))


def _current_document(user, document_id: int | None) -> bool:
    """Whether the reader's document view would open this document: readable and fresh (the
    search's own freshness rule), in one query, inside the user's row-level security scope."""
    if document_id is None:
        return False
    current = Document.objects.filter(
        fresh(timezone.now()),
        pk=document_id,
        collection_id__in=readable_collection_ids_query(user=user),
    )
    with reading_as(user=user):
        return current.exists()


def _document(user, obj) -> bool:
    return _current_document(user, obj.pk)


def _chunk(user, obj) -> bool:
    return _by_collection(user, obj) and _current_document(user, obj.document_id)


def _collection(user, obj) -> bool:
    return user_can_read_collection(user=user, collection_id=obj.pk)


def _own(user, obj) -> bool:
    return getattr(obj, "user_id", None) == user.pk


def _reviewer(user, obj) -> bool:
    return user_has_capability(user=user, capability=Capability.REVIEW_QUERYLOG)


# One rule per model label. Collections and citations are readable through their collection;
# documents and chunks also only while the document is current (what the reader's document view
# and the search show: not expired, not superseded, within its dates); a conversation only by
# its owner; a query-log entry, and an export of the log, only
# by a compliance officer (who reads the chunk texts an entry used through the entry alone).
# The apps that define these models refine their rules here (freshness of documents, say),
# never in their own views. Objects of any other kind are refused.
_RULES: dict[str, Callable[[User, object], bool]] = {
    "ingestion.collection": _collection,
    "ingestion.document": _document,
    "ingestion.chunk": _chunk,
    "assistant.citation": _by_collection,
    "assistant.conversation": _own,
    "compliance.querylogentry": _reviewer,
    "compliance.querylogexport": _reviewer,
}


def user_may_see(*, user, obj) -> bool:
    """Whether `user` may see `obj`. Unknown kinds of object and inactive users: no."""
    if not _active(user) or obj is None:
        return False
    meta = getattr(obj, "_meta", None)
    rule = _RULES.get(meta.label_lower) if meta is not None else None
    return rule is not None and rule(user, obj)


# --- access profiles --------------------------------------------------------------------------


@dataclass(frozen=True)
class AccessProfile:
    """A set of readable collections, and the roles that read exactly that set.

    Roles in one profile may share one fine-tuned adapter: it was trained on nothing that any of
    them may not read. The key is derived from the collection ids alone, so it is stable for as
    long as the set is, whatever the roles are called.
    """

    key: str
    collection_ids: frozenset[int]
    role_ids: tuple[int, ...] = ()
    role_names: tuple[str, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not self.collection_ids


def profile_key(collection_ids: frozenset[int] | set[int]) -> str:
    if not collection_ids:
        return "ap-none"
    canonical = ",".join(str(i) for i in sorted(collection_ids))
    return "ap-" + hashlib.sha256(canonical.encode()).hexdigest()[:12]


def _role_collection_sets() -> list[tuple[int, str, frozenset[int]]]:
    rows = Group.objects.annotate(
        collection_ids=ArrayAgg(
            "readable_collections__id",
            distinct=True,
            filter=Q(readable_collections__isnull=False),
            default=[],
        )
    ).values_list("id", "name", "collection_ids")
    return [(gid, name, frozenset(ids)) for gid, name, ids in rows]


def access_profiles() -> list[AccessProfile]:
    """All access profiles, computed now from the roles' grants (never stored, never stale).

    Ordered by the number of collections, then key; the empty profile (roles that read nothing)
    is included, so every role appears in exactly one profile.
    """
    grouped: dict[frozenset[int], list[tuple[int, str]]] = defaultdict(list)
    for gid, name, ids in _role_collection_sets():
        grouped[ids].append((gid, name))
    profiles = [
        AccessProfile(
            key=profile_key(ids),
            collection_ids=ids,
            role_ids=tuple(gid for gid, _ in sorted(roles)),
            role_names=tuple(sorted(name for _, name in roles)),
        )
        for ids, roles in grouped.items()
    ]
    return sorted(profiles, key=lambda p: (len(p.collection_ids), p.key))


def access_profile_for_role(*, role: Group) -> AccessProfile:
    """The profile `role` belongs to, with every other role that reads the same collections."""
    for profile in access_profiles():
        if role.pk in profile.role_ids:
            return profile
    raise Group.DoesNotExist(f"role {role.pk} does not exist")


def access_profile_for_user(*, user) -> AccessProfile:
    """The profile of everything `user` reads (the union of their roles' collections).

    A user with several roles may read a set no single role has; the key still identifies the
    set, and adapter selection (tuning) compares an adapter's training documents with it.
    """
    ids = user_readable_collection_ids(user=user)
    roles = sorted(user.groups.values_list("id", "name")) if _active(user) else []
    return AccessProfile(
        key=profile_key(ids),
        collection_ids=ids,
        role_ids=tuple(gid for gid, _ in roles),
        role_names=tuple(name for _, name in roles),
    )


# --- lists for the administration pages -------------------------------------------------------


def role_list() -> QuerySet[Group]:
    return (
        Group.objects.annotate(member_count=Count("user", distinct=True))
        .prefetch_related("readable_collections", "permissions")
        .order_by("name")
    )


def role_is_builtin(*, role: Group) -> bool:
    return role.name in BUILTIN_ROLES


def user_list(*, search: str = "") -> QuerySet[User]:
    users = User.objects.prefetch_related("groups").order_by("username")
    if search:
        users = users.filter(
            Q(username__icontains=search)
            | Q(first_name__icontains=search)
            | Q(last_name__icontains=search)
            | Q(email__icontains=search)
        )
    return users


def collection_list() -> QuerySet[Collection]:
    return Collection.objects.prefetch_related("readers", "managers").order_by("name")


def user_for_api_token(*, raw: str) -> User | None:
    """The active user a bearer token belongs to, or None (unknown, revoked, expired,
    inactive)."""
    from django.utils import timezone

    if not raw or len(raw) > 200:
        return None
    digest = hashlib.sha256(raw.encode()).hexdigest()
    token = (
        ApiToken.objects.select_related("user")
        .filter(
            digest=digest,
            revoked_at__isnull=True,
            expires_at__gt=timezone.now(),
            user__is_active=True,
        )
        .first()
    )
    if token is None:
        return None
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now())
    return token.user
