"""Ports: the small interfaces the domain logic depends on. Adapters implement them."""

from __future__ import annotations

import builtins
import io
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, BinaryIO, Final, Literal, Protocol

from clinic_backups.domain.models import (
    AuditEntry,
    AuditRecord,
    BackupRecord,
    BackupStatus,
    Clinic,
    ClinicSettings,
    DumpResult,
    EncryptionKey,
    Job,
    Lease,
    RestoreRecord,
    SlotRecord,
    SlotStatus,
    SupersededCopy,
)
from clinic_backups.domain.schedule import Slot

# What one heartbeat's renewal found: True renewed, False the lease is gone (released or taken
# over), None busy (try again at the next beat), CANCEL renewed, and the backup holding the
# lease was asked to cancel (POST /backups/{id}/cancel).
CANCEL: Final = "cancel"
Renewal = bool | None | Literal["cancel"]


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class TenantDirectory(Protocol):
    """The platform's public tenants table (read-only)."""

    def get(self, schema: str) -> Clinic | None: ...

    def active_clinics(self) -> list[Clinic]: ...

    def unsupported_clinics(self) -> list[str]:
        """Active tenants whose schema name the product cannot back up (names.py): reported
        as failing clinics, never skipped silently."""
        ...


@dataclass(frozen=True)
class ListFilter:
    limit: int
    cursor: tuple[datetime, uuid.UUID] | None = None
    status: BackupStatus | None = None
    include_deleted: bool = False


@dataclass(frozen=True)
class AuditFilter:
    """A page of a clinic's audit entries, newest first (keyset `cursor`: (at, id))."""

    limit: int
    cursor: tuple[datetime, uuid.UUID] | None = None
    action: str | None = None  # `backup.download` exactly, or `backup`: every `backup.*`
    since: datetime | None = None  # included
    until: datetime | None = None  # excluded


@dataclass
class SchemaCheck:
    """What `ensure_schemas` could not prepare: clinics without a schema, and clinics whose
    tables failed (a revoked grant…) with the reason."""

    unavailable: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


