"""The user a directory names: found, linked or created just in time.

A directory identity (`ExternalIdentity`: OIDC issuer + subject, SCIM externalId, LDAP DN) is
looked up first. Failing that, a user of that username who already came from a directory is
linked (SCIM provisioned them, then they sign in with OIDC). A local account with that username
is never taken over: the demo's and the break-glass administrator's accounts cannot be claimed
by whoever the directory calls "admin". Otherwise the user is created, with no usable password.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.db import transaction

from accounts.identity.mapping import directory_roles_apply
from accounts.identity.text import storable
from accounts.models import ExternalIdentity, User
from accounts.services import audit_record

logger = logging.getLogger(__name__)


class IdentityRefused(Exception):
    """The directory names a user Counsel will not sign in (the reason is the message)."""


@dataclass(frozen=True)
class DirectoryPerson:
    """What a directory says about a person at sign-in."""

    source: str
    subject: str
    username: str
    email: str = ""
    first_name: str = ""
    last_name: str = ""
    groups: frozenset[str] = field(default_factory=frozenset)


def _from_directory(user: User) -> bool:
    return user.external_identities.exists()


def _find(person: DirectoryPerson) -> User | None:
    identity = (
        ExternalIdentity.objects.select_related("user")
        .filter(source=person.source, subject=person.subject)
        .first()
    )
    if identity is not None:
        return identity.user
    user = User.objects.filter(username__iexact=person.username).first()
    if user is None:
        return None
    if not _from_directory(user):
        raise IdentityRefused(
            f"{person.username!r} is a local account here; the directory cannot sign it in."
        )
    ExternalIdentity.objects.create(user=user, source=person.source, subject=person.subject)
    return user


def _create(person: DirectoryPerson) -> User:
    user = User(
        username=person.username,
        email=person.email,
        first_name=person.first_name[:150],
        last_name=person.last_name[:150],
    )
    user.set_unusable_password()
    try:
        user.full_clean(exclude=["password"])
    except ValidationError as exc:
        raise IdentityRefused(f"the directory's username is not usable here: {exc}") from exc
    user.save()
    ExternalIdentity.objects.create(user=user, source=person.source, subject=person.subject)
    audit_record(
        actor=None,
        action="user.create",
        target=user,
        details={"source": person.source, "email": person.email, "just_in_time": True},
    )
    return user


def _update_profile(user: User, person: DirectoryPerson) -> None:
    fields = {"email": person.email, "first_name": person.first_name[:150]}
    fields["last_name"] = person.last_name[:150]
    changed = {k: v for k, v in fields.items() if v and getattr(user, k) != v}
    if changed:
        for key, value in changed.items():
            setattr(user, key, value)
        user.save(update_fields=list(changed))


@transaction.atomic
def directory_sign_in(person: DirectoryPerson) -> User:
    """The user `person` signs in as, created if new, with their directory roles set from
    their groups now. Raises IdentityRefused for a local account or an inactive user."""
    if not person.subject or not person.username:
        raise IdentityRefused("the directory sent no subject or no username")
    texts = (person.subject, person.username, person.email, person.first_name, person.last_name)
    if not all(storable(t) for t in texts) or len(person.subject) > 512:
        raise IdentityRefused("the directory sent a name Counsel cannot store")
    user = _find(person) or _create(person)
    if not user.is_active:
        raise IdentityRefused(f"{user.username!r} is deactivated.")
    _update_profile(user, person)
    directory_roles_apply(user=user, group_keys=person.groups, source=person.source)
    user.refresh_from_db()
    return user
