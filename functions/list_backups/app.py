"""list_backups: `GET /backups`, `GET /backups/{id}`, `GET /me` and `GET /audit` (the
clinic's activity log, admins only)."""

from __future__ import annotations

from typing import Any

from clinic_backups.domain.models import ListAuditQuery, ListBackupsQuery
from clinic_backups.edge.api import json_response
from clinic_backups.edge.app import function_app
from clinic_backups.edge.responses import (
    audit_entry_to_api,
    backup_to_api,
    me_to_api,
    page_to_api,
)
from clinic_backups.usecases import backups
from clinic_backups.wiring.settings import ListBackupsSettings

fn = function_app(ListBackupsSettings)
lambda_handler = fn.lambda_handler


@fn.app.get("/backups")
def list_backups() -> Any:
    page = backups.list_backups(fn.services(), fn.tenant(), fn.query(ListBackupsQuery))
    return json_response(200, page_to_api(page, backup_to_api))


@fn.app.get("/backups/<backup_id>")
def get_backup(backup_id: str) -> Any:
    return json_response(
        200, backup_to_api(backups.get_backup(fn.services(), fn.tenant(), backup_id))
    )


@fn.app.get("/me")
def me() -> Any:
    # The locale and time zone are the clinic's (its backup settings), else the defaults.
    return json_response(200, me_to_api(backups.describe_me(fn.services(), fn.tenant())))


@fn.app.get("/audit")
def list_audit() -> Any:
    # Only the activity routes need it (and the age encrypter): not a cold start's import.
    from clinic_backups.usecases import activity

    page = activity.list_audit(fn.services(), fn.tenant(), fn.query(ListAuditQuery))
    return json_response(200, page_to_api(page, audit_entry_to_api))
