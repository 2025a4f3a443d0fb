"""Retention on the real database: a simulated year of daily scheduled backups with manual,
pre-restore and keep-flagged ones mixed in, and the hook after a scheduled backup's run."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from clinic_backups.domain.models import BackupRecord, BackupStatus, Trigger
from clinic_backups.domain.names import backup_file_name, backup_storage_key
from clinic_backups.usecases import backups as service
from clinic_backups.wiring.factory import build_services
from clinic_backups.wiring.settings import OperatorSettings, get_settings
from psycopg2 import sql

from tests.helpers import FixedClock, function_module

pytestmark = pytest.mark.usefixtures("app_env")

MADRID = ZoneInfo("Europe/Madrid")


def add_backup(
    svc,
    schema: str,
    created_at: datetime,
    trigger: Trigger = Trigger.SCHEDULED,
    *,
    keep: bool = False,
    status: BackupStatus = BackupStatus.COMPLETED,
) -> BackupRecord:
    """A finished backup's record, as the worker would have left it (no object behind it)."""
    svc.records.ensure_schema(schema)
    backup_id = uuid.uuid4()
    record = BackupRecord(
        id=backup_id,
        status=status,
        trigger=trigger,
        file_name=backup_file_name(schema, backup_id, created_at),
        storage_key=backup_storage_key(schema, backup_id, created_at),
        created_by="scheduler" if trigger == Trigger.SCHEDULED else "u-admin",
        created_at=created_at,
        started_at=created_at,
        finished_at=created_at + timedelta(minutes=1),
        compression="zstd:3",
        size_bytes=1000,
        sha256="0" * 64,
        keep=keep,
    )
    assert svc.records.insert_from_manifest(schema, record)
    return record


def at_madrid(day: date, hour: int = 3, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=MADRID).astimezone(UTC)


def alive(db, schema: str) -> dict[str, list[date]]:
    with db.cursor() as cur:
        cur.execute(
            sql.SQL(
                "SELECT trigger, created_at FROM {} WHERE status = 'completed' ORDER BY created_at"
            ).format(sql.Identifier(schema, "backup_records"))
        )
        out: dict[str, list[date]] = {}
        for trigger, created_at in cur.fetchall():
            out.setdefault(trigger, []).append(created_at.astimezone(MADRID).date())
        return out


def test_a_year_of_daily_scheduled_backups_keeps_exactly_each_tier(clinic_factory, db):
    # Given a clinic keeping 7 daily, 4 weekly and 6 monthly (the defaults), and backups mixed
    # in: a manual one, two pre_restore (one inside the 3-day undo window at the end), one an
    # admin marked keep
    schema = clinic_factory()
    svc = build_services(get_settings(OperatorSettings))
    svc.clock = FixedClock(None)
    extras = {
        date(2026, 3, 15): (Trigger.MANUAL, False),
        date(2026, 6, 1): (Trigger.PRE_RESTORE, False),
        date(2026, 12, 30): (Trigger.PRE_RESTORE, False),
        date(2026, 2, 14): (Trigger.SCHEDULED, True),
    }

    # When a scheduled backup lands every day of 2026 at 03:00 and retention runs after each
    day = date(2026, 1, 1)
    while day.year == 2026:
        if day in extras:
            trigger, keep = extras[day]
            add_backup(svc, schema, at_madrid(day, 12), trigger, keep=keep)
        add_backup(svc, schema, at_madrid(day))
        svc.clock.at = at_madrid(day, 3, 30)
        service.apply_retention(svc, schema)
        day += timedelta(days=1)

    # Then exactly these survive
    survivors = alive(db, schema)
    assert survivors["scheduled"] == sorted(
        [date(2026, 2, 14)]  # marked keep (at 12:00, beside that day's 03:00 which went)
        + [
            date(2026, 7, 31),
            date(2026, 8, 31),
            date(2026, 9, 30),
            date(2026, 10, 31),
            date(2026, 11, 30),
        ]  # monthly: the newest of Jul-Nov (Dec's is Dec 31)
        + [date(2026, 12, 13), date(2026, 12, 20)]  # weekly: ISO weeks 50 and 51
        + [date(2026, 12, d) for d in range(25, 32)]  # daily: the last 7 days
    )
    assert survivors["manual"] == [date(2026, 3, 15)]
    assert survivors["pre_restore"] == [date(2026, 12, 30)]  # June's passed its undo window
    # And everything else was soft-deleted by retention, with an audit line each
    with db.cursor() as cur:
        cur.execute(
            sql.SQL(
                "SELECT count(*), count(*) FILTER (WHERE deleted_by = 'retention') "
                "FROM {} WHERE status = 'deleted'"
            ).format(sql.Identifier(schema, "backup_records"))
        )
        deleted, by_retention = cur.fetchone()
        cur.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE action = 'backup.retention'").format(
                sql.Identifier(schema, "backup_audit")
            )
        )
        audited = cur.fetchone()[0]
    assert deleted == by_retention == audited == 365 + 4 - 17


