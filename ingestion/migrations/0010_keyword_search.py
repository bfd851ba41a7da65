"""Keyword search that finds something: any term, rarer terms weigh more (ingestion/rls.py)."""

import django.db.models.deletion
from django.db import migrations, models

from ingestion import rls


class Migration(migrations.Migration):
    dependencies = [
        ("ingestion", "0009_chunk_freshness"),
    ]

    operations = [
        migrations.CreateModel(
            name="KeywordStat",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("term", models.TextField()),
                ("df", models.PositiveIntegerField()),
                ("refreshed_at", models.DateTimeField()),
                (
                    "collection",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="ingestion.collection",
                    ),
                ),
            ],
            options={
                "indexes": [models.Index(fields=["term", "collection"], name="keyword_stat_term")],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("collection", "term"), name="keyword_stat_term_once"
                    )
                ],
            },
        ),
        migrations.RunSQL(rls.TEXT_SEARCH_FUNCTION, rls.TEXT_SEARCH_FUNCTION_V1),
    ]
