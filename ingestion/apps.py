from django.apps import AppConfig
from django.db.models.signals import post_migrate


class IngestionConfig(AppConfig):
    name = "ingestion"
    verbose_name = "Documents and search"

    def ready(self) -> None:
        from ingestion.rls import app_role_grant_after_migrate

        # After every migrate, the web role gets its privileges on every table (docs/security.md).
        post_migrate.connect(app_role_grant_after_migrate, sender=self, dispatch_uid="app_role")
