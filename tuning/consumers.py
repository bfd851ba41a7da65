"""Live training progress for the adapter pages."""

from __future__ import annotations

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from accounts.capabilities import Capability
from accounts.selectors import user_has_capability
from tuning.selectors import adapter_progress_snapshot
from tuning.services import PROGRESS_GROUP


class AdapterProgressConsumer(AsyncJsonWebsocketConsumer):
    """Relays adapter states, steps and losses to administrators who manage adapters."""

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        allowed = await database_sync_to_async(user_has_capability)(
            user=user, capability=Capability.MANAGE_ADAPTERS
        )
        if not allowed:
            await self.close(code=4403)
            return
        await self.channel_layer.group_add(PROGRESS_GROUP, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(PROGRESS_GROUP, self.channel_name)

    async def receive_json(self, content, **kwargs) -> None:
        """`{"type": "sync", "ids": [...]}`: the current state of those adapters, sent after
        every (re)connect so that a page never stays on a state it missed. Nothing else."""
        if not isinstance(content, dict) or content.get("type") != "sync":
            return
        ids = content.get("ids")
        if not isinstance(ids, list):
            return
        ids = [i for i in ids if isinstance(i, int) and not isinstance(i, bool)]
        events = await database_sync_to_async(adapter_progress_snapshot)(
            user=self.scope["user"], adapter_ids=ids
        )
        for event in events:
            await self.adapter_progress(event)

    async def adapter_progress(self, event: dict) -> None:
        await self.send_json({k: v for k, v in event.items() if k != "type"} | {"type": "progress"})
