"""One clinic the backup role cannot read never stops the fleet: the scheduler and the sweeper
read the fleet in batches (one UNION ALL per 100 clinics); a batch that fails is split down to
the failing clinic, whose failure is logged, counted in the run's summary and in the
`ClinicsFailed` metric (the template's alarm watches it), while every other clinic goes on.

The clinics are laid out as in production (owned by the application role, the functions
connected as the backup role), and one is made unreadable the way an operator's slip would:
`REVOKE ALL ON SCHEMA <clinic> FROM clinic_backup`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg2
from clinic_backups.domain.models import Trigger
from clinic_backups.edge.cli import main
from clinic_backups.usecases import backups as service
from clinic_backups.wiring.factory import build_services
from clinic_backups.wiring.settings import OperatorSettings, get_settings
from psycopg2 import sql

from devstack import demo
from tests.helpers import FixedClock, function_module, invoke, load_event, reset_caches
from tests.integration.conftest import RestoreDatabase


class RecordedMetrics:
    def __init__(self) -> None:
        self.values: dict[str, float] = {}

    def add(self, name: str, value: float, unit: str) -> None:
        self.values[name] = self.values.get(name, 0) + value


def revoke(db: RestoreDatabase, schema: str) -> None:
    with psycopg2.connect(db.admin_url) as conn, conn.cursor() as cur:
        cur.execute(
            sql.SQL("REVOKE ALL ON SCHEMA {} FROM {}").format(
                sql.Identifier(schema), sql.Identifier(demo.BACKUP_ROLE)
            )
        )
    conn.close()


def queued(sqs: Any) -> list[dict[str, Any]]:
    found = []
    while batch := sqs.receive():
        for message in batch:
            found.append(json.loads(message["Body"]))
            sqs.client.delete_message(QueueUrl=sqs.url, ReceiptHandle=message["ReceiptHandle"])
    return found


def fleet(db: RestoreDatabase, owned_clinic: Any) -> tuple[list[str], list[str]]:
    """Two readable clinics and two the backup role cannot read: one already migrated (its
    failure shows in the batched reads), one new (in its migration)."""
    good = [owned_clinic(patients=10) for _ in range(2)]
    migrated, fresh = owned_clinic(patients=10), owned_clinic(patients=10)
    records = function_module("scheduler").fn.services().records  # as the backup role
    for schema in [*good, migrated]:
        records.ensure_schema(schema)
    for schema in (migrated, fresh):
        revoke(db, schema)
    return good, [migrated, fresh]


def test_one_unreadable_clinic_never_stops_the_scheduler_run(
    restore_env_pg15: RestoreDatabase, owned_clinic_pg15, sqs
):
    # Given four clinics due at 03:00 Madrid, two of them unreadable by the backup role
    good, bad = fleet(restore_env_pg15, owned_clinic_pg15)
    svc = function_module("scheduler").fn.services()
    svc.clock = FixedClock(datetime(2026, 6, 15, 1, 5, tzinfo=UTC))
    svc.metrics = metrics = RecordedMetrics()

    # When the hourly run comes
    report = invoke("scheduler", load_event("scheduler/scheduled_event.json"))

    # Then every readable clinic got its backup, the others are counted and alarmed
    assert sorted(j["schema"] for j in queued(sqs)) == sorted(good)
    assert report["enqueued"] == 2
    assert report["clinics_failed"] == 2
    assert sorted(report["failed_clinics"]) == sorted(bad)
    assert metrics.values["ClinicsFailed"] == 2


def test_one_unreadable_clinic_never_stops_the_sweeper(
    restore_env_pg15: RestoreDatabase, owned_clinic_pg15, sqs, capsys, monkeypatch
):
    # Given the operator's CLI connected as the backup role (as the scheduler's sweep is), and
    # a readable clinic with a backup queued three hours ago that never ran
    monkeypatch.delenv("RESTORE_DATABASE_URL")
    reset_caches()
    good, bad = fleet(restore_env_pg15, owned_clinic_pg15)
    svc = build_services(get_settings(OperatorSettings))
    svc.clock = FixedClock(datetime.now(UTC) - timedelta(hours=3))
    stuck = service.start_backup(
        svc, good[0], trigger=Trigger.MANUAL, actor_id="u", actor_name=None
    )

    # When the operator sweeps every clinic
    code = main(["sweep", "--no-orphans"])

    # Then the readable clinics were swept and the unreadable ones reported
    out = json.loads(capsys.readouterr().out)
    assert code == 1
    assert out["stale_failed"] == 1
    assert sorted(out["failed_clinics"]) == sorted(bad)
    failed = svc.records.get(good[0], stuck.id)
    assert failed is not None and failed.error_code == "stale"
