from django.db import migrations


class Migration(migrations.Migration):
    """Chunk storage for fast exact search.

    - The embedding stays in the row (STORAGE PLAIN): with the default (EXTERNAL) a chunk row
      over ~2 kB (long text plus its tsvector) moves its 1.5 kB vector to the TOAST table, and
      an exact search then fetches every vector through a second index lookup.
    - `chunk_collection` duplicated the foreign key's own index on collection_id.
    """

    dependencies = [
        ("ingestion", "0003_documents_chunks"),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="chunk",
            name="chunk_collection",
        ),
        migrations.RunSQL(
            "ALTER TABLE ingestion_chunk ALTER COLUMN embedding SET STORAGE PLAIN",
            reverse_sql="ALTER TABLE ingestion_chunk ALTER COLUMN embedding SET STORAGE EXTERNAL",
        ),
    ]
