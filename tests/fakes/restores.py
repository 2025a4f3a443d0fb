"""In-memory `RestoresRepository`, `Restorer` and `Verifier`: the job rows and the clinic's
lock of adapters/restores.py (shared with `FakeRecords`), and a restorer whose swap reads the
archive to its end, asks `verified()`, and only then "commits" the job's completion, as the
real swap runs `completion_sql` before its COMMIT."""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, BinaryIO

from clinic_backups.domain.errors import (
    OperationInProgress,
    RestoreFailed,
    RestoreNotFound,
    UndoNotAvailable,
)
from clinic_backups.domain.models import (
    AuditEntry,
    BackupRecord,
    Lease,
    RestoreKind,
    RestoreRecord,
    RestoreStatus,
)
from clinic_backups.domain.ports import (
    DrillResult,
    LiveSchema,
    Locked,
    Restorer,
    SwapPlan,
    SwapResult,
    UndoPlan,
)

from tests.fakes.records import FakeRecords

ACTIVE = (RestoreStatus.PENDING, RestoreStatus.RUNNING)
NEVER_STARTED = "the job never started (its message expired); nothing changed"
LEASE_GONE = "the job lost the clinic's lease (its worker died?); nothing changed"
UPDATABLE = frozenset(
    {
        "step",
        "pre_restore_backup_id",
        "old_schema",
        "undo_schema",
        "undo_until",
        "details",
        "lock_seconds",
        "undo_status",
    }
)


