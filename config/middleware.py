"""Response headers that make injected markup inert in the browser (docs/security.md).

The Content Security Policy allows scripts and styles only from the app's own static files:
no inline `<script>`, no `style=` attribute, no event-handler attribute, no `javascript:` URL
runs, even if some text slipped through escaping and sanitising. Pages therefore keep their
JavaScript in static/js and their styles in static/css.
"""

from __future__ import annotations

from django.conf import settings

SELF = "'self'"


def content_security_policy(request) -> str:
    directives = dict(settings.CSP_DIRECTIVES)
    # Websockets (chat, indexing progress) go back to the host the page came from. CSP Level 3
    # lets 'self' match ws:/wss: too, but older browsers need the scheme spelled out.
    host = request.get_host()
    sockets = f"wss://{host}" if request.is_secure() else f"ws://{host} wss://{host}"
    directives["connect-src"] = f"{directives.get('connect-src', SELF)} {sockets}"
    return "; ".join(f"{name} {value}".strip() for name, value in directives.items())


class SecurityHeadersMiddleware:
    """Adds the Content Security Policy and a Permissions-Policy to every response."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        header = (
            "Content-Security-Policy-Report-Only"
            if settings.CSP_REPORT_ONLY
            else "Content-Security-Policy"
        )
        if header not in response:
            response[header] = content_security_policy(request)
        response.setdefault("Permissions-Policy", settings.PERMISSIONS_POLICY)
        return response
