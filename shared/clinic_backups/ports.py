"""Ports: the small interfaces the domain logic depends on. Adapters implement them."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import BinaryIO, Protocol

from .models import (
    AuditEntry,
    BackupJob,
    BackupRecord,
    BackupStatus,
    Clinic,
    DumpResult,
)


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class TenantDirectory(Protocol):
    """The platform's public tenants table (read-only)."""

    def get(self, schema: str) -> Clinic | None: ...

    def active_clinics(self) -> list[Clinic]: ...


@dataclass(frozen=True)
class ListFilter:
    limit: int
    cursor: tuple[datetime, uuid.UUID] | None = None
    status: BackupStatus | None = None
    include_deleted: bool = False


class RecordsRepository(Protocol):
    """Backup records, audit and the per-clinic operation lock, in the clinic's own schema."""

    def ensure_schema(self, schema: str) -> None: ...

    def create_pending(self, schema: str, record: BackupRecord) -> BackupRecord:
        """Insert a pending record and take the clinic's operation lock in one transaction;
        OperationInProgress when the lock is held."""
        ...

    def claim(self, schema: str, backup_id: uuid.UUID, at: datetime) -> BackupRecord | None:
        """Atomically move pending → running; None when it was not pending."""
        ...

    def complete(self, schema: str, backup_id: uuid.UUID, result: DumpResult, at: datetime) -> BackupRecord: ...

    def fail(self, schema: str, backup_id: uuid.UUID, error_code: str, error: str, at: datetime) -> None: ...

    def get(self, schema: str, backup_id: uuid.UUID) -> BackupRecord | None: ...

    def list(self, schema: str, query: ListFilter) -> tuple[list[BackupRecord], bool]:
        """One page, newest first, and whether more follow."""
        ...

    def soft_delete(self, schema: str, backup_id: uuid.UUID, by: str, at: datetime) -> BackupRecord | None:
        """Completed/failed → deleted; returns the updated record, or None if it was already
        deleted. OperationInProgress when the backup is still pending or running."""
        ...

    def purgeable(self, schema: str, deleted_before: datetime) -> list[BackupRecord]: ...

    def mark_purged(self, schema: str, backup_id: uuid.UUID, at: datetime) -> None: ...

    def insert_from_manifest(self, schema: str, record: BackupRecord) -> bool: ...

    def count_since(self, schema: str, trigger: str, since: datetime) -> int: ...

    def audit(self, schema: str, entry: AuditEntry) -> None: ...


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

    def get_bytes(self, key: str) -> bytes: ...

    def open_read(self, key: str) -> BinaryIO: ...

    def head(self, key: str) -> ObjectInfo | None: ...

    def signed_download_url(self, key: str, ttl_seconds: int, file_name: str) -> str: ...

    def delete(self, keys: list[str]) -> None: ...

    def list(self, prefix: str) -> Iterator[ObjectInfo]: ...

    def pending_uploads(self, prefix: str) -> list[PendingUpload]: ...

    def abort_upload(self, key: str, upload_id: str) -> None: ...


class JobDispatcher(Protocol):
    def enqueue(self, job: BackupJob) -> None: ...


class Dumper(Protocol):
    """Runs the dump pipeline for one schema into a stream consumer (the upload)."""

    def run(self, schema: str, consume: Callable[[BinaryIO], None]) -> DumpResult: ...


class Metrics(Protocol):
    def add(self, name: str, value: float, unit: str) -> None: ...


class NullMetrics:
    def add(self, name: str, value: float, unit: str) -> None:
        return None
