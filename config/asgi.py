"""The one ASGI application: Django over HTTP, Channels consumers over websockets."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
# The web process pools its database connections (DATABASE_POOL_SIZE in config/settings/base.py);
# in a process whose settings were loaded before this module (tests), the settings decide.
os.environ.setdefault("DATABASE_POOL_SIZE", "10")
# Set up Django before importing anything that touches models (consumers, auth middleware).
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from assistant.redis_clients import loop_redis_close  # noqa: E402
from config.routing import websocket_urlpatterns  # noqa: E402
from config.websocket import OriginValidator  # noqa: E402


async def lifespan(scope, receive, send) -> None:
    """Server start and stop (uvicorn --lifespan on): on stop, after the last socket closed,
    the Redis clients of the server's loop are closed while that loop still runs."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await loop_redis_close()
            await send({"type": "lifespan.shutdown.complete"})
            return


application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # The Origin first: this site's own pages only (cross-site websocket hijacking,
        # config/websocket.py); then the session resolves the user, and each consumer accepts
        # and closes with a code the page can read when it may not serve that user.
        "websocket": OriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
        "lifespan": lifespan,
    }
)
