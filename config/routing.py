"""All websocket routes, gathered from the apps, and a refusal for every other path."""

from django.urls import re_path

from assistant.routing import websocket_urlpatterns as assistant_routes
from config.websocket import refuse_socket
from ingestion.routing import websocket_urlpatterns as ingestion_routes
from tuning.routing import websocket_urlpatterns as tuning_routes

websocket_urlpatterns = [
    *assistant_routes,
    *ingestion_routes,
    *tuning_routes,
    # Last: a path no consumer serves is refused (HTTP 403). Without it Channels' router raised
    # "No route found", which the server logged as an error and answered with a 500.
    re_path(r"", refuse_socket),
]
