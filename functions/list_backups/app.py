"""list_backups: `GET /backups`, `GET /backups/{id}`, `GET /me` and `GET /audit` (the
clinic's activity log, admins only)."""

from __future__ import annotations

from functools import cache
from typing import Any

from clinic_backups.domain.models import ListAuditQuery, ListBackupsQuery
from clinic_backups.edge.api import (
    create_app,
    current_tenant,
    json_response,
    parse_query,
    use_tenant_auth,
)
from clinic_backups.observability import instrument
from clinic_backups.usecases import backups
from clinic_backups.usecases.context import Services
from clinic_backups.wiring.factory import build_services
from clinic_backups.wiring.settings import ListBackupsSettings, get_settings


def settings() -> ListBackupsSettings:
    return get_settings(ListBackupsSettings)


@cache
def services() -> Services:
    return build_services(settings())


app = create_app()
use_tenant_auth(app, settings, services)


@app.get("/backups")
def list_backups() -> Any:
    page = backups.list_backups(services(), current_tenant(app), parse_query(app, ListBackupsQuery))
    return json_response(
        200, {"items": [r.to_api() for r in page.items], "next_cursor": page.next_cursor}
    )


@app.get("/backups/<backup_id>")
def get_backup(backup_id: str) -> Any:
    return json_response(
        200, backups.get_backup(services(), current_tenant(app), backup_id).to_api()
    )


@app.get("/me")
def me() -> Any:
    # The locale and time zone are the clinic's (its backup settings), else the defaults.
    return json_response(200, backups.describe_me(services(), current_tenant(app)))


@app.get("/audit")
def list_audit() -> Any:
    # Only the activity routes need it (and the age encrypter): not a cold start's import.
    from clinic_backups.usecases import activity

    page = activity.list_audit(services(), current_tenant(app), parse_query(app, ListAuditQuery))
    return json_response(
        200, {"items": [e.to_api() for e in page.items], "next_cursor": page.next_cursor}
    )


@instrument
def lambda_handler(event: dict[str, Any], context: Any) -> Any:
    return app.resolve(event, context)
