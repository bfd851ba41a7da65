from django.contrib.auth.models import AbstractUser


class User(AbstractUser):
    """Counsel's user. Roles are Django groups; capabilities are permissions on those groups.

    A custom model from the first migration, so that fields can be added later without the
    painful mid-project switch away from auth.User.
    """

    class Meta(AbstractUser.Meta):
        swappable = "AUTH_USER_MODEL"
