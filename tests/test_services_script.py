"""scripts/services: start/stop/status, idempotence, crash leftovers and taken ports.

Each test runs its own PostgreSQL and Redis in a temporary directory on free ports, so the
services the rest of the suite uses are never touched.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "services"


@pytest.fixture
def sandbox():
    # A world-traversable directory: the PostgreSQL user must reach it (pytest's tmp_path is 0700).
    var_dir = Path(tempfile.mkdtemp(prefix="counsel-services-", dir="/tmp"))
    var_dir.chmod(0o755)
    env = {
        **os.environ,
        "COUNSEL_VAR_DIR": str(var_dir),
        "COUNSEL_PG_PORT": str(free_port()),
        "COUNSEL_REDIS_PORT": str(free_port()),
    }

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=120
        )

    run.var_dir = var_dir
    run.pg_port = int(env["COUNSEL_PG_PORT"])
    run.redis_port = int(env["COUNSEL_REDIS_PORT"])
    yield run
    run("stop")
    shutil.rmtree(var_dir, ignore_errors=True)


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.3)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_start_status_stop_and_idempotence(sandbox):
    assert sandbox("status").returncode == 3  # nothing running yet

    started = sandbox("start")
    assert started.returncode == 0, started.stderr
    assert listening(sandbox.pg_port) and listening(sandbox.redis_port)
    status = sandbox("status")
    assert status.returncode == 0
    assert status.stdout.count("running") == 2

    again = sandbox("start")
    assert again.returncode == 0
    assert "postgres already running" in again.stdout
    assert "redis already running" in again.stdout

    stopped = sandbox("stop")
    assert stopped.returncode == 0, stopped.stderr
    assert not listening(sandbox.pg_port) and not listening(sandbox.redis_port)
    assert sandbox("status").returncode == 3
    assert "not running" in sandbox("stop").stdout  # stopping twice is fine


def test_start_recovers_after_a_crash_left_stale_pid_files(sandbox):
    assert sandbox("start").returncode == 0
    pg_pidfile = sandbox.var_dir / "postgres" / "data" / "postmaster.pid"
    redis_pidfile = sandbox.var_dir / "redis" / "redis.pid"
    pg_pid = int(pg_pidfile.read_text().split()[0])
    redis_pid = int(redis_pidfile.read_text().split()[0])

    # A hard crash: both servers die without cleaning up their pid files.
    os.kill(pg_pid, signal.SIGKILL)
    os.kill(redis_pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while listening(sandbox.redis_port) or Path(f"/proc/{pg_pid}").exists():
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert pg_pidfile.exists() and redis_pidfile.exists()
    assert sandbox("status").returncode == 3

    restarted = sandbox("start")
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    assert sandbox("status").returncode == 0


def test_pid_file_naming_a_live_foreign_process_is_treated_as_stale(sandbox):
    assert sandbox("start", "redis").returncode == 0
    assert sandbox("stop", "redis").returncode == 0
    pidfile = sandbox.var_dir / "redis" / "redis.pid"
    # After a reboot the old pid may belong to some other program: here, this test process.
    pidfile.write_text(f"{os.getpid()}\n")

    result = sandbox("start", "redis")
    assert result.returncode == 0, result.stderr
    assert "removing stale" in result.stdout
    assert int(pidfile.read_text()) != os.getpid()


def test_a_taken_port_gives_a_clear_error(sandbox):
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", sandbox.redis_port))
        squatter.listen()
        result = sandbox("start", "redis")
    assert result.returncode == 1
    assert f"port {sandbox.redis_port} is already in use" in result.stderr
    assert "COUNSEL_REDIS_PORT" in result.stderr


def test_postgres_has_pgvector_and_the_counsel_database(sandbox):
    assert sandbox("start", "postgres").returncode == 0
    import psycopg

    with psycopg.connect(
        host="127.0.0.1",
        port=sandbox.pg_port,
        user="counsel",
        password="counsel",
        dbname="counsel",
    ) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        distance = conn.execute("SELECT '[1,0]'::vector <=> '[0,1]'::vector").fetchone()[0]
        owner = conn.execute(
            "SELECT usename FROM pg_stat_activity WHERE pid = pg_backend_pid()"
        ).fetchone()[0]
    assert distance == pytest.approx(1.0)
    assert owner == "counsel"
    if os.geteuid() == 0:
        # PostgreSQL refuses root; the script must have used its own system user.
        data_owner = (sandbox.var_dir / "postgres" / "data").owner()
        assert data_owner == "counsel-pg"


def test_start_creates_the_web_role_also_in_an_existing_cluster(sandbox):
    import psycopg

    assert sandbox("start", "postgres").returncode == 0
    owner = {"host": "127.0.0.1", "port": sandbox.pg_port, "dbname": "counsel"}
    with psycopg.connect(**owner, user="counsel", password="counsel", autocommit=True) as conn:
        flags = conn.execute(
            "SELECT rolcanlogin, rolsuper, rolbypassrls, rolcreaterole, rolcreatedb"
            " FROM pg_roles WHERE rolname = 'counsel_app'"
        ).fetchone()
        assert flags == (True, False, False, False, False)
        conn.execute("DROP ROLE counsel_app")  # a cluster made before the role existed
    again = sandbox("start", "postgres")
    assert again.returncode == 0 and "created role counsel_app" in again.stdout
    with psycopg.connect(**owner, user="counsel_app", password="counsel_app") as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == "counsel_app"
    third = sandbox("start", "postgres")
    assert third.returncode == 0 and "created role" not in third.stdout
