"""Company sign-in and directory sync (docs/identity.md), imported by base.py.

Everything is off until configured: OpenID Connect when OIDC_ISSUER is set; the SCIM endpoint
answers only to tokens an administrator made.
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from config.env import env_int, env_list, env_str

# Accounts that may still sign in with a password (the demo's, a break-glass administrator).
# Empty: every local account may.
LOCAL_SIGN_IN_USERS = env_list("LOCAL_SIGN_IN_USERS", [])

# --- OpenID Connect (mozilla-django-oidc; accounts/identity/oidc.py) ---------------------------
OIDC_ISSUER = env_str("OIDC_ISSUER", "")
OIDC_ENABLED = bool(OIDC_ISSUER)
OIDC_RP_CLIENT_ID = env_str("OIDC_CLIENT_ID", "")
OIDC_RP_CLIENT_SECRET = env_str("OIDC_CLIENT_SECRET", "")
OIDC_OP_AUTHORIZATION_ENDPOINT = env_str("OIDC_AUTHORIZATION_ENDPOINT", "")
OIDC_OP_TOKEN_ENDPOINT = env_str("OIDC_TOKEN_ENDPOINT", "")
OIDC_OP_USER_ENDPOINT = env_str("OIDC_USERINFO_ENDPOINT", "")
OIDC_OP_JWKS_ENDPOINT = env_str("OIDC_JWKS_URI", "")
OIDC_RP_SIGN_ALGO = env_str("OIDC_SIGN_ALGO", "RS256")
OIDC_RP_SCOPES = env_str("OIDC_SCOPES", "openid email profile")
OIDC_GROUPS_CLAIM = env_str("OIDC_GROUPS_CLAIM", "groups")
OIDC_USERNAME_CLAIM = env_str("OIDC_USERNAME_CLAIM", "preferred_username")
OIDC_BUTTON_LABEL = env_str("OIDC_BUTTON_LABEL", "Sign in with your company account")
OIDC_CLOCK_SKEW_SECONDS = env_int("OIDC_CLOCK_SKEW_SECONDS", 30, minimum=0, maximum=300)
OIDC_USE_PKCE = True
OIDC_USE_NONCE = True
OIDC_TIMEOUT = 10
OIDC_AUTHENTICATION_CALLBACK_URL = "accounts:oidc_callback"
LOGIN_REDIRECT_URL_FAILURE = "/accounts/login/?sso=failed"
if OIDC_ENABLED:
    _missing = [
        name
        for name, value in {
            "OIDC_CLIENT_ID": OIDC_RP_CLIENT_ID,
            "OIDC_CLIENT_SECRET": OIDC_RP_CLIENT_SECRET,
            "OIDC_AUTHORIZATION_ENDPOINT": OIDC_OP_AUTHORIZATION_ENDPOINT,
            "OIDC_TOKEN_ENDPOINT": OIDC_OP_TOKEN_ENDPOINT,
            "OIDC_USERINFO_ENDPOINT": OIDC_OP_USER_ENDPOINT,
            "OIDC_JWKS_URI": OIDC_OP_JWKS_ENDPOINT,
        }.items()
        if not value
    ]
    if _missing:
        raise ImproperlyConfigured(f"OIDC_ISSUER is set: set {', '.join(_missing)} too")

LDAP_ENABLED = False  # LDAP sign-in is not built yet (docs/identity.md, "Not yet")


def identity_backends(*, oidc: bool, ldap: bool = False) -> list[str]:
    """Sign-in backends after django-axes': passwords (for the accounts that may still use
    one), then OpenID Connect when configured."""
    backends = ["accounts.identity.local.LocalPasswordBackend"]
    if oidc:
        backends.append("accounts.identity.oidc.CompanyOIDCBackend")
    return backends
