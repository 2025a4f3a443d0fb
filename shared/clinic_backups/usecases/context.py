"""What every use case shares, in public: the ports and configuration they run with
(`Services`), the caller's authorisation (audited when refused), the activity log, ids from
the outside and the keyset cursors of every paged list."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from clinic_backups.domain.errors import BackupNotFound, Forbidden, InvalidCursor
from clinic_backups.domain.models import (
    AuditEntry,
    BackupRecord,
    Permission,
    PlatformPolicy,
    RestoreRecord,
    TenantContext,
)
from clinic_backups.domain.ports import (
    Cipher,
    Clock,
    Dumper,
    JobDispatcher,
    KeysRepository,
    Metrics,
    NullMetrics,
    ObjectStorage,
    RecordsRepository,
    ReplicaStorage,
    Restorer,
    RestoresRepository,
    SchedulesRepository,
    SystemClock,
    TenantDirectory,
    Verifier,
)
from clinic_backups.domain.storage import ScopedReplica, ScopedStorage
from clinic_backups.observability import logger


@dataclass(frozen=True)
class Config:
    """The values the use cases read, fixed when the function starts (`wiring.factory` builds
    them from the function's settings model; the defaults are the settings' defaults)."""

    compression: str = "zstd:3"
    download_ttl: int = 300
    delete_grace_days: int = 7
    manual_backups_per_day: int = 10
    policy: PlatformPolicy = field(default_factory=PlatformPolicy)
    # Why full verification cannot run here (None: it can, when `verifier` is set).
    verify_refused: str | None = None
    # The scheduler's weekly full drill of each clinic's newest completed backup.
    verify_weekly: bool = False
    host_maintenance_mode: bool = False
    # age: backups are encrypted to the first recipient (the platform's current restore key);
    # the identities (newest and rotated-out ones) decrypt, where a function needs to.
    platform_recipients: list[str] = field(default_factory=list)
    platform_identities: list[str] = field(default_factory=list)
    # A restore job's one deadline (RESTORE_TIMEOUT_SECONDS, below the function's timeout):
    # its phases share it. None: each phase has only its own limit (the operator CLI).
    restore_deadline_seconds: float | None = None
    # The project's upload limit (STORAGE_MAX_OBJECT_MB; the store's API does not tell it)
    # and whether an archive above the store's limits is split into parts (`parts`).
    max_object_bytes: int | None = None
    split_archives: bool = True
    replica_keep_lock_days: int = 2190
    replica_lag_minutes: int = 120
    # REPLICA_BUCKET is set (also where `replica` is not built: GET /me tells the UI).
    replica_configured: bool = False
    # The sweeper removes the activity log's CSV exports older than this (AUDIT_EXPORT_TTL_HOURS).
    audit_export_ttl: timedelta = timedelta(hours=24)


@dataclass
class Services:
    """The ports one function needs (unused ones stay None) and its `Config`. Built once by
    `wiring.factory` (the CLI derives variants with `dataclasses.replace`); tests may swap a
    port (a fixed clock) on their own instance."""

    records: RecordsRepository
    tenants: TenantDirectory
    cipher: Cipher
    # Every function reads the clinic's settings and keys (the factory always builds both).
    schedules: SchedulesRepository
    keys: KeysRepository
    config: Config = field(default_factory=Config)
    storage: ObjectStorage | None = None
    dispatcher: JobDispatcher | None = None
    dumper: Dumper | None = None
    clock: Clock = field(default_factory=SystemClock)
    metrics: Metrics = field(default_factory=NullMetrics)
    # Restores and verifications (restore_backup, the scheduler's sweep, the CLI).
    restores: RestoresRepository | None = None
    restorer: Restorer | None = None
    verifier: Verifier | None = None
    # The independent replica (REPLICA_BUCKET; None: not configured).
    replica: ReplicaStorage | None = None

    def scoped(self, schema: str) -> ScopedStorage:
        assert self.storage is not None, "this function has no storage configured"
        return ScopedStorage(self.storage, schema)

    def replica_scoped(self, schema: str) -> ScopedReplica:
        assert self.replica is not None, "no replica store is configured"
        return ScopedReplica(self.replica, schema)


def audit(
    svc: Services,
    ctx: TenantContext,
    action: str,
    outcome: str,
    backup_id: uuid.UUID | None = None,
    **details: Any,
) -> None:
    svc.records.audit(ctx.schema, AuditEntry.by(ctx, action, outcome, backup_id, **details))


def audit_by(
    svc: Services,
    schema: str,
    actor_id: str,
    action: str,
    outcome: str,
    backup_id: uuid.UUID | None = None,
    **details: Any,
) -> None:
    """An activity-log entry for what the platform itself did (`system`, `sweeper`,
    `scheduler`…): no user, no request."""
    svc.records.audit(
        schema,
        AuditEntry(
            action=action, outcome=outcome, actor_id=actor_id, backup_id=backup_id, details=details
        ),
    )


def job_clinic(svc: Services, schema: str, job: str, log: dict[str, Any]) -> bool:
    """A queued job's clinic, re-checked against the tenants table: False (logged, nothing
    runs) when it is not, or no longer, an active clinic; else its tables exist after this."""
    clinic = svc.tenants.get(schema)
    if clinic is None or not clinic.active:
        logger.warning(f"{job} for a clinic that is not active; refused", extra=log)
        return False
    svc.records.ensure_schema(schema)
    return True


def authorize(
    svc: Services,
    ctx: TenantContext,
    permission: Permission,
    action: str,
    backup_id: uuid.UUID | None = None,
) -> None:
    """Make sure the clinic's tables exist, then check the caller's role (a refusal is
    audited)."""
    svc.records.ensure_schema(ctx.schema)
    if not ctx.can(permission):
        audit(svc, ctx, action, "denied", backup_id)
        raise Forbidden()


def parse_id(raw: str, not_found: type[Exception] = BackupNotFound) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except (ValueError, TypeError, AttributeError):
        # Not an id we could ever have issued: the same answer as someone else's id.
        raise not_found() from None


def visible(svc: Services, ctx: TenantContext, backup_id: uuid.UUID) -> BackupRecord:
    record = svc.records.get(ctx.schema, backup_id)
    if record is None:
        raise BackupNotFound()
    return record


def encode_cursor(record: BackupRecord | RestoreRecord) -> str:
    """The keyset cursor of a page that ends with `record` (backups and restores alike)."""
    return encode_keyset(record.created_at, record.id)


def encode_keyset(at: datetime, row_id: uuid.UUID) -> str:
    """The keyset cursor of a page whose last row is (`at`, `row_id`) (audit entries too)."""
    raw = json.dumps([at.isoformat(), str(row_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# A cursor this API issues is ~90 characters; anything much longer was never one of ours.
MAX_CURSOR_CHARS = 256


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    if len(cursor) > MAX_CURSOR_CHARS:
        raise InvalidCursor()
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created_at, backup_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        moment = datetime.fromisoformat(created_at)
        if moment.tzinfo is None:
            raise ValueError("naive time")
        return moment, uuid.UUID(backup_id)
    except (ValueError, TypeError, binascii.Error, RecursionError, UnicodeError):
        # JSONDecodeError is a ValueError (so is a 5,000-digit integer); RecursionError: a
        # cursor of nested brackets; UnicodeError: text that base64 or UTF-8 cannot carry.
        raise InvalidCursor() from None
