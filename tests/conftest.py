"""Shared fixtures: real PostgreSQL, Redis, Celery worker and ASGI server; nothing of ours faked.

The services come from scripts/services (scripts/test starts them). Tests use the database
`test_<name>` created by pytest-django and Redis logical database TEST_REDIS_DB, so a running
`make run` is not disturbed.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(config, items) -> None:
    # Everything under tests/browser runs in the browser phase, marked or not.
    for item in items:
        if "tests/browser/" in str(item.path).replace(os.sep, "/"):
            item.add_marker(pytest.mark.browser)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session", autouse=True)
def _clean_test_redis() -> None:
    """Start each session with an empty test Redis database (queues, channel layer, cache)."""
    redis.Redis.from_url(settings.REDIS_URL).flushdb()


@pytest.fixture(scope="session", autouse=True)
def _clean_test_media() -> None:
    import shutil

    shutil.rmtree(settings.MEDIA_ROOT, ignore_errors=True)
    Path(settings.MEDIA_ROOT).mkdir(parents=True, exist_ok=True)


@pytest.fixture
def redis_client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


def _database_url() -> str:
    db = settings.DATABASES["default"]
    user, password = quote(db["USER"], safe=""), quote(db["PASSWORD"], safe="")
    return f"postgres://{user}:{password}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


class CeleryWorker:
    """A real Celery worker process, started with the production command line.

    It uses the test database (DATABASE_URL points at it) and the test Redis database, so tasks
    see rows the test committed: use it with `transactional_db`. `env` adds settings of the
    worker's own (the fault tests shorten leases there); its log is var/<name>.log.
    """

    def __init__(self, *, queues: str = "ingest,train,default", env: dict | None = None,
                 label: str = "test-worker") -> None:  # fmt: skip
        self.name = f"{label}-{os.getpid()}@localhost"
        self.queues = queues
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "DATABASE_URL": _database_url(),
            "COUNSEL_DOTENV": "0",
            **(env or {}),
        }
        self.log_path = ROOT / "var" / f"{label}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> CeleryWorker:
        from config.celery import app

        self.log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "celery"),
                "-A",
                "config",
                "worker",
                "-Q",
                self.queues,
                "--concurrency",
                "1",
                "-n",
                self.name,
                "--without-mingle",
                "--without-gossip",
                "--loglevel",
                "INFO",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while not _pinged(app, self.name):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"celery worker did not start (exit {self.proc.poll()}); see {self.log_path}"
                )
        return self

    def pool_processes(self) -> list:
        """The prefork pool's child processes (the ones that run tasks)."""
        import psutil

        return psutil.Process(self.proc.pid).children()

    def kill(self) -> None:
        """SIGKILL the worker and its pool at once, as when its machine is lost."""
        import psutil

        pool = self.pool_processes()
        self.proc.kill()
        for process in pool:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is None:
            return
        terminate(self.proc)
        self.log.close()


def terminate(proc: subprocess.Popen, timeout: float = 20) -> None:
    """Stop a server process the polite way (SIGTERM, a graceful shutdown), else kill it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def celery_worker(django_db_setup):
    """A real Celery worker on every queue (CeleryWorker), yielding its name. Module-scoped: a
    module that needs a worker pays its start-up once, and the worker is gone before the next
    module."""
    worker = CeleryWorker().start()
    try:
        yield worker.name
    finally:
        worker.stop()


def _pinged(app, name: str) -> bool:
    """Whether the worker answers a ping. A broker connection that died with its server (a
    test restarts Redis, tests/test_faults.py) is dropped and the next ping opens a new one."""
    from kombu.exceptions import OperationalError
    from redis.exceptions import ConnectionError as RedisConnectionError

    try:
        return bool(app.control.ping(destination=[name], timeout=0.5))
    except (OperationalError, RedisConnectionError, ConnectionError):
        reset_broker_connections(app)
        time.sleep(0.2)
        return False


def reset_broker_connections(app) -> None:
    """Drop this process's pooled broker connections; the next use opens new ones."""
    from kombu import pools

    pools.reset()  # closes every pool kombu holds and forgets them
    app._pool = None
    app.amqp._producer_pool = None


class LiveASGIServer:
    def __init__(self, application) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            application,
            host="127.0.0.1",
            port=self.port,
            lifespan="on",
            log_level="warning",
            ws="websockets-sansio",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the ASGI test server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def live_asgi(transactional_db):
    """The real ASGI application (HTTP and websockets) served by uvicorn on a free port.

    It runs in a thread of this process, so it uses the test database; data the test writes
    must be committed, hence `transactional_db`.
    """
    from config.asgi import application

    server = LiveASGIServer(application)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def server_as_app_role(settings):
    """Connections opened by other threads (the live ASGI server's, its sync-to-async workers')
    run as the web process's database role, as in production; the test's own thread stays the
    owner, which sets up data and empties tables. Yields the list of connections switched, so
    that a test can check the server really ran as that role.
    """
    from django.db.backends.signals import connection_created

    role = settings.DATABASE_APP_ROLE
    main = threading.main_thread()
    switched: list[str] = []

    def switch(sender, connection, **kwargs) -> None:
        if threading.current_thread() is main:
            return
        with connection.cursor() as cursor:
            cursor.execute(f"SET ROLE {connection.ops.quote_name(role)}")
        switched.append(threading.current_thread().name)

    connection_created.connect(switch, weak=False, dispatch_uid="server_as_app_role")
    try:
        yield switched
    finally:
        connection_created.disconnect(dispatch_uid="server_as_app_role")


