from django.urls import path

from assistant.consumers import ChatConsumer, PingConsumer

websocket_urlpatterns = [
    path("ws/ping/", PingConsumer.as_asgi()),
    path("ws/chat/", ChatConsumer.as_asgi()),
]
