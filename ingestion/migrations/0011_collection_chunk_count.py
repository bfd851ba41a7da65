"""Each collection counts its chunks, kept by triggers (ingestion/rls.py)."""

from django.db import migrations, models

from ingestion import rls


class Migration(migrations.Migration):
    dependencies = [
        ("ingestion", "0010_keyword_search"),
    ]

    operations = [
        migrations.AddField(
            model_name="collection",
            name="chunk_count",
            field=models.PositiveBigIntegerField(db_default=0, default=0, editable=False),
        ),
        migrations.RunSQL(rls.CHUNK_COUNT_TRIGGER, rls.CHUNK_COUNT_TRIGGER_DROP),
    ]
