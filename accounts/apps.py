from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts and roles"

    def ready(self) -> None:
        from accounts.services import builtin_roles_ensure

        post_migrate.connect(builtin_roles_ensure, sender=self, dispatch_uid="builtin_roles")
