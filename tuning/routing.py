from django.urls import path

from tuning.consumers import AdapterProgressConsumer

websocket_urlpatterns = [
    path("ws/adapters/", AdapterProgressConsumer.as_asgi()),
]
