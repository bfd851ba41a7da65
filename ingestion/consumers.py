"""Live indexing progress for the documents page."""

from __future__ import annotations

import time

from channels.db import database_sync_to_async

from accounts.capabilities import Capability
from accounts.consumers import SessionSocket
from accounts.models import User
from ingestion.selectors import user_manages_document
from ingestion.services import PROGRESS_GROUP

# How long a socket trusts its answer to "does this user manage that document?": a progress
# burst of one document costs one check, and a revoked right stops the events within seconds.
_MANAGES_TTL_SECONDS = 5.0


class DocumentProgressConsumer(SessionSocket):
    """Relays document state changes to the people who manage each document's collection.

    Progress carries ids, states, counts and titles, never document text; each event goes only
    to sockets whose user manages that document's collection (checked in SQL through the
    access module, `user_manages_document`). The socket closes when its session ends
    (SessionSocket).
    """

    capability = Capability.MANAGE_DOCUMENTS

    def listen_groups(self) -> list[str]:
        return [PROGRESS_GROUP]

    async def connect(self) -> None:
        await self.admit()

    async def receive_json(self, content, **kwargs) -> None:
        return  # server push only

    async def document_progress(self, event: dict) -> None:
        if self.closing or not await self._manages(event.get("id")):
            return
        await self.send_json({k: v for k, v in event.items() if k != "type"} | {"type": "progress"})

    async def _manages(self, document_id) -> bool:
        if not isinstance(document_id, int):
            return False
        cache = self.__dict__.setdefault("_managed", {})
        known = cache.get(document_id)
        if known is not None and known[1] > time.monotonic():
            return known[0]
        answer = await database_sync_to_async(_user_manages)(self.user_id, document_id)
        cache[document_id] = (answer, time.monotonic() + _MANAGES_TTL_SECONDS)
        return answer


def _user_manages(user_id: int | None, document_id: int) -> bool:
    user = User.objects.filter(pk=user_id, is_active=True).first() if user_id else None
    return user is not None and user_manages_document(user=user, document_id=document_id)
