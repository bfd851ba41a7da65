from django.conf import settings

from accounts.selectors import user_capabilities


def capabilities(request) -> dict:
    """The signed-in user's capabilities, for showing only the navigation they may use; and
    whether the sign-in page offers the company's provider (docs/identity.md)."""
    sso = {"oidc_enabled": settings.OIDC_ENABLED, "oidc_button_label": settings.OIDC_BUTTON_LABEL}
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"caps": frozenset(), **sso}
    return {"caps": frozenset(cap.value for cap in user_capabilities(user=user)), **sso}