class FakeRestores:
    def __init__(self, records: FakeRecords):
        self.records = records
        self.clock = records.clock
        # what `completion_sql` promised, run by the fake swap before its "COMMIT"
        self.completions: dict[str, Callable[[], None]] = {}
        # a verification's lease, on its own row: (the lease, when it was last renewed)
        self.leases: dict[uuid.UUID, tuple[Lease, datetime]] = {}

    def _jobs(self, schema: str) -> dict[uuid.UUID, RestoreRecord]:
        return self.records.tables(schema).restores

    def _set(self, schema: str, job: RestoreRecord, **changes: Any) -> RestoreRecord:
        updated = replace(job, **changes)
        self._jobs(schema)[job.id] = updated
        return updated

    def create(self, schema: str, job: RestoreRecord, *, take_lock: bool) -> RestoreRecord:
        if take_lock:
            self.records.take_lock(schema, job.kind.value, job.id, job.created_at)
        self._jobs(schema)[job.id] = job
        return job

    def claim(
        self,
        schema: str,
        restore_id: uuid.UUID,
        step: str,
        at: datetime,
        lease: Lease | None = None,
    ) -> RestoreRecord | None:
        job = self._jobs(schema).get(restore_id)
        if job is None or job.status != RestoreStatus.PENDING:
            return None
        if lease is not None and job.kind == RestoreKind.VERIFY:
            self.leases[restore_id] = (lease, self.clock.now())
        elif lease is not None and not self.records.claim_lease(
            "restore", schema, restore_id, lease
        ):
            return None
        return self._set(schema, job, status=RestoreStatus.RUNNING, started_at=at, step=step)

    def renew_lease(self, schema: str, lease: Lease) -> bool | None:
        for job_id, (held, _) in self.leases.items():
            job = self._jobs(schema).get(job_id)
            if held.id == lease.id and job is not None and job.status == RestoreStatus.RUNNING:
                self.leases[job_id] = (held, self.clock.now())
                return True
        return False

    def _verification_alive(self, job_id: uuid.UUID, now: datetime) -> bool:
        if job_id not in self.leases:
            return False
        lease, renewed_at = self.leases[job_id]
        return renewed_at + timedelta(seconds=lease.seconds) >= now

    def update(self, schema: str, restore_id: uuid.UUID, **fields: Any) -> None:
        unknown = set(fields) - UPDATABLE
        if unknown:
            raise ValueError(f"not updatable: {sorted(unknown)}")
        job = self._jobs(schema).get(restore_id)
        if job is None:
            return
        if "details" in fields:
            fields["details"] = {**job.details, **fields["details"]}
        self._set(schema, job, **fields)

    def fail(
        self,
        schema: str,
        restore_id: uuid.UUID,
        error_code: str,
        error: str,
        at: datetime,
        details: dict[str, Any] | None = None,
    ) -> None:
        job = self._jobs(schema).get(restore_id)
        if job is not None and job.status in ACTIVE:
            self._set(
                schema,
                job,
                status=RestoreStatus.FAILED,
                finished_at=at,
                error_code=error_code,
                error=error[:500],
                details={**job.details, **(details or {})},
            )
        self.records.free_lock(schema, restore_id)

    def complete(
        self, schema: str, restore_id: uuid.UUID, at: datetime, details: dict[str, Any]
    ) -> None:
        job = self._jobs(schema).get(restore_id)
        if job is not None and job.status == RestoreStatus.RUNNING:
            self._set(
                schema,
                job,
                status=RestoreStatus.COMPLETED,
                finished_at=at,
                step="done",
                details={**job.details, **details},
            )

    def get(self, schema: str, restore_id: uuid.UUID) -> RestoreRecord | None:
        return self._jobs(schema).get(restore_id)

    def list(
        self, schema: str, limit: int, cursor: tuple[datetime, uuid.UUID] | None, kind: str | None
    ) -> tuple[builtins.list[RestoreRecord], bool]:
        rows = sorted(
            (
                j
                for j in self._jobs(schema).values()
                if (kind is None or j.kind.value == kind)
                and (cursor is None or (j.created_at, j.id) < cursor)
            ),
            key=lambda j: (j.created_at, j.id),
            reverse=True,
        )
        return rows[:limit], len(rows) > limit

    def _latest_completed(self, schema: str) -> RestoreRecord | None:
        done = [
            j
            for j in self._jobs(schema).values()
            if j.kind == RestoreKind.RESTORE
            and j.status in (RestoreStatus.COMPLETED, RestoreStatus.UNDONE)
        ]
        return max(done, key=lambda j: (j.finished_at or j.created_at, j.id), default=None)

    def undoable(self, schema: str, now: datetime) -> uuid.UUID | None:
        latest = self._latest_completed(schema)
        if (
            latest is None
            or latest.status != RestoreStatus.COMPLETED
            or latest.dropped_at is not None
            or latest.old_schema is None
            or latest.undo_until is None
            or latest.undo_until <= now
        ):
            return None
        return latest.id

    def request_undo(
        self, schema: str, restore_id: uuid.UUID, by: str, at: datetime
    ) -> RestoreRecord:
        job = self._jobs(schema).get(restore_id)
        if job is None:
            raise RestoreNotFound()
        if job.kind != RestoreKind.RESTORE:
            raise UndoNotAvailable("A verification changed nothing: there is nothing to undo.")
        latest = self._latest_completed(schema)
        if job.status != RestoreStatus.COMPLETED or latest is None or latest.id != job.id:
            raise UndoNotAvailable(
                "Only the clinic's latest completed restore can be undone."
                if job.status != RestoreStatus.UNDONE
                else "This restore was already undone."
            )
        if job.undo_status in ("pending", "running"):
            raise OperationInProgress("The undo of this restore is already in progress.")
        if job.dropped_at is not None or job.undo_until is None or job.undo_until <= at:
            raise UndoNotAvailable(
                "The undo window of this restore is over: the clinic's previous data is gone."
            )
        self.records.take_lock(schema, "undo", restore_id, at)
        return self._set(
            schema,
            job,
            undo_status="pending",
            undo_requested_by=by,
            undo_requested_at=at,
            undo_error_code=None,
            undo_error=None,
            step="undo_queued",
        )

    def claim_undo(
        self, schema: str, restore_id: uuid.UUID, lease: Lease | None = None
    ) -> RestoreRecord | None:
        job = self._jobs(schema).get(restore_id)
        if job is None or job.undo_status != "pending":
            return None
        if lease is not None and not self.records.claim_lease("undo", schema, restore_id, lease):
            return None
        return self._set(schema, job, undo_status="running")

    def fail_undo(
        self,
        schema: str,
        restore_id: uuid.UUID,
        error_code: str,
        error: str,
        lease: Lease | None = None,
    ) -> None:
        lock = self.records.tables(schema).lock
        if lease is not None and (lock is None or lock.lease_id != lease.id):
            return
        job = self._jobs(schema).get(restore_id)
        if job is not None and job.undo_status in ("pending", "running"):
            self._set(
                schema, job, undo_status="failed", undo_error_code=error_code, undo_error=error
            )
        self.records.free_lock(schema, restore_id)

    def completion_sql(
        self,
        schema: str,
        restore_id: uuid.UUID,
        entry: AuditEntry,
        *,
        undo: bool = False,
        lease: Lease | None = None,
    ) -> str:
        token = f"-- completion {uuid.uuid4()}"

        def complete() -> None:
            job = self._jobs(schema).get(restore_id)
            ok = job is not None and (
                (job.status == RestoreStatus.COMPLETED and job.undo_status == "running")
                if undo
                else job.status == RestoreStatus.RUNNING
            )
            if not ok or job is None:
                raise RestoreFailed("the restore job is no longer running (failed by the sweeper?)")
            lock = self.records.tables(schema).lock
            if lease is not None and (lock is None or lock.lease_id != lease.id):
                raise RestoreFailed("the job no longer holds the clinic's lease (taken over)")
            now = self.clock.now()
            if undo:
                self._set(
                    schema,
                    job,
                    status=RestoreStatus.UNDONE,
                    undo_status=None,
                    step="undone",
                    undone_at=now,
                )
            else:
                self._set(schema, job, status=RestoreStatus.COMPLETED, step="done", finished_at=now)
            self.records.free_lock(schema, restore_id)
            self.records.audit(schema, entry)

        self.completions[token] = complete
        return token

    def fail_stale(self, schema: str, before: datetime, at: datetime) -> builtins.list[uuid.UUID]:
        """Pending jobs past `before`, running restores no live lease on the clinic's lock
        covers, running verifications whose own lease expired (undos: not modelled)."""
        failed = []
        lock = self.records.tables(schema).lock
        for job in list(self._jobs(schema).values()):
            if job.status == RestoreStatus.PENDING:
                stale, reason = job.created_at < before, NEVER_STARTED
            elif job.status == RestoreStatus.RUNNING and job.kind == RestoreKind.RESTORE:
                covered = lock is not None and lock.ref_id == job.id and lock.live(at)
                stale, reason = not covered, LEASE_GONE
            elif job.status == RestoreStatus.RUNNING:
                stale, reason = not self._verification_alive(job.id, at), LEASE_GONE
            else:
                continue
            if stale:
                self.fail(schema, job.id, "stale", reason, at)
                failed.append(job.id)
        return failed

    def droppable(self, schema: str, now: datetime) -> builtins.list[tuple[uuid.UUID, str]]:
        """Kept schemas past the undo window: a completed restore's old schema (no undo on
        its way), an undone one's undo schema."""
        found = []
        for j in sorted(self._jobs(schema).values(), key=lambda j: j.created_at):
            if j.kind != RestoreKind.RESTORE or j.dropped_at is not None:
                continue
            if j.undo_until is None or j.undo_until >= now:
                continue
            if (
                j.status == RestoreStatus.COMPLETED
                and j.old_schema is not None
                and j.undo_status not in ("pending", "running")
            ):
                found.append((j.id, j.old_schema))
            elif j.status == RestoreStatus.UNDONE and j.undo_schema is not None:
                found.append((j.id, j.undo_schema))
        return found

    def mark_dropped(self, schema: str, restore_id: uuid.UUID, at: datetime) -> None:
        job = self._jobs(schema).get(restore_id)
        if job is not None:
            self._set(schema, job, dropped_at=at)

    def hints(
        self, schemas: builtins.list[str], stuck_before: datetime, now: datetime
    ) -> tuple[dict[str, tuple[bool, bool]], dict[str, str]]:
        hints = {}
        for schema in schemas:
            stale = any(
                (j.status == RestoreStatus.PENDING and j.created_at < stuck_before)
                or j.status == RestoreStatus.RUNNING
                for j in self._jobs(schema).values()
            )
            hints[schema] = (stale, bool(self.droppable(schema, now)))
        return hints, {}

    def set_check(
        self,
        schema: str,
        backup_id: uuid.UUID,
        outcome: str,
        counts: dict[str, int] | None,
        error: str | None,
        at: datetime,
    ) -> BackupRecord | None:
        record = self.records.get(schema, backup_id)
        if record is None:
            return None
        return self.records.update_record(
            schema,
            record,
            check_outcome=outcome,
            table_counts=counts,
            check_error=error[:500] if error else None,
            checked_at=at,
        )

    def set_verification(
        self, schema: str, backup_id: uuid.UUID, outcome: str, details: dict[str, Any], at: datetime
    ) -> BackupRecord | None:
        record = self.records.get(schema, backup_id)
        if record is None:
            return None
        return self.records.update_record(
            schema, record, verify_outcome=outcome, verify_details=details, verified_at=at
        )


