import uuid

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import models

from accounts.capabilities import CAPABILITY_LABELS


class User(AbstractUser):
    """Counsel's user. Roles are Django groups; capabilities are permissions on those groups.

    A custom model from the first migration, so that fields can be added later without the
    painful mid-project switch away from auth.User.
    """

    must_change_password = models.BooleanField(
        default=False,
        help_text="Set when an administrator created the account or reset its password.",
    )

    class Meta(AbstractUser.Meta):
        swappable = "AUTH_USER_MODEL"
        # Capabilities live here because they are about users; they are granted through roles.
        permissions = [(cap.value, label) for cap, label in CAPABILITY_LABELS.items()]

    def __str__(self) -> str:
        return self.username


class AuditEvent(models.Model):
    """One administrative change: who did what to which object, and when.

    Written by the services in the same transaction as the change itself, so the trail never
    misses a committed change nor records one that rolled back.
    """

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    # Kept verbatim so the trail still reads correctly after the actor is renamed or deleted.
    actor_username = models.CharField(max_length=150)
    action = models.CharField(max_length=64, db_index=True)
    target_type = models.CharField(max_length=32)
    target_id = models.CharField(max_length=64)
    target_repr = models.CharField(max_length=200)
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["target_type", "target_id"])]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.actor_username} {self.action}"


class ApiToken(models.Model):
    """A bearer token for scripts using the JSON API, acting as its user with their roles.

    Only a SHA-256 of the token is stored; the token itself is shown once, at creation.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12, help_text="First characters, to recognise it.")
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Every token ends: at most API_TOKEN_MAX_DAYS after it was made.
    expires_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def state(self) -> str:
        from django.utils import timezone

        if self.revoked_at is not None:
            return "revoked"
        return "expired" if self.expires_at <= timezone.now() else "active"


# --- company directory (accounts/identity/) ----------------------------------------------------


class DirectoryGroupMapping(models.Model):
    """A directory group (its name or id, as the groups claim, SCIM or LDAP names it) that
    gives its members a Counsel role. Groups without a mapping give nothing."""

    directory_group = models.CharField(max_length=255)
    role = models.ForeignKey(
        "auth.Group", on_delete=models.CASCADE, related_name="directory_mappings"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["directory_group", "role__name"]
        constraints = [
            models.UniqueConstraint(
                fields=["directory_group", "role"], name="directory_mapping_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.directory_group} → {self.role.name}"


class DirectoryGrant(models.Model):
    """A role a user holds because the directory says so (the user page tells these from roles
    granted by hand). Set only by accounts.identity.mapping."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="directory_grants"
    )
    role = models.ForeignKey("auth.Group", on_delete=models.CASCADE, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "role"], name="directory_grant_unique")
        ]

    def __str__(self) -> str:
        return f"{self.user_id} ← {self.role_id}"


class ExternalIdentity(models.Model):
    """Who a user is in a directory: the OIDC issuer and subject, the SCIM client's externalId
    or the LDAP distinguished name. A user with one signs in through the directory only."""

    OIDC, SCIM, LDAP = "oidc", "scim", "ldap"
    SOURCES = [(OIDC, "OpenID Connect"), (SCIM, "SCIM"), (LDAP, "LDAP")]

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="external_identities"
    )
    source = models.CharField(max_length=8, choices=SOURCES)
    subject = models.CharField(max_length=512)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["source", "subject"], name="external_identity_unique")
        ]

    def __str__(self) -> str:
        return f"{self.source}:{self.subject}"


class DirectoryGroup(models.Model):
    """A group as the SCIM client provisions it, with its members."""

    scim_id = models.UUIDField(unique=True, default=uuid.uuid4, editable=False)
    display_name = models.CharField(max_length=255, unique=True)
    external_id = models.CharField(max_length=255, blank=True)
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, related_name="directory_groups", blank=True
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["display_name"]

    def __str__(self) -> str:
        return self.display_name


class ScimToken(models.Model):
    """A bearer token of the directory's SCIM client. Only a SHA-256 is kept."""

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12)
    digest = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"
