"""Live training progress for the adapter pages."""

from __future__ import annotations

from channels.db import database_sync_to_async

from accounts.capabilities import Capability
from accounts.consumers import SessionSocket
from tuning.selectors import adapter_progress_snapshot
from tuning.services import PROGRESS_GROUP


class AdapterProgressConsumer(SessionSocket):
    """Relays adapter states, steps and losses to administrators who manage adapters.

    The socket closes when its session ends (SessionSocket).
    """

    capability = Capability.MANAGE_ADAPTERS

    def listen_groups(self) -> list[str]:
        return [PROGRESS_GROUP]

    async def connect(self) -> None:
        await self.admit()

    async def receive_json(self, content, **kwargs) -> None:
        """`{"type": "sync", "ids": [...]}`: the current state of those adapters, sent after
        every (re)connect so that a page never stays on a state it missed. Nothing else."""
        if self.closing or not isinstance(content, dict) or content.get("type") != "sync":
            return
        ids = content.get("ids")
        if not isinstance(ids, list) or not await self.still_signed_in():
            return
        ids = [i for i in ids if isinstance(i, int) and not isinstance(i, bool)]
        events = await database_sync_to_async(adapter_progress_snapshot)(
            user=self.scope["user"], adapter_ids=ids
        )
        for event in events:
            await self.adapter_progress(event)

    async def adapter_progress(self, event: dict) -> None:
        if self.closing:
            return
        await self.send_json({k: v for k, v in event.items() if k != "type"} | {"type": "progress"})
