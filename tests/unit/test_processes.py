"""The layer's child processes (adapters/processes.py): they die with the process that started
them (PR_SET_PDEATHSIG), not with the thread that asked for them; each runs in a session of
its own; a signal death is named; a guardian runs its clean-up once its parent is gone. Real
processes (sleep, sh, this interpreter), no network."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from clinic_backups.adapters.processes import (
    Guardian,
    describe_exit,
    dies_with_parent,
    kill_group,
    reap,
    spawn,
)

ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


def gone(pid: int, seconds: float = 10) -> bool:
    """Whether the process ended (a zombie nobody reaped yet counts as ended)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.02)
    return False


def parent_of(code: str) -> tuple[subprocess.Popen[str], int]:
    """A Python process that runs `code` (which prints a pid and sleeps); that pid."""
    parent = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=dict(os.environ)
    )
    assert parent.stdout is not None
    return parent, int(parent.stdout.readline())


@pytest.mark.parametrize(
    ("rc", "text"),
    [(0, "exit code 0"), (3, "exit code 3"), (-9, "killed by SIGKILL"), (-15, "killed by SIGTERM")],
)
def test_a_signal_death_is_named(rc, text):
    assert describe_exit(rc) == text


def test_a_tool_outlives_the_thread_that_asked_for_it_in_a_session_of_its_own():
    assert dies_with_parent()
    started: list[subprocess.Popen[bytes]] = []
    asker = threading.Thread(target=lambda: started.append(spawn(["sleep", "30"], ENV)))
    asker.start()
    asker.join()
    proc = started[0]
    try:
        # the thread that asked ended; the parent-death signal is tied to the spawner thread
        time.sleep(0.3)
        assert proc.poll() is None
        assert os.getsid(proc.pid) == proc.pid  # its own session: kill_group reaches it all
    finally:
        reap(proc)
    assert proc.returncode == -signal.SIGKILL
    assert describe_exit(proc.returncode) == "killed by SIGKILL"


def test_tools_die_with_the_process_that_started_them():
    # Given a process that started a tool (from a thread of its own) and then was SIGKILLed
    parent, tool = parent_of(
        "import os, sys, threading, time\n"
        "from clinic_backups.adapters.processes import spawn\n"
        "box = []\n"
        "t = threading.Thread(target=lambda: box.append(spawn(['sleep', '60'], "
        "{'PATH': os.environ['PATH']})))\n"
        "t.start(); t.join()\n"
        "print(box[0].pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    try:
        assert not gone(tool, 0.2)
        parent.kill()
        parent.wait()
        # Then the tool went with it (without the signal, sleep would run its 60 s)
        assert gone(tool)
    finally:
        if not gone(tool, 0):
            os.kill(tool, signal.SIGKILL)


def test_a_guardian_runs_its_command_once_its_parent_died_however(tmp_path):
    done = tmp_path / "cleaned"
    parent, guardian = parent_of(
        "import os, time\n"
        "from clinic_backups.adapters.processes import Guardian\n"
        f"g = Guardian(['/bin/sh', '-c', 'touch {done}'], {{'PATH': os.environ['PATH']}})\n"
        "print(g.proc.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    time.sleep(0.3)
    assert not done.exists()  # nothing while the parent lives
    parent.kill()
    parent.wait()
    assert gone(guardian)
    assert done.exists()


def test_a_disarmed_guardian_does_nothing_and_a_fired_one_runs_now(tmp_path):
    disarmed, fired = tmp_path / "disarmed", tmp_path / "fired"
    first = Guardian(["/bin/sh", "-c", f"touch {disarmed}"], ENV)
    second = Guardian(["/bin/sh", "-c", f"touch {fired}"], ENV)
    first.disarm()
    assert second.fire(timeout=10) == 0
    assert fired.exists() and not disarmed.exists()


def test_kill_group_reaches_what_a_tool_started():
    proc = spawn(["/bin/sh", "-c", "sleep 60 & echo $!; wait"], ENV)
    assert proc.stdout is not None
    grandchild = int(proc.stdout.readline())
    kill_group(proc)
    proc.wait(timeout=10)
    assert gone(grandchild)
    reap(proc)
