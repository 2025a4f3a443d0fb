"""delete_backup: `DELETE /backups/{id}` → 204, a soft delete; `POST /backups/{id}/undelete`
→ 200, the deleted backup back within its grace period; and `PATCH /backups/{id}`
`{"keep": true|false}` → 200, protecting a backup from retention (admins by default)."""

from __future__ import annotations

from typing import Any

from clinic_backups.domain.models import KeepRequest
from clinic_backups.edge.api import json_response, no_content
from clinic_backups.edge.app import function_app
from clinic_backups.edge.responses import backup_to_api
from clinic_backups.observability import logger
from clinic_backups.usecases import backups
from clinic_backups.wiring.settings import DeleteBackupSettings

fn = function_app(DeleteBackupSettings)
lambda_handler = fn.lambda_handler


@fn.app.delete("/backups/<backup_id>")
def delete_backup(backup_id: str) -> Any:
    logger.append_keys(backup_id=backup_id)
    backups.delete_backup(fn.services(), fn.tenant(), backup_id)
    return no_content()


@fn.app.post("/backups/<backup_id>/undelete")
def undelete_backup(backup_id: str) -> Any:
    logger.append_keys(backup_id=backup_id)
    return json_response(
        200, backup_to_api(backups.undelete_backup(fn.services(), fn.tenant(), backup_id))
    )


@fn.app.patch("/backups/<backup_id>")
def patch_backup(backup_id: str) -> Any:
    logger.append_keys(backup_id=backup_id)
    request = fn.body(KeepRequest)
    record = backups.set_backup_keep(fn.services(), fn.tenant(), backup_id, request)
    return json_response(200, backup_to_api(record))
