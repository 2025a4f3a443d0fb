"""The crash suite's driver: one restore, undo, drill or `restore-file`, run in a process of its
own exactly as the worker or the CLI runs it, that SIGKILLs itself — or one of its pg tool
children — at a point chosen by progress (tests/integration/test_crash_safety.py).

    python -m tests.integration.crash_driver '<spec as JSON>'

The spec names the operation and one kill point:

- `who`: `driver` (this process), or a child by name: `psql`, `pg_restore`, `pg_dump`;
- `when`: `marker` (psql printed the `\\echo` marker `value`, its `nth` time), `fed` (`value`
  bytes of the archive went into the `nth` pg_restore this process started), `dumped`
  (`value` bytes of pg_dump's output were read: the pre-restore backup), `sent` (text
  containing `value` was written to psql, its `nth` time; with `then`, once psql has also
  printed that marker — e.g. psql killed after its COMMIT went through, before it exits).

Nothing of this is in the layer: the hooks wrap the layer's streams from the outside. Before it
acts, the driver writes a report (`report`): which children it had (so the test can check they
died with it) and which one it killed.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

from clinic_backups.adapters import pgdump, pgrestore

# Reads small enough that a point lands anywhere in a few-MB archive, not on 1 MiB steps.
STEP = 64 * 1024


def children() -> list[tuple[int, str]]:
    """This process's running children (pid, command name), from /proc (not the zombies of
    tools that already exited and were not reaped yet)."""
    found: list[tuple[int, str]] = []
    for task in Path("/proc/self/task").iterdir():
        try:
            pids = (task / "children").read_text().split()
        except OSError:
            continue
        for pid in pids:
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            name, state = stat[stat.index("(") + 1 : stat.rindex(")")], stat.rsplit(")", 1)[1]
            if state.split()[0] not in ("Z", "X"):
                found.append((int(pid), name))
    return found


class Trigger:
    def __init__(self, spec: dict[str, Any]):
        self.who: str = spec["who"]
        self.when: str = spec["when"]
        self.value: Any = spec["value"]
        self.nth: int = int(spec.get("nth", 1))
        self.then: str | None = spec.get("then")
        self.report = Path(spec["report"])
        self.count = 0
        self.fired = False
        self._lock = threading.Lock()

    def seen(self, when: str, value: Any = None) -> None:
        """One occurrence of an event; the `nth` matching one fires."""
        if when != self.when or (value is not None and value != self.value):
            return
        with self._lock:
            self.count += 1
            if self.count != self.nth:
                return
        self.fire()

    def fire(self) -> None:
        """Act, once."""
        with self._lock:
            if self.fired:
                return
            self.fired = True
        kids = children()
        report: dict[str, Any] = {"children": kids}
        if self.who == "driver":
            self._write(report)
            os.kill(os.getpid(), signal.SIGKILL)
        victims = [pid for pid, name in kids if name == self.who]
        report["killed"] = victims[-1] if victims else None
        if victims:
            os.kill(victims[-1], signal.SIGKILL)
        self._write(report)

    def _write(self, report: dict[str, Any]) -> None:
        tmp = self.report.with_suffix(".tmp")
        tmp.write_text(json.dumps(report))
        tmp.replace(self.report)


class CountingReader:
    """The archive on its way into pg_restore, in small reads; fires once `limit` bytes went
    through (checked before each further read: those bytes were written to pg_restore)."""

    def __init__(self, inner: Any, trigger: Trigger, limit: int | None):
        self._inner = inner
        self._trigger = trigger
        self._limit = limit
        self.bytes = 0

    def read(self, size: int = -1) -> bytes:
        if self._limit is not None and self.bytes >= self._limit:
            self._limit = None
            self._trigger.fire()
        chunk = self._inner.read(STEP if size < 0 else min(size, STEP))
        self.bytes += len(chunk)
        return bytes(chunk)


class MarkerTap:
    """psql's stdout as the session reads it: each `cb:` line is an event."""

    def __init__(self, stream: Any, trigger: Trigger):
        self._stream = stream
        self._trigger = trigger

    def __iter__(self) -> Any:
        for raw in self._stream:
            text = raw.decode("utf-8", "replace").strip()
            if text.startswith("cb:"):
                self._trigger.seen("marker", text)
            yield raw

    def close(self) -> None:
        self._stream.close()

    def fileno(self) -> int:
        return int(self._stream.fileno())


def install(trigger: Trigger) -> None:
    """Wrap the layer's streams (pg_restore's input, psql's output and input, pg_dump's
    output) so that progress reaches the trigger."""
    start_pg_restore = pgrestore._start_pg_restore
    started = {"pg_restore": 0}

    def counted_start(tools: Any, extra: Any, env: Any, run: Any, archive: Any, drain: Any) -> Any:
        started["pg_restore"] += 1
        limit = trigger.value if trigger.when == "fed" else None
        if started["pg_restore"] != trigger.nth:
            limit = None
        counted: Any = CountingReader(archive, trigger, limit)  # read() is all the feeder uses
        return start_pg_restore(tools, extra, env, run, counted, drain)

    pgrestore._start_pg_restore = counted_start  # type: ignore[assignment]

    read_markers = pgrestore.PsqlSession._read_markers

    def tapped(self: Any) -> None:
        self.proc.stdout = MarkerTap(self.proc.stdout, trigger)
        read_markers(self)

    pgrestore.PsqlSession._read_markers = tapped  # type: ignore[method-assign]

    send = pgrestore.PsqlSession.send

    def watched_send(self: Any, data: Any, **options: Any) -> None:
        send(self, data, **options)
        if trigger.when != "sent" or not isinstance(data, str):  # ours are str, the archive's not
            return
        if trigger.value in data:
            if trigger.then is not None:
                self.reached(trigger.then, 30)
            trigger.seen("sent", trigger.value)

    pgrestore.PsqlSession.send = watched_send  # type: ignore[method-assign]

    readinto = pgdump.DumpProcess.readinto
    dumped = {"bytes": 0}

    def counted_readinto(self: Any, buffer: Any) -> int:
        if trigger.when == "dumped" and dumped["bytes"] >= int(trigger.value):
            trigger.seen("dumped")
        n = int(readinto(self, buffer))
        dumped["bytes"] += n
        return n

    pgdump.DumpProcess.readinto = counted_readinto  # type: ignore[method-assign]


def run(spec: dict[str, Any]) -> int:
    from clinic_backups.domain.models import RestoreJob
    from clinic_backups.edge import cli
    from clinic_backups.usecases import restore
    from clinic_backups.wiring.factory import build_services
    from clinic_backups.wiring.settings import RestoreSettings, get_settings

    op = spec["op"]
    if op == "restore-file":
        return cli.main(spec["argv"])
    svc = build_services(get_settings(RestoreSettings))
    job = RestoreJob(kind=op, schema=spec["schema"], restore_id=uuid.UUID(spec["restore_id"]))
    done = restore.run_job(svc, job)
    print(json.dumps({"status": getattr(getattr(done, "status", None), "value", None)}))
    return 0


def main() -> int:
    spec = json.loads(sys.argv[1])
    install(Trigger(spec["kill"]))
    return run(spec)


if __name__ == "__main__":
    sys.exit(main())
