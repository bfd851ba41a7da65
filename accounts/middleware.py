from django.http import JsonResponse
from django.shortcuts import redirect
from django.urls import reverse

# Paths a user with a temporary password may still reach.
_ALLOWED_PREFIXES = ("/accounts/", "/static/", "/healthz")
# The JSON API answers a script, which cannot follow a redirect to a form.
_API_PREFIX = "/api/"
MUST_CHANGE_FIRST = "Change your temporary password first (sign in in a browser)."


class PasswordChangeRequiredMiddleware:
    """Send users with an administrator-set temporary password to change it first.

    This covers the session: pages, and the JSON API called with it (a JSON 403). Calls with a
    bearer token are refused by the API itself (ingestion.api.api_view): a token acts as its
    user, and a user with a temporary password may make one under /accounts/. Websockets check
    the same flag themselves (accounts/sessions.py).
    """

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if (
            user is not None
            and user.is_authenticated
            and user.must_change_password
            and not request.path.startswith(_ALLOWED_PREFIXES)
        ):
            if request.path.startswith(_API_PREFIX):
                return JsonResponse({"error": MUST_CHANGE_FIRST}, status=403)
            return redirect(reverse("accounts:password_change"))
        return self.get_response(request)
