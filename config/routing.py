"""All websocket routes, gathered from the apps."""

from assistant.routing import websocket_urlpatterns as assistant_routes
from ingestion.routing import websocket_urlpatterns as ingestion_routes
from tuning.routing import websocket_urlpatterns as tuning_routes

websocket_urlpatterns = [*assistant_routes, *ingestion_routes, *tuning_routes]
