"""Company sign-in and directory sync (docs/identity.md).

- `mapping`: directory groups → Counsel roles, and setting a user's directory roles from them;
- `users`: finding or creating (just in time) the user a directory names;
- `oidc`: OpenID Connect sign-in (mozilla-django-oidc) with the ID token fully verified;
- `ldap`: django-auth-ldap with the same mapping;
- `scim`: the SCIM 2.0 endpoint (/scim/v2/) and its bearer tokens;
- `local`: which accounts may still sign in with a password.
"""
