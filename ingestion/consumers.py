"""Live indexing progress for the documents page."""

from __future__ import annotations

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from accounts.capabilities import Capability
from accounts.selectors import user_has_capability
from ingestion.services import PROGRESS_GROUP


class DocumentProgressConsumer(AsyncJsonWebsocketConsumer):
    """Relays document state changes to administrators who manage documents.

    Progress carries ids, states and counts, never document text.
    """

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        allowed = await database_sync_to_async(user_has_capability)(
            user=user, capability=Capability.MANAGE_DOCUMENTS
        )
        if not allowed:
            await self.close(code=4403)
            return
        await self.channel_layer.group_add(PROGRESS_GROUP, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(PROGRESS_GROUP, self.channel_name)

    async def receive_json(self, content, **kwargs) -> None:
        return  # server push only

    async def document_progress(self, event: dict) -> None:
        await self.send_json({k: v for k, v in event.items() if k != "type"} | {"type": "progress"})
