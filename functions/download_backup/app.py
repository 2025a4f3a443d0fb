"""download_backup: `GET /backups/{id}/download` → a short-lived signed URL, and
`POST /audit/export` → the clinic's activity log as CSV in storage, behind one.

These responses are the one place a signed URL ever appears; it is never logged.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from clinic_backups.domain.models import AuditExportRequest
from clinic_backups.edge.api import (
    create_app,
    current_tenant,
    json_response,
    parse_body,
    use_tenant_auth,
)
from clinic_backups.observability import instrument, logger
from clinic_backups.usecases import backups
from clinic_backups.usecases.context import Services
from clinic_backups.wiring.factory import build_services
from clinic_backups.wiring.settings import DownloadBackupSettings, get_settings


def settings() -> DownloadBackupSettings:
    return get_settings(DownloadBackupSettings)


@cache
def services() -> Services:
    return build_services(settings())


app = create_app()
use_tenant_auth(app, settings, services)


@app.get("/backups/<backup_id>/download")
def download_backup(backup_id: str) -> Any:
    logger.append_keys(backup_id=backup_id)
    signed = backups.request_download(services(), current_tenant(app), backup_id)
    return json_response(200, signed.to_api())


@app.post("/audit/export")
def export_audit() -> Any:
    # Only the activity routes need it (and the age encrypter): not a cold start's import.
    from clinic_backups.usecases import activity

    request = parse_body(app, AuditExportRequest)
    return json_response(
        200, activity.export_audit(services(), current_tenant(app), request).to_api()
    )


@instrument
def lambda_handler(event: dict[str, Any], context: Any) -> Any:
    return app.resolve(event, context)
