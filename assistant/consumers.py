"""Websocket consumers. They authenticate, parse frames and relay; services do the work."""

from __future__ import annotations

import json

from channels.generic.websocket import AsyncJsonWebsocketConsumer


class PingConsumer(AsyncJsonWebsocketConsumer):
    """Connectivity check through the channel layer: {"type": "ping"} -> {"type": "pong"}.

    The pong travels through the Redis channel layer (group_send to this socket's own group)
    rather than straight back, so a client that gets it knows the whole push path works: the
    same path that later carries indexing progress and streamed answers.
    """

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)  # refused before accept: no session, no socket
            return
        self.group = f"ping.user.{user.pk}.{self.channel_name.rsplit('!', 1)[-1]}"
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content, **kwargs) -> None:
        if not isinstance(content, dict) or content.get("type") != "ping":
            await self.send_json({"type": "error", "error": 'expected {"type": "ping"}'})
            return
        await self.channel_layer.group_send(
            self.group, {"type": "relay.pong", "id": str(content.get("id", ""))[:64]}
        )

    async def relay_pong(self, event: dict) -> None:
        await self.send_json({"type": "pong", "id": event["id"]})

    @classmethod
    async def decode_json(cls, text_data: str):
        try:
            return json.loads(text_data)
        except ValueError:
            return None
