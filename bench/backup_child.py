"""One backup run in a fresh process, measured from inside: the worker's own code path
(`backups.start_backup` + `backups.run_backup_job`) into a null sink or a real S3 server.

Reads a JSON payload on stdin, prints one JSON line: seconds, peak RSS of this (Python)
process and of its children (pg_dump, pg_restore), bytes this process wrote to disk, and
bytes left in its private temp directory.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, BinaryIO


class NullStorage:
    """Reads every byte of the stream (so hashing and checks run) and keeps nothing."""

    def upload_stream(self, key: str, stream: BinaryIO, content_type: str) -> None:
        while stream.read(8 * 1024 * 1024):
            pass

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        return None

    def delete(self, keys: list[str]) -> None:
        return None

    def object_size_limit(self) -> int | None:
        return None  # one object, whatever its size: the bench measures the dump


def io_write_bytes() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    return 0


def dir_bytes(path: str) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def cpu_seconds() -> tuple[float, float]:
    me = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, children.ru_utime + children.ru_stime


def main() -> None:
    payload: dict[str, Any] = json.loads(sys.stdin.read())
    tmp = tempfile.mkdtemp(prefix="bench-backup-")
    os.environ["TMPDIR"] = tmp
    tempfile.tempdir = tmp
    from clinic_backups.domain.models import Trigger
    from clinic_backups.usecases import backups
    from clinic_backups.wiring.factory import build_services
    from clinic_backups.wiring.settings import OperatorSettings, get_settings

    svc = build_services(get_settings(OperatorSettings))
    if payload.get("plain"):
        # Bench only: the same run without the age stage, to price encryption in the pipeline.
        from clinic_backups.usecases import keys

        keys.recipients_for = lambda svc, schema: []  # type: ignore[assignment]
    if payload.get("sink") == "null":
        svc.storage = NullStorage()  # type: ignore[assignment]
    jobs: list[Any] = []
    svc.dispatcher = type("Collect", (), {"enqueue": lambda self, job: jobs.append(job)})()
    written_before = io_write_bytes()
    cpu_before = cpu_seconds()
    start = time.perf_counter()
    record = backups.start_backup(
        svc, payload["schema"], trigger=Trigger.MANUAL, actor_id="bench", actor_name="bench"
    )
    done = backups.run_backup_job(svc, jobs[0])
    seconds = time.perf_counter() - start
    cpu_after = cpu_seconds()
    if payload.get("allow_failure"):
        # The peers' fault row: pg_dump is killed mid-dump; report what the product did.
        final = svc.records.get(payload["schema"], record.id)
        print(
            json.dumps(
                {
                    "seconds": seconds,
                    "status": final.status.value if final else "missing",
                    "error_code": final.error_code if final else None,
                    "storage_key": final.storage_key if final else None,
                }
            )
        )
        return
    assert done is not None and done.status.value == "completed", done and done.error
    print(
        json.dumps(
            {
                "seconds": seconds,
                "size_bytes": done.size_bytes,
                "python_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "children_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
                / 1024,
                "disk_write_bytes": io_write_bytes() - written_before,
                "tmp_bytes": dir_bytes(tmp),
                "backup_id": str(record.id),
                # CPU time (user + system): this process (every stage in Python, age included)
                # and its children (pg_dump). Steadier than wall time on a shared machine.
                "python_cpu_seconds": cpu_after[0] - cpu_before[0],
                "children_cpu_seconds": cpu_after[1] - cpu_before[1],
                # The whole process (interpreter start-up, imports, settings included) and all
                # its children: what a cold Lambda pays.
                "process_cpu_seconds": cpu_after[0] + cpu_after[1],
            }
        )
    )


if __name__ == "__main__":
    main()
