"""The websocket door, before any consumer: which pages may open a socket, and what a socket to
a path no consumer serves gets.

A browser sends the page's origin with every websocket handshake and the page's cookies with
it, whatever site the page is on: without a check, any site an employee visits could open a
chat socket in their name (cross-site websocket hijacking). Channels' AllowedHostsOriginValidator
compares host names only, so `http://localhost:1234` or `https://…` passed for the page
`http://localhost:8000`; this one compares scheme, host and port, as browsers define an origin.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.http.request import is_same_domain, split_domain_port, validate_host

DEFAULT_PORTS = {"http": 80, "https": 443}
# What Django admits as hosts while DEBUG is on and ALLOWED_HOSTS is empty (HttpRequest.get_host).
DEBUG_HOSTS = [".localhost", "127.0.0.1", "[::1]"]

Origin = tuple[str, str, int]


async def refuse_socket(scope, receive, send) -> None:
    """Refuse a websocket handshake: the client gets HTTP 403, nothing runs, nothing is logged.

    Used for sockets that are not ours to explain anything to (another site's page, a path no
    consumer serves); our own refusals accept first, so the page can read a close code.
    """
    message = await receive()
    if message["type"] == "websocket.connect":
        await send({"type": "websocket.close"})


def _header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin1")
    return None


def parse_origin(text: str) -> Origin | None:
    """(scheme, host, port) of an origin or URL, with the scheme's default port; None when it
    is not an http(s) origin (`null`, a file, garbage)."""
    try:
        parts = urlsplit(text.strip().lower())
        port = parts.port
    except ValueError:  # a port that is no number, or out of range
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    return parts.scheme, parts.hostname, port or DEFAULT_PORTS[parts.scheme]


def _secure(scope) -> bool:
    """Whether the browser reached us over TLS, as Django's `request.is_secure()` decides: the
    proxy's header when SECURE_PROXY_SSL_HEADER names one and it is present, else the socket's
    own scheme (which uvicorn's --proxy-headers sets from X-Forwarded-Proto)."""
    if settings.SECURE_PROXY_SSL_HEADER:
        meta_name, secure_value = settings.SECURE_PROXY_SSL_HEADER
        header = meta_name.removeprefix("HTTP_").lower().replace("_", "-").encode()
        value = _header(scope, header)
        if value is not None:
            return value.split(",", 1)[0].strip() == secure_value
    return scope.get("scheme") == "wss"


def _host(scope) -> str | None:
    """The Host the browser asked for, as Django's `request.get_host()` reads it, when it is
    one of ALLOWED_HOSTS (a page under any other name, DNS rebinding say, has no own origin)."""
    host = settings.USE_X_FORWARDED_HOST and _header(scope, b"x-forwarded-host")
    host = host or _header(scope, b"host")
    if not host:
        return None
    allowed = settings.ALLOWED_HOSTS or (DEBUG_HOSTS if settings.DEBUG else [])
    domain, _ = split_domain_port(host)
    return host if domain and validate_host(domain, allowed) else None


def own_origin(scope) -> Origin | None:
    """The origin of this site's pages that open this socket: the socket's Host, with http for
    ws and https for wss."""
    host = _host(scope)
    if host is None:
        return None
    return parse_origin(f"{'https' if _secure(scope) else 'http'}://{host}")


def _trusted(origin: Origin, text: str) -> bool:
    """Whether `origin` is one of CSRF_TRUSTED_ORIGINS: exactly, or under a `*.` subdomain
    pattern of the same scheme, as Django's CSRF check reads that setting."""
    if "*" not in text:
        return parse_origin(text) == origin
    pattern = urlsplit(text.lower())
    scheme, host, port = origin
    netloc = host if port == DEFAULT_PORTS[scheme] else f"{host}:{port}"
    return pattern.scheme == scheme and is_same_domain(netloc, pattern.netloc[1:])


def origin_allowed(scope) -> bool:
    """The handshake's Origin is this site's own (scheme, host and port) or a trusted one."""
    header = _header(scope, b"origin")
    origin = parse_origin(header) if header else None
    if origin is None:
        return False
    if origin == own_origin(scope):
        return True
    return any(_trusted(origin, text) for text in settings.CSRF_TRUSTED_ORIGINS)


class OriginValidator:
    """ASGI middleware for websockets: only pages of this site (or of CSRF_TRUSTED_ORIGINS)
    may open a socket; any other handshake is refused before the session is even read."""

    def __init__(self, application) -> None:
        self.application = application

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "websocket" and not origin_allowed(scope):
            return await refuse_socket(scope, receive, send)
        return await self.application(scope, receive, send)
