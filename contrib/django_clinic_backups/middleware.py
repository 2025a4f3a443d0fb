"""503 for a tenant while a restore (or its undo) holds the clinic's operation lock.

From the moment a restore is requested until its swap commits, a write to the clinic would go
into the schema the restore sets aside: accepted, then gone from the live clinic. So every
request of that tenant is answered 503 (Retry-After) with a Spanish maintenance page, or JSON
(`{"error": {"code", "message"}}`) for API paths. The lock table is read with a short
`lock_timeout`: the swap locks it for a moment, and a request that cannot read it in time is
in that moment (503 too). A lock whose lease has expired (a dead worker) does not count.
Install after django-tenants' TenantMainMiddleware (it sets `request.tenant`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from psycopg2 import errors as pg_errors
from psycopg2 import sql

logger = logging.getLogger(__name__)
RETRY_AFTER_SECONDS = 30
MESSAGE = (
    "La clínica se está restaurando desde una copia de seguridad. "
    "Vuelva a intentarlo en unos minutos."
)
PAGE = f"""<!doctype html>
<html lang="es"><head><meta charset="utf-8"><title>Clínica en mantenimiento</title></head>
<body><main><h1>Clínica en mantenimiento</h1><p>{MESSAGE}</p>
<p>No se ha guardado ningún cambio de esta petición.</p></main></body></html>
"""

# Restores and undos: a backup or a re-encryption does not stop the clinic.
_LOCKED = sql.SQL(
    "SELECT 1 FROM {} l WHERE l.kind IN ('restore', 'undo') AND (l.lease_id IS NULL OR "
    "l.renewed_at + l.lease_seconds * interval '1 second' >= now()) LIMIT 1"
)


def restoring(schema: str) -> bool:
    """Whether a restore holds the clinic's lock (or the swap holds the lock table now)."""
    timeout = int(getattr(settings, "CLINIC_BACKUPS_LOCK_TIMEOUT_MS", 200))
    try:
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute("SELECT set_config('lock_timeout', %s, true)", [f"{timeout}ms"])
            cur.execute(
                "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relname = 'backup_operation_lock'",
                [schema],
            )
            if cur.fetchone() is None:
                return False  # never backed up: nothing to restore
            cur.execute(
                _LOCKED.format(sql.Identifier(schema, "backup_operation_lock")).as_string(
                    cur.cursor
                )
            )
            return cur.fetchone() is not None
    except DatabaseError as error:
        if isinstance(error.__cause__, pg_errors.LockNotAvailable):
            return True
        if isinstance(error.__cause__, pg_errors.InsufficientPrivilege):
            # An installation gap, not a restore: the clinic stays open (a permanent 503 would
            # be worse) and the log says how to close the gap.
            logger.error(
                "cannot read the clinic's backup lock; run `clinic-backups grant`",
                extra={"clinic": schema},
            )
            return False
        raise


def _wants_json(request: HttpRequest) -> bool:
    prefixes = getattr(settings, "CLINIC_BACKUPS_API_PREFIXES", ["/api/"])
    accept = request.headers.get("Accept", "")
    return any(request.path.startswith(p) for p in prefixes) or (
        "application/json" in accept and "text/html" not in accept
    )


class RestoreMaintenanceMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> Any:
        tenant = getattr(request, "tenant", None)
        schema = getattr(tenant, "schema_name", None)
        if schema and schema != "public" and restoring(schema):
            headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
            if _wants_json(request):
                return JsonResponse(
                    {"error": {"code": "clinic_restoring", "message": MESSAGE}},
                    status=503,
                    headers=headers,
                )
            return HttpResponse(
                PAGE, status=503, content_type="text/html; charset=utf-8", headers=headers
            )
        return self.get_response(request)
