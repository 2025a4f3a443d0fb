"""The manifest stored beside every archive: enough to rebuild its record from storage alone
(`rebuild_records`), kept in step with the record as it changes."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from clinic_backups.domain.errors import StorageObjectMissing, StorageUnavailable
from clinic_backups.domain.models import BackupRecord, BackupStatus, DumpResult, Trigger
from clinic_backups.domain.names import check_key_in_prefix, manifest_key
from clinic_backups.observability import logger
from clinic_backups.usecases.context import Services

MANIFEST_VERSION = 1


def manifest_for(
    schema: str,
    record: BackupRecord,
    result: DumpResult,
    finished_at: datetime,
    recipients: list[dict[str, Any]] | None = None,
    parts: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The small JSON stored beside every archive: enough to rebuild the record. A split
    archive's `parts` list its objects in order (key, size_bytes, sha256 each); `sha256` and
    `size_bytes` stay those of the whole stream."""
    return {
        "manifest_version": MANIFEST_VERSION,
        "schema": schema,
        "id": str(record.id),
        "file_name": record.file_name,
        "storage_key": record.storage_key,
        "sha256": result.sha256,
        "plaintext_sha256": result.plaintext_sha256,
        "size_bytes": result.size_bytes,
        "encryption": record.encryption,
        "recipients": recipients or [],
        "parts": parts,
        "format": record.format,
        "compression": record.compression,
        "pg_dump_version": result.pg_dump_version,
        "server_version": result.server_version,
        "trigger": record.trigger.value,
        "created_by": record.created_by,
        "created_by_name": record.created_by_name,
        "note": record.note,
        "created_at": record.created_at.isoformat(),
        "started_at": record.started_at.isoformat() if record.started_at else None,
        "finished_at": finished_at.isoformat(),
        "deleted_at": None,
        "keep": record.keep,
        # The light check and the full drill write these later (and update the manifest).
        "table_counts": record.table_counts,
        "checked_at": record.checked_at.isoformat() if record.checked_at else None,
        "check_outcome": record.check_outcome,
        "check_error": record.check_error,
        "verified_at": record.verified_at.isoformat() if record.verified_at else None,
        "verify_outcome": record.verify_outcome,
        "verify_details": record.verify_details,
    }


def update_manifest(svc: Services, schema: str, record: BackupRecord, **changes: Any) -> None:
    """Keep a manifest in step with its record, so a rebuild from storage restores it."""
    if record.size_bytes is None or svc.storage is None:
        return
    storage = svc.scoped(schema)
    key = manifest_key(record.storage_key)
    try:
        manifest = json.loads(storage.get_bytes(key))
        manifest.update(changes)
        storage.put_bytes(key, json.dumps(manifest, indent=2).encode(), "application/json")
    except (StorageObjectMissing, StorageUnavailable, ValueError):
        logger.warning(
            "could not update the manifest", extra={"clinic": schema, "backup_id": str(record.id)}
        )


def record_from_manifest(schema: str, data: dict[str, Any]) -> BackupRecord:
    if data.get("schema") != schema:
        raise ValueError("manifest of another clinic")
    key = check_key_in_prefix(str(data["storage_key"]), schema)

    def when(name: str) -> datetime | None:
        value = data.get(name)
        return datetime.fromisoformat(value) if value else None

    deleted_at = when("deleted_at")
    created_at = when("created_at")
    assert created_at is not None
    return BackupRecord(
        id=uuid.UUID(data["id"]),
        status=BackupStatus.DELETED if deleted_at else BackupStatus.COMPLETED,
        trigger=Trigger(data["trigger"]),
        file_name=str(data["file_name"]),
        storage_key=key,
        created_by=str(data["created_by"]),
        created_by_name=data.get("created_by_name"),
        created_at=created_at,
        started_at=when("started_at"),
        finished_at=when("finished_at"),
        deleted_at=deleted_at,
        deleted_by="manifest" if deleted_at else None,
        compression=str(data["compression"]),
        encryption=str(data.get("encryption", "none")),
        format=str(data.get("format", "custom")),
        size_bytes=int(data["size_bytes"]),
        sha256=str(data["sha256"]),
        pg_dump_version=data.get("pg_dump_version"),
        server_version=data.get("server_version"),
        note=data.get("note"),
        keep=bool(data.get("keep", False)),
        table_counts=data.get("table_counts"),
        checked_at=when("checked_at"),
        check_outcome=data.get("check_outcome"),
        check_error=data.get("check_error"),
        verified_at=when("verified_at"),
        verify_outcome=data.get("verify_outcome"),
        verify_details=data.get("verify_details"),
        plaintext_sha256=data.get("plaintext_sha256"),
        recipients=list(data.get("recipients") or []),
        parts=parts_from_manifest(schema, data.get("parts")),
    )


def parts_from_manifest(schema: str, parts: Any) -> list[dict[str, Any]] | None:
    if not parts:
        return None
    return [
        {
            "key": check_key_in_prefix(str(part["key"]), schema),
            "size_bytes": int(part["size_bytes"]),
            "sha256": str(part["sha256"]),
        }
        for part in parts
    ]
