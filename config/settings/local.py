"""Development and the embedded demo (`make run`).

`make run` serves employees, so errors are handled as in production: DEBUG is off unless a
developer asks for it with DJANGO_DEBUG=1 (debug pages list every route on an unknown URL and
show tracebacks with settings). Off, Django renders templates/404.html and 500.html, and
ALLOWED_HOSTS (base) admits localhost, 127.0.0.1 and [::1].
"""

from config.env import env_bool, env_choice, env_str

from .base import *  # noqa: F403
from .base import LOGGING

DEBUG = env_bool("DJANGO_DEBUG", False)
# WhiteNoise serves static/ from the source folders too (as with DEBUG on), so the pages keep
# their styles and scripts without DEBUG also when collectstatic has not run (scripts/run runs
# it; `manage.py runserver` or a bare uvicorn do not).
WHITENOISE_USE_FINDERS = True
# Local only: a fixed key keeps sessions valid across restarts. Production refuses a missing key.
SECRET_KEY = env_str("DJANGO_SECRET_KEY", "counsel-local-development-key-not-for-production")
LOG_FORMAT = env_choice("LOG_FORMAT", ("json", "console"), "console")
LOGGING["handlers"]["stdout"]["formatter"] = LOG_FORMAT