class RecordsRepository(Protocol):
    """Backup records, audit and the per-clinic operation lock, in the clinic's own schema."""

    def ensure_schema(self, schema: str) -> None: ...

    def create_pending(self, schema: str, record: BackupRecord) -> BackupRecord:
        """Insert a pending record and take the clinic's operation lock in one transaction,
        taking over an expired lease first (its job fails as stale); OperationInProgress when
        a live or pending job holds the lock."""
        ...

    def claim(
        self, schema: str, backup_id: uuid.UUID, at: datetime, lease: Lease | None = None
    ) -> BackupRecord | None:
        """Atomically move pending → running, and with `lease` stamp the backup's lock row
        with it in the same transaction; None when it was not pending. (The pre-restore
        backup runs under its restore's lease: no lease of its own.)"""
        ...

    def renew_lease(self, schema: str, lease: Lease) -> Renewal:
        """Renew a lock lease (the database's now()): True, False when it is gone (released
        or taken over), None when the lock table was busy (try again at the next beat),
        CANCEL when renewed for a backup that was asked to cancel."""
        ...

    def release_thread_connection(self) -> None:
        """Close the calling thread's database connection (a heartbeat that ends)."""
        ...

    def complete(
        self,
        schema: str,
        backup_id: uuid.UUID,
        result: DumpResult,
        at: datetime,
        recipients: builtins.list[dict[str, Any]] | None = None,
        parts: builtins.list[dict[str, Any]] | None = None,
    ) -> BackupRecord:
        """running → completed with the result, who the archive is encrypted to and, for a
        split archive, its parts."""
        ...

    def fail(
        self, schema: str, backup_id: uuid.UUID, error_code: str, error: str, at: datetime
    ) -> None: ...

    def start_reencrypt(self, schema: str, backup_id: uuid.UUID, at: datetime) -> BackupRecord:
        """Take the clinic's lock for a re-encryption and flag the backup (409 when busy)."""
        ...

    def claim_reencrypt(self, schema: str, backup_id: uuid.UUID, lease: Lease) -> bool:
        """Stamp the re-encryption's lock row with the job's lease; False when there is no
        such pending re-encryption (a repeated delivery, or one already running)."""
        ...

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
        """Point the record at the new object (when given), clear the flag, free the lock;
        with `lease`, LeaseLost when the job no longer holds it. When the record had a replica
        copy, `superseded_keys` (the old objects and manifest) are remembered in the same
        transaction with the copy's lock date, for the purge (`superseded_purgeable`)."""
        ...

    def get(self, schema: str, backup_id: uuid.UUID) -> BackupRecord | None: ...

    def list(self, schema: str, query: ListFilter) -> tuple[list[BackupRecord], bool]:
        """One page, newest first, and whether more follow."""
        ...

    def soft_delete(
        self, schema: str, backup_id: uuid.UUID, by: str, at: datetime
    ) -> BackupRecord | None:
        """Completed/failed → deleted; returns the updated record, or None if it was already
        deleted. OperationInProgress when the backup is still pending or running."""
        ...

    def purgeable(self, schema: str, deleted_before: datetime) -> builtins.list[BackupRecord]: ...

    def mark_purged(self, schema: str, backup_id: uuid.UUID, at: datetime) -> None:
        """Only while the record is still deleted (an undelete may have come first)."""
        ...

    def undelete(
        self, schema: str, backup_id: uuid.UUID, deleted_after: datetime
    ) -> BackupRecord | None:
        """deleted → completed, for a backup that completed before it was deleted, was
        deleted after `deleted_after` (its grace period runs) and is not purged; None
        otherwise (nothing changed)."""
        ...

    def request_cancel(
        self, schema: str, backup_id: uuid.UUID, at: datetime
    ) -> BackupRecord | None:
        """A pending backup → cancelled and its lock freed, at once; a running one gets
        `cancel_requested_at` (its worker stops at its next beat); anything else unchanged.
        The record as it now is (None: no such backup)."""
        ...

    def finish_cancelled(self, schema: str, backup_id: uuid.UUID, at: datetime) -> bool:
        """running → cancelled and the lock freed (False: it was no longer running)."""
        ...

    def insert_from_manifest(self, schema: str, record: BackupRecord) -> bool: ...

    def count_since(self, schema: str, trigger: str, since: datetime) -> int: ...

    def audit(self, schema: str, entry: AuditEntry) -> None: ...

    def list_audit(
        self, schema: str, query: AuditFilter
    ) -> tuple[builtins.list[AuditRecord], bool]:
        """One page of the clinic's audit entries and whether more follow."""
        ...

    def create_pending_under_lock(
        self, schema: str, record: BackupRecord, lock_ref: uuid.UUID
    ) -> BackupRecord:
        """Insert a pending record for an operation that already holds the clinic's lock
        (`lock_ref`: the restore's pre-restore backup); OperationInProgress when that lock is
        no longer held."""
        ...

    # --- schedules, retention and the sweeper ---------------------------------------------
    # (`builtins.list`: in this class body `list` is the method above.)

    def ensure_schemas(self, schemas: builtins.list[str]) -> SchemaCheck:
        """`ensure_schema` for many clinics with one catalog read for those already at the
        latest version; returns those that could not be prepared (each failing on its own:
        the others are prepared)."""
        ...

    def completed_backups(self, schema: str) -> builtins.list[BackupRecord]:
        """Every completed backup of the clinic, any trigger (retention's input)."""
        ...

    def retire(
        self, schema: str, backup_ids: builtins.list[uuid.UUID], by: str, at: datetime
    ) -> builtins.list[BackupRecord]:
        """Soft-delete retention's choices in one statement, re-checking in the database that
        each is still completed and not marked `keep` (an admin may have just marked it)."""
        ...

    def mark_file_missing(self, schema: str, backup_id: uuid.UUID, at: datetime) -> None:
        """Record that a read found the backup's file gone from storage (first time only)."""
        ...

    def set_keep(self, schema: str, backup_id: uuid.UUID, keep: bool) -> BackupRecord | None: ...

    def mark_replicated(
        self,
        schema: str,
        backup_id: uuid.UUID,
        at: datetime,
        retain_until: datetime | None,
        storage_key: str | None = None,
    ) -> BackupRecord | None:
        """The replica's copy is complete and checked (`replicated_at`), locked until then.
        With `storage_key`, only while the record still points at it (None otherwise: a
        re-encryption replaced the objects the copy was made of)."""
        ...

    def remember_superseded(
        self,
        schema: str,
        backup_id: uuid.UUID,
        keys: builtins.list[str],
        retain_until: datetime | None,
        at: datetime,
    ) -> None:
        """Replica copies no record points at (their keys, their lock), for the purge."""
        ...

    def superseded_purgeable(self, schema: str, now: datetime) -> builtins.list[SupersededCopy]:
        """Remembered replica copies whose lock has expired by `now` (or that have none)."""
        ...

    def forget_superseded(self, schema: str, copy_id: uuid.UUID) -> None:
        """The remembered copies are gone from the replica."""
        ...

    def set_replica_retain_until(
        self, schema: str, backup_id: uuid.UUID, retain_until: datetime
    ) -> None: ...

    def mark_primary_damaged(self, schema: str, backup_id: uuid.UUID, at: datetime) -> None:
        """A read found the primary's object not matching the record's sha256."""
        ...

    def clear_replicated(self, schema: str, backup_id: uuid.UUID) -> None:
        """The replica's copy is gone (purged)."""
        ...

    def replica_purgeable(self, schema: str, now: datetime) -> builtins.list[BackupRecord]:
        """Purged backups whose replica copy remains and whose lock has expired by `now`."""
        ...

    def unreplicated_since(self, schema: str, before: datetime) -> int:
        """How many completed backups finished before `before` have no replica copy yet."""
        ...

    def backups_in_use(self, schema: str) -> set[uuid.UUID]:
        """Backups a running restore or verification reads: retention never deletes them."""
        ...

    def fail_stale(self, schema: str, before: datetime, at: datetime) -> builtins.list[uuid.UUID]:
        """Backups whose lease expired, running ones no live lease covers, and pending ones
        created before `before` (never started) become failed (`stale`), releasing the
        clinic's lock. A running backup with a live lease is never touched."""
        ...

    def keys_in_flight(self, schema: str, stuck_before: datetime) -> set[str]:
        """Storage keys a live job may be uploading to: pending backups, running ones with a
        live lease, and the backup a live re-encryption rewrites."""
        ...

    def note_upload_removed(self, schema: str, storage_key: str, pending: str, done: str) -> None:
        """A failed backup's unfinished upload was aborted: its error says `done` where it
        said `pending`."""
        ...

    def known_keys(self, schema: str) -> set[str]:
        """Storage keys of every record whose objects may exist (not purged)."""
        ...


