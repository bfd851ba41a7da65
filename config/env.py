"""The one place that reads the process environment.

Settings modules call these helpers; nothing else in Counsel touches ``os.environ`` (ruff's
banned-api rule enforces it). Every value is parsed here and a bad one stops start-up with a
message naming the variable, instead of surfacing later as a confusing runtime error.

A ``.env`` file in the project root, if present, provides defaults for variables that are not
already set in the real environment. ``.env.example`` lists every variable.
"""

from __future__ import annotations

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

_MISSING = object()
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _load_dotenv(path: Path) -> None:
    if not path.is_file():
        return
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :]
        key, sep, value = line.partition("=")
        if not sep or not key.strip().isidentifier():
            raise ImproperlyConfigured(f"{path}:{number}: expected KEY=value, got {raw!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        # The real environment wins: deployments set variables, .env is for local defaults.
        os.environ.setdefault(key.strip(), value)


if os.environ.get("COUNSEL_DOTENV", "1") not in _FALSE:
    _load_dotenv(BASE_DIR / ".env")


# Models come from installed packages (docs/models.md): a library that tries the Hugging Face hub
# must fail at once instead of hanging on a network that is not there.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# No tqdm bars from transformers or the hub ("Loading weights: 100%|###|"): a worker's output is a
# log, where Celery turned each bar into WARNING lines. Progress is shown on the adapter pages.
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
# torch's OpenMP threads sleep instead of spinning while they wait for work. Spinning threads
# fight every other process for the cores: on a busy 2-core machine one query embedding took
# 750 ms instead of 29 ms (bench: docs/benchmarks.md, "Server-added latency"). Read when torch
# loads, so it must be set before any import of torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _raw(name: str, default: object) -> str | object:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        if default is _MISSING:
            raise ImproperlyConfigured(f"environment variable {name} is required")
        return default
    return value.strip()


def env_str(name: str, default: str | object = _MISSING) -> str:
    return _raw(name, default)  # type: ignore[return-value]


def env_bool(name: str, default: bool | object = _MISSING) -> bool:
    value = _raw(name, default)
    if isinstance(value, bool):
        return value
    lowered = str(value).lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, got {value!r}")


def env_int(
    name: str,
    default: int | object = _MISSING,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
) -> int:
    value = _raw(name, default)
    try:
        number = int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {number}")
    if maximum is not None and number > maximum:
        raise ImproperlyConfigured(f"{name} must be at most {maximum}, got {number}")
    return number


def env_float(name: str, default: float | object = _MISSING, *, minimum: float = 0.0) -> float:
    value = _raw(name, default)
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ImproperlyConfigured(f"{name} must be a number, got {value!r}") from None
    if number < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {number}")
    return number


def env_list(name: str, default: list[str] | object = _MISSING) -> list[str]:
    value = _raw(name, default)
    if isinstance(value, list):
        return value
    return [item.strip() for item in str(value).split(",") if item.strip()]


def env_choice(name: str, choices: tuple[str, ...], default: str | object = _MISSING) -> str:
    value = _raw(name, default)
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return value  # type: ignore[return-value]


def env_path(name: str, default: Path | object = _MISSING) -> Path:
    value = _raw(name, default)
    path = Path(value).expanduser()  # type: ignore[arg-type]
    return path if path.is_absolute() else BASE_DIR / path
