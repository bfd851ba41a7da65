"""`make run` serves employees: production error handling unless a developer asks for debug.

The web server runs with scripts/run's own command line and the settings `make run` uses
(config.settings.local, no .env), against the test database; nothing of ours is replaced.
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import importlib.util
import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings

from tests.conftest import _database_url, free_port, terminate

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.slow]


def run_script():
    """scripts/run as a module (it has no .py suffix): for its web server's command line."""
    loader = importlib.machinery.SourceFileLoader("counsel_run", str(ROOT / "scripts" / "run"))
    spec = importlib.util.spec_from_loader("counsel_run", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:  # noqa: S310 - our http URL
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@contextlib.contextmanager
def served_as_make_run(extra_env: dict):
    """The web server as `make run` starts it, on a free port; yields its base URL."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "TEST_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.local",
        COUNSEL_DOTENV="0",
        DATABASE_URL=_database_url(),
        REDIS_URL=settings.REDIS_URL,
        **extra_env,
    )
    proc = subprocess.Popen(
        run_script().web_command("127.0.0.1", port),
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://localhost:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                get(base + "/healthz")
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    output = proc.stdout.read()
                    raise RuntimeError(f"the web server did not start:\n{output}") from None
                time.sleep(0.2)
        yield base
    finally:
        terminate(proc)


def test_make_run_shows_the_products_own_error_pages_and_serves_static_files(transactional_db):
    with served_as_make_run({}) as base:
        status, body = get(base + "/no-such-page/")
        assert status == 404
        assert "There is nothing here" in body  # templates/404.html
        assert "URLconf" not in body and "django-admin/" not in body  # no list of routes
        status, body = get(base + "/static/css/counsel.css")
        assert status == 200
        assert body == (ROOT / "static" / "css" / "counsel.css").read_text()
        # localhost is an allowed host (the page above was served under it) and so is 127.0.0.1.
        assert get(base.replace("localhost", "127.0.0.1") + "/no-such-page/")[0] == 404


def test_a_developer_still_gets_debug_pages_on_request(transactional_db):
    with served_as_make_run({"DJANGO_DEBUG": "1"}) as base:
        status, body = get(base + "/no-such-page/")
        assert status == 404
        assert "URLconf" in body