@dataclass(frozen=True)
class ClinicSnapshot:
    """What one scheduler run needs to know about a clinic, read for many clinics at once."""

    schema: str
    settings: ClinicSettings | None  # None: the platform defaults
    slots: dict[tuple[date, int], SlotRecord] = field(default_factory=dict)  # recent ones
    last_good_at: datetime | None = None  # newest completed backup's finish
    first_slot_at: datetime | None = None  # the first slot ever recorded
    lock_held: bool = False
    stuck: bool = False  # a dead job: an expired lease, or a pending record past the threshold
    purgeable: bool = False  # a deleted backup past the grace period, not yet purged
    # completed backups without a replica copy past REPLICA_LAG_MINUTES
    replica_lagging: int = 0
    error: str | None = None  # the clinic could not be read (the reason); nothing else is set


@dataclass(frozen=True)
class SnapshotWindow:
    """The instants one scheduler run reads its clinics against: slots scheduled since
    `slots_since`, backups pending since before `stuck_before`, deleted ones before
    `deleted_before` (past their grace period) and, with a replica, completed ones finished
    before `replica_lag_before` without a replica copy."""

    slots_since: datetime
    stuck_before: datetime
    deleted_before: datetime
    replica_lag_before: datetime | None = None


class SchedulesRepository(Protocol):
    """Per-clinic backup settings and schedule slots, in the clinic's own schema."""

    def get_settings(self, schema: str) -> ClinicSettings | None: ...

    def save_settings(self, schema: str, settings: ClinicSettings) -> ClinicSettings: ...

    def snapshot(
        self, schemas: builtins.list[str], window: SnapshotWindow
    ) -> dict[str, ClinicSnapshot]:
        """Settings, recent slots and sweeper hints of many clinics, read in batches."""
        ...

    def claim_slot(self, schema: str, slot: Slot, backup_id: uuid.UUID, at: datetime) -> bool:
        """Insert the slot as `due`; False when the slot already exists (another run has it)."""
        ...

    def reclaim_slot(
        self, schema: str, slot: Slot, backup_id: uuid.UUID, at: datetime, due_before: datetime
    ) -> bool:
        """Take a `skipped_busy` slot (or a `due` one decided before `due_before`, left by a
        run that died) for one more attempt; False when another run got it first."""
        ...

    def mark_slot(
        self, schema: str, slot: Slot, status: SlotStatus, at: datetime, backup_id: uuid.UUID | None
    ) -> None:
        """The slot's decision (`backup_id` None keeps the one it has)."""
        ...

    def release_slot(self, schema: str, slot: Slot, backup_id: uuid.UUID) -> None:
        """Forget a `due` claim whose backup could not be queued, so a later run retries."""
        ...

    def record_missed(self, schema: str, slot: Slot, at: datetime, due_before: datetime) -> bool:
        """Record a slot as `missed` unless it was enqueued (or is being enqueued by a run
        that claimed it after `due_before`); True when recorded."""
        ...


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    last_modified: datetime | None = None


