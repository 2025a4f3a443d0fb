"""A watchdog that stops the local stack's servers if the stack itself dies without cleaning up.

``devstack.run`` stops PostgreSQL and SeaweedFS itself on Ctrl-C, SIGTERM and any exception
(try/finally, atexit). What it cannot handle is its own SIGKILL (or the OOM killer): the
servers run in process groups of their own (so a Ctrl-C in the terminal does not cut them off
mid-shutdown) and would be left running. So the stack starts this small process and keeps a
pipe to it open; the pipe is closed however the stack ends, and on that end-of-file this
process stops every server it was told about that is still running — each identified by pid
*and* start time, so a recycled pid is never signalled.

Protocol on stdin, one line each: ``watch <pid> <start-time> <first-signal>`` (the group leader
pid, its start time from /proc/<pid>/stat, SIGINT for PostgreSQL's fast shutdown, SIGTERM for
others). After ``grace`` seconds the group gets SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import IO

__all__ = ["Reaper", "process_start_time"]


def process_start_time(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat (clock ticks since boot): with the pid, names a process."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            text = fh.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = text[text.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


@dataclass
class _Watched:
    pid: int
    start: str
    first_signal: signal.Signals

    def alive(self) -> bool:
        return process_start_time(self.pid) == self.start


class Reaper:
    """The stack's side: start the watchdog, tell it about each server."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._pipe: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> Reaper:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "devstack.reaper"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            # Its own session: a Ctrl-C for the stack must not kill the watchdog first.
            start_new_session=True,
            cwd="/",
        )
        self._pipe = self._proc.stdin
        return self

    def watch(self, pid: int | None, first_signal: signal.Signals = signal.SIGTERM) -> None:
        if self._pipe is None or pid is None:
            return
        start = process_start_time(pid)
        if start is None:
            return
        self._pipe.write(f"watch {pid} {start} {first_signal.name}\n".encode())
        self._pipe.flush()

    def close(self, timeout: float = 5.0) -> None:
        """The stack stopped its servers itself: let the watchdog go (it checks anyway)."""
        if self._pipe is not None:
            with contextlib.suppress(OSError):
                self._pipe.close()
            self._pipe = None
        if self._proc is not None:
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None


def _stop(items: list[_Watched], grace: float) -> None:
    live = [w for w in items if w.alive()]
    for w in live:
        with contextlib.suppress(OSError):
            # PostgreSQL: SIGINT to the postmaster only (fast shutdown); others: the group.
            if w.first_signal == signal.SIGINT:
                os.kill(w.pid, signal.SIGINT)
            else:
                os.killpg(w.pid, w.first_signal)
    deadline = time.monotonic() + grace
    while live and time.monotonic() < deadline:
        live = [w for w in live if w.alive()]
        time.sleep(0.1)
    for w in live:
        # Only while the leader is still the process we were told about: once it is gone its
        # pid (and so the group id) may name someone else. PostgreSQL's backends leave with
        # their postmaster; SeaweedFS is one process.
        if w.alive():
            with contextlib.suppress(OSError):
                os.killpg(w.pid, signal.SIGKILL)


def main(grace: float = 10.0) -> int:
    # Only the pipe's end-of-file means "the stack is gone"; signals aimed at the terminal's
    # process group are not ours.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    watched: list[_Watched] = []
    for raw in sys.stdin.buffer:
        parts = raw.decode(errors="replace").split()
        if len(parts) == 4 and parts[0] == "watch" and parts[1].isdigit():
            with contextlib.suppress(KeyError):
                watched.append(_Watched(int(parts[1]), parts[2], signal.Signals[parts[3]]))
    _stop(watched, grace)
    return 0


if __name__ == "__main__":
    sys.exit(main())
