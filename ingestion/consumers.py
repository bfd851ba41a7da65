"""Live indexing progress for the documents page."""

from __future__ import annotations

from accounts.capabilities import Capability
from accounts.consumers import SessionSocket
from ingestion.services import PROGRESS_GROUP


class DocumentProgressConsumer(SessionSocket):
    """Relays document state changes to administrators who manage documents.

    Progress carries ids, states and counts, never document text. The socket closes when its
    session ends (SessionSocket).
    """

    capability = Capability.MANAGE_DOCUMENTS

    def listen_groups(self) -> list[str]:
        return [PROGRESS_GROUP]

    async def connect(self) -> None:
        await self.admit()

    async def receive_json(self, content, **kwargs) -> None:
        return  # server push only

    async def document_progress(self, event: dict) -> None:
        if self.closing:
            return
        await self.send_json({k: v for k, v in event.items() if k != "type"} | {"type": "progress"})