TABLE_COUNTS = {"pacientes": 3, "citas": 7}


class FakeRestorer:
    """pg_restore and psql stood in for: counts are TABLE_COUNTS for any archive it reads to
    the end; the swap loads the archive and runs the job's completion before "committing"."""

    def __init__(self, restores: FakeRestores):
        self.restores = restores
        self.dependents: list[tuple[str, str]] = []
        self.kept_schemas: set[str] = set()
        self.live_schemas: dict[str, LiveSchema] = {}
        self.swapped: list[SwapPlan] = []
        self.swapped_back: list[UndoPlan] = []
        self.fail_check: Exception | None = None
        self.loaded: bytes = b""

    def inspect(self, schema: str) -> LiveSchema:
        return self.live_schemas.get(schema, LiveSchema(160004, "clinic_owner"))

    def check(self, archive: BinaryIO, plan: SwapPlan) -> None:
        archive.read()
        if self.fail_check is not None:
            raise self.fail_check

    def swap(self, plan: SwapPlan, locked: Locked) -> SwapResult:
        stream, verified = locked("00000003-0000001B-1")
        self.loaded = stream.read()
        if not verified():
            raise RestoreFailed("the archive did not match its checksum; rolled back")
        self.restores.completions.pop(plan.completion_sql)()  # inside the transaction
        self.swapped.append(plan)
        self.kept_schemas.add(plan.old_schema)
        return SwapResult(seconds=0.5, lock_seconds=0.2, table_counts=dict(TABLE_COUNTS))

    def swap_back(self, plan: UndoPlan) -> SwapResult:
        self.restores.completions.pop(plan.completion_sql)()
        self.swapped_back.append(plan)
        self.kept_schemas.discard(plan.old_schema)
        self.kept_schemas.add(plan.undo_schema)
        return SwapResult(seconds=0.3, lock_seconds=0.1)

    def drop_schema(self, name: str) -> list[tuple[str, str]]:
        self.kept_schemas.discard(name)
        return []

    def outside_dependents(self, schema: str) -> list[tuple[str, str]]:
        return list(self.dependents)

    def schema_exists(self, name: str) -> bool:
        return name in self.kept_schemas

    def count_rows(self, archive: BinaryIO) -> dict[str, int]:
        archive.read()
        return dict(TABLE_COUNTS)

    def needed_extensions(self, archive: BinaryIO) -> builtins.list[tuple[str, str]]:
        archive.read()
        return []

    def limited(self, seconds: float) -> Restorer:
        return self


class FakeVerifier:
    def __init__(self, passed_counts: dict[str, int] | None = None):
        self.counts = dict(TABLE_COUNTS) if passed_counts is None else passed_counts
        self.drills: list[str] = []

    def drill(
        self,
        schema: str,
        archive: BinaryIO,
        verified: Callable[[], bool],
        extensions: builtins.list[tuple[str, str]],
    ) -> DrillResult:
        archive.read()
        self.drills.append(schema)
        passed = verified() and self.counts == TABLE_COUNTS
        mismatches = {
            t: [TABLE_COUNTS.get(t), n] for t, n in self.counts.items() if TABLE_COUNTS.get(t) != n
        }
        return DrillResult(
            passed, {"table_counts": dict(self.counts), "mismatches": mismatches, "seconds": 1.0}
        )
