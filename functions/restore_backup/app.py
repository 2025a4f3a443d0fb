"""restore_backup: restores, undos and verification drills, and their worker.

`POST /backups/{id}/restore` (202), `POST /backups/{id}/verify` (202), `GET /restores`,
`GET /restores/{id}`, `POST /restores/{id}/undo` (202). HTTP events go to the routes; SQS
batches of the restore queue and direct invocations are internal job messages (restore,
verify, verify_light, undo) and never reach a route. It carries the PgDumpLayer (the
pre-restore backup, pg_restore and psql).
"""

from __future__ import annotations

from typing import Any

from clinic_backups.domain.models import BackupJob, Job, ListRestoresQuery, RestoreRequest
from clinic_backups.edge.api import json_response
from clinic_backups.edge.app import function_app
from clinic_backups.edge.jobs import InvalidJob
from clinic_backups.edge.responses import restore_page_to_api, restore_to_api
from clinic_backups.observability import logger
from clinic_backups.usecases import restore
from clinic_backups.wiring.settings import RestoreSettings

fn = function_app(RestoreSettings)
lambda_handler = fn.lambda_handler


@fn.app.post("/backups/<backup_id>/restore")
def restore_backup(backup_id: str) -> Any:
    logger.append_keys(backup_id=backup_id)
    request = fn.body(RestoreRequest)
    job = restore.request_restore(fn.services(), fn.tenant(), backup_id, request)
    logger.append_keys(restore_id=str(job.id))
    return json_response(202, restore_to_api(job))


@fn.app.post("/backups/<backup_id>/verify")
def verify_backup(backup_id: str) -> Any:
    logger.append_keys(backup_id=backup_id)
    return json_response(
        202, restore_to_api(restore.request_verify(fn.services(), fn.tenant(), backup_id))
    )


@fn.app.get("/restores")
def list_restores() -> Any:
    page = restore.list_restores(fn.services(), fn.tenant(), fn.query(ListRestoresQuery))
    return json_response(200, restore_page_to_api(page))


@fn.app.get("/restores/<restore_id>")
def get_restore(restore_id: str) -> Any:
    logger.append_keys(restore_id=restore_id)
    job, undoable = restore.get_restore(fn.services(), fn.tenant(), restore_id)
    return json_response(200, restore_to_api(job, undoable))


@fn.app.post("/restores/<restore_id>/undo")
def undo_restore(restore_id: str) -> Any:
    logger.append_keys(restore_id=restore_id)
    return json_response(
        202, restore_to_api(restore.request_undo(fn.services(), fn.tenant(), restore_id))
    )


@fn.worker
def run_job(job: Job) -> Any:
    if isinstance(job, BackupJob):
        raise InvalidJob("a backup job reached the restore queue")
    logger.append_keys(clinic=job.schema_name, job_kind=job.kind)
    return restore.run_job(fn.services(), job)
