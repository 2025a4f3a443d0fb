"""backup_settings: `GET /backup-settings` (whoever may list backups) and `PUT /backup-settings`
(admins by default): the clinic's schedule and retention."""

from __future__ import annotations

from functools import cache
from typing import Any

from clinic_backups.domain.models import BackupSettingsUpdate
from clinic_backups.edge.api import (
    create_app,
    current_tenant,
    json_response,
    parse_body,
    use_tenant_auth,
)
from clinic_backups.observability import instrument
from clinic_backups.usecases import backups
from clinic_backups.usecases.context import Services
from clinic_backups.wiring.factory import build_services
from clinic_backups.wiring.settings import BackupSettingsSettings, get_settings


def settings() -> BackupSettingsSettings:
    return get_settings(BackupSettingsSettings)


@cache
def services() -> Services:
    return build_services(settings())


app = create_app()
use_tenant_auth(app, settings, services)


@app.get("/backup-settings")
def get_backup_settings() -> Any:
    return json_response(200, backups.get_backup_settings(services(), current_tenant(app)))


@app.put("/backup-settings")
def put_backup_settings() -> Any:
    request = parse_body(app, BackupSettingsUpdate)
    return json_response(
        200, backups.update_backup_settings(services(), current_tenant(app), request)
    )


@instrument
def lambda_handler(event: dict[str, Any], context: Any) -> Any:
    return app.resolve(event, context)
