"""Chunks keep their tsvector in the row, so that keyword search does not fetch it from the toast
table for every term it scores (ingestion/rls.py, KEYWORD_STORAGE); long questions score with
their 64 rarest terms instead of 24 (KEYWORD_MAX_TERMS). Writes every chunk row once more:
about 16 s for 13,000 chunks on 2 cores; larger tables take proportionally longer."""

from django.db import migrations

from ingestion import rls


class Migration(migrations.Migration):
    dependencies = [
        ("ingestion", "0012_keyword_search_term_cap"),
    ]

    operations = [
        migrations.RunSQL(rls.KEYWORD_STORAGE, rls.KEYWORD_STORAGE_DROP),
        migrations.RunSQL(rls.TEXT_SEARCH_FUNCTION, migrations.RunSQL.noop),
    ]
