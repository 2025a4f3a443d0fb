"""`make run ARGS=--artifact`: the local stack serving the sam build output through the artifact
harness — the gateway invokes the built functions, their jobs travel through moto's SQS to the
built workers, their secrets come from moto's Secrets Manager — and stopping it leaves none of
their processes behind."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack import events, paths
from devstack.reaper import process_start_time
from tests.e2e.conftest import LocalStack


def _containers(parent: int) -> dict[int, str | None]:
    """The stack's execution environments: its children running the Lambda bootstrap."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = next(
            (line.split()[1] for line in status.splitlines() if line.startswith("PPid:")), ""
        )
        if ppid == str(parent) and b"lambda_bootstrap.py" in cmdline:
            found[int(entry.name)] = process_start_time(int(entry.name))
    return found


@pytest.fixture(scope="module")
def artifact_stack(
    sam_build: Path, tools_built: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStack]:
    from devstack.postgres import create_state_dir

    subprocess.run(
        ["make", "-s", "lambda-runtime"],
        cwd=paths.repo_root(),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    state = create_state_dir("clinic-backups-e2e-artifact-")
    stack = LocalStack(state, tmp_path_factory.mktemp("artifact-stack-logs"), ("--artifact",))
    try:
        yield stack.start()
    finally:
        stack.stop()
        shutil.rmtree(state, ignore_errors=True)


@pytest.mark.e2e
def test_the_artifact_stack_backs_up_through_the_built_functions_and_stops_clean(
    artifact_stack: LocalStack,
) -> None:
    stack = artifact_stack
    assert stack.info["artifact"] is True
    with stack.client() as client:
        admin = next(
            a
            for a in client.get("/__demo/accounts").json()
            if a["clinic"] == "clinica_sur" and a["role"] == "admin"
        )
        auth = {"Authorization": f"Bearer {admin['token']}"}
        # a request through the gateway reaches the built function …
        me = client.get("/me", headers=auth)
        assert me.status_code == 200, me.text
        assert me.json()["clinic"]["schema"] == "clinica_sur"
        # … and a backup's job reaches the built worker through SQS, then its light check
        created = client.post("/backups", headers=auth, json={"note": "artefacto"})
        assert created.status_code == 202, created.text
        deadline = time.monotonic() + 60
        while True:
            record = client.get(f"/backups/{created.json()['id']}", headers=auth).json()
            if record.get("checked_at") or time.monotonic() > deadline:
                break
            time.sleep(0.3)
    assert record["status"] == "completed" and record["encryption"] == "age", record
    assert record["check_outcome"] == "passed", record

    # The hourly event through the local invoke endpoint, waiting for the jobs it queued
    run, failed = events.invoke(
        stack.url, "scheduler", events.scheduled_event("hourly"), wait_jobs=True, timeout=120
    )
    assert not failed and run["errors"] == 0, run
    logs = stack.state_dir / "artifact-logs"
    assert {p.name.rsplit("-", 1)[0] for p in logs.glob("*.log")} >= {
        "list_backups",
        "create_backup",
        "restore_backup",
        "scheduler",
    }
    assert admin["token"] not in "".join(p.read_text(errors="replace") for p in logs.glob("*.log"))

    # Stopping the stack stops every execution environment it started
    assert stack.proc is not None
    containers = _containers(stack.proc.pid)
    assert len(containers) >= 4
    assert stack.signal(signal.SIGTERM) == 0, stack.log_tail()
    assert [pid for pid, start in containers.items() if process_start_time(pid) == start] == []
    assert stack.wait_no_leftovers(timeout=5) == []
