"""What a role lets its members do. Capabilities are Django permissions on the role's group.

Data access (which collections a role reads) is separate: see accounts.selectors.
"""

from __future__ import annotations

from enum import StrEnum


class Capability(StrEnum):
    CHAT = "chat"
    MANAGE_DOCUMENTS = "manage_documents"
    MANAGE_USERS = "manage_users"
    MANAGE_ADAPTERS = "manage_adapters"
    REVIEW_QUERYLOG = "review_querylog"

    # Enum hashes members by name ("CHAT"), so `"chat" in {Capability.CHAT}` would be False
    # although the two compare equal. Hash like the string value instead.
    __hash__ = str.__hash__

    @property
    def label(self) -> str:
        return CAPABILITY_LABELS[self]

    @property
    def perm(self) -> str:
        """The permission string for user.has_perm-style checks: 'accounts.<codename>'."""
        return f"accounts.{self.value}"


CAPABILITY_LABELS = {
    Capability.CHAT: "Chat with Counsel",
    Capability.MANAGE_DOCUMENTS: "Manage documents and collections' contents",
    Capability.MANAGE_USERS: "Manage users, roles and collections",
    Capability.MANAGE_ADAPTERS: "Train, evaluate and activate adapters",
    Capability.REVIEW_QUERYLOG: "Review the query log",
}

ADMINISTRATOR = "Administrator"
COMPLIANCE_OFFICER = "Compliance officer"

# The built-in roles' capabilities are fixed: separation of duties rests on them. An
# administrator never reviews the query log; an officer never manages users or documents.
BUILTIN_ROLES: dict[str, frozenset[Capability]] = {
    ADMINISTRATOR: frozenset(
        {
            Capability.CHAT,
            Capability.MANAGE_DOCUMENTS,
            Capability.MANAGE_USERS,
            Capability.MANAGE_ADAPTERS,
        }
    ),
    COMPLIANCE_OFFICER: frozenset({Capability.CHAT, Capability.REVIEW_QUERYLOG}),
}

# What an administrator may grant to a business role. Managing users and reviewing the log stay
# with the built-in roles, so nobody can mint a second, unseparated "super" role.
GRANTABLE = (Capability.CHAT, Capability.MANAGE_DOCUMENTS, Capability.MANAGE_ADAPTERS)

# No user may hold both of these: whoever manages access must not also audit it.
EXCLUSIVE = (Capability.MANAGE_USERS, Capability.REVIEW_QUERYLOG)
