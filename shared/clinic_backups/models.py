"""What the domain talks about: the tenant context, backup records, jobs and requests."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .names import is_valid_schema_name


class Role(StrEnum):
    ADMIN = "admin"
    STAFF = "staff"


class Permission(StrEnum):
    LIST = "list_backups"
    CREATE = "create_backup"
    DOWNLOAD = "download_backup"
    DELETE = "delete_backup"


class BackupStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    DELETED = "deleted"


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

    def to_api(self) -> dict[str, Any]:
        """The public shape (openapi.yaml `Backup`): no storage key, ISO timestamps."""
        data = asdict(self)
        data.pop("storage_key")
        data.pop("purged_at")
        data["id"] = str(self.id)
        for name, value in data.items():
            if isinstance(value, datetime):
                data[name] = value.isoformat()
            elif isinstance(value, StrEnum):
                data[name] = value.value
        return data


@dataclass(frozen=True)
class BackupPage:
    items: list[BackupRecord]
    next_cursor: str | None


@dataclass(frozen=True)
class DumpResult:
    size_bytes: int
    sha256: str
    pg_dump_version: str
    server_version: str
    seconds: float
    planner_setting: str = "unknown"
    toc_entries: int = 0


@dataclass(frozen=True)
class SignedDownload:
    url: str
    expires_at: datetime
    file_name: str
    size_bytes: int
    sha256: str

    def to_api(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "expires_at": self.expires_at.isoformat(),
            "file_name": self.file_name,
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
        }


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


# --- request and message shapes -------------------------------------------------------------


class CreateBackupRequest(BaseModel):
    """Body of `POST /backups`. Unknown fields are refused, so a job message sent over HTTP
    (`{"kind", "schema", ...}`) is a 422 and never reaches the queue."""

    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(default=None, max_length=200)

    @field_validator("note")
    @classmethod
    def _strip(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        return value or None


class ListBackupsQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    limit: int = Field(default=20, ge=1, le=100)
    cursor: str | None = None
    status: BackupStatus | None = None
    include_deleted: bool = False


class BackupJob(BaseModel):
    """An internal job message (SQS, direct invoke). Never carries a token; the schema is
    re-checked against the tenants table before anything runs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["backup"]
    schema_name: str = Field(alias="schema")
    backup_id: uuid.UUID
    trigger: Trigger

    @field_validator("schema_name")
    @classmethod
    def _schema(cls, value: str) -> str:
        if not is_valid_schema_name(value):
            raise ValueError("not a valid clinic schema name")
        return value

    def to_message(self) -> dict[str, str]:
        return {
            "kind": self.kind,
            "schema": self.schema_name,
            "backup_id": str(self.backup_id),
            "trigger": self.trigger.value,
        }