def test_retention_never_deletes_what_a_restore_is_reading(clinic_factory, db, monkeypatch):
    schema = clinic_factory()
    svc = build_services(get_settings(OperatorSettings))
    old = [add_backup(svc, schema, at_madrid(date(2026, 1, d))) for d in range(1, 29)]
    monkeypatch.setattr(svc.records, "backups_in_use", lambda s: {old[0].id})
    svc.clock = FixedClock(at_madrid(date(2026, 6, 1)))
    plan = service.apply_retention(svc, schema)
    assert plan.keep[old[0].id] == ["in_use"]
    assert old[1].id in plan.delete


def test_a_backup_marked_keep_meanwhile_is_not_deleted(clinic_factory, db, monkeypatch):
    # Retention decided from a read; an admin marks one backup keep before it deletes: the
    # database re-checks `keep` in the same statement that deletes.
    schema = clinic_factory()
    svc = build_services(get_settings(OperatorSettings))
    old = [add_backup(svc, schema, at_madrid(date(2026, 1, d))) for d in range(1, 29)]
    svc.clock = FixedClock(at_madrid(date(2026, 6, 1)))
    read = svc.records.completed_backups

    def read_then_admin_marks(s):
        rows = read(s)
        svc.records.set_keep(schema, old[0].id, True)
        return rows

    monkeypatch.setattr(svc.records, "completed_backups", read_then_admin_marks)
    plan = service.apply_retention(svc, schema)
    assert old[0].id in plan.delete
    kept = svc.records.get(schema, old[0].id)
    assert kept is not None and kept.status == BackupStatus.COMPLETED


def test_a_scheduled_backup_run_by_the_worker_applies_retention(clinic_factory, sqs, db):
    # Given 20 old daily scheduled backups and a clinic keeping 7 daily, nothing else
    schema = clinic_factory()
    worker = function_module("create_backup").fn.services()
    now = datetime.now(UTC)
    for days in range(10, 30):
        add_backup(worker, schema, now - timedelta(days=days))
    worker.schedules.save_settings(
        schema,
        replace(
            worker.config.policy.defaults,
            keep_daily=7,
            keep_weekly=0,
            keep_monthly=0,
            updated_by="test",
            updated_at=now - timedelta(days=60),
        ),
    )
    manual = service.start_backup(
        worker, schema, trigger=Trigger.MANUAL, actor_id="u", actor_name=None
    )
    sqs.drain_into_worker()
    # a manual backup does not trigger retention
    assert len(alive(db, schema)["scheduled"]) == 20

    # When a scheduled backup runs through the queue and the worker
    scheduled = service.start_backup(
        worker, schema, trigger=Trigger.SCHEDULED, actor_id="scheduler", actor_name=None
    )
    sqs.drain_into_worker()

    # Then it completed, and retention kept the 7 newest days (it and 6 old ones) + the manual
    assert worker.records.get(schema, scheduled.id).status == BackupStatus.COMPLETED
    survivors = alive(db, schema)
    assert len(survivors["scheduled"]) == 7
    assert survivors["manual"] == [manual.created_at.astimezone(MADRID).date()]


def test_a_retention_error_does_not_fail_the_backup(clinic_factory, sqs, monkeypatch):
    schema = clinic_factory()
    worker = function_module("create_backup").fn.services()

    def broken(svc, schema):
        raise RuntimeError("retention bug")

    monkeypatch.setattr(service, "apply_retention", broken)
    record = service.start_backup(
        worker, schema, trigger=Trigger.SCHEDULED, actor_id="scheduler", actor_name=None
    )
    assert sqs.drain_into_worker() == [{"batchItemFailures": []}]
    assert worker.records.get(schema, record.id).status == BackupStatus.COMPLETED
