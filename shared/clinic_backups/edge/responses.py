"""Every API shape in one place: the records, pages and views the use cases return, as the
JSON bodies openapi.yaml describes (`Backup`, `Restore`, `EncryptionKey`, `Download`,
`AuditEntry`, `AuditExport`, `BackupSettings`, `Me`, and the `{"items", "next_cursor"}` page).

Timestamps are ISO 8601, ids strings; storage keys, kept schema names and other internals
never appear. A signed URL appears only in the download and audit export shapes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from clinic_backups.domain.models import (
    AuditRecord,
    BackupRecord,
    EncryptionKey,
    RestorePage,
    RestoreRecord,
    SignedDownload,
)

if TYPE_CHECKING:
    # Types only: the activity use cases are imported lazily by their routes (cold start).
    from clinic_backups.usecases.activity import AuditExport
    from clinic_backups.usecases.backups import Me, SettingsView

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class Page(Protocol[T_co]):
    """A page of a list: `BackupPage`, `AuditPage`, `RestorePage`."""

    @property
    def items(self) -> Sequence[T_co]: ...

    @property
    def next_cursor(self) -> str | None: ...


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def backup_to_api(record: BackupRecord) -> dict[str, Any]:
    """openapi.yaml `Backup`: no storage key, ISO timestamps."""
    data = asdict(record)
    data.pop("storage_key")
    data.pop("parts")
    data.pop("purged_at")
    data.pop("primary_damaged_at")
    data["id"] = str(record.id)
    for name, value in data.items():
        if isinstance(value, datetime):
            data[name] = value.isoformat()
        elif isinstance(value, StrEnum):
            data[name] = value.value
    return data


def key_to_api(key: EncryptionKey) -> dict[str, Any]:
    """openapi.yaml `EncryptionKey`."""
    return {
        "id": str(key.id),
        "label": key.label,
        "public_key": key.public_key,
        "fingerprint": key.fingerprint,
        "created_by": key.created_by,
        "created_by_name": key.created_by_name,
        "created_at": key.created_at.isoformat(),
        "usable": key.problem is None,
        "problem": key.problem,
    }


def keys_to_api(keys: Sequence[EncryptionKey]) -> dict[str, Any]:
    """`GET /encryption-keys`: every key at once (a clinic has a handful), no cursor."""
    return {"items": [key_to_api(k) for k in keys]}


def download_to_api(signed: SignedDownload) -> dict[str, Any]:
    """openapi.yaml `Download`: the one answer (with the audit export's) holding a signed URL."""
    answer: dict[str, Any] = {
        "url": signed.url,
        "expires_at": signed.expires_at.isoformat(),
        "file_name": signed.file_name,
        "size_bytes": signed.size_bytes,
        "sha256": signed.sha256,
        "encryption": signed.encryption,
        "recipients": signed.recipients,
    }
    if signed.parts:
        answer["parts"] = [
            {"url": p.url, "name": p.name, "size_bytes": p.size_bytes, "sha256": p.sha256}
            for p in signed.parts
        ]
    return answer


def audit_entry_to_api(entry: AuditRecord) -> dict[str, Any]:
    """openapi.yaml `AuditEntry`."""
    return {
        "id": str(entry.id),
        "at": entry.at.isoformat(),
        "action": entry.action,
        "outcome": entry.outcome,
        "actor_id": entry.actor_id,
        "actor_name": entry.actor_name,
        "actor_role": entry.actor_role,
        "request_id": entry.request_id,
        "backup_id": str(entry.backup_id) if entry.backup_id else None,
        "details": entry.details,
    }


def audit_export_to_api(export: AuditExport) -> dict[str, Any]:
    """openapi.yaml `AuditExport`."""
    return {
        "url": export.url,
        "expires_at": export.expires_at.isoformat(),
        "file_name": export.file_name,
        "rows": export.rows,
    }


def restore_to_api(job: RestoreRecord, undo_available: bool = False) -> dict[str, Any]:
    """openapi.yaml `Restore`. The kept schemas' names are internal: they appear in no
    answer."""
    timings = job.details.get("timings") or {}
    return {
        "id": str(job.id),
        "kind": job.kind.value,
        "status": job.status.value,
        "step": job.step,
        "backup_id": str(job.backup_id),
        "pre_restore_backup_id": (
            str(job.pre_restore_backup_id) if job.pre_restore_backup_id else None
        ),
        "requested_by": job.requested_by,
        "requested_by_name": job.requested_by_name,
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
        "lock_seconds": job.lock_seconds,
        "timings": {k: v for k, v in timings.items() if isinstance(v, int | float)},
        "error_code": job.error_code,
        "error": job.error,
        "undo_until": _iso(job.undo_until),
        "undo_available": undo_available,
        "undo_status": job.undo_status,
        "undone_at": _iso(job.undone_at),
        "undo_error_code": job.undo_error_code,
        "undo_error": job.undo_error,
        "table_counts": job.details.get("table_counts"),
        "outcome": job.details.get("outcome"),
    }


def page_to_api(page: Page[T], shape: Callable[[T], dict[str, Any]]) -> dict[str, Any]:
    """The one list envelope: `{"items": [...], "next_cursor": str | null}`."""
    return {"items": [shape(item) for item in page.items], "next_cursor": page.next_cursor}


def restore_page_to_api(page: RestorePage) -> dict[str, Any]:
    """`GET /restores`: the page's one undoable restore (if any) says so."""
    return page_to_api(page, lambda job: restore_to_api(job, job.id == page.undoable))


def settings_to_api(view: SettingsView) -> dict[str, Any]:
    """openapi.yaml `BackupSettings`."""
    settings = view.settings
    return {
        "enabled": settings.enabled,
        "hour": settings.hour,
        "weekdays": list(settings.weekdays),
        "time_zone": settings.time_zone,
        "locale": settings.locale,
        "keep_daily": settings.keep_daily,
        "keep_weekly": settings.keep_weekly,
        "keep_monthly": settings.keep_monthly,
        "min_retention_days": view.min_retention_days,
        "is_default": settings.is_default,
        "next_run_at": _iso(view.next_run_at),
        "updated_by": settings.updated_by,
        "updated_at": _iso(settings.updated_at),
    }


def me_to_api(me: Me) -> dict[str, Any]:
    """`GET /me` (openapi.yaml `Me`): the caller, the clinic's locale and time zone, and
    what the operator switched on."""
    ctx = me.caller
    return {
        "clinic": {"schema": ctx.schema, "name": ctx.clinic_name},
        "user": {"id": ctx.user_id, "name": ctx.user_name},
        "role": ctx.role.value,
        "permissions": sorted(p.value for p in ctx.permissions),
        "locale": me.locale,
        "time_zone": me.time_zone,
        "host_maintenance_mode": me.host_maintenance_mode,
        "replica_configured": me.replica_configured,
    }
