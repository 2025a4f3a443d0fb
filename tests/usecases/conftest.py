"""The use-case tier: every use case against the in-memory fakes (tests/fakes), no services."""

from __future__ import annotations

import pytest
from clinic_backups.domain.models import BackupJob, BackupRecord, CreateBackupRequest, Role
from clinic_backups.usecases import backups

from tests.fakes import CLINIC, Fakes, caller, fake_services


@pytest.fixture
def fakes() -> Fakes:
    return fake_services()


def completed_backup(fakes: Fakes, schema: str = CLINIC, **run: object) -> BackupRecord:
    """A backup made the way the product makes one: requested, then its job run."""
    fakes.records.ensure_schema(schema)
    record = backups.create_backup(
        fakes.svc, caller(Role.ADMIN, schema=schema), CreateBackupRequest(note=None)
    )
    done = backups.run_backup_job(fakes.svc, last_backup_job(fakes))
    assert done is not None and done.status.value == "completed", done
    fakes.clock.advance(minutes=5)
    assert record.id == done.id
    return done


def last_backup_job(fakes: Fakes) -> BackupJob:
    jobs = [job for job in fakes.dispatcher.jobs if isinstance(job, BackupJob)]
    assert jobs, "no backup job was queued"
    return jobs[-1]


def actions(fakes: Fakes, schema: str = CLINIC) -> list[tuple[str, str]]:
    """The clinic's audit trail, oldest first, as (action, outcome)."""
    return [(a.action, a.outcome) for a in fakes.records.tables(schema).audit]
