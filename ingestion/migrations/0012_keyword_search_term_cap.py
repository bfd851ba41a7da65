"""Keyword search scores a long question with its 24 rarest terms (ingestion/rls.py)."""

from django.db import migrations

from ingestion import rls


class Migration(migrations.Migration):
    dependencies = [
        ("ingestion", "0011_collection_chunk_count"),
    ]

    operations = [
        migrations.RunSQL(rls.TEXT_SEARCH_FUNCTION, migrations.RunSQL.noop),
    ]
