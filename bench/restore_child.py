"""One restore in a fresh process, measured from inside: the restore worker's own code path
(`restore.request_restore` + `restore.run_job`: pre-restore backup, pre-check, atomic swap)
against the clinic's live schema, from a backup already in storage.

Reads a JSON payload on stdin (`schema`, `backup_id`; with `local_archive` and `storage_key`,
the stored object is read from that local file instead of the S3 server), prints one JSON
line: the job's timings (pre-restore backup, the verification of the stored object beside it,
pre-check, swap), how long the clinic's tables
were locked, the kept schema's name and the pre-restore backup's storage key (the benchmark
removes both), and the peak RSS of this process and of its children (pg_dump, pg_restore,
psql).
"""

from __future__ import annotations

import json
import resource
import sys
import time
from typing import Any


class LocalRead:
    """The storage, except that one key is read from a local file."""

    def __init__(self, storage: Any, key: str, path: str):
        self._storage = storage
        self._key = key
        self._path = path

    def __getattr__(self, name: str) -> Any:
        return getattr(self._storage, name)

    def open_read(self, key: str) -> Any:
        if key == self._key:
            return open(self._path, "rb")  # the archive reader closes it
        return self._storage.open_read(key)


def main() -> None:
    payload: dict[str, Any] = json.loads(sys.stdin.read())
    from clinic_backups.domain.models import (
        Permission,
        RestoreJob,
        RestoreRequest,
        Role,
        TenantContext,
    )
    from clinic_backups.usecases import restore
    from clinic_backups.wiring.factory import build_services
    from clinic_backups.wiring.settings import OperatorSettings, get_settings

    svc = build_services(get_settings(OperatorSettings))
    if payload.get("local_archive"):
        # Bench only: the backup's stored bytes (still encrypted) read from a local file, not
        # from the local S3 server, to tell the restore's own cost from the storage read's.
        svc.storage = LocalRead(svc.storage, payload["storage_key"], payload["local_archive"])
    jobs: list[Any] = []
    svc.dispatcher = type("Collect", (), {"enqueue": lambda self, job: jobs.append(job)})()
    schema = payload["schema"]
    ctx = TenantContext(
        schema=schema,
        clinic_name=schema,
        user_id="bench",
        user_name="bench",
        role=Role.ADMIN,
        permissions=frozenset(Permission),
        request_id="bench",
    )
    start = time.perf_counter()
    job = restore.request_restore(svc, ctx, payload["backup_id"], RestoreRequest(confirm=schema))
    # Only the restore itself: the light check of the pre-restore backup it queues is not
    # part of a restore's time.
    for queued in list(jobs):
        if isinstance(queued, RestoreJob) and queued.kind == "restore":
            restore.run_job(svc, queued)
    seconds = time.perf_counter() - start
    assert svc.restores is not None
    done = svc.restores.get(schema, job.id)
    assert done is not None and done.status.value == "completed", done and done.error
    pre = (
        svc.records.get(schema, done.pre_restore_backup_id) if done.pre_restore_backup_id else None
    )
    timings = done.details.get("timings", {})
    print(
        json.dumps(
            {
                "seconds": seconds,
                "pre_restore_backup_seconds": timings.get("pre_restore_backup_seconds"),
                "verify_seconds": timings.get("verify_seconds"),
                "check_seconds": timings.get("check_seconds"),
                "restore_seconds": timings.get("restore_seconds"),
                "lock_seconds": done.lock_seconds,
                "old_schema": done.old_schema,
                "pre_restore_key": pre.storage_key if pre else None,
                "python_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "children_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
                / 1024,
            }
        )
    )


if __name__ == "__main__":
    main()
