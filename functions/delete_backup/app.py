"""delete_backup: `DELETE /backups/{id}` → 204, a soft delete; `POST /backups/{id}/undelete`
→ 200, the deleted backup back within its grace period; and `PATCH /backups/{id}`
`{"keep": true|false}` → 200, protecting a backup from retention (admins by default)."""

from __future__ import annotations

from functools import cache
from typing import Any

from clinic_backups.domain.models import KeepRequest
from clinic_backups.edge.api import (
    create_app,
    current_tenant,
    json_response,
    no_content,
    parse_body,
    use_tenant_auth,
)
from clinic_backups.observability import instrument, logger
from clinic_backups.usecases import backups
from clinic_backups.usecases.context import Services
from clinic_backups.wiring.factory import build_services
from clinic_backups.wiring.settings import DeleteBackupSettings, get_settings


def settings() -> DeleteBackupSettings:
    return get_settings(DeleteBackupSettings)


@cache
def services() -> Services:
    return build_services(settings())


app = create_app()
use_tenant_auth(app, settings, services)


@app.delete("/backups/<backup_id>")
def delete_backup(backup_id: str) -> Any:
    logger.append_keys(backup_id=backup_id)
    backups.delete_backup(services(), current_tenant(app), backup_id)
    return no_content()


@app.post("/backups/<backup_id>/undelete")
def undelete_backup(backup_id: str) -> Any:
    logger.append_keys(backup_id=backup_id)
    record = backups.undelete_backup(services(), current_tenant(app), backup_id)
    return json_response(200, record.to_api())


@app.patch("/backups/<backup_id>")
def patch_backup(backup_id: str) -> Any:
    logger.append_keys(backup_id=backup_id)
    request = parse_body(app, KeepRequest)
    record = backups.set_backup_keep(services(), current_tenant(app), backup_id, request)
    return json_response(200, record.to_api())


@instrument
def lambda_handler(event: dict[str, Any], context: Any) -> Any:
    return app.resolve(event, context)