@dataclass(frozen=True)
class PendingUpload:
    key: str
    upload_id: str
    initiated: datetime


class ObjectStorage(Protocol):
    """One bucket of objects. Keys are full keys; `ScopedStorage` keeps them in a clinic."""

    def upload_stream(self, key: str, stream: BinaryIO, content_type: str) -> None:
        """Stream to the object; on any failure nothing is left under `key`."""
        ...

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None: ...

    def copy(self, source: str, target: str) -> None:
        """Copy an object inside the store (no bytes through the function)."""
        ...

    def object_size_limit(self) -> int | None:
        """The largest object the store accepts (None: not known)."""
        ...

    def get_bytes(self, key: str) -> bytes: ...

    def open_read(self, key: str) -> BinaryIO: ...

    def head(self, key: str) -> ObjectInfo | None: ...

    def signed_download_url(self, key: str, ttl_seconds: int, file_name: str) -> str: ...

    def delete(self, keys: builtins.list[str]) -> None: ...

    def list(self, prefix: str) -> Iterator[ObjectInfo]: ...

    def pending_uploads(self, prefix: str) -> builtins.list[PendingUpload]: ...

    def abort_upload(self, key: str, upload_id: str) -> None: ...


class ReplicaStorage(ObjectStorage, Protocol):
    """The independent copy's bucket (another store, another account): an `ObjectStorage`
    whose objects can carry an S3 Object Lock (compliance mode, on a versioned bucket)."""

    object_lock: bool

    def upload_locked(
        self, key: str, stream: BinaryIO, content_type: str, retain_until: datetime | None
    ) -> None:
        """Stream to the object, locked until `retain_until` (None or no lock: unlocked)."""
        ...

    def extend_lock(self, key: str, retain_until: datetime) -> None:
        """Move the lock of the object's current version later (never earlier)."""
        ...

    def delete_versions(self, keys: builtins.list[str]) -> bool:
        """Delete every version of the objects; False (nothing more deleted) when a lock
        still holds one of them."""
        ...


class KeysRepository(Protocol):
    """The public keys a clinic registered for its backups."""

    def list(self, schema: str) -> builtins.list[EncryptionKey]: ...

    def add(self, schema: str, key: EncryptionKey) -> EncryptionKey:
        """KeyAlreadyRegistered when the public key is already there."""
        ...

    def remove(self, schema: str, key_id: uuid.UUID) -> EncryptionKey | None: ...


class JobDispatcher(Protocol):
    def enqueue(self, job: Job) -> None: ...


@dataclass(frozen=True)
class EnqueueFailure:
    """A job the queue did not take after every attempt; `code` is the queue's error code,
    never the message body."""

    job: Job
    code: str
    sender_fault: bool = False


class BatchDispatcher(JobDispatcher, Protocol):
    """A dispatcher that sends many jobs per call (SQS SendMessageBatch)."""

    def enqueue_batch(self, jobs: Sequence[Job]) -> builtins.list[EnqueueFailure]:
        """Every job that was not accepted, after retries; the others are queued."""
        ...


# --- restores and verifications -------------------------------------------------------------


