from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts and roles"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_out
        from django.db.models.signals import post_save, pre_save

        from accounts import signals
        from accounts.models import User
        from accounts.services import builtin_roles_ensure

        post_migrate.connect(builtin_roles_ensure, sender=self, dispatch_uid="builtin_roles")
        # Ended sessions close their open websockets (accounts/sessions.py).
        user_logged_out.connect(signals.session_logged_out, dispatch_uid="sockets_logout")
        pre_save.connect(signals.credentials_remember, sender=User, dispatch_uid="sockets_pre")
        post_save.connect(signals.credentials_changed, sender=User, dispatch_uid="sockets_post")
