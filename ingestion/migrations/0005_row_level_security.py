"""Row-level security on documents and chunks (ingestion/rls.py, docs/security.md)."""

from django.db import migrations

from ingestion import rls


class Migration(migrations.Migration):
    dependencies = [
        ("ingestion", "0004_chunk_storage"),
    ]

    operations = [
        migrations.RunSQL(rls.INSTALL, rls.DROP),
    ]
