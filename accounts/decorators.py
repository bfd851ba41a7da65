from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied

from accounts.capabilities import Capability
from accounts.selectors import user_has_capability


def capability_required(capability: Capability):
    """Sign-in page for anonymous users, 403 for users whose roles lack `capability`."""

    def decorator(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not user_has_capability(user=request.user, capability=capability):
                raise PermissionDenied(f"Your roles do not allow this ({capability.label}).")
            return view(request, *args, **kwargs)

        return wrapped

    return decorator
