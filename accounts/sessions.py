"""Whether a websocket's session still signs its user in, and telling open sockets that a
session ended.

A websocket is authenticated once, at its handshake, from the session cookie; without more it
kept serving after its session ended (signed out, a new password, an administrator's reset, a
deactivation). So a socket checks its session again before work done in its user's name (each
chat question), and the end of a session is announced to the user's open sockets through the
channel-layer group `user.<id>`, where each socket checks its own session and closes if it
ended (accounts/consumers.py). The check is Django's own for every HTTP request.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from importlib import import_module
from types import SimpleNamespace

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib import auth
from django.db import connections

from accounts.capabilities import Capability
from accounts.models import User
from accounts.selectors import user_has_capability

logger = logging.getLogger(__name__)

# Close codes a page reads (docs/chat-protocol.md); a browser sees a code only after an accept.
CLOSE_NO_SESSION = 4401
CLOSE_NOT_ALLOWED = 4403
CLOSE_SESSION_ENDED = 4410

SESSION_END = "session.end"  # the channel-layer event's type
ACCESS_CHANGED = "access.changed"  # a role was taken away: the user's sockets close


@dataclass(frozen=True)
class Refusal:
    """Why a socket is closed: its close code and a sentence for the person."""

    code: int
    message: str


SIGNED_OUT = Refusal(CLOSE_NO_SESSION, "You are signed out. Sign in again to go on.")
SESSION_ENDED = Refusal(
    CLOSE_SESSION_ENDED,
    "Your session has ended (signed out, password changed or account deactivated). "
    "Sign in again to go on.",
)
ACCESS_REDUCED = Refusal(
    CLOSE_SESSION_ENDED,
    "Your roles changed (the company directory took one away). Reload the page to go on.",
)
TEMPORARY_PASSWORD = Refusal(
    CLOSE_NOT_ALLOWED, "Change your temporary password first, then reload this page."
)


def not_allowed(capability: Capability) -> Refusal:
    if capability == Capability.CHAT:
        return Refusal(CLOSE_NOT_ALLOWED, "Your account may not use the chat.")
    return Refusal(CLOSE_NOT_ALLOWED, f"Your roles do not allow this ({capability.label}).")


def user_group(user_id: int) -> str:
    """The channel-layer group of a user's open sockets."""
    return f"user.{user_id}"


def session_digest(session_key: str) -> str:
    """Names a session on the channel layer without handing its key (a credential) to Redis."""
    return hashlib.sha256(session_key.encode()).hexdigest()[:32]


def _drop_dead_connections() -> None:
    """Close this thread's database connections that no longer answer (a PostgreSQL restart),
    as Django's CONN_HEALTH_CHECKS does for HTTP requests. A socket's checks run outside the
    request cycle, where nothing else is sure to (channels' test communicator, for one, turns
    its own clean-up off), and a dead connection would refuse every later check."""
    for conn in connections.all(initialized_only=True):
        if conn.connection is not None and not conn.in_atomic_block and not conn.is_usable():
            conn.close()


def session_user(session_key: str | None) -> User | None:
    """The user a session still signs in, read afresh from the session store and checked as
    Django checks it for every HTTP request (`auth.get_user`): the session exists and has not
    expired, its user is active, and its auth hash matches the user's current password (so a
    new password or a reset ends every other session). A session that fails the hash check is
    flushed, as Django does."""
    if not session_key:
        return None
    _drop_dead_connections()
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key=session_key)
    user = auth.get_user(SimpleNamespace(session=store))
    return user if user.is_authenticated else None


def socket_refusal(
    session_key: str | None,
    *,
    user_id: int | None,
    capability: Capability | None = None,
    opened: bool = False,
) -> Refusal | None:
    """Why a socket opened for `user_id` with this session may not serve it (any more), or None.

    `opened`: the socket was admitted before, so a session that no longer signs its user in has
    *ended* (4410) rather than never having been there (4401).
    """
    gone = SESSION_ENDED if opened else SIGNED_OUT
    if user_id is None:
        return gone
    user = session_user(session_key)
    if user is None or user.pk != user_id:
        return gone
    if user.must_change_password:
        return TEMPORARY_PASSWORD
    if capability is not None and not user_has_capability(user=user, capability=capability):
        return not_allowed(capability)
    return None


def sessions_end(*, user_id: int, session_key: str = "") -> None:
    """Tell the open sockets of `user_id` that a session of theirs ended: the one named, or (no
    key) possibly any. Each socket checks its own session and closes if it ended.

    Best effort: without Redis the sockets are not told, and each one's next question still
    checks its session.
    """
    event = {"type": SESSION_END, "session": session_digest(session_key) if session_key else ""}
    try:
        async_to_sync(get_channel_layer().group_send)(user_group(user_id), event)
    except Exception:
        logger.warning(
            "could not tell open sockets that a session ended",
            extra={"user_id": user_id},
            exc_info=True,
        )


def access_changed(*, user_id: int) -> None:
    """Tell the open sockets of `user_id` that a role was taken away: they close (the page
    reloads with what the user may still do). Best effort, like `sessions_end`: each question
    re-reads the roles in SQL anyway."""
    try:
        async_to_sync(get_channel_layer().group_send)(user_group(user_id), {"type": ACCESS_CHANGED})
    except Exception:
        logger.warning(
            "could not tell open sockets that access changed",
            extra={"user_id": user_id},
            exc_info=True,
        )
