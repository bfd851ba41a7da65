"""Shared pieces of the benchmarks: the bench database, Django set-up, statistics and output.

Every benchmark runs against its own PostgreSQL database (default `counsel_bench` on the
embedded server of `scripts/services`), never the development or test databases, and with a
Redis logical database (14) and a media directory of its own, so that it neither disturbs nor
is disturbed by a running development instance or test suite.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DEFAULT_DATABASE_URL = "postgres://counsel:counsel@127.0.0.1:55432/counsel_bench"
DEFAULT_REDIS_URL = "redis://127.0.0.1:56379/14"


def database_url() -> str:
    url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL)
    name = urlsplit(url).path.lstrip("/")
    # The benchmarks truncate tables: refuse anything that is not obviously a bench database.
    if not name.endswith("_bench"):
        raise SystemExit(f"BENCH_DATABASE_URL must name a database ending in _bench, got {name!r}")
    return url


def _admin_dsn(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = urlunsplit(
        (parts.scheme.replace("postgres", "postgresql", 1), parts.netloc, "/postgres", "", "")
    )
    return admin, name


def psycopg_dsn(url: str | None = None) -> str:
    parts = urlsplit(url or database_url())
    return urlunsplit(
        (parts.scheme.replace("postgres", "postgresql", 1), parts.netloc, parts.path, "", "")
    )


def ensure_database(url: str) -> bool:
    """CREATE DATABASE if it does not exist; True when it was created."""
    import psycopg
    from psycopg import sql

    admin, name = _admin_dsn(url)
    with psycopg.connect(admin, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return True


def setup_django(*, migrate: bool = True, overrides: dict[str, str] | None = None) -> None:
    """Point Django at the bench database (created and migrated if needed) and set it up.

    `overrides`: settings (environment variables) of the application under test, such as the
    model backend, applied before Django reads its settings."""
    url = database_url()
    os.environ["DATABASE_URL"] = url
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.local"
    os.environ["DJANGO_DEBUG"] = "false"  # no query log in memory, as in production
    os.environ["REDIS_URL"] = os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL)
    for name in ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
        os.environ.pop(name, None)  # follow REDIS_URL
    os.environ["MEDIA_ROOT"] = os.environ.get("BENCH_MEDIA_ROOT", str(RESULTS / "media"))
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.update(overrides or {})
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    created = ensure_database(url)
    import django

    django.setup()
    if migrate:
        from django.core.management import call_command

        if created:
            log(f"created database {_admin_dsn(url)[1]}")
        call_command("migrate", verbosity=0)


def setup_demo(database: str, overrides: dict[str, str]) -> None:
    """The demo company, indexed, in the bench database `database` (created and migrated on
    first use), with the application settings `overrides`."""
    os.environ.setdefault(
        "BENCH_DATABASE_URL", DEFAULT_DATABASE_URL.replace("counsel_bench", database)
    )
    setup_django(overrides=overrides)
    from io import StringIO

    from django.core.management import call_command

    call_command("load_demo", "--if-empty", stdout=StringIO())
    from ingestion import services
    from ingestion.models import Document

    for document in Document.objects.exclude(state="indexed"):
        services.document_index(document_id=document.pk, task_id="bench")


# --- output -----------------------------------------------------------------------------------

_START = time.monotonic()


def log(message: str) -> None:
    print(f"[{time.monotonic() - _START:7.1f}s] {message}", flush=True)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear interpolation between closest ranks."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class Clock:
    """Wall time plus the CPU time used, and the time spent waiting for a CPU, by this thread
    and one PostgreSQL backend during a call (from /proc/<pid>/schedstat, in nanoseconds).

    On a machine shared with other work, wall-clock latency includes queueing for a core;
    CPU time does not, so it estimates the latency of an idle machine (parallel query workers,
    which are other processes, are not counted). The wait time shows how much contention
    there was.
    """

    def __init__(self, backend_pid: int | None = None):
        self.paths = ["/proc/thread-self/schedstat"]
        if backend_pid and Path(f"/proc/{backend_pid}/schedstat").exists():
            self.paths.append(f"/proc/{backend_pid}/schedstat")

    def _read(self) -> tuple[int, int]:
        cpu = wait = 0
        for path in self.paths:
            try:
                run, waited, _ = Path(path).read_text().split()
            except OSError:
                continue
            cpu, wait = cpu + int(run), wait + int(waited)
        return cpu, wait

    def call(self, fn, *args, **kwargs):
        """(result, (wall s, cpu s, cpu-wait s))"""
        cpu0, wait0 = self._read()
        t0 = time.perf_counter()
        result = fn(*args, **kwargs)
        wall = time.perf_counter() - t0
        cpu1, wait1 = self._read()
        return result, (wall, (cpu1 - cpu0) / 1e9, (wait1 - wait0) / 1e9)


def latency_summary(samples: Sequence) -> dict:
    """p50/p95/p99 of wall-clock latencies (floats, seconds, or Clock.call's tuples, which
    add the same percentiles of CPU time and the mean wait for a CPU)."""
    if samples and isinstance(samples[0], tuple):
        wall = [s[0] * 1000 for s in samples]
        cpu = [s[1] * 1000 for s in samples]
        wait = [s[2] * 1000 for s in samples]
    else:
        wall, cpu, wait = [s * 1000 for s in samples], [], []
    out = {
        "n": len(wall),
        "mean_ms": sum(wall) / len(wall) if wall else float("nan"),
        "p50_ms": percentile(wall, 50),
        "p95_ms": percentile(wall, 95),
        "p99_ms": percentile(wall, 99),
        "max_ms": max(wall) if wall else float("nan"),
    }
    if cpu:
        out.update(
            {
                "cpu_p50_ms": percentile(cpu, 50),
                "cpu_p95_ms": percentile(cpu, 95),
                "cpu_p99_ms": percentile(cpu, 99),
                "cpu_wait_mean_ms": sum(wait) / len(wait),
            }
        )
    return out


def table(headers: Sequence[str], rows: Iterable[Sequence], *, markdown: bool = False) -> str:
    """A plain-text (or Markdown) table; floats get at most 3 decimals."""

    def cell(value) -> str:
        if isinstance(value, float):
            if value != value:  # NaN
                return "-"
            return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
        return str(value)

    body = [[cell(v) for v in row] for row in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(headers)
    ]
    if markdown:
        lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"]
        lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
        lines += [
            "| " + " | ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) + " |"
            for r in body
        ]
    else:
        lines = ["  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True))]
        lines.append("  ".join("-" * w for w in widths))
        lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in body]
    return "\n".join(lines)


def machine_info() -> dict:
    info: dict = {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["ram_gib"] = round(int(line.split()[1]) / 1024 / 1024, 1)
                break
        info["loadavg_start"] = os.getloadavg()
    except OSError:
        pass
    return info


def postgres_info() -> dict:
    from django.db import connection

    names = [
        "server_version",
        "shared_buffers",
        "work_mem",
        "effective_cache_size",
        "jit",
        "max_parallel_workers_per_gather",
        "random_page_cost",
    ]
    info = {}
    with connection.cursor() as cursor:
        for name in names:
            cursor.execute(f"SHOW {name}")
            info[name] = cursor.fetchone()[0]
        cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        row = cursor.fetchone()
        info["pgvector"] = row[0] if row else None
    return info


def write_json(name: str, data: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    data = {"written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **data}
    path.write_text(json.dumps(data, indent=2, default=_jsonable) + "\n")
    return path


def _jsonable(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)
