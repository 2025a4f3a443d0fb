"""In-memory `RecordsRepository` and `TenantDirectory`: the semantics of adapters/postgres.py
(the clinic's operation lock and its lease, claim, status transitions, keyset pages, soft
delete and purge) on dictionaries, with the database's clock played by a `FakeClock`."""

from __future__ import annotations

import builtins
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from clinic_backups.domain.errors import (
    BackupCancelled,
    BackupNotCompleted,
    LeaseLost,
    OperationInProgress,
)
from clinic_backups.domain.models import (
    AuditEntry,
    AuditRecord,
    BackupRecord,
    BackupStatus,
    Clinic,
    DumpResult,
    Lease,
    RestoreRecord,
    RestoreStatus,
    SupersededCopy,
)
from clinic_backups.domain.names import is_valid_schema_name
from clinic_backups.domain.ports import CANCEL, AuditFilter, ListFilter, Renewal, SchemaCheck

from tests.fakes.clock import FakeClock

NEVER_STARTED = "the backup's job never started (its message expired); nothing was stored"
LEASE_GONE = "the job lost the clinic's lease (its worker died?)"
ACTIVE = (BackupStatus.PENDING, BackupStatus.RUNNING)


@dataclass
class LockRow:
    """The clinic's one operation lock (`backup_lock`, a singleton row)."""

    kind: str
    ref_id: uuid.UUID
    acquired_at: datetime
    lease_id: uuid.UUID | None = None
    lease_seconds: int = 0
    renewed_at: datetime | None = None

    def expired(self, now: datetime) -> bool:
        return (
            self.lease_id is not None
            and self.renewed_at is not None
            and self.renewed_at + timedelta(seconds=self.lease_seconds) < now
        )

    def live(self, now: datetime) -> bool:
        return self.lease_id is not None and not self.expired(now)


@dataclass
class ClinicTables:
    records: dict[uuid.UUID, BackupRecord] = field(default_factory=dict)
    lock: LockRow | None = None
    audit: list[AuditRecord] = field(default_factory=list)
    superseded: list[SupersededCopy] = field(default_factory=list)
    # restore and verification jobs (`backup_restores`: tests/fakes/restores.py)
    restores: dict[uuid.UUID, RestoreRecord] = field(default_factory=dict)


