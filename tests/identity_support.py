"""Real directory servers for the identity tests: the `oidc-provider` npm package (installed by
scripts/bootstrap --test from tests/oidc/package-lock.json) and Debian's slapd."""

from __future__ import annotations

import json
import re
import subprocess
import time
from html import unescape
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.conftest import ROOT, free_port, terminate

CALLBACK = "http://testserver/accounts/oidc/callback/"


def rsa_jwk(kid: str) -> tuple[rsa.RSAPrivateKey, dict]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key))
    return key, {**jwk, "kid": kid, "use": "sig", "alg": "RS256"}


class OidcProvider:
    """oidc-provider on a free local port, with the accounts (claims, groups) a test sets."""

    client_id = "counsel"
    client_secret = "counsel-test-secret"

    def __init__(self, directory: Path, *, callback: str = CALLBACK) -> None:
        self.directory = directory
        self.callback = callback  # Counsel's redirect URI, as the provider registers it
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.key, self.jwk = rsa_jwk("test-key-1")
        self.accounts_file = directory / "accounts.json"
        self.accounts({})
        self.proc: subprocess.Popen | None = None

    def accounts(self, accounts: dict[str, dict]) -> None:
        """Who may sign in: account id → claims (read again at every sign-in)."""
        self.accounts_file.write_text(json.dumps(accounts))

    def start(self) -> OidcProvider:
        config = self.directory / "provider.json"
        config.write_text(json.dumps({
            "port": self.port, "issuer": self.issuer, "client_id": self.client_id,
            "client_secret": self.client_secret, "redirect_uris": [self.callback],
            "signing_key": self.jwk, "cookie_key": "test-cookie-key",
            "accounts_file": str(self.accounts_file),
        }))  # fmt: skip
        script = ROOT / "tests" / "oidc" / "provider.mjs"
        self.log = (self.directory / "provider.log").open("w")
        self.proc = subprocess.Popen(
            ["node", str(script), str(config)], stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(self.discovery_url, timeout=1).ok:
                    return self
            except requests.ConnectionError:
                time.sleep(0.2)
            if self.proc.poll() is not None:
                break
        raise RuntimeError(
            "oidc-provider did not start: " + (self.directory / "provider.log").read_text()
        )

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    def settings(self) -> dict:
        meta = requests.get(self.discovery_url, timeout=5).json()
        return {
            "OIDC_ISSUER": meta["issuer"],
            "OIDC_ENABLED": True,
            "OIDC_RP_CLIENT_ID": self.client_id,
            "OIDC_RP_CLIENT_SECRET": self.client_secret,
            "OIDC_OP_AUTHORIZATION_ENDPOINT": meta["authorization_endpoint"],
            "OIDC_OP_TOKEN_ENDPOINT": meta["token_endpoint"],
            "OIDC_OP_USER_ENDPOINT": meta["userinfo_endpoint"],
            "OIDC_OP_JWKS_ENDPOINT": meta["jwks_uri"],
            "OIDC_RP_SCOPES": "openid email profile groups",
        }

    def sign(self, claims: dict, *, key=None, kid: str | None = None) -> str:
        """A token signed with the provider's own key (or `key`): for tokens it never issued."""
        return jwt.encode(
            claims, key or self.key, algorithm="RS256", headers={"kid": kid or self.jwk["kid"]}
        )

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc)
            self.log.close()


_FORM = re.compile(r'<form[^>]*action="([^"]+)"[^>]*>(.*?)</form>', re.S | re.I)
_INPUT = re.compile(r"<input([^>]*)>", re.I)
_ATTR = re.compile(r'(\w+)="([^"]*)"')


def _form(html: str) -> tuple[str, dict]:
    match = _FORM.search(html)
    if match is None:
        raise AssertionError("the provider's page has no form: " + html[:500])
    fields = {}
    for tag in _INPUT.findall(match.group(2)):
        attrs = dict(_ATTR.findall(tag))
        if "name" in attrs:
            fields[attrs["name"]] = unescape(attrs.get("value", ""))
    return unescape(match.group(1)), fields


def through_provider(authorize_url: str, login: str, *, browser: requests.Session | None = None):
    """Go through the provider's own pages as a person does (its sign-in form, then its consent
    form) and return the URL it sends the browser back to (Counsel's callback)."""
    browser = browser or requests.Session()
    response = browser.get(authorize_url, allow_redirects=False, timeout=10)
    for _ in range(12):
        location = response.headers.get("Location")
        if location:
            url = urljoin(response.url, location)
            if url.startswith(CALLBACK):
                return url
            response = browser.get(url, allow_redirects=False, timeout=10)
            continue
        action, fields = _form(response.text)
        if "login" in fields:
            fields.update(login=login, password="any")
        response = browser.post(
            urljoin(response.url, action), data=fields, allow_redirects=False, timeout=10
        )
    raise AssertionError("the provider never sent the browser back")


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


LDAP_SUFFIX = "dc=lumen,dc=example"
LDAP_ADMIN = f"cn=admin,{LDAP_SUFFIX}"
LDAP_ADMIN_PASSWORD = "ldap-admin-secret"
LDAP_SCHEMAS = ("core", "cosine", "inetorgperson", "nis")


class Slapd:
    """Debian's slapd on a free local port with a throw-away database and a test tree: people
    under ou=people, groupOfNames under ou=groups (scripts/bootstrap --test installs it)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.uri = f"ldap://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def _config(self) -> Path:
        data = self.directory / "data"
        data.mkdir(exist_ok=True)
        lines = [f"include /etc/ldap/schema/{name}.schema" for name in LDAP_SCHEMAS]
        lines += [
            f"pidfile {self.directory / 'slapd.pid'}",
            "modulepath /usr/lib/ldap",
            "moduleload back_mdb",
            "database mdb",
            f'suffix "{LDAP_SUFFIX}"',
            f'rootdn "{LDAP_ADMIN}"',
            f"rootpw {LDAP_ADMIN_PASSWORD}",
            f"directory {data}",
            "maxsize 104857600",
        ]
        config = self.directory / "slapd.conf"
        config.write_text("\n".join(lines) + "\n")
        return config

    def start(self, tree: str) -> Slapd:
        config = self._config()
        (self.directory / "tree.ldif").write_text(tree)
        subprocess.run(
            ["/usr/sbin/slapadd", "-f", str(config), "-l", str(self.directory / "tree.ldif")],
            check=True, capture_output=True,
        )  # fmt: skip
        self.log = (self.directory / "slapd.log").open("w")
        self.proc = subprocess.Popen(
            ["/usr/sbin/slapd", "-f", str(config), "-h", self.uri + "/", "-d", "0"],
            stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.modify("") == 0:
                return self
            time.sleep(0.2)
        raise RuntimeError("slapd did not start: " + (self.directory / "slapd.log").read_text())

    def modify(self, ldif: str) -> int:
        """Apply an LDIF change as the directory's administrator (ldapmodify); its exit code."""
        return subprocess.run(
            ["ldapmodify", "-x", "-H", self.uri, "-D", LDAP_ADMIN, "-w", LDAP_ADMIN_PASSWORD],
            input=ldif, text=True, capture_output=True,
        ).returncode  # fmt: skip

    def settings(self) -> dict:
        from config.settings.identity import ldap_settings

        return ldap_settings(
            server_uri=self.uri,
            bind_dn=LDAP_ADMIN,
            bind_password=LDAP_ADMIN_PASSWORD,
            user_search_base=f"ou=people,{LDAP_SUFFIX}",
            group_search_base=f"ou=groups,{LDAP_SUFFIX}",
        )

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc)
            self.log.close()
