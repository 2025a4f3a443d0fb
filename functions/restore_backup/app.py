"""restore_backup: restores, undos and verification drills, and their worker.

`POST /backups/{id}/restore` (202), `POST /backups/{id}/verify` (202), `GET /restores`,
`GET /restores/{id}`, `POST /restores/{id}/undo` (202). HTTP events go to the routes; SQS
batches of the restore queue and direct invocations are internal job messages (restore,
verify, verify_light, undo) and never reach a route. It carries the PgDumpLayer (the
pre-restore backup, pg_restore and psql).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from clinic_backups.domain.models import BackupJob, Job, ListRestoresQuery, RestoreRequest
from clinic_backups.edge.api import (
    create_app,
    current_tenant,
    is_http_event,
    json_response,
    parse_body,
    parse_query,
    use_tenant_auth,
)
from clinic_backups.edge.jobs import InvalidJob, handle_job_event
from clinic_backups.observability import instrument, logger
from clinic_backups.usecases import restore
from clinic_backups.usecases.context import Services
from clinic_backups.wiring.factory import build_services
from clinic_backups.wiring.settings import RestoreSettings, get_settings


def settings() -> RestoreSettings:
    return get_settings(RestoreSettings)


@cache
def services() -> Services:
    return build_services(settings())


app = create_app()
use_tenant_auth(app, settings, services)


@app.post("/backups/<backup_id>/restore")
def restore_backup(backup_id: str) -> Any:
    logger.append_keys(backup_id=backup_id)
    request = parse_body(app, RestoreRequest)
    job = restore.request_restore(services(), current_tenant(app), backup_id, request)
    logger.append_keys(restore_id=str(job.id))
    return json_response(202, job.to_api())


@app.post("/backups/<backup_id>/verify")
def verify_backup(backup_id: str) -> Any:
    logger.append_keys(backup_id=backup_id)
    job = restore.request_verify(services(), current_tenant(app), backup_id)
    return json_response(202, job.to_api())


@app.get("/restores")
def list_restores() -> Any:
    page = restore.list_restores(
        services(), current_tenant(app), parse_query(app, ListRestoresQuery)
    )
    return json_response(
        200,
        {
            "items": [j.to_api(j.id == page.undoable) for j in page.items],
            "next_cursor": page.next_cursor,
        },
    )


@app.get("/restores/<restore_id>")
def get_restore(restore_id: str) -> Any:
    logger.append_keys(restore_id=restore_id)
    job, undoable = restore.get_restore(services(), current_tenant(app), restore_id)
    return json_response(200, job.to_api(undoable))


@app.post("/restores/<restore_id>/undo")
def undo_restore(restore_id: str) -> Any:
    logger.append_keys(restore_id=restore_id)
    job = restore.request_undo(services(), current_tenant(app), restore_id)
    return json_response(202, job.to_api())


def run_job(job: Job) -> Any:
    if isinstance(job, BackupJob):
        raise InvalidJob("a backup job reached the restore queue")
    logger.append_keys(clinic=job.schema_name, job_kind=job.kind)
    return restore.run_job(services(), job)


@instrument
def lambda_handler(event: dict[str, Any], context: Any) -> Any:
    if is_http_event(event):
        return app.resolve(event, context)
    return handle_job_event(event, context, run_job)
