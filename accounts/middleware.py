from django.shortcuts import redirect
from django.urls import reverse

# Paths a user with a temporary password may still reach.
_ALLOWED_PREFIXES = ("/accounts/", "/static/", "/healthz")


class PasswordChangeRequiredMiddleware:
    """Send users with an administrator-set temporary password to change it first."""

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
            return redirect(reverse("accounts:password_change"))
        return self.get_response(request)
