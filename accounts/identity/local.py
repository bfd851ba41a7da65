"""Which accounts may sign in with a password.

Local passwords stay for the demo and for a break-glass administrator. With
`LOCAL_SIGN_IN_USERS` set (a list of usernames), only those accounts may sign in with a
password; everyone else signs in through the company directory. Users who came from a directory
have no usable password anyway.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.backends import ModelBackend


def password_allowed(username: str | None) -> bool:
    allowed = settings.LOCAL_SIGN_IN_USERS
    if not allowed:
        return True
    return (username or "").casefold() in {name.casefold() for name in allowed}


class LocalPasswordBackend(ModelBackend):
    """Django's password backend, for the accounts that may still use a password."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if username is None:
            username = kwargs.get("username")
        if not password_allowed(username):
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)