class ModelServer:
    """The real local model server (assistant/llm/server.py: llama.cpp from the xllamacpp
    wheel) as a subprocess on a free port, serving SmolLM2-135M: fast enough for tests, and a
    real model, so its answers are not predictable beyond what llama.cpp guarantees."""

    def __init__(self, directory: Path, *, model: str = "smollm2-135m", parallel: int = 2):
        self.directory = directory
        self.model = model
        self.parallel = parallel
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self.port = 0

    def start(self) -> ModelServer:
        import json

        state = self.directory / "server.json"
        state.unlink(missing_ok=True)
        self.log = (self.directory / "server.log").open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "assistant.llm.server",
                "--model",
                self.model,
                "--port",
                "0",
                "--parallel",
                str(self.parallel),
                "--server-dir",
                str(self.directory),
            ],
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "LLM_API_KEY": ""},
        )
        deadline = time.monotonic() + 60
        while not state.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    "the model server did not start: "
                    + (self.directory / "server.log").read_text(errors="replace")[-2000:]
                )
            time.sleep(0.1)
        info = json.loads(state.read_text())
        self.port = info["port"]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        return self

    @property
    def api_key(self) -> str:
        from assistant.llm.server import local_api_key

        return local_api_key(self.directory)

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc, timeout=10)
            self.log.close()
            self.proc = None


@pytest.fixture(scope="session")
def model_server(tmp_path_factory):
    """One real model server for the session: SmolLM2-135M (about a second to start), or the
    model named by TEST_LLM_MODEL (the README's screenshots use the default model)."""
    from assistant.llm.catalog import MODELS, model_install

    model = os.environ.get("TEST_LLM_MODEL") or "smollm2-135m"
    model_install(MODELS[model], Path(settings.LLM_MODELS_DIR))
    server = ModelServer(tmp_path_factory.mktemp("llm"), model=model).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def local_llm(settings, model_server):
    """Settings that send every question to the real local model server."""
    settings.LLM_BACKEND = "local"
    settings.LLM_MODEL = model_server.model
    settings.LLM_BASE_URL = model_server.url
    settings.LLM_SERVER_DIR = model_server.directory
    settings.LLM_API_KEY = ""
    settings.LLM_MAX_CONCURRENCY = model_server.parallel
    settings.LLM_FIRST_TOKEN_TIMEOUT_SECONDS = 30.0
    settings.LLM_TIMEOUT_SECONDS = 60.0
    # As the settings would default for this model (config/settings/base.py).
    from assistant.llm.catalog import MODELS

    settings.CHAT_ANSWERABLE_CHECK = MODELS[model_server.model].answerable_check
    settings.CHAT_ANSWERABLE_MIN_YES = MODELS[model_server.model].answerable_min_yes
    return model_server


class AdapterServer:
    """The real adapters' model server (assistant/llm/adapter_server.py): a supervisor of
    llama.cpp instances serving SmolLM2-135M with the adapters its manifest lists, which the
    app writes (tuning.serving.adapters_publish) and the server follows by itself."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.proc: subprocess.Popen | None = None

    def start(self) -> AdapterServer:
        self.log = (self.directory / "server.log").open("ab")
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "assistant.llm.adapter_server", "--model", "smollm2-135m"),
                *("--port", "0", "--parallel", "2", "--server-dir", str(self.directory)),
            ],
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "LLM_API_KEY": ""},
        )
        self.serving(set())
        return self

    def state(self) -> dict | None:
        import json

        try:
            return json.loads((self.directory / "server.json").read_text())
        except (OSError, ValueError):
            return None

    def serving(self, names: set[str], timeout: float = 120) -> dict:
        """Wait until the server serves exactly ``names``; its state then."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.state()
            if state is not None and set(state.get("adapters") or {}) == names:
                return state
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log = (self.directory / "server.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"the adapters' server does not serve {names}: {state}\n{log}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc, timeout=30)
            self.log.close()
            self.proc = None


@pytest.fixture
def adapter_server(settings):
    """A real adapters' server of this test's own, in the test run's LLM_ADAPTER_SERVER_DIR
    (emptied first), which the Celery worker's training runs publish to as well."""
    import shutil

    directory = Path(settings.LLM_ADAPTER_SERVER_DIR)
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    settings.LLM_API_KEY = ""
    server = AdapterServer(directory).start()
    try:
        yield server
    finally:
        server.stop()
