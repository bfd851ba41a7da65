"""Each generated pair records the collection its text came from (who may see it on the page).

Existing rows are filled in from what was stored: a training or held-out pair from its
adapter's training-document row; a leak-probe pair from its document, only while that document
is still at the version the pair was made from. Rows that cannot be traced stay empty, and the
adapter page shows their text to nobody.
"""

from django.db import migrations, models

FROM_TRAINING_DOCUMENTS = """
UPDATE tuning_trainingexample AS e SET collection_id = d.collection_id
FROM tuning_adapterdocument AS d
WHERE e.collection_id IS NULL AND e.split IN ('train', 'heldout')
  AND d.adapter_id = e.adapter_id AND d.document_id = e.document_id
"""

FROM_PROBED_DOCUMENTS = """
UPDATE tuning_trainingexample AS e SET collection_id = doc.collection_id
FROM ingestion_document AS doc
WHERE e.collection_id IS NULL AND e.split = 'probe'
  AND doc.id = e.document_id AND doc.version = e.version
"""


class Migration(migrations.Migration):
    dependencies = [
        ("ingestion", "0006_chunk_text_search_function"),
        ("tuning", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="trainingexample",
            name="collection_id",
            field=models.PositiveBigIntegerField(
                help_text="The collection the document was in when the pair was made: who may "
                "read the pair's text (tuning.visibility). None with a document: unknown, shown "
                "to nobody.",
                null=True,
            ),
        ),
        migrations.RunSQL(FROM_TRAINING_DOCUMENTS, migrations.RunSQL.noop),
        migrations.RunSQL(FROM_PROBED_DOCUMENTS, migrations.RunSQL.noop),
    ]
