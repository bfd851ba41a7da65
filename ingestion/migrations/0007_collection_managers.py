"""Which roles manage which collections' documents (docs/access-model.md).

Until now "manage documents" reached every document. So that nobody loses what they could do
the day before, every role that holds that capability now manages every existing collection;
administrators then narrow it per collection.
"""

from django.db import migrations, models

# A frozen copy: a migration must not import from the app's current code, which may change.
MANAGE_DOCUMENTS = "manage_documents"


def managers_from_capability(apps, schema_editor):
    """Every role holding "manage documents" manages every existing collection."""
    Group = apps.get_model("auth", "Group")
    Collection = apps.get_model("ingestion", "Collection")
    holders = list(
        Group.objects.filter(
            permissions__content_type__app_label="accounts",
            permissions__codename=MANAGE_DOCUMENTS,
        ).distinct()
    )
    if not holders:
        return
    Managers = Collection.managers.through
    Managers.objects.bulk_create(
        [
            Managers(collection_id=collection_id, group_id=role.pk)
            for collection_id in Collection.objects.values_list("pk", flat=True)
            for role in holders
        ],
        ignore_conflicts=True,
    )


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0003_builtin_roles"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("ingestion", "0006_chunk_text_search_function"),
    ]

    operations = [
        migrations.AddField(
            model_name="collection",
            name="managers",
            field=models.ManyToManyField(
                blank=True,
                help_text="Roles whose members, holding “manage documents”, manage its documents.",
                related_name="managed_collections",
                to="auth.group",
            ),
        ),
        migrations.RunPython(managers_from_capability, migrations.RunPython.noop),
    ]
