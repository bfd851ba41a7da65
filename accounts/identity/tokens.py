"""Bearer tokens of the directory's SCIM client, made and revoked by administrators.

The token is shown once; only its SHA-256 is kept. Every creation and revocation is audited.
"""

from __future__ import annotations

import hashlib
import secrets

from django.db import transaction
from django.utils import timezone

from accounts.models import ScimToken, User
from accounts.services import audit_record

PREFIX = "scim_"


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


@transaction.atomic
def scim_token_create(*, actor: User, name: str) -> tuple[ScimToken, str]:
    raw = PREFIX + secrets.token_urlsafe(32)
    token = ScimToken.objects.create(
        name=name.strip()[:100] or "SCIM client",
        prefix=raw[:10],
        digest=_digest(raw),
        created_by=actor,
    )
    audit_record(
        actor=actor, action="scim_token.create", target=token, details={"name": token.name}
    )
    return token, raw


@transaction.atomic
def scim_token_revoke(*, actor: User, token: ScimToken) -> None:
    revoked = ScimToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    if revoked:
        audit_record(
            actor=actor, action="scim_token.revoke", target=token, details={"name": token.name}
        )


def scim_token_check(raw: str) -> ScimToken | None:
    """The live token with this value, or None (unknown or revoked)."""
    if not raw.startswith(PREFIX):
        return None
    token = ScimToken.objects.filter(digest=_digest(raw), revoked_at__isnull=True).first()
    if token is not None:
        ScimToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now())
    return token
