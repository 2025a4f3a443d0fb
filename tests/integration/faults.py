"""Faults the lease, deadline and fleet tests inject into the running stack: a stand-in for
one of the layer's pg tools, a job run in a child process the test can SIGKILL, and a TCP
proxy in front of the S3 server that can die and come back.

Every stand-in tool runs on this interpreter and exits when its parent dies (it watches
`getppid()`), so a killed job leaves no tool behind.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.helpers import REPO

WRAPPER = """#!{python}
import os, random, subprocess, sys, threading, time
REAL = {real!r}
FLAGS = {flags!r}
PARENT = os.getppid()
args = sys.argv[1:]


def orphaned():
    return os.getppid() != PARENT


def wait_for(name, limit=120):
    # a flag file the test creates, or the end when the parent died
    deadline = time.monotonic() + limit
    while not os.path.exists(os.path.join(FLAGS, name)):
        if orphaned() or time.monotonic() > deadline:
            os._exit(9)
        time.sleep(0.05)


def flag(name):
    open(os.path.join(FLAGS, name), "w").close()


def nap(seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if orphaned():
            os._exit(9)
        time.sleep(0.05)


def passthrough():
    os.execv(REAL, [REAL, *args])


{body}
"""

# The whole archive, then junk (the stream is encrypted and uploaded as it comes, whatever it
# holds: enough junk makes the upload multipart), then a stall until the test says `go`; then
# more junk and a clean exit.
DUMP_THEN_STALL = """
if "--version" in args:
    passthrough()
proc = subprocess.Popen([REAL, *args], stdout=subprocess.PIPE)
out = sys.stdout.buffer
while chunk := proc.stdout.read(65536):
    out.write(chunk)
if proc.wait() != 0:
    sys.exit(proc.returncode)
rng = random.Random(7)
for _ in range(JUNK_MB):
    out.write(rng.randbytes(1024 * 1024))
out.flush()
flag("dumped")
wait_for("go")
for _ in range(JUNK_MB):
    out.write(rng.randbytes(1024 * 1024))
out.flush()
sys.exit(0)
"""

# pg_dump that stalls before it writes anything, until the test says `go`.
STALL_DUMP = """
if "--version" in args:
    passthrough()
flag("dumping")
wait_for("go")
passthrough()
"""

# The tool, SECONDS late (only the invocations WHEN accepts).
SLOW_START = """
if "--version" in args or not WHEN(args):
    passthrough()
nap(SECONDS)
passthrough()
"""

# psql of the swap (the session that locks the clinic's tables: it echoes cb:locked) relays
# the script until the archive's SQL has been sent, then stalls until the test says `go`.
# Everything else passes on at once (only bytes that may begin the marker wait for the next
# read): the layer may wait for psql to answer what it just sent.
STALL_SWAP_PSQL = """
proc = subprocess.Popen([REAL, *args], stdin=subprocess.PIPE)
locked, loaded = b"\\\\echo cb:locked", b"\\\\echo cb:loaded"


def partial(data, marker):
    # how many bytes at the end of `data` may begin `marker` (held back until the next read)
    for k in range(min(len(marker) - 1, len(data)), 0, -1):
        if marker.startswith(data[-k:]):
            return k
    return 0


seen_lock, stalled, tail, recent = False, False, b"", b""
while chunk := sys.stdin.buffer.read1(65536):
    seen_lock = seen_lock or locked in recent + chunk
    recent = (recent + chunk)[-len(locked):]
    data = tail + chunk
    at = data.find(loaded) if seen_lock and not stalled else -1
    if at >= 0:
        proc.stdin.write(data[:at])
        proc.stdin.flush()
        stalled = True
        flag("stalled")
        wait_for("go")
        data = data[at:]
    keep = len(data) if stalled else len(data) - partial(data, loaded)
    try:
        proc.stdin.write(data[:keep])
        proc.stdin.flush()
    except BrokenPipeError:
        break
    tail = data[keep:]
try:
    proc.stdin.write(tail)
    proc.stdin.close()
except BrokenPipeError:
    pass
sys.exit(proc.wait())
"""


def install_tool(
    bin_dir: Path, flags: Path, pg_bin_dir: str, tool: str, body: str, **constants: Any
) -> None:
    """`bin_dir/<tool>` becomes a wrapper of the real tool (the others are links to the
    layer's); `constants` are Python literals or, for callables, their source lines."""
    bin_dir.mkdir(exist_ok=True)
    flags.mkdir(exist_ok=True)
    for name in ("pg_dump", "pg_restore", "psql"):
        link = bin_dir / name
        if not link.exists():
            os.symlink(f"{pg_bin_dir}/{name}", link)
    script = bin_dir / tool
    script.unlink()
    preamble = "".join(
        f"{k} = {v}\n" if isinstance(v, Source) else f"{k} = {v!r}\n" for k, v in constants.items()
    )
    script.write_text(
        WRAPPER.format(
            python=sys.executable,
            real=f"{pg_bin_dir}/{tool}",
            flags=str(flags),
            body=preamble + body,
        )
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


class Source(str):
    """A constant given to `install_tool` as code (e.g. a lambda), not as a literal."""


def wait_until(
    check: Callable[[], Any], timeout: float = 60, what: str = "condition", every: float = 0.05
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


class JobChild:
    """One job message run by a function's worker code in a child process (the way the
    Lambda runtime runs it), so the test can SIGKILL it like a crashed worker."""

    def __init__(self, function: str, message: dict[str, Any], log: Path):
        # Output to a file: a pipe nobody reads could stall the child on its log lines.
        self._log = open(log, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.job_child", function, json.dumps(message)],
            cwd=REPO,
            env=dict(os.environ),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.kill()
        self._log.close()


class TcpProxy:
    """127.0.0.1:<port> relayed to an upstream host:port. `kill()` drops every connection
    and stops listening (the store died: connections refused); `revive()` listens again on
    the same port."""

    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener: socket.socket | None = None
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self.revive()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def revive(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def kill(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._sockets = self._sockets, []
        if listener is not None:
            listener.close()
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    server.close()
                    return
                self._sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
