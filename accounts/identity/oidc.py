"""OpenID Connect sign-in: mozilla-django-oidc's authorization code flow, with PKCE, state and
nonce (the library's: a state is used once and removed from the session), and an ID token
verified completely here.

The library fetches the issuer's JWKS and checks the nonce. Its own decoding leaves the
audience unchecked and the issuer unread, and an expired token escapes as an error of its own
(a server error), so `_verify_jws` decodes instead: the configured algorithm only, audience and
issuer checked, `exp`, `iat` and `sub` required (a token without an expiry never ends). The userinfo
answer must name the same subject as the ID token. The groups come from the ID token (or the
userinfo answer), through the mapping (accounts/identity/mapping.py).

Off unless `OIDC_ISSUER` is set (config/settings/base.py); the views answer 404 then.
"""

from __future__ import annotations

import logging

import jwt
import requests
from django.conf import settings
from django.core.exceptions import SuspiciousOperation
from django.http import Http404
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from accounts.identity.users import DirectoryPerson, IdentityRefused, directory_sign_in
from accounts.models import ExternalIdentity

logger = logging.getLogger(__name__)

REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub"]


def verify_id_token(token: str, key, *, algorithm: str) -> dict:
    """The ID token's claims, or SuspiciousOperation: signed by `key` with the configured
    algorithm, issued by OIDC_ISSUER for OIDC_CLIENT_ID, not expired."""
    try:
        return jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            audience=settings.OIDC_RP_CLIENT_ID,
            issuer=settings.OIDC_ISSUER,
            leeway=settings.OIDC_CLOCK_SKEW_SECONDS,
            options={"require": REQUIRED_CLAIMS},
        )
    except jwt.InvalidTokenError as exc:
        raise SuspiciousOperation(f"ID token refused: {exc}") from exc


def _groups(claims: dict) -> frozenset[str]:
    value = claims.get(settings.OIDC_GROUPS_CLAIM) or []
    if isinstance(value, str):
        value = [value]
    return frozenset(v for v in value if isinstance(v, str))


def person_from_claims(id_claims: dict, userinfo: dict) -> DirectoryPerson:
    if userinfo.get("sub", id_claims["sub"]) != id_claims["sub"]:
        raise SuspiciousOperation("the userinfo answer is about another subject")
    claims = {**userinfo, **id_claims}
    groups_from = id_claims if settings.OIDC_GROUPS_CLAIM in id_claims else userinfo
    groups = _groups(groups_from)
    return DirectoryPerson(
        source=ExternalIdentity.OIDC,
        subject=f"{id_claims['iss']}|{id_claims['sub']}",
        username=str(claims.get(settings.OIDC_USERNAME_CLAIM) or claims.get("email") or ""),
        email=str(claims.get("email") or ""),
        first_name=str(claims.get("given_name") or ""),
        last_name=str(claims.get("family_name") or ""),
        groups=groups,
    )


class CompanyOIDCBackend(OIDCAuthenticationBackend):
    """The sign-in backend for the company's OpenID Connect provider."""

    def _verify_jws(self, payload, key):
        """Instead of the library's: the configured algorithm only, and every claim checked."""
        try:
            algorithm = jwt.get_unverified_header(payload).get("alg")
        except jwt.InvalidTokenError as exc:
            raise SuspiciousOperation(f"ID token refused: {exc}") from exc
        if algorithm != self.OIDC_RP_SIGN_ALGO:
            raise SuspiciousOperation(f"ID token refused: algorithm {algorithm!r}")
        return verify_id_token(payload, key, algorithm=algorithm)

    def get_or_create_user(self, access_token, id_token, payload):
        userinfo = self.get_userinfo(access_token, id_token, payload)
        person = person_from_claims(payload, userinfo)
        try:
            return directory_sign_in(person)
        except IdentityRefused as exc:
            logger.warning("OIDC sign-in refused: %s", exc)
            return None

    def get_user(self, user_id):
        """As Django's ModelBackend: an inactive user's session signs nobody in."""
        user = super().get_user(user_id)
        return user if user is not None and self.user_can_authenticate(user) else None


def _enabled() -> None:
    if not settings.OIDC_ENABLED:
        raise Http404("company sign-in is not configured")


class SignIn(OIDCAuthenticationRequestView):
    def get(self, request):
        _enabled()
        return super().get(request)


class Callback(OIDCAuthenticationCallbackView):
    def get(self, request):
        _enabled()
        try:
            return super().get(request)
        except requests.RequestException as exc:
            # The provider refused the code (forged, used, expired) or could not be reached.
            logger.warning("OIDC sign-in failed at the provider: %s", exc)
            return self.login_failure()
