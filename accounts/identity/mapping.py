"""Directory groups → Counsel roles.

Administrators map a directory group (its name or its id, as the groups claim, SCIM or LDAP
spells it) to roles. At each sign-in and each directory update `directory_roles_apply` sets the
user's *directory roles* from their groups: roles of mapped groups only (an unknown group gives
nothing), next to the roles an administrator granted by hand, which it leaves alone. The
invariants of accounts/services.py hold whatever the directory says: nobody becomes both
Administrator and Compliance officer (the newly given one is withheld, and the conflict is
audited), and the last active administrator keeps the role.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import transaction

from accounts.capabilities import ADMINISTRATOR, EXCLUSIVE
from accounts.identity.text import storable
from accounts.models import DirectoryGrant, DirectoryGroupMapping, User
from accounts.services import (
    _capabilities_of,
    _lock_administrators,
    audit_record,
)
from accounts.sessions import access_changed

MAX_GROUP_LENGTH = 255


def _names(roles: Iterable[Group]) -> list[str]:
    return sorted(r.name for r in roles)


def clean_group_keys(keys: Iterable) -> set[str]:
    """The group names or ids a directory sent, as strings (anything else is ignored)."""
    if not keys:
        return set()
    return {
        k.strip()
        for k in keys
        if isinstance(k, str) and k.strip() and len(k) <= MAX_GROUP_LENGTH and storable(k)
    }


def mapped_roles(group_keys: Iterable[str]) -> set[Group]:
    """The roles the mapping gives to members of these groups; unmapped groups give none."""
    keys = clean_group_keys(group_keys)
    if not keys:
        return set()
    return set(Group.objects.filter(directory_mappings__directory_group__in=keys).distinct())


def directory_roles_of(user: User) -> set[Group]:
    """The roles `user` holds because the directory says so."""
    return set(Group.objects.filter(user=user, pk__in=_granted_ids(user)))


def _granted_ids(user: User):
    return DirectoryGrant.objects.filter(user=user).values("role_id")


# --- the mapping, administered under /manage/directory/ ---------------------------------------


@transaction.atomic
def mapping_add(*, actor: User, directory_group: str, role: Group) -> DirectoryGroupMapping:
    name = " ".join(directory_group.split())
    if not name or len(name) > MAX_GROUP_LENGTH or not storable(name):
        raise ValidationError(f"Name the directory group (at most {MAX_GROUP_LENGTH} characters).")
    if DirectoryGroupMapping.objects.filter(directory_group=name, role=role).exists():
        raise ValidationError(f"{name!r} already gives the role {role.name!r}.")
    mapping = DirectoryGroupMapping.objects.create(directory_group=name, role=role)
    audit_record(
        actor=actor,
        action="directory.map",
        target=role,
        details={"directory_group": name, "role": role.name},
    )
    return mapping


@transaction.atomic
def mapping_remove(*, actor: User, mapping: DirectoryGroupMapping) -> None:
    """Remove a mapping. Members keep the role until their next sign-in or directory update."""
    audit_record(
        actor=actor,
        action="directory.unmap",
        target=mapping.role,
        details={"directory_group": mapping.directory_group, "role": mapping.role.name},
    )
    mapping.delete()


# --- a user's directory roles ------------------------------------------------------------------


def _other_active_administrator(user: User) -> bool:
    return (
        User.objects.filter(is_active=True, groups__name=ADMINISTRATOR).exclude(pk=user.pk).exists()
    )


def _separated(roles: set[Group]) -> bool:
    caps = _capabilities_of(roles)
    return not all(cap in caps for cap in EXCLUSIVE)


def _exclusive(role: Group) -> bool:
    return bool(_capabilities_of([role]) & set(EXCLUSIVE))


def _withhold(user: User, manual: set[Group], wanted: set[Group], held: set[Group]):
    """Keep a last administrator and separation of duties, whatever the directory says.

    Returns the directory roles to grant and the conflicts, for the audit trail."""
    wanted = set(wanted)
    conflicts: list[str] = []
    admin = next((r for r in held if r.name == ADMINISTRATOR), None)
    if (
        admin is not None
        and user.is_active
        and admin not in manual | wanted
        and not _other_active_administrator(user)
    ):
        wanted.add(admin)
        conflicts.append(f"kept {ADMINISTRATOR}: the last active administrator")
    if not _separated(manual | wanted):
        # The roles held before were separated: withholding the new exclusive ones suffices.
        for role in sorted(wanted - held, key=lambda r: r.name):
            if _exclusive(role):
                wanted.discard(role)
                conflicts.append(f"withheld {role.name}: separation of duties")
    if not _separated(manual | wanted):
        for role in sorted(wanted, key=lambda r: r.name):
            if _exclusive(role) and role not in manual:
                wanted.discard(role)
                conflicts.append(f"withheld {role.name}: separation of duties")
    return wanted, conflicts


@transaction.atomic
def directory_roles_apply(
    *, user: User, group_keys: Iterable[str], source: str, actor: User | None = None
) -> set[Group]:
    """Set `user`'s directory roles from their directory groups; roles granted by hand stay.

    Audited when something changed (`user.directory_roles`). When a role is taken away, the
    user's open sockets are told once the change is committed, and close: the next question
    (re-read in SQL, adapter eligibility included) sees the new roles anyway.
    """
    _lock_administrators()
    user = User.objects.select_for_update().get(pk=user.pk)
    keys = clean_group_keys(group_keys)
    held = set(user.groups.all())
    granted = set(DirectoryGrant.objects.filter(user=user).values_list("role_id", flat=True))
    before_directory = {r for r in held if r.pk in granted}
    manual = held - before_directory
    wanted, conflicts = _withhold(user, manual, mapped_roles(keys), held)
    after = manual | wanted
    user.groups.set(after)
    DirectoryGrant.objects.filter(user=user).exclude(role__in=wanted).delete()
    for role in wanted - before_directory:
        DirectoryGrant.objects.get_or_create(user=user, role=role)
    if held != after or before_directory != wanted or conflicts:
        audit_record(
            actor=actor,
            action="user.directory_roles",
            target=user,
            details={
                "source": source,
                "groups": sorted(keys),
                "before": _names(held),
                "after": _names(after),
                "directory_roles": _names(wanted),
                "conflicts": conflicts,
            },
        )
    if held - after:
        user_id = user.pk
        transaction.on_commit(lambda: access_changed(user_id=user_id))
    return after