class RestoresRepository(Protocol):
    """Restore and verification jobs (`backup_restores`) and what they write on backup
    records, in the clinic's own schema. See adapters/restores.py."""

    def create(self, schema: str, job: RestoreRecord, *, take_lock: bool) -> RestoreRecord:
        """Insert the job; with `take_lock`, take the clinic's operation lock in the same
        transaction, taking over an expired lease (OperationInProgress when held)."""
        ...

    def claim(
        self,
        schema: str,
        restore_id: uuid.UUID,
        step: str,
        at: datetime,
        lease: Lease | None = None,
    ) -> RestoreRecord | None:
        """Atomically pending → running, and with `lease` take it in the same transaction (a
        restore on the clinic's lock row, a verification on its own job row); None when it
        was not pending."""
        ...

    def renew_lease(self, schema: str, lease: Lease) -> bool | None:
        """Renew a verification's lease (its job row), as `RecordsRepository.renew_lease`."""
        ...

    def update(self, schema: str, restore_id: uuid.UUID, **fields: Any) -> None: ...

    def fail(
        self,
        schema: str,
        restore_id: uuid.UUID,
        error_code: str,
        error: str,
        at: datetime,
        details: dict[str, Any] | None = None,
    ) -> None:
        """pending/running → failed, releasing the clinic's lock if this job holds it."""
        ...

    def complete(
        self, schema: str, restore_id: uuid.UUID, at: datetime, details: dict[str, Any]
    ) -> None: ...

    def get(self, schema: str, restore_id: uuid.UUID) -> RestoreRecord | None: ...

    def list(
        self, schema: str, limit: int, cursor: tuple[datetime, uuid.UUID] | None, kind: str | None
    ) -> tuple[builtins.list[RestoreRecord], bool]: ...

    def undoable(self, schema: str, now: datetime) -> uuid.UUID | None:
        """The clinic's latest completed restore if its undo window is open, else None."""
        ...

    def request_undo(
        self, schema: str, restore_id: uuid.UUID, by: str, at: datetime
    ) -> RestoreRecord:
        """Take the clinic's lock for the undo and mark it pending, in one transaction;
        UndoNotAvailable unless it is the latest completed restore within its window."""
        ...

    def claim_undo(
        self, schema: str, restore_id: uuid.UUID, lease: Lease | None = None
    ) -> RestoreRecord | None: ...

    def fail_undo(
        self,
        schema: str,
        restore_id: uuid.UUID,
        error_code: str,
        error: str,
        lease: Lease | None = None,
    ) -> None:
        """The undo failed; with `lease`, only while the job still holds it (an undo of the
        same restore requested after a takeover is not touched)."""
        ...

    def completion_sql(
        self,
        schema: str,
        restore_id: uuid.UUID,
        entry: AuditEntry,
        *,
        undo: bool = False,
        lease: Lease | None = None,
    ) -> str:
        """SQL run inside the swap's own transaction, after the owned tables moved back: the
        job becomes completed (or undone), the lock is released, the audit entry written. It
        raises (rolling the swap back) when the job is no longer running or, with `lease`,
        no longer holds the clinic's lease (taken over): the swap holds the lock table then,
        so nothing can take the lease between that check and the COMMIT."""
        ...

    def fail_stale(self, schema: str, before: datetime, at: datetime) -> builtins.list[uuid.UUID]:
        """Jobs (and undos) whose lease expired or that no live lease covers, and pending
        ones created before `before`, fail as `stale`; a live job is never touched."""
        ...

    def droppable(self, schema: str, now: datetime) -> builtins.list[tuple[uuid.UUID, str]]:
        """(job id, kept schema name) whose undo window is over and that are not dropped."""
        ...

    def mark_dropped(self, schema: str, restore_id: uuid.UUID, at: datetime) -> None: ...

    def hints(
        self, schemas: builtins.list[str], stuck_before: datetime, now: datetime
    ) -> tuple[dict[str, tuple[bool, bool]], dict[str, str]]:
        """(has stale jobs, has droppable kept schemas) of many clinics, read in batches, and
        the clinics that could not be read (with the reason)."""
        ...

    def set_check(
        self,
        schema: str,
        backup_id: uuid.UUID,
        outcome: str,
        counts: dict[str, int] | None,
        error: str | None,
        at: datetime,
    ) -> BackupRecord | None: ...

    def set_verification(
        self, schema: str, backup_id: uuid.UUID, outcome: str, details: dict[str, Any], at: datetime
    ) -> BackupRecord | None: ...


@dataclass(frozen=True)
class LiveSchema:
    """What a restore reads of the live schema and its server before it starts."""

    server_version_num: int
    owner: str

    @property
    def server_major(self) -> int:
        return self.server_version_num // 10000


@dataclass(frozen=True)
class SwapPlan:
    """One atomic swap: the live schema becomes `old_schema`, the archive becomes the live
    schema, the owned tables move back, and `completion_sql` runs before the COMMIT."""

    schema: str
    old_schema: str
    owner: str
    server_major: int
    completion_sql: str


@dataclass(frozen=True)
class UndoPlan:
    """An undo: the live (restored) schema becomes `undo_schema`, `old_schema` is live again,
    the owned tables move back, `completion_sql` runs before the COMMIT."""

    schema: str
    old_schema: str
    undo_schema: str
    completion_sql: str


