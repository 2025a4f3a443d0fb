"""The clinic's activity log: its audit entries, read by its administrators.

- `list_audit` — `GET /audit`: one page, newest first, keyset-paginated like `GET /backups`
  (the same cursor scheme, over (at, id)); filters `action` (or a family: `backup`) and the
  period `from` … `to`.
- `export_audit` — `POST /audit/export`: every matching entry as CSV (six years of entries
  do not fit a 6 MB Lambda answer), written under the clinic's prefix
  (`<clinic>/audit-exports/…csv.age`, age-encrypted to the clinic's registered keys, like
  every object the product stores) and offered as a short-lived signed URL — in the answer's
  body only, never in a log line.

The entries live in the clinic's own `backup_audit`, one of the service's tables that no dump
holds and every restore moves back (names.OWNED_TABLES): a restore never rolls them back, and
backup retention never touches them. Only administrators read them (staff: 403, audited).
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from clinic_backups.domain.errors import EncryptionKeyRequired, Forbidden
from clinic_backups.domain.models import (
    AuditExportRequest,
    AuditFilterFields,
    AuditPage,
    AuditRecord,
    ListAuditQuery,
    Role,
    TenantContext,
)
from clinic_backups.domain.names import audit_export_prefix, check_key_in_prefix, utc_stamp
from clinic_backups.domain.ports import AuditFilter
from clinic_backups.usecases.context import Services, audit, decode_cursor, encode_keyset

EXPORT_BATCH = 1000
CSV_COLUMNS = (
    "at",
    "action",
    "outcome",
    "actor_id",
    "actor_name",
    "actor_role",
    "backup_id",
    "request_id",
    "details",
)
# A cell a spreadsheet would run as a formula (OWASP "CSV injection") starts with one of these:
# such a value (an actor's name comes from the token) is written behind a quote mark.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _authorize_admin(svc: Services, ctx: TenantContext, action: str) -> None:
    svc.records.ensure_schema(ctx.schema)
    if ctx.role != Role.ADMIN:
        audit(svc, ctx, action, "denied")
        raise Forbidden("Only administrators can read the clinic's activity.")


def _filter(fields: AuditFilterFields, limit: int, cursor: str | None) -> AuditFilter:
    return AuditFilter(
        limit=limit,
        cursor=decode_cursor(cursor) if cursor else None,
        action=fields.action,
        since=fields.since,
        until=fields.until,
    )


def list_audit(svc: Services, ctx: TenantContext, query: ListAuditQuery) -> AuditPage:
    _authorize_admin(svc, ctx, "audit.list")
    items, more = svc.records.list_audit(ctx.schema, _filter(query, query.limit, query.cursor))
    return AuditPage(
        items=items,
        next_cursor=encode_keyset(items[-1].at, items[-1].id) if more and items else None,
    )


def _cell(value: Any) -> str:
    if value is None:
        text = ""
    elif isinstance(value, datetime):
        text = value.isoformat()
    else:
        text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def csv_row(entry: AuditRecord) -> list[str]:
    """The entry's CSV_COLUMNS as text: ISO 8601 times, canonical ids, details as JSON."""
    data = asdict(entry)
    data["details"] = json.dumps(entry.details, ensure_ascii=False, sort_keys=True)
    return [_cell(data[c]) for c in CSV_COLUMNS]


@dataclass(frozen=True)
class AuditExport:
    url: str
    expires_at: datetime
    file_name: str
    rows: int


def export_audit(svc: Services, ctx: TenantContext, request: AuditExportRequest) -> AuditExport:
    _authorize_admin(svc, ctx, "audit.export")
    # Like every object the product stores, the export is age-encrypted: to the clinic's
    # own registered keys (the auditor opens it with the clinic's key; never the platform's).
    recipients = [k.public_key for k in svc.keys.list(ctx.schema)] if svc.keys else []
    if not recipients:
        audit(svc, ctx, "audit.export", "rejected", reason="no_clinic_key")
        raise EncryptionKeyRequired(
            "The export is encrypted to your clinic's key: register your clinic's "
            "encryption key first."
        )
    now = svc.clock.now()
    file_name = f"{ctx.schema}-actividad-{utc_stamp(now)}-{uuid.uuid4().hex[:8]}.csv.age"
    key = check_key_in_prefix(audit_export_prefix(ctx.schema) + file_name, ctx.schema)
    storage = svc.scoped(ctx.schema)
    rows = 0
    # Spooled: a small log stays in memory, a long one goes to /tmp, never all in one answer.
    with tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024) as buffer:
        # The BOM: spreadsheets then read it as UTF-8 (accents in names).
        buffer.write(_csv_bytes([CSV_COLUMNS], bom=True))
        position: tuple[datetime, uuid.UUID] | None = None
        while True:
            query = replace(_filter(request, EXPORT_BATCH, None), cursor=position)
            items, more = svc.records.list_audit(ctx.schema, query)
            buffer.write(_csv_bytes([csv_row(item) for item in items]))
            rows += len(items)
            if not more or not items:
                break
            position = (items[-1].at, items[-1].id)
        buffer.seek(0)
        encrypted = svc.cipher.encrypt(buffer, recipients)
        try:
            storage.upload_stream(key, encrypted, "application/octet-stream")  # type: ignore[arg-type]
        finally:
            encrypted.close()
    url = storage.signed_download_url(key, svc.config.download_ttl, file_name)
    audit(svc, ctx, "audit.export", "signed", rows=rows, ttl_seconds=svc.config.download_ttl)
    return AuditExport(
        url=url,
        expires_at=now + timedelta(seconds=svc.config.download_ttl),
        file_name=file_name,
        rows=rows,
    )


def _csv_bytes(rows: Sequence[Sequence[str]], *, bom: bool = False) -> bytes:
    text = io.StringIO()
    if bom:
        text.write("\ufeff")
    csv.writer(text).writerows(rows)
    return text.getvalue().encode("utf-8")
