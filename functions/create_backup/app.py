"""create_backup: `POST /backups` (202 + a queued job), `POST /backups/{id}/cancel` (200 for a
pending backup, cancelled at once; 202 for a running one, which its worker stops) and the
worker that runs queued jobs.

HTTP events go to the routes; SQS batches and direct invocations (EventBridge, `sam local
invoke`) are internal job messages and never reach a route.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from clinic_backups.domain.models import BackupJob, BackupStatus, CreateBackupRequest, Job
from clinic_backups.edge.api import (
    create_app,
    current_tenant,
    is_http_event,
    json_response,
    parse_body,
    use_tenant_auth,
)
from clinic_backups.edge.jobs import InvalidJob, handle_job_event
from clinic_backups.observability import instrument, logger
from clinic_backups.usecases import backups
from clinic_backups.usecases.context import Services
from clinic_backups.wiring.factory import build_services
from clinic_backups.wiring.settings import CreateBackupSettings, get_settings


def settings() -> CreateBackupSettings:
    return get_settings(CreateBackupSettings)


@cache
def services() -> Services:
    return build_services(settings())


app = create_app()
use_tenant_auth(app, settings, services)


@app.post("/backups")
def create_backup() -> Any:
    request = parse_body(app, CreateBackupRequest)
    record = backups.create_backup(services(), current_tenant(app), request)
    logger.append_keys(backup_id=str(record.id))
    return json_response(202, record.to_api())


@app.post("/backups/<backup_id>/cancel")
def cancel_backup(backup_id: str) -> Any:
    logger.append_keys(backup_id=backup_id)
    record = backups.cancel_backup(services(), current_tenant(app), backup_id)
    return json_response(202 if record.status == BackupStatus.RUNNING else 200, record.to_api())


def run_job(job: Job) -> Any:
    if not isinstance(job, BackupJob):
        # Restore-queue kinds never belong here: refused, so the message ends in the DLQ.
        raise InvalidJob("not a backup job")
    logger.append_keys(clinic=job.schema_name, backup_id=str(job.backup_id))
    return backups.run_backup_job(services(), job)


@instrument
def lambda_handler(event: dict[str, Any], context: Any) -> Any:
    if is_http_event(event):
        return app.resolve(event, context)
    return handle_job_event(event, context, run_job)
