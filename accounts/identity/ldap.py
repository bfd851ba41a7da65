"""LDAP sign-in (django-auth-ldap) for on-premises directories, with the same group mapping.

django-auth-ldap finds the person (a search as the service account), checks the password with a
bind as them, and reads their groups (groupOfNames whose `member` names them). The user is then
found or created just in time like an OpenID Connect user (accounts/identity/users.py), their
identity being their DN, and their directory roles set from their groups' names and DNs
through the mapping. Off unless LDAP_SERVER_URI is set (config/settings/identity.py).
"""

from __future__ import annotations

import logging

from django_auth_ldap.backend import LDAPBackend

from accounts.identity.users import DirectoryPerson, IdentityRefused, directory_sign_in
from accounts.models import ExternalIdentity

logger = logging.getLogger(__name__)


def _first(attrs: dict, name: str) -> str:
    values = attrs.get(name) or []
    return str(values[0]) if values else ""


def person_from_ldap(username: str, ldap_user) -> DirectoryPerson:
    attrs = ldap_user.attrs
    return DirectoryPerson(
        source=ExternalIdentity.LDAP,
        subject=ldap_user.dn.lower(),
        username=username,
        email=_first(attrs, "mail"),
        first_name=_first(attrs, "givenname"),
        last_name=_first(attrs, "sn"),
        groups=frozenset(ldap_user.group_names) | frozenset(ldap_user.group_dns),
    )


class CompanyLDAPBackend(LDAPBackend):
    """The sign-in backend for the company's LDAP directory."""

    def get_or_build_user(self, username, ldap_user):
        try:
            return directory_sign_in(person_from_ldap(username, ldap_user)), False
        except IdentityRefused as exc:
            logger.warning("LDAP sign-in refused: %s", exc)
            raise ldap_user.AuthenticationFailed(str(exc)) from exc

    def get_user(self, user_id):
        """As Django's ModelBackend: an inactive user's session signs nobody in."""
        user = super().get_user(user_id)
        return user if user is not None and user.is_active else None
