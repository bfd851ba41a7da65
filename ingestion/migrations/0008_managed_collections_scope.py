"""Row-level security admits the collections a user manages (ingestion/rls.py, docs/security.md).

Adds `counsel_managed_collections()` and replaces each table's `access_scope` policy with one
that admits readable OR managed collections OR the "all" scope. Idempotent (CREATE OR REPLACE,
DROP POLICY IF EXISTS): on a fresh database 0005 has installed the same text already.
"""

from django.db import migrations

from ingestion import rls

# A frozen copy of the policy this migration replaces, for going back.
_PREVIOUS_SCOPE = "\n".join(
    f"""
DROP POLICY IF EXISTS access_scope ON {table};
CREATE POLICY access_scope ON {table} TO PUBLIC
    USING (collection_id = ANY ((SELECT counsel_readable_collections())::bigint[])
           OR (SELECT counsel_manages_all()))
    WITH CHECK (collection_id = ANY ((SELECT counsel_readable_collections())::bigint[])
                OR (SELECT counsel_manages_all()));
"""
    for table in ("ingestion_document", "ingestion_chunk")
)


class Migration(migrations.Migration):
    dependencies = [
        ("ingestion", "0007_collection_managers"),
    ]

    operations = [
        migrations.RunSQL(
            rls.FUNCTIONS + rls.SCOPE_POLICIES,
            _PREVIOUS_SCOPE + "DROP FUNCTION IF EXISTS counsel_managed_collections();",
        ),
    ]
