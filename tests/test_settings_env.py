import json
import logging
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from config import env
from config.logging import JsonFormatter

ROOT = Path(__file__).resolve().parent.parent


def test_env_int_names_the_variable_on_a_bad_value(monkeypatch):
    monkeypatch.setenv("COUNSEL_TEST_NUMBER", "twelve")
    with pytest.raises(ImproperlyConfigured, match="COUNSEL_TEST_NUMBER must be an integer"):
        env.env_int("COUNSEL_TEST_NUMBER", 3)


def test_env_int_enforces_bounds(monkeypatch):
    monkeypatch.setenv("COUNSEL_TEST_NUMBER", "2")
    with pytest.raises(ImproperlyConfigured, match="at least 5"):
        env.env_int("COUNSEL_TEST_NUMBER", 10, minimum=5)


def test_env_bool_accepts_the_usual_spellings_and_refuses_others(monkeypatch):
    for value, expected in [("yes", True), ("ON", True), ("0", False), ("false", False)]:
        monkeypatch.setenv("COUNSEL_TEST_FLAG", value)
        assert env.env_bool("COUNSEL_TEST_FLAG", False) is expected
    monkeypatch.setenv("COUNSEL_TEST_FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="true or false"):
        env.env_bool("COUNSEL_TEST_FLAG", False)


def test_missing_required_variable_fails_loudly(monkeypatch):
    monkeypatch.delenv("COUNSEL_TEST_REQUIRED", raising=False)
    with pytest.raises(ImproperlyConfigured, match="COUNSEL_TEST_REQUIRED is required"):
        env.env_str("COUNSEL_TEST_REQUIRED")


def test_defaults_apply_to_empty_values_and_lists_split_on_commas(monkeypatch):
    monkeypatch.setenv("COUNSEL_TEST_LIST", " a.example, b.example ,,")
    assert env.env_list("COUNSEL_TEST_LIST", []) == ["a.example", "b.example"]
    monkeypatch.setenv("COUNSEL_TEST_EMPTY", "  ")
    assert env.env_str("COUNSEL_TEST_EMPTY", "fallback") == "fallback"


def test_dotenv_fills_gaps_but_the_real_environment_wins(tmp_path, monkeypatch):
    dotenv = tmp_path / ".env"
    dotenv.write_text("# comment\nCOUNSEL_TEST_A=from-file\nexport COUNSEL_TEST_B='quoted value'\n")
    monkeypatch.setenv("COUNSEL_TEST_A", "from-environment")
    monkeypatch.delenv("COUNSEL_TEST_B", raising=False)
    env._load_dotenv(dotenv)
    assert os.environ["COUNSEL_TEST_A"] == "from-environment"
    assert os.environ["COUNSEL_TEST_B"] == "quoted value"
    monkeypatch.delenv("COUNSEL_TEST_B")


def test_dotenv_rejects_a_malformed_line(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text("NOT A SETTING\n")
    with pytest.raises(ImproperlyConfigured, match=r"\.env:1"):
        env._load_dotenv(dotenv)


def _deploy_check(extra_env: dict) -> subprocess.CompletedProcess:
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "COUNSEL_DOTENV"))
    }
    environment.update(COUNSEL_DOTENV="0", **extra_env)
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env={**environment, "DJANGO_SETTINGS_MODULE": "config.settings.production"},
        capture_output=True,
        text=True,
    )


def test_production_settings_pass_check_deploy_with_real_values():
    result = _deploy_check(
        {
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(64),
            "DJANGO_ALLOWED_HOSTS": "counsel.example.com",
        }
    )
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_production_settings_refuse_to_start_without_a_secret_key():
    result = _deploy_check({"DJANGO_ALLOWED_HOSTS": "counsel.example.com"})
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is required" in result.stderr


def test_production_settings_refuse_a_weak_secret_key():
    result = _deploy_check(
        {"DJANGO_SECRET_KEY": "short", "DJANGO_ALLOWED_HOSTS": "counsel.example.com"}
    )
    assert result.returncode != 0
    assert "random string of 50+ characters" in result.stderr


def test_json_log_lines_carry_extra_fields():
    record = logging.LogRecord("counsel.test", logging.INFO, __file__, 1, "hello %s", ("x",), None)
    record.document_id = 42
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "hello x"
    assert line["level"] == "INFO"
    assert line["document_id"] == 42
    assert line["time"].endswith("+00:00")


def _database_options(entry: str, **extra_env: str) -> dict:
    """DATABASES["default"]["OPTIONS"] as a fresh process importing `entry` sees them."""
    environment = {k: v for k, v in os.environ.items() if k != "DATABASE_POOL_SIZE"}
    environment.update(COUNSEL_DOTENV="0", DJANGO_SETTINGS_MODULE="config.settings.local")
    script = (
        f"import {entry}, json; from django.conf import settings; "
        "print(json.dumps(settings.DATABASES['default'].get('OPTIONS', {}), default=str))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**environment, **extra_env},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_web_process_pools_its_connections_and_other_processes_do_not():
    # config.asgi is the web process's entry point (uvicorn, Docker, scripts/run).
    pool = _database_options("config.asgi")["pool"]
    assert pool["max_size"] == 10 and pool["min_size"] == 2 and pool["timeout"] == 3.0
    # Workers, beat and commands set Django up through config.celery or manage.py: no pool.
    assert "pool" not in _database_options("config.celery")
    # An operator's choice wins, in both directions.
    assert _database_options("config.asgi", DATABASE_POOL_SIZE="25")["pool"]["max_size"] == 25
    assert "pool" not in _database_options("config.asgi", DATABASE_POOL_SIZE="0")