class FakeRecords:
    def __init__(self, clock: FakeClock):
        self.clock = clock
        self.clinics: dict[str, ClinicTables] = {}
        self.ensured: list[str] = []
        # a test makes a renewal find the lock table busy
        self.renew_busy = False

    # --- helpers for tests ------------------------------------------------------------------

    def tables(self, schema: str) -> ClinicTables:
        if schema not in self.clinics:
            raise AssertionError(f"ensure_schema({schema!r}) was not called first")
        return self.clinics[schema]

    def put(self, schema: str, record: BackupRecord) -> BackupRecord:
        """Store a record as it is (a test's given state)."""
        self.clinics.setdefault(schema, ClinicTables()).records[record.id] = record
        return record

    def update_record(self, schema: str, record: BackupRecord, **changes: Any) -> BackupRecord:
        """Change a stored record (the restores fake writes the check and drill results)."""
        updated = replace(record, **changes)
        self.tables(schema).records[record.id] = updated
        return updated

    def take_lock(self, schema: str, kind: str, ref_id: uuid.UUID, at: datetime) -> None:
        tables = self.tables(schema)
        now = self.clock.now()
        if tables.lock is not None and tables.lock.expired(now):
            silent = round((now - (tables.lock.renewed_at or now)).total_seconds())
            reason = (
                f"the job stopped renewing the clinic's lease {silent} s ago (its worker "
                "died or lost the database) and it was taken over"
            )
            self._fail_taken(schema, tables.lock, reason, at)
            tables.lock = None
        if tables.lock is not None:
            raise OperationInProgress()
        tables.lock = LockRow(kind, ref_id, at)

    def _fail_taken(self, schema: str, lock: LockRow, reason: str, at: datetime) -> list[uuid.UUID]:
        record = self.tables(schema).records.get(lock.ref_id)
        if record is None:
            return []
        if lock.kind == "backup" and record.status in ACTIVE:
            self._fail_record(
                schema, record, "stale", f"{reason}; any unfinished upload is removed", at
            )
            return [record.id]
        if lock.kind == "reencrypt":
            self.update_record(schema, record, reencrypting=False)
        return []

    def _fail_record(
        self, schema: str, record: BackupRecord, error_code: str, error: str, at: datetime
    ) -> None:
        self.update_record(
            schema,
            record,
            status=BackupStatus.FAILED,
            finished_at=at,
            error_code=error_code,
            error=error[:500],
        )

    def free_lock(self, schema: str, ref_id: uuid.UUID) -> None:
        tables = self.tables(schema)
        if tables.lock is not None and tables.lock.ref_id == ref_id:
            tables.lock = None

    def _alive(self, schema: str, record: BackupRecord) -> bool:
        lock = self.tables(schema).lock
        return lock is not None and lock.ref_id == record.id and lock.live(self.clock.now())

    # --- the port -----------------------------------------------------------------------------

    def ensure_schema(self, schema: str) -> None:
        if not is_valid_schema_name(schema):
            raise ValueError("not a valid clinic schema name")
        self.ensured.append(schema)
        self.clinics.setdefault(schema, ClinicTables())

    def create_pending(self, schema: str, record: BackupRecord) -> BackupRecord:
        self.take_lock(schema, "backup", record.id, record.created_at)
        self.tables(schema).records[record.id] = record
        return record

    def create_pending_under_lock(
        self, schema: str, record: BackupRecord, lock_ref: uuid.UUID
    ) -> BackupRecord:
        lock = self.tables(schema).lock
        if lock is None or lock.ref_id != lock_ref:
            raise OperationInProgress("The operation no longer holds the clinic's lock.")
        self.tables(schema).records[record.id] = record
        return record

    def claim(
        self, schema: str, backup_id: uuid.UUID, at: datetime, lease: Lease | None = None
    ) -> BackupRecord | None:
        record = self.tables(schema).records.get(backup_id)
        if record is None or record.status != BackupStatus.PENDING:
            return None
        if lease is not None and not self.claim_lease("backup", schema, backup_id, lease):
            return None
        return self.update_record(schema, record, status=BackupStatus.RUNNING, started_at=at)

    def claim_lease(self, kind: str, schema: str, ref_id: uuid.UUID, lease: Lease) -> bool:
        lock = self.tables(schema).lock
        if lock is None or lock.kind != kind or lock.ref_id != ref_id or lock.lease_id is not None:
            return False
        lock.lease_id, lock.lease_seconds = lease.id, lease.seconds
        lock.renewed_at = self.clock.now()
        return True

    def renew_lease(self, schema: str, lease: Lease) -> Renewal:
        if self.renew_busy:
            return None
        lock = self.tables(schema).lock
        if lock is None or lock.lease_id != lease.id:
            return False
        lock.renewed_at = self.clock.now()
        record = self.tables(schema).records.get(lock.ref_id)
        if lock.kind == "backup" and record is not None and record.cancel_requested_at:
            return CANCEL
        return True

    def release_thread_connection(self) -> None:
        return None

    def complete(
        self,
        schema: str,
        backup_id: uuid.UUID,
        result: DumpResult,
        at: datetime,
        recipients: builtins.list[dict[str, Any]] | None = None,
        parts: builtins.list[dict[str, Any]] | None = None,
    ) -> BackupRecord:
        record = self.tables(schema).records.get(backup_id)
        if record is None or record.status != BackupStatus.RUNNING:
            raise LeaseLost("the backup was no longer running when it completed")
        if record.cancel_requested_at is not None:
            raise BackupCancelled()
        done = self.update_record(
            schema,
            record,
            status=BackupStatus.COMPLETED,
            finished_at=at,
            size_bytes=result.size_bytes,
            sha256=result.sha256,
            plaintext_sha256=result.plaintext_sha256,
            recipients=list(recipients or []),
            parts=parts or None,
            pg_dump_version=result.pg_dump_version,
            server_version=result.server_version,
            error=None,
            error_code=None,
        )
        self.free_lock(schema, backup_id)
        return done

    def fail(
        self, schema: str, backup_id: uuid.UUID, error_code: str, error: str, at: datetime
    ) -> None:
        record = self.tables(schema).records.get(backup_id)
        if record is not None and record.status in ACTIVE:
            self._fail_record(schema, record, error_code, error, at)
        self.free_lock(schema, backup_id)

    def request_cancel(
        self, schema: str, backup_id: uuid.UUID, at: datetime
    ) -> BackupRecord | None:
        record = self.tables(schema).records.get(backup_id)
        if record is None:
            return None
        if record.status == BackupStatus.PENDING:
            cancelled = self.update_record(
                schema,
                record,
                status=BackupStatus.CANCELLED,
                finished_at=at,
                cancel_requested_at=at,
            )
            lock = self.tables(schema).lock
            if lock is not None and lock.ref_id == backup_id and lock.lease_id is None:
                self.tables(schema).lock = None
            return cancelled
        if record.status == BackupStatus.RUNNING:
            return self.update_record(
                schema, record, cancel_requested_at=record.cancel_requested_at or at
            )
        return record

    def finish_cancelled(self, schema: str, backup_id: uuid.UUID, at: datetime) -> bool:
        record = self.tables(schema).records.get(backup_id)
        if record is None or record.status != BackupStatus.RUNNING:
            return False
        self.update_record(schema, record, status=BackupStatus.CANCELLED, finished_at=at)
        self.free_lock(schema, backup_id)
        return True

    def start_reencrypt(self, schema: str, backup_id: uuid.UUID, at: datetime) -> BackupRecord:
        record = self.tables(schema).records.get(backup_id)
        self.take_lock(schema, "reencrypt", backup_id, at)
        if record is None or record.status != BackupStatus.COMPLETED:
            self.tables(schema).lock = None  # the transaction rolls back
            raise BackupNotCompleted("Only completed backups can be re-encrypted.")
        return self.update_record(schema, record, reencrypting=True)

    def claim_reencrypt(self, schema: str, backup_id: uuid.UUID, lease: Lease) -> bool:
        record = self.tables(schema).records.get(backup_id)
        if record is None or not record.reencrypting:
            return False
        return self.claim_lease("reencrypt", schema, backup_id, lease)

    def finish_reencrypt(
        self,
        schema: str,
        backup_id: uuid.UUID,
        *,
        storage_key: str | None = None,
        file_name: str | None = None,
        size_bytes: int | None = None,
        sha256: str | None = None,
        recipients: builtins.list[dict[str, Any]] | None = None,
        lease: Lease | None = None,
        parts: builtins.list[dict[str, Any]] | None = None,
        superseded_keys: builtins.list[str] | None = None,
    ) -> BackupRecord | None:
        tables = self.tables(schema)
        lock = tables.lock
        if lease is not None:
            if lock is None or lock.lease_id != lease.id:
                raise LeaseLost("the re-encryption lost the clinic's lease")
            tables.lock = None
        elif (
            lock is not None
            and lock.ref_id == backup_id
            and lock.kind == "reencrypt"
            and lock.lease_id is None
        ):
            tables.lock = None
        record = tables.records.get(backup_id)
        if record is None:
            return None
        if storage_key is not None and superseded_keys and record.replicated_at is not None:
            tables.superseded.append(
                SupersededCopy(
                    id=uuid.uuid4(),
                    backup_id=backup_id,
                    keys=list(superseded_keys),
                    retain_until=record.replica_retain_until,
                    superseded_at=self.clock.now(),
                )
            )
        if storage_key is None:
            return self.update_record(schema, record, reencrypting=False)
        return self.update_record(
            schema,
            record,
            storage_key=storage_key,
            file_name=file_name,
            size_bytes=size_bytes,
            sha256=sha256,
            recipients=list(recipients or []),
            parts=parts or None,
            reencrypting=False,
            replicated_at=None,
            replica_retain_until=None,
            primary_damaged_at=None,
        )

    def get(self, schema: str, backup_id: uuid.UUID) -> BackupRecord | None:
        return self.tables(schema).records.get(backup_id)

    def list(self, schema: str, query: ListFilter) -> tuple[builtins.list[BackupRecord], bool]:
        rows = [
            r
            for r in self.tables(schema).records.values()
            if (query.status is None or r.status == query.status)
            and (query.include_deleted or r.status != BackupStatus.DELETED)
            and (query.cursor is None or (r.created_at, r.id) < query.cursor)
        ]
        rows.sort(key=lambda r: (r.created_at, r.id), reverse=True)
        return rows[: query.limit], len(rows) > query.limit

    def soft_delete(
        self, schema: str, backup_id: uuid.UUID, by: str, at: datetime
    ) -> BackupRecord | None:
        record = self.tables(schema).records.get(backup_id)
        if record is None:
            return None
        if record.status in ACTIVE:
            raise OperationInProgress("The backup is still running; wait until it ends.")
        if record.status == BackupStatus.DELETED:
            return record
        return self.update_record(
            schema, record, status=BackupStatus.DELETED, deleted_at=at, deleted_by=by
        )

    def purgeable(self, schema: str, deleted_before: datetime) -> builtins.list[BackupRecord]:
        rows = [
            r
            for r in self.tables(schema).records.values()
            if r.status == BackupStatus.DELETED
            and r.purged_at is None
            and r.deleted_at is not None
            and r.deleted_at <= deleted_before
        ]
        return sorted(rows, key=lambda r: r.deleted_at or deleted_before)

    def mark_purged(self, schema: str, backup_id: uuid.UUID, at: datetime) -> None:
        record = self.tables(schema).records.get(backup_id)
        if record is not None and record.status == BackupStatus.DELETED:
            self.update_record(schema, record, purged_at=at)

    def undelete(
        self, schema: str, backup_id: uuid.UUID, deleted_after: datetime
    ) -> BackupRecord | None:
        record = self.tables(schema).records.get(backup_id)
        if (
            record is None
            or record.status != BackupStatus.DELETED
            or record.purged_at is not None
            or record.deleted_at is None
            or record.deleted_at <= deleted_after
            or record.size_bytes is None
            or record.sha256 is None
        ):
            return None
        return self.update_record(
            schema, record, status=BackupStatus.COMPLETED, deleted_at=None, deleted_by=None
        )

    def insert_from_manifest(self, schema: str, record: BackupRecord) -> bool:
        records = self.tables(schema).records
        if record.id in records:
            return False
        records[record.id] = record
        return True

    def count_since(self, schema: str, trigger: str, since: datetime) -> int:
        return sum(
            1
            for r in self.tables(schema).records.values()
            if r.trigger.value == trigger and r.created_at >= since
        )

    def audit(self, schema: str, entry: AuditEntry) -> None:
        # The database's now() moves on between transactions: entries written while the fake
        # clock stands still keep their order (a microsecond apart), as they do in PostgreSQL.
        audit = self.tables(schema).audit
        at = self.clock.now()
        if audit and audit[-1].at >= at:
            at = audit[-1].at + timedelta(microseconds=1)
        audit.append(
            AuditRecord(
                id=uuid.uuid4(),
                at=at,
                action=entry.action,
                outcome=entry.outcome,
                actor_id=entry.actor_id,
                actor_name=entry.actor_name,
                actor_role=entry.actor_role,
                request_id=entry.request_id,
                backup_id=entry.backup_id,
                details=dict(entry.details),
            )
        )

    def list_audit(
        self, schema: str, query: AuditFilter
    ) -> tuple[builtins.list[AuditRecord], bool]:
        def matches(row: AuditRecord) -> bool:
            if query.action is not None:
                if "." in query.action and row.action != query.action:
                    return False
                if "." not in query.action and not row.action.startswith(query.action + "."):
                    return False
            if query.since is not None and row.at < query.since:
                return False
            if query.until is not None and row.at >= query.until:
                return False
            return query.cursor is None or (row.at, row.id) < query.cursor

        rows = sorted(
            (r for r in self.tables(schema).audit if matches(r)),
            key=lambda r: (r.at, r.id),
            reverse=True,
        )
        return rows[: query.limit], len(rows) > query.limit

    # --- schedules, retention and the sweeper -----------------------------------------------

    def ensure_schemas(self, schemas: builtins.list[str]) -> SchemaCheck:
        check = SchemaCheck()
        for schema in schemas:
            try:
                self.ensure_schema(schema)
            except ValueError as error:
                check.failed[schema] = str(error)
        return check

    def completed_backups(self, schema: str) -> builtins.list[BackupRecord]:
        rows = [
            r for r in self.tables(schema).records.values() if r.status == BackupStatus.COMPLETED
        ]
        return sorted(rows, key=lambda r: (r.created_at, r.id), reverse=True)

    def retire(
        self, schema: str, backup_ids: builtins.list[uuid.UUID], by: str, at: datetime
    ) -> builtins.list[BackupRecord]:
        retired = []
        for backup_id in backup_ids:
            record = self.tables(schema).records.get(backup_id)
            if record is not None and record.status == BackupStatus.COMPLETED and not record.keep:
                retired.append(
                    self.update_record(
                        schema, record, status=BackupStatus.DELETED, deleted_at=at, deleted_by=by
                    )
                )
        return retired

    def mark_file_missing(self, schema: str, backup_id: uuid.UUID, at: datetime) -> None:
        record = self.tables(schema).records.get(backup_id)
        if record is not None and record.file_missing_at is None:
            self.update_record(schema, record, file_missing_at=at)

    def set_keep(self, schema: str, backup_id: uuid.UUID, keep: bool) -> BackupRecord | None:
        record = self.tables(schema).records.get(backup_id)
        return None if record is None else self.update_record(schema, record, keep=keep)

    def mark_replicated(
        self,
        schema: str,
        backup_id: uuid.UUID,
        at: datetime,
        retain_until: datetime | None,
        storage_key: str | None = None,
    ) -> BackupRecord | None:
        record = self.tables(schema).records.get(backup_id)
        if record is None or (storage_key is not None and record.storage_key != storage_key):
            return None
        return self.update_record(
            schema, record, replicated_at=at, replica_retain_until=retain_until
        )

    def remember_superseded(
        self,
        schema: str,
        backup_id: uuid.UUID,
        keys: builtins.list[str],
        retain_until: datetime | None,
        at: datetime,
    ) -> None:
        self.tables(schema).superseded.append(
            SupersededCopy(uuid.uuid4(), backup_id, list(keys), retain_until, at)
        )

    def superseded_purgeable(self, schema: str, now: datetime) -> builtins.list[SupersededCopy]:
        return [
            c
            for c in self.tables(schema).superseded
            if c.retain_until is None or c.retain_until <= now
        ]

    def forget_superseded(self, schema: str, copy_id: uuid.UUID) -> None:
        tables = self.tables(schema)
        tables.superseded = [c for c in tables.superseded if c.id != copy_id]

    def set_replica_retain_until(
        self, schema: str, backup_id: uuid.UUID, retain_until: datetime
    ) -> None:
        record = self.tables(schema).records.get(backup_id)
        if record is not None:
            self.update_record(schema, record, replica_retain_until=retain_until)

    def mark_primary_damaged(self, schema: str, backup_id: uuid.UUID, at: datetime) -> None:
        record = self.tables(schema).records.get(backup_id)
        if record is not None and record.primary_damaged_at is None:
            self.update_record(schema, record, primary_damaged_at=at)

    def clear_replicated(self, schema: str, backup_id: uuid.UUID) -> None:
        record = self.tables(schema).records.get(backup_id)
        if record is not None:
            self.update_record(schema, record, replicated_at=None, replica_retain_until=None)

    def replica_purgeable(self, schema: str, now: datetime) -> builtins.list[BackupRecord]:
        return [
            r
            for r in self.tables(schema).records.values()
            if r.purged_at is not None
            and r.replicated_at is not None
            and (r.replica_retain_until is None or r.replica_retain_until <= now)
        ]

    def unreplicated_since(self, schema: str, before: datetime) -> int:
        return sum(
            1
            for r in self.tables(schema).records.values()
            if r.status == BackupStatus.COMPLETED
            and r.replicated_at is None
            and r.finished_at is not None
            and r.finished_at < before
        )

    def backups_in_use(self, schema: str) -> set[uuid.UUID]:
        used: set[uuid.UUID] = set()
        for job in self.tables(schema).restores.values():
            if job.status in (RestoreStatus.PENDING, RestoreStatus.RUNNING):
                used.add(job.backup_id)
                if job.pre_restore_backup_id is not None:
                    used.add(job.pre_restore_backup_id)
        return used

    def _stale(self, schema: str, record: BackupRecord, before: datetime) -> bool:
        if record.status == BackupStatus.PENDING:
            return record.created_at < before
        return record.status == BackupStatus.RUNNING and not self._alive(schema, record)

    def fail_stale(self, schema: str, before: datetime, at: datetime) -> builtins.list[uuid.UUID]:
        tables = self.tables(schema)
        ids: builtins.list[uuid.UUID] = []
        lock = tables.lock
        if lock is not None and lock.kind in ("backup", "reencrypt") and lock.expired(at):
            ids += self._fail_taken(schema, lock, "its lease expired and it was taken over", at)
            tables.lock = None
        for record in list(tables.records.values()):
            if record.status in ACTIVE and self._stale(schema, record, before):
                pending = record.status == BackupStatus.PENDING
                self._fail_record(
                    schema, record, "stale", NEVER_STARTED if pending else LEASE_GONE, at
                )
                self.free_lock(schema, record.id)
                ids.append(record.id)
        return ids

    def keys_in_flight(self, schema: str, stuck_before: datetime) -> set[str]:
        tables = self.tables(schema)
        keys = {
            r.storage_key
            for r in tables.records.values()
            if r.status in ACTIVE and not self._stale(schema, r, stuck_before)
        }
        lock = tables.lock
        live = lock is not None and (lock.lease_id is None or lock.live(self.clock.now()))
        if lock is not None and lock.kind == "reencrypt" and live:
            record = tables.records.get(lock.ref_id)
            if record is not None:
                keys.add(record.storage_key)
        return keys

    def note_upload_removed(self, schema: str, storage_key: str, pending: str, done: str) -> None:
        for record in list(self.tables(schema).records.values()):
            if (
                record.storage_key == storage_key
                and record.status == BackupStatus.FAILED
                and record.error
                and pending in record.error
            ):
                self.update_record(schema, record, error=record.error.replace(pending, done))

    def known_keys(self, schema: str) -> set[str]:
        keys: set[str] = set()
        for record in self.tables(schema).records.values():
            if record.purged_at is None:
                keys.add(record.storage_key)
                keys.update(str(p["key"]) for p in record.parts or [])
        return keys


class FakeTenants:
    """The platform's tenants table."""

    def __init__(self, *clinics: Clinic, unsupported: builtins.list[str] | None = None):
        self.clinics = {c.schema: c for c in clinics}
        self.unsupported = list(unsupported or [])

    def get(self, schema: str) -> Clinic | None:
        return self.clinics.get(schema)

    def active_clinics(self) -> builtins.list[Clinic]:
        return [c for c in self.clinics.values() if c.active]

    def unsupported_clinics(self) -> builtins.list[str]:
        return list(self.unsupported)
