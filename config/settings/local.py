"""Development and the embedded demo (`make run`)."""

from config.env import env_bool, env_choice, env_str

from .base import *  # noqa: F403
from .base import LOGGING

DEBUG = env_bool("DJANGO_DEBUG", True)
# Local only: a fixed key keeps sessions valid across restarts. Production refuses a missing key.
SECRET_KEY = env_str("DJANGO_SECRET_KEY", "counsel-local-development-key-not-for-production")
LOG_FORMAT = env_choice("LOG_FORMAT", ("json", "console"), "console")
LOGGING["handlers"]["stdout"]["formatter"] = LOG_FORMAT
