"""Company sign-in and directory sync (docs/identity.md), imported by base.py.

Everything is off until configured: OpenID Connect when OIDC_ISSUER is set, LDAP when
LDAP_SERVER_URI is set; the SCIM endpoint answers only to tokens an administrator made.
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_int, env_list, env_str

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

# --- LDAP (django-auth-ldap; accounts/identity/ldap.py) ----------------------------------------
LDAP_SERVER_URI = env_str("LDAP_SERVER_URI", "")
LDAP_ENABLED = bool(LDAP_SERVER_URI)


def ldap_settings(
    *,
    server_uri: str,
    bind_dn: str,
    bind_password: str,
    user_search_base: str,
    user_filter: str = "(uid=%(user)s)",
    group_search_base: str,
    group_filter: str = "(objectClass=groupOfNames)",
    start_tls: bool = False,
) -> dict:
    """django-auth-ldap's settings: users found by a search as the service account, groups
    (groupOfNames) read for the mapping, never mirrored into roles nor granting permissions."""
    import ldap
    from django_auth_ldap.config import GroupOfNamesType, LDAPSearch

    return {
        "AUTH_LDAP_SERVER_URI": server_uri,
        "AUTH_LDAP_BIND_DN": bind_dn,
        "AUTH_LDAP_BIND_PASSWORD": bind_password,
        "AUTH_LDAP_START_TLS": start_tls,
        "AUTH_LDAP_USER_SEARCH": LDAPSearch(user_search_base, ldap.SCOPE_SUBTREE, user_filter),
        "AUTH_LDAP_GROUP_SEARCH": LDAPSearch(group_search_base, ldap.SCOPE_SUBTREE, group_filter),
        "AUTH_LDAP_GROUP_TYPE": GroupOfNamesType(name_attr="cn"),
        "AUTH_LDAP_MIRROR_GROUPS": False,
        "AUTH_LDAP_FIND_GROUP_PERMS": False,
        "AUTH_LDAP_ALWAYS_UPDATE_USER": False,  # accounts.identity.users updates the profile
        "AUTH_LDAP_CONNECTION_OPTIONS": {ldap.OPT_NETWORK_TIMEOUT: 5, ldap.OPT_TIMEOUT: 10},
    }


if LDAP_ENABLED:
    globals().update(
        ldap_settings(
            server_uri=LDAP_SERVER_URI,
            bind_dn=env_str("LDAP_BIND_DN", ""),
            bind_password=env_str("LDAP_BIND_PASSWORD", ""),
            user_search_base=env_str("LDAP_USER_SEARCH_BASE"),
            user_filter=env_str("LDAP_USER_FILTER", "(uid=%(user)s)"),
            group_search_base=env_str("LDAP_GROUP_SEARCH_BASE"),
            group_filter=env_str("LDAP_GROUP_FILTER", "(objectClass=groupOfNames)"),
            start_tls=env_bool("LDAP_START_TLS", False),
        )
    )


def identity_backends(*, oidc: bool, ldap: bool) -> list[str]:
    """Sign-in backends after django-axes': passwords (for the accounts that may still use
    one), then LDAP and OpenID Connect when configured."""
    backends = ["accounts.identity.local.LocalPasswordBackend"]
    if ldap:
        backends.append("accounts.identity.ldap.CompanyLDAPBackend")
    if oidc:
        backends.append("accounts.identity.oidc.CompanyOIDCBackend")
    return backends
