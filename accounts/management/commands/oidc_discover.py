"""Print the OIDC_* settings for an issuer, read from its discovery document.

    manage.py oidc_discover https://login.microsoftonline.com/<tenant>/v2.0

Counsel reads its endpoints from the environment (no request to the provider at start-up); this
fills them in once (docs/identity.md).
"""

from __future__ import annotations

import requests
from django.core.management.base import BaseCommand, CommandError

KEYS = {
    "OIDC_AUTHORIZATION_ENDPOINT": "authorization_endpoint",
    "OIDC_TOKEN_ENDPOINT": "token_endpoint",
    "OIDC_USERINFO_ENDPOINT": "userinfo_endpoint",
    "OIDC_JWKS_URI": "jwks_uri",
}


class Command(BaseCommand):
    help = "Print the OIDC_* environment lines for an issuer, from its discovery document."

    def add_arguments(self, parser) -> None:
        parser.add_argument("issuer")

    def handle(self, *args, issuer: str, **options) -> None:
        url = issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            response = requests.get(url, timeout=10)
            response.raise_for_status()
            meta = response.json()
        except (requests.RequestException, ValueError) as exc:
            raise CommandError(f"could not read {url}: {exc}") from exc
        if meta.get("issuer") != issuer:
            raise CommandError(
                f"the provider calls itself {meta.get('issuer')!r}: use that as OIDC_ISSUER"
            )
        missing = [key for key in KEYS.values() if not meta.get(key)]
        if missing:
            raise CommandError(f"the discovery document lacks {', '.join(missing)}")
        self.stdout.write(f"OIDC_ISSUER={issuer}")
        for name, key in KEYS.items():
            self.stdout.write(f"{name}={meta[key]}")
        if "S256" not in meta.get("code_challenge_methods_supported", ["S256"]):
            self.stderr.write("warning: the provider does not announce PKCE with S256")
