from django.db import migrations

# Frozen copies: a migration must not import from the app's current code, which may change.
CAPABILITIES = {
    "chat": "Chat with Counsel",
    "manage_documents": "Manage documents and collections' contents",
    "manage_users": "Manage users, roles and collections",
    "manage_adapters": "Train, evaluate and activate adapters",
    "review_querylog": "Review the query log",
}
BUILTIN_ROLES = {
    "Administrator": ["chat", "manage_documents", "manage_users", "manage_adapters"],
    "Compliance officer": ["chat", "review_querylog"],
}


def create_builtin_roles(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    # Permissions are normally created after all migrations (post_migrate); the roles need them
    # now, so create them here. post_migrate then finds them and leaves them alone.
    user_type, _ = ContentType.objects.get_or_create(app_label="accounts", model="user")
    perms = {}
    for codename, name in CAPABILITIES.items():
        perms[codename], _ = Permission.objects.get_or_create(
            content_type=user_type, codename=codename, defaults={"name": name}
        )
    for role_name, codenames in BUILTIN_ROLES.items():
        role, _ = Group.objects.get_or_create(name=role_name)
        role.permissions.add(*(perms[c] for c in codenames))


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_capabilities_audit"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]
    operations = [migrations.RunPython(create_builtin_roles, migrations.RunPython.noop)]
