"""backup_settings: `GET /backup-settings` (whoever may list backups) and `PUT /backup-settings`
(admins by default): the clinic's schedule and retention."""

from __future__ import annotations

from typing import Any

from clinic_backups.domain.models import BackupSettingsUpdate
from clinic_backups.edge.api import json_response
from clinic_backups.edge.app import function_app
from clinic_backups.edge.responses import settings_to_api
from clinic_backups.usecases import backups
from clinic_backups.wiring.settings import BackupSettingsSettings

fn = function_app(BackupSettingsSettings)
lambda_handler = fn.lambda_handler


@fn.app.get("/backup-settings")
def get_backup_settings() -> Any:
    return json_response(
        200, settings_to_api(backups.get_backup_settings(fn.services(), fn.tenant()))
    )


@fn.app.put("/backup-settings")
def put_backup_settings() -> Any:
    request = fn.body(BackupSettingsUpdate)
    view = backups.update_backup_settings(fn.services(), fn.tenant(), request)
    return json_response(200, settings_to_api(view))
