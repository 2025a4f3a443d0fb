"""download_backup: `GET /backups/{id}/download` → a short-lived signed URL, and
`POST /audit/export` → the clinic's activity log as CSV in storage, behind one.

These responses are the one place a signed URL ever appears; it is never logged.
"""

from __future__ import annotations

from typing import Any

from clinic_backups.domain.models import AuditExportRequest
from clinic_backups.edge.api import json_response
from clinic_backups.edge.app import function_app
from clinic_backups.edge.responses import audit_export_to_api, download_to_api
from clinic_backups.observability import logger
from clinic_backups.usecases import backups
from clinic_backups.wiring.settings import DownloadBackupSettings

fn = function_app(DownloadBackupSettings)
lambda_handler = fn.lambda_handler


@fn.app.get("/backups/<backup_id>/download")
def download_backup(backup_id: str) -> Any:
    logger.append_keys(backup_id=backup_id)
    signed = backups.request_download(fn.services(), fn.tenant(), backup_id)
    return json_response(200, download_to_api(signed))


@fn.app.post("/audit/export")
def export_audit() -> Any:
    # Only the activity routes need it (and the age encrypter): not a cold start's import.
    from clinic_backups.usecases import activity

    export = activity.export_audit(fn.services(), fn.tenant(), fn.body(AuditExportRequest))
    return json_response(200, audit_export_to_api(export))
