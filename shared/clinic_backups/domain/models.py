"""What the domain talks about: the tenant context, backup records, jobs and requests."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from functools import cache
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    field_validator,
    model_validator,
)

from clinic_backups.domain.names import is_valid_schema_name


class Role(StrEnum):
    ADMIN = "admin"
    STAFF = "staff"


class Permission(StrEnum):
    LIST = "list_backups"
    CREATE = "create_backup"
    DOWNLOAD = "download_backup"
    DELETE = "delete_backup"
    MANAGE_SETTINGS = "manage_backup_settings"
    # Restore a backup over the live clinic, undo it, and run a full verification drill.
    RESTORE = "restore_backup"
    MANAGE_KEYS = "manage_encryption_keys"


class BackupStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    DELETED = "deleted"
    # Stopped on request (POST /backups/{id}/cancel): nothing stored, the lock freed.
    CANCELLED = "cancelled"


class Trigger(StrEnum):
    MANUAL = "manual"
    SCHEDULED = "scheduled"
    PRE_RESTORE = "pre_restore"


@dataclass(frozen=True)
class TenantContext:
    """The verified caller. Built only from a verified token (or a re-checked job)."""

    schema: str
    clinic_name: str
    user_id: str
    user_name: str | None
    role: Role
    permissions: frozenset[Permission]
    request_id: str | None = None

    def can(self, permission: Permission) -> bool:
        return permission in self.permissions


@dataclass(frozen=True)
class Clinic:
    schema: str
    name: str
    active: bool


@dataclass
class BackupRecord:
    id: uuid.UUID
    status: BackupStatus
    trigger: Trigger
    file_name: str
    storage_key: str
    created_by: str
    created_at: datetime
    compression: str
    encryption: str = "none"
    format: str = "custom"
    created_by_name: str | None = None
    size_bytes: int | None = None
    sha256: str | None = None
    pg_dump_version: str | None = None
    server_version: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    deleted_at: datetime | None = None
    deleted_by: str | None = None
    purged_at: datetime | None = None
    error: str | None = None
    error_code: str | None = None
    note: str | None = None
    # Admin-marked: retention never deletes it (PATCH /backups/{id}).
    keep: bool = False
    # The light check after the backup (no database): rows per table in the archive.
    table_counts: dict[str, int] | None = None
    checked_at: datetime | None = None
    check_outcome: str | None = None  # passed | failed
    check_error: str | None = None
    # The full drill (restored into the verification database, counts compared).
    verified_at: datetime | None = None
    verify_outcome: str | None = None  # passed | failed
    verify_details: dict[str, Any] | None = None
    # age encryption: sha256 above is of the stored (encrypted) bytes, what a download
    # delivers; this one is of the archive inside, what restore and verify check.
    plaintext_sha256: str | None = None
    # Who can open it: [{"kind": "platform"|"clinic", "fingerprint", "label"}], never keys.
    recipients: list[dict[str, Any]] = field(default_factory=list)
    reencrypting: bool = False
    # POST /backups/{id}/cancel of a running backup: its worker stops at its next heartbeat.
    cancel_requested_at: datetime | None = None
    # Not stored: when a deleted backup's file will be purged (deleted_at + the grace
    # period), filled in by the service for the API (`with_purge_after`).
    purge_after: datetime | None = None
    # When a read found the file gone from storage (410 backup_file_missing); None = not seen.
    file_missing_at: datetime | None = None
    # A backup above the store's object size limit: its numbered objects in order,
    # [{"key", "size_bytes", "sha256"}] (`parts`); None: one object under `storage_key`.
    parts: list[dict[str, Any]] | None = None
    # The replica store's copy (REPLICA_BUCKET): when it was copied and read back with the
    # right sha256, and the Object Lock retain-until it carries (the UI's «Copia
    # independiente: guardada el … · protegida hasta …»).
    replicated_at: datetime | None = None
    replica_retain_until: datetime | None = None
    # A read found the primary's object not matching its sha256 (reads use the replica).
    primary_damaged_at: datetime | None = None


@dataclass(frozen=True)
class BackupPage:
    items: list[BackupRecord]
    next_cursor: str | None


@dataclass(frozen=True)
class EncryptionKey:
    """A public key a clinic registered: its backups are also encrypted to it."""

    id: uuid.UUID
    label: str
    public_key: str
    fingerprint: str
    created_by: str
    created_at: datetime
    created_by_name: str | None = None
    # Why age cannot encrypt to it, when it cannot (found when listed; never stored).
    problem: str | None = None


@dataclass(frozen=True)
class DumpResult:
    size_bytes: int
    sha256: str
    pg_dump_version: str
    server_version: str
    seconds: float
    planner_setting: str = "unknown"
    toc_entries: int = 0
    # Set when the archive was encrypted: the sha256 of the archive inside.
    plaintext_sha256: str | None = None


@dataclass(frozen=True)
class SignedPart:
    """One numbered object of a split backup (openapi.yaml `DownloadPart`)."""

    url: str
    name: str
    size_bytes: int
    sha256: str


@dataclass(frozen=True)
class SignedDownload:
    url: str
    expires_at: datetime
    file_name: str
    size_bytes: int
    sha256: str
    encryption: str = "none"
    # Who can open the file: the clinic's keys it was encrypted to (labels and fingerprints).
    recipients: list[dict[str, Any]] = field(default_factory=list)
    # A split backup: one signed URL per part, in order (empty: `url` is the whole file).
    parts: list[SignedPart] = field(default_factory=list)


@dataclass(frozen=True)
class AuditEntry:
    action: str
    outcome: str
    actor_id: str | None
    actor_name: str | None = None
    actor_role: str | None = None
    request_id: str | None = None
    backup_id: uuid.UUID | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def by(
        cls,
        ctx: TenantContext,
        action: str,
        outcome: str,
        backup_id: uuid.UUID | None = None,
        **details: Any,
    ) -> AuditEntry:
        """An entry for what the signed-in user `ctx` did."""
        return cls(
            action=action,
            outcome=outcome,
            actor_id=ctx.user_id,
            actor_name=ctx.user_name,
            actor_role=ctx.role.value,
            request_id=ctx.request_id,
            backup_id=backup_id,
            details=details,
        )


@dataclass(frozen=True)
class SupersededCopy:
    """Replica copies no record points at any more (a re-encryption's previous generation):
    deleted from the replica once their lock (`retain_until`; None: no lock) has passed."""

    id: uuid.UUID
    backup_id: uuid.UUID
    keys: list[str]
    retain_until: datetime | None
    superseded_at: datetime


@dataclass(frozen=True)
class AuditRecord:
    """An audit entry as stored (`GET /audit`): what was done, by whom, when."""

    id: uuid.UUID
    at: datetime
    action: str
    outcome: str
    actor_id: str | None
    actor_name: str | None
    actor_role: str | None
    request_id: str | None
    backup_id: uuid.UUID | None
    details: dict[str, Any]


@dataclass(frozen=True)
class AuditPage:
    items: list[AuditRecord]
    next_cursor: str | None


# An action (`backup.download`) or a family of them (`backup`): lower-case words and dots.
AUDIT_ACTION_PATTERN = r"^[a-z_]{1,40}(\.[a-z_]{1,40})?$"


class AuditFilterFields(BaseModel):
    """The filters of `GET /audit` and of `POST /audit/export`: an action (or its family,
    `backup` = every `backup.*`), and a period `from` (included) … `to` (excluded), both
    ISO 8601 with a time zone."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    action: str | None = Field(default=None, pattern=AUDIT_ACTION_PATTERN)
    since: AwareDatetime | None = Field(default=None, alias="from")
    until: AwareDatetime | None = Field(default=None, alias="to")

    @field_validator("since", "until", mode="after")
    @classmethod
    def _in_utc(cls, value: datetime | None) -> datetime | None:
        # Any offset ISO 8601 allows (-17:50) is a valid instant, but PostgreSQL refuses an
        # offset past ±15:59: the instant goes to the database in UTC.
        if value is None:
            return None
        try:
            return value.astimezone(UTC)
        except OverflowError:
            raise ValueError("the date is out of range") from None

    @model_validator(mode="after")
    def _ordered(self) -> AuditFilterFields:
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValueError("'from' must be before 'to'")
        return self


class ListAuditQuery(AuditFilterFields):
    model_config = ConfigDict(extra="ignore", defer_build=True)

    limit: int = Field(default=50, ge=1, le=100)
    cursor: str | None = None


class AuditExportRequest(AuditFilterFields):
    """Body of `POST /audit/export` (unknown fields refused)."""


# --- request and message shapes -------------------------------------------------------------


class RegisterKeyRequest(BaseModel):
    """Body of `POST /encryption-keys`: an age public key and a label for it."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    # Stripped before the length checks: a label of spaces is empty, a 422 (not a row the
    # table's CHECK refuses).
    label: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=80)]
    public_key: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)
    ]


class CreateBackupRequest(BaseModel):
    """Body of `POST /backups`. Unknown fields are refused, so a job message sent over HTTP
    (`{"kind", "schema", ...}`) is a 422 and never reaches the queue."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    note: str | None = Field(default=None, max_length=200)

    @field_validator("note")
    @classmethod
    def _strip(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        return value or None


class ListBackupsQuery(BaseModel):
    model_config = ConfigDict(extra="ignore", defer_build=True)

    limit: int = Field(default=20, ge=1, le=100)
    cursor: str | None = None
    status: BackupStatus | None = None
    include_deleted: bool = False


class _ClinicJob(BaseModel):
    """An internal job message (SQS, direct invoke) for one clinic. Never carries a token;
    the schema is re-checked against the tenants table before anything runs."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    kind: str
    schema_name: str = Field(alias="schema")

    @field_validator("schema_name")
    @classmethod
    def _schema(cls, value: str) -> str:
        if not is_valid_schema_name(value):
            raise ValueError("not a valid clinic schema name")
        return value

    def to_message(self) -> dict[str, str]:
        """`kind`, `schema`, then the job's own fields, each as a string."""
        own = {
            name: str(getattr(self, name))
            for name in type(self).model_fields
            if name not in ("kind", "schema_name")
        }
        return {"kind": self.kind, "schema": self.schema_name, **own}


class BackupJob(_ClinicJob):
    kind: Literal["backup"]
    backup_id: uuid.UUID
    trigger: Trigger


class RestoreJob(_ClinicJob):
    """A restore, a full verification or an undo (`backup_restores` row `restore_id`). The
    same internal message shape as a backup job; it goes on the restore queue."""

    kind: Literal["restore", "verify", "undo"]
    restore_id: uuid.UUID


class LightVerifyJob(_ClinicJob):
    """The light check queued after every completed backup: stream the object, check its
    sha256, count each table's rows in the archive (no database)."""

    kind: Literal["verify_light"]
    backup_id: uuid.UUID


class ReencryptJob(_ClinicJob):
    """Re-encrypt a completed backup for the clinic's current keys (the restore worker: it
    holds the platform's identities)."""

    kind: Literal["reencrypt"]
    backup_id: uuid.UUID


class ReplicateJob(_ClinicJob):
    """Copy a completed backup's objects to the replica store (the restore queue, after every
    completed backup and re-encryption)."""

    kind: Literal["replicate"]
    backup_id: uuid.UUID


# Every internal job message, told apart by `kind`: "backup" goes on the backup queue, the
# others on the restore queue (the same format, dispatcher and worker plumbing).
Job = Annotated[
    BackupJob | RestoreJob | LightVerifyJob | ReencryptJob | ReplicateJob,
    Field(discriminator="kind"),
]


class RestoreKind(StrEnum):
    RESTORE = "restore"
    VERIFY = "verify"


class RestoreStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    UNDONE = "undone"


@dataclass
class RestoreRecord:
    """A row of `backup_restores`: one restore (or full verification) of one backup."""

    id: uuid.UUID
    kind: RestoreKind
    status: RestoreStatus
    backup_id: uuid.UUID
    requested_by: str
    created_at: datetime
    requested_by_name: str | None = None
    request_id: str | None = None
    step: str | None = None
    pre_restore_backup_id: uuid.UUID | None = None
    old_schema: str | None = None
    undo_schema: str | None = None
    undo_until: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    lock_seconds: float | None = None
    error_code: str | None = None
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    undo_status: str | None = None
    undo_requested_by: str | None = None
    undo_requested_at: datetime | None = None
    undone_at: datetime | None = None
    undo_error_code: str | None = None
    undo_error: str | None = None
    dropped_at: datetime | None = None


@dataclass(frozen=True)
class RestorePage:
    items: list[RestoreRecord]
    next_cursor: str | None
    undoable: uuid.UUID | None = None  # the one restore of the page that may be undone now


class RestoreRequest(BaseModel):
    """Body of `POST /backups/{id}/restore`: the clinic's schema name typed exactly."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    confirm: str = Field(max_length=63)


class ListRestoresQuery(BaseModel):
    model_config = ConfigDict(extra="ignore", defer_build=True)

    limit: int = Field(default=20, ge=1, le=100)
    cursor: str | None = None
    kind: RestoreKind | None = None


# --- clinic backup settings and schedule slots ----------------------------------------------

WEEKDAYS = (1, 2, 3, 4, 5, 6, 7)  # ISO 8601: 1 = Monday … 7 = Sunday
LOCALE_RE = re.compile(r"^[a-z]{2,3}(-[A-Z]{2})?$")


@cache
def _time_zone_names() -> frozenset[str]:
    import zoneinfo

    return frozenset(zoneinfo.available_timezones())


def is_valid_time_zone(name: object) -> bool:
    """An IANA zone name the zoneinfo database knows ("Europe/Madrid"), never a path."""
    return isinstance(name, str) and name in _time_zone_names()


@dataclass(frozen=True)
class ClinicSettings:
    """A clinic's schedule and retention (its `backup_settings` row), or the platform's
    defaults when the clinic never saved any (`updated_at` is then None)."""

    enabled: bool
    hour: int
    weekdays: tuple[int, ...]
    time_zone: str
    locale: str
    keep_daily: int
    keep_weekly: int
    keep_monthly: int
    updated_by: str | None = None
    updated_at: datetime | None = None

    @property
    def is_default(self) -> bool:
        return self.updated_at is None


# What a clinic's admin edits (the rest of a `ClinicSettings` says who saved it, and when).
EDITABLE_SETTINGS = (
    "enabled",
    "hour",
    "weekdays",
    "time_zone",
    "locale",
    "keep_daily",
    "keep_weekly",
    "keep_monthly",
)


class SlotStatus(StrEnum):
    DUE = "due"  # claimed by a scheduler run that is enqueueing it right now
    ENQUEUED = "enqueued"
    SKIPPED_BUSY = "skipped_busy"  # another operation held the clinic; retried in the window
    MISSED = "missed"  # the catch-up window passed without a backup


@dataclass(frozen=True)
class SlotRecord:
    """A row of `backup_slots`: what the scheduler decided for one (local date, hour)."""

    local_date: date
    local_hour: int
    scheduled_at: datetime
    status: SlotStatus
    backup_id: uuid.UUID | None
    decided_at: datetime
    attempts: int


class BackupSettingsUpdate(BaseModel):
    """Body of `PUT /backup-settings` (the whole settings; `locale` may be left out). The
    platform floor (`MIN_RETENTION_DAYS` for `keep_daily`) is checked by the service, which
    knows the setting."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    enabled: StrictBool
    hour: StrictInt = Field(ge=0, le=23)
    weekdays: list[StrictInt] = Field(min_length=1, max_length=7)
    time_zone: str = Field(max_length=64)
    locale: str | None = Field(default=None, max_length=10)
    keep_daily: StrictInt = Field(ge=1, le=366)
    keep_weekly: StrictInt = Field(ge=0, le=260)
    keep_monthly: StrictInt = Field(ge=0, le=120)

    @field_validator("weekdays")
    @classmethod
    def _weekdays(cls, value: list[int]) -> list[int]:
        if any(day not in WEEKDAYS for day in value):
            raise ValueError("weekdays are ISO numbers from 1 (Monday) to 7 (Sunday)")
        if len(set(value)) != len(value):
            raise ValueError("a weekday appears more than once")
        return sorted(value)

    @field_validator("time_zone")
    @classmethod
    def _time_zone(cls, value: str) -> str:
        if not is_valid_time_zone(value):
            raise ValueError("not an IANA time zone name (for example Europe/Madrid)")
        return value

    @field_validator("locale")
    @classmethod
    def _locale(cls, value: str | None) -> str | None:
        if value is not None and not LOCALE_RE.fullmatch(value):
            raise ValueError("not a locale such as es-ES or en")
        return value


class KeepRequest(BaseModel):
    """Body of `PATCH /backups/{id}`."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    keep: StrictBool


DEFAULT_SCHEDULE_HOUR = 3


@dataclass(frozen=True)
class PlatformPolicy:
    """The platform's side of schedules and retention, from the settings (PolicySettings).

    `defaults` is what a clinic without a `backup_settings` row gets (enabled, every day at
    03:00 in DEFAULT_TIME_ZONE). `min_retention_days` is the floor: retention never deletes a
    scheduled backup younger than that, and `keep_daily` counts as at least that much.
    """

    defaults: ClinicSettings = field(
        default_factory=lambda: ClinicSettings(
            enabled=True,
            hour=DEFAULT_SCHEDULE_HOUR,
            weekdays=WEEKDAYS,
            time_zone="Europe/Madrid",
            locale="es-ES",
            keep_daily=7,
            keep_weekly=4,
            keep_monthly=6,
        )
    )
    min_retention_days: int = 7
    restore_undo_days: int = 3
    catch_up: timedelta = timedelta(hours=6)
    # A pending record (its job not started: no lease yet) older than this can no longer
    # start: the queue dropped its message (worker timeout + margin).
    stuck_after: timedelta = timedelta(seconds=900 + 45 * 60)
    # A running job renews its clinic's lease; LOCK_LEASE_SECONDS after the last renewal (the
    # database's clock) the job is dead and anyone may take the clinic over.
    lock_lease_seconds: int = 120


@dataclass(frozen=True)
class Lease:
    """A running job's hold on its clinic's operation lock (a verification, which takes no
    lock, holds one on its own job row): `id` is this run's token, renewed by the job's
    heartbeat and checked by every write that ends the job; it expires `seconds` after its
    last renewal, by the database's clock."""

    id: uuid.UUID
    seconds: int

    @classmethod
    def new(cls, seconds: int) -> Lease:
        return cls(uuid.uuid4(), seconds)
