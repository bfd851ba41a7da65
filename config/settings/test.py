"""Tests: the same real PostgreSQL and Redis as development, isolated from it.

The test database is `test_<name>` (created by pytest-django); Redis traffic goes to a separate
logical database so a running `make run` worker never picks up a test's task.
"""

from urllib.parse import urlsplit, urlunsplit

from config.env import env_int, env_str

from .base import *  # noqa: F403
from .base import BASE_DIR, CACHES, CHANNEL_LAYERS, DATABASES, LOGGING, REDIS_URL

# Two test runs side by side (say, two developers' branches on one machine) each set their own
# TEST_RUN name and TEST_REDIS_DB: the run's database, uploads and adapters get the name as suffix.
TEST_RUN = env_str("TEST_RUN", "")
_suffix = f"_{TEST_RUN}" if TEST_RUN else ""
DATABASES["default"]["TEST"] = {"NAME": f"test_{DATABASES['default']['NAME']}{_suffix}"}

SECRET_KEY = "counsel-test-key"  # noqa: S105 - tests only
DEBUG = False
# DEBUG is off, so let WhiteNoise find static files without collectstatic.
WHITENOISE_USE_FINDERS = True
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

TEST_REDIS_DB = env_int("TEST_REDIS_DB", 15, minimum=0, maximum=15)
_parts = urlsplit(REDIS_URL)
REDIS_URL = urlunsplit(_parts._replace(path=f"/{TEST_REDIS_DB}"))
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = REDIS_URL
CHANNEL_LAYERS["default"]["CONFIG"]["hosts"][0]["address"] = REDIS_URL
CHANNEL_LAYERS["default"]["CONFIG"]["prefix"] = "counsel-test:asgi"
CACHES["default"]["LOCATION"] = REDIS_URL
CACHES["default"]["KEY_PREFIX"] = "counsel-test"

# Uploaded originals of tests, emptied at the start of each session (tests/conftest.py).
MEDIA_ROOT = BASE_DIR / "var" / f"test-media{_suffix}"
# Short leases so that crash-recovery tests do not wait long; the worker subprocess reads the
# same settings module.
INGEST_LEASE_SECONDS = 5

# Chat tests use the FAKE model (assistant/llm/fake.py), fast; the tests that need the real
# embedded model ask for it explicitly.
LLM_BACKEND = "fake"
# Tests that use the real local model server (tests/conftest.py, `local_llm`) serve SmolLM2-135M.
LLM_MODEL = "smollm2-135m"
LLM_FAKE_TOKENS_PER_SECOND = 2000.0
LLM_MAX_CONCURRENCY = 4
LLM_FIRST_TOKEN_TIMEOUT_SECONDS = 2.0
LLM_TIMEOUT_SECONDS = 10.0
CHAT_RATE_PER_MINUTE = 1000
# Many tests make the fake model fail on purpose ([[fake:error]], [[fake:hang]]); a breaker
# shared through Redis would carry those failures into later tests. The breaker's own tests
# (tests/test_faults.py) turn it on.
LLM_BREAKER_FAILURES = 0

LOGGING["handlers"]["stdout"]["formatter"] = "console"
LOGGING["root"]["level"] = "WARNING"

# The query-log tables refuse TRUNCATE (compliance/sql.py) except in sessions that set this:
# the test runner empties every table with TRUNCATE between transactional tests.
DATABASES["default"]["OPTIONS"] = {
    **DATABASES["default"].get("OPTIONS", {}),
    "options": "-c counsel.allow_log_truncate=on",
}

# Adapters trained by tests, and short training/evaluation runs.
LLM_ADAPTER_DIR = BASE_DIR / "var" / f"test-adapters{_suffix}"
LLM_ADAPTER_SERVER_DIR = BASE_DIR / "var" / f"test-llm-adapters{_suffix}"
# The adapters' base in tests: SmolLM2-135M trains and serves in seconds.
TUNING_BASE_MODEL = "smollm2-135m"
TUNING_MAX_STEPS = 12
TUNING_EVAL_QUESTIONS = 4
TUNING_LEAK_PROBE_QUESTIONS = 4
TUNING_EVAL_MAX_NEW_TOKENS = 24
TUNING_LEASE_SECONDS = 30
# Tests share two cores with other work: one torch thread trains ~3x faster there than two.
TUNING_THREADS = 1
