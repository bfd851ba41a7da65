"""Ended sessions tell their open websockets (accounts/sessions.py).

Signals rather than calls in the views: a password or an account also changes through the
Django admin and `manage.py changepassword`, and every path goes through `User.save()`.
"""

from __future__ import annotations

from django.db import transaction

from accounts.models import User
from accounts.sessions import sessions_end

CREDENTIALS = frozenset({"password", "is_active"})


def session_logged_out(sender, request, user, **kwargs) -> None:
    """user_logged_out: that session's sockets close (Django flushes it right after this)."""
    if user is None:
        return
    session = getattr(request, "session", None)
    sessions_end(user_id=user.pk, session_key=(session.session_key if session else "") or "")


def credentials_remember(sender, instance: User, raw: bool = False, update_fields=None, **kwargs):
    """pre_save: note the stored password and active flag, to see after the save whether they
    changed (a save that names other fields only is not looked at)."""
    if raw or instance.pk is None:
        return
    if update_fields is not None and not CREDENTIALS & set(update_fields):
        return
    instance._credentials_before = (
        User.objects.filter(pk=instance.pk).values_list("password", "is_active").first()
    )


def credentials_changed(sender, instance: User, raw: bool = False, **kwargs) -> None:
    """post_save: a new password (own change, administrator's reset) or a deactivation ends
    sessions; the user's sockets are told once the change is committed, so that the check
    each one then makes sees it."""
    before = instance.__dict__.pop("_credentials_before", None)
    if raw or before is None:
        return
    password, active = before
    if instance.password != password or (active and not instance.is_active):
        user_id = instance.pk
        transaction.on_commit(lambda: sessions_end(user_id=user_id))
