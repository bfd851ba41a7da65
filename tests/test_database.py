from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor


def test_migrations_install_pgvector_0_8_or_newer(db):
    with connection.cursor() as cursor:
        cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        row = cursor.fetchone()
    assert row is not None, "the vector extension is missing"
    major, minor = (int(part) for part in row[0].split(".")[:2])
    assert (major, minor) >= (0, 8)


def test_database_is_postgresql_18(db):
    assert connection.vendor == "postgresql"
    assert connection.pg_version >= 180000


def test_every_migration_is_applied(db):
    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    assert plan == []


def test_models_and_migrations_agree(db):
    # Raises SystemExit(1) when a model change has no migration.
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


def test_users_table_is_the_custom_user_model(db):
    from django.contrib.auth import get_user_model

    assert get_user_model()._meta.label == "accounts.User"