# The swap's callback once the clinic's tables are locked: given the exported snapshot, it
# makes the pre-restore backup and returns the archive to load and its `verified`.
Locked = Callable[[str], tuple[BinaryIO, Callable[[], bool]]]


@dataclass(frozen=True)
class SwapResult:
    seconds: float
    lock_seconds: float
    table_counts: dict[str, int] = field(default_factory=dict)
    archive_bytes: int = 0
    lock_tries: int = 0  # tries of the NOWAIT lock phase (1: every table free at once)
    views_recreated: int = 0  # views outside the clinic dropped and recreated by the swap


@dataclass(frozen=True)
class DrillResult:
    passed: bool
    details: dict[str, Any]


class Restorer(Protocol):
    """pg_restore and psql against the clinic database (the restore role): the dry run, the
    atomic swap, the undo, dropping kept schemas, and counting an archive's rows."""

    def inspect(self, schema: str) -> LiveSchema: ...

    def check(self, archive: BinaryIO, plan: SwapPlan) -> None:
        """The swap's schema-only dry run in a transaction that is rolled back: every object
        the archive needs in other schemas, and the role's rights, checked by PostgreSQL."""
        ...

    def swap(self, plan: SwapPlan, locked: Locked) -> SwapResult:
        """Lock the clinic's tables, call `locked(snapshot)` while holding them (the
        pre-restore backup at that snapshot; it returns the archive to load and its
        `verified`), load, and COMMIT. `verified()` is asked after the archive's last byte:
        the COMMIT happens only then."""
        ...

    def swap_back(self, plan: UndoPlan) -> SwapResult: ...

    def drop_schema(self, name: str) -> list[tuple[str, str]]:
        """Drop a kept schema unless objects outside it depend on it (RESTRICT semantics):
        those are returned and nothing is dropped."""
        ...

    def outside_dependents(self, schema: str) -> list[tuple[str, str]]:
        """Objects of other schemas that depend on `schema`'s and that a swap cannot carry
        over (views it recreates are not listed): (their schema, description)."""
        ...

    def schema_exists(self, name: str) -> bool: ...

    def count_rows(self, archive: BinaryIO) -> dict[str, int]:
        """Rows of each table's data in the archive (`pg_restore -f - --data-only`)."""
        ...

    def needed_extensions(self, archive: BinaryIO) -> builtins.list[tuple[str, str]]:
        """(extension, schema) of the clinic database's extensions that the archive's
        schema-only SQL refers to (the drill creates them first)."""
        ...

    def limited(self, seconds: float) -> Restorer:
        """The same restorer with its time limit cut to `seconds` (a job's shared deadline)."""
        ...


class Verifier(Protocol):
    """The full drill: restore into a scratch database on the verification server."""

    def drill(
        self,
        schema: str,
        archive: BinaryIO,
        verified: Callable[[], bool],
        extensions: builtins.list[tuple[str, str]],
    ) -> DrillResult: ...


class Dumper(Protocol):
    """Runs the dump pipeline for one schema into a stream consumer (the upload). With
    `encrypt_to` (age public keys) the stream the consumer reads is the encrypted archive.
    Once `stop` is set (a cancelled job) pg_dump is killed, whatever it is doing."""

    def run(
        self,
        schema: str,
        consume: Callable[[BinaryIO], None],
        encrypt_to: builtins.list[str] | None = None,
        stop: threading.Event | None = None,
    ) -> DumpResult: ...

    def limited(self, seconds: float) -> Dumper:
        """The same dumper with its time limit cut to `seconds` (a job's shared deadline)."""
        ...

    def at_snapshot(self, snapshot: str) -> Dumper:
        """The same dumper reading at an exported snapshot (`pg_dump --snapshot`)."""
        ...


class Metrics(Protocol):
    def add(self, name: str, value: float, unit: str) -> None: ...


class NullMetrics:
    def add(self, name: str, value: float, unit: str) -> None:
        return None


class Cipher(Protocol):
    """Public-key encryption of streams (age: `adapters.age.AgeCipher`). Each stage is a
    readable stream over `source`; a failure upstream surfaces from its `read`, and the
    cipher's own failures as `EncryptionFailed` / `ArchiveInvalid`, never with key material."""

    def encrypt(self, source: Any, recipients: builtins.list[str]) -> io.RawIOBase: ...

    def decrypt(self, source: Any, identities: builtins.list[str]) -> io.RawIOBase: ...

    def recipient_problem(self, public_key: str) -> str | None:
        """None when the cipher can encrypt to `public_key`; else why not (never the key)."""
        ...
