"""The local stack as a subprocess, shared by the e2e tests (HTTP and browser).

Each test module that asks for `stack` gets its own stack on a fresh state folder, with an
embedded PostgreSQL and SeaweedFS (DATABASE_URL and S3_ENDPOINT_URL unset). Before a stack is
stopped, everything it stored is scanned (tests/invariants.py: every object of its SeaweedFS,
every row of its clinics' backup tables); a finding fails the test or teardown that stopped it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg2
import pytest

from devstack import paths
from tests import invariants

REPO = Path(__file__).resolve().parents[2]
VENV_PYTHON = REPO / ".venv" / "bin" / "python"
START_TIMEOUT = 60.0


def _settings_variables() -> set[str]:
    """Every environment variable the functions' settings read: none may leak in from the
    developer's shell into the stack under test."""
    from clinic_backups.wiring.settings import OperatorSettings, SecretSources

    names = set(OperatorSettings.model_fields) | set(SecretSources.model_fields)
    return {n.upper() for n in names} | {"BACKUP_DATABASE_URL"}


def _cmdline(pid: int) -> str | None:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return None


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


class LocalStack:
    """`python -m devstack.run --port 0 --state-dir <dir> [extra args]` in a subprocess."""

    def __init__(self, state_dir: Path, logs: Path, extra_args: tuple[str, ...] = ()) -> None:
        self.state_dir = state_dir
        self.logs = logs
        self.extra_args = extra_args
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.ready_seconds = 0.0
        self.info: dict[str, Any] = {}
        self.children: dict[str, tuple[int, str]] = {}  # name -> (pid, cmdline at start)
        self.runs = 0

    def start(self) -> LocalStack:
        self.runs += 1
        self.url = ""
        python = VENV_PYTHON if VENV_PYTHON.exists() else Path(sys.executable)
        env = {k: v for k, v in os.environ.items() if k not in _settings_variables()}
        self.stdout_path = self.logs / f"run{self.runs}.out"
        self.stderr_path = self.logs / f"run{self.runs}.err"
        started = time.monotonic()
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [
                    str(python),
                    "-m",
                    "devstack.run",
                    "--port",
                    "0",
                    "--state-dir",
                    str(self.state_dir),
                    "--no-ui-build",
                    *self.extra_args,
                ],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
            )
        while time.monotonic() - started < START_TIMEOUT:
            for line in self.stdout_path.read_text(errors="replace").splitlines():
                if line.startswith("READY "):
                    self.url = line.split(" ", 1)[1].strip()
            if self.url:
                break
            if self.proc.poll() is not None:
                pytest.fail(f"the stack exited with {self.proc.returncode}:\n{self.log_tail()}")
            time.sleep(0.05)
        else:
            self.kill()
            pytest.fail(f"no READY line within {START_TIMEOUT:.0f} s:\n{self.log_tail()}")
        self.ready_seconds = time.monotonic() - started
        self.info = json.loads((self.state_dir / "stack.json").read_text())
        self.children = {
            name: (pid, _cmdline(pid) or "") for name, pid in self.info["children"].items()
        }
        return self

    @property
    def admin_url(self) -> str:
        return str(self.info["postgres_admin_url"])

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, trust_env=False, timeout=30)

    def log_tail(self, lines: int = 40) -> str:
        text = ""
        for path in (getattr(self, "stdout_path", None), getattr(self, "stderr_path", None)):
            if path is not None and path.exists():
                text += "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) + "\n"
        return text

    def scan(self) -> invariants.Report:
        """Everything this running stack stored: each object of every bucket of its S3 and
        each row of its clinics' backup tables (tests/invariants.py)."""
        import boto3
        from botocore.config import Config

        from devstack.state import StateDir

        stored = StateDir(self.state_dir).secrets()
        own = [
            stored[n]
            for n in (
                "jwt_secret",
                "s3_secret_key",
                "supabase_jwt_secret",
                "supabase_s3_secret_key",
            )
        ]
        own.append(stored["backup_db_password"])
        report = invariants.Report(f"local stack ({self.state_dir.name})")
        # The store itself (SeaweedFS), not the Supabase stand-in's S3 endpoint in front of it.
        client = boto3.client(
            "s3",
            endpoint_url=self.info["s3_endpoint_url"],
            aws_access_key_id=stored["s3_access_key"],
            aws_secret_access_key=stored["s3_secret_key"],
            region_name="us-east-1",
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )
        report.add(invariants.scan_server(client, report.where, own))
        with psycopg2.connect(self.admin_url) as conn, conn.cursor() as cur:
            report.add(invariants.scan_rows(cur, None, own))
        conn.close()
        invariants.record(report)
        return report

    def signal(self, sig: signal.Signals, timeout: float = 30.0) -> int:
        assert self.proc is not None
        # Scanned first (its data goes with the stack), judged once it is stopped: a finding,
        # or a scan that could not run, fails — after the stack stopped either way.
        report: invariants.Report | None = None
        scan_error: Exception | None = None
        if self.proc.poll() is None:
            try:
                report = self.scan()
            except Exception as error:
                scan_error = error
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"the stack did not stop within {timeout:.0f} s after {sig.name}")
        if scan_error is not None:
            raise AssertionError("the stack's storage could not be scanned") from scan_error
        if report is not None:
            report.check()
        return code

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.signal(signal.SIGTERM)

    def leftovers(self) -> list[str]:
        """Processes this stack started that still run: its children by pid (same command
        line), members of their process groups, anything naming the state folder."""
        found = []
        for name, (pid, cmdline) in self.children.items():
            if cmdline and _cmdline(pid) == cmdline:
                found.append(f"{name} (pid {pid})")
        groups = {pid for name, (pid, _) in self.children.items() if name != "reaper"}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            pid = int(entry.name)
            text = _cmdline(pid)
            if text is None:
                continue
            if _pgid(pid) in groups or str(self.state_dir) in text:
                found.append(f"pid {pid}: {text[:120]}")
        return found

    def wait_no_leftovers(self, timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        while (left := self.leftovers()) and time.monotonic() < deadline:
            time.sleep(0.1)
        return left


@pytest.fixture(scope="module")
def tools_built() -> None:
    """pg_dump's layer and the server tree, built before the clock starts (the stack runs the
    same make, a no-op then): the timings below are the stack's own."""
    subprocess.run(
        ["make", "-s", "-C", str(paths.pgdump_layer_makefile_dir()), "layer", "pg-server"],
        check=True,
        stdout=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def state_dir() -> Iterator[Path]:
    from devstack.postgres import create_state_dir

    # As root the database runs as an unprivileged user: create_state_dir makes a folder it
    # may use (pytest's tmp dir is not reachable for it).
    path = create_state_dir("clinic-backups-e2e-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def stack(
    state_dir: Path, tmp_path_factory: pytest.TempPathFactory, tools_built: None
) -> Iterator[LocalStack]:
    running = LocalStack(state_dir, tmp_path_factory.mktemp("stack-logs")).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def accounts(stack: LocalStack) -> dict[tuple[str, str], dict[str, str]]:
    with stack.client() as client:
        answer = client.get("/__demo/accounts")
    assert answer.status_code == 200
    return {(a["clinic"], a["role"]): a for a in answer.json()}
