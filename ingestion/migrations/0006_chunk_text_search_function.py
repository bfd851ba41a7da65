"""The full-text search as the owner, within the transaction's access scope (ingestion/rls.py)."""

from django.db import migrations

from ingestion import rls


class Migration(migrations.Migration):
    dependencies = [
        ("ingestion", "0005_row_level_security"),
    ]

    operations = [
        migrations.RunSQL(
            rls.TEXT_SEARCH_FUNCTION_V1,
            "DROP FUNCTION IF EXISTS ingestion_chunk_text_search(text, bigint[], bigint[], integer);",
        ),
    ]
