"""create_backup: `POST /backups` (202 + a queued job), `POST /backups/{id}/cancel` (200 for a
pending backup, cancelled at once; 202 for a running one, which its worker stops) and the
worker that runs queued jobs.

HTTP events go to the routes; SQS batches and direct invocations (EventBridge, `sam local
invoke`) are internal job messages and never reach a route.
"""

from __future__ import annotations

from typing import Any

from clinic_backups.domain.models import BackupJob, BackupStatus, CreateBackupRequest, Job
from clinic_backups.edge.api import json_response
from clinic_backups.edge.app import function_app
from clinic_backups.edge.jobs import InvalidJob
from clinic_backups.edge.responses import backup_to_api
from clinic_backups.observability import logger
from clinic_backups.usecases import backups
from clinic_backups.wiring.settings import CreateBackupSettings

fn = function_app(CreateBackupSettings)
lambda_handler = fn.lambda_handler


@fn.app.post("/backups")
def create_backup() -> Any:
    record = backups.create_backup(fn.services(), fn.tenant(), fn.body(CreateBackupRequest))
    logger.append_keys(backup_id=str(record.id))
    return json_response(202, backup_to_api(record))


@fn.app.post("/backups/<backup_id>/cancel")
def cancel_backup(backup_id: str) -> Any:
    logger.append_keys(backup_id=backup_id)
    record = backups.cancel_backup(fn.services(), fn.tenant(), backup_id)
    return json_response(
        202 if record.status == BackupStatus.RUNNING else 200, backup_to_api(record)
    )


@fn.worker
def run_job(job: Job) -> Any:
    if not isinstance(job, BackupJob):
        # Restore-queue kinds never belong here: refused, so the message ends in the DLQ.
        raise InvalidJob("not a backup job")
    logger.append_keys(clinic=job.schema_name, backup_id=str(job.backup_id))
    return backups.run_backup_job(fn.services(), job)
