"""PostgreSQL adapter of the `SchedulesRepository` port: per-clinic settings and slots.

Both tables live in the clinic's own schema (`backup_settings`, `backup_slots`, created by
migration 2 and excluded from every dump). Slot idempotency is the database's job: the slot's
primary key is (local date, local hour), a run claims a slot with INSERT … ON CONFLICT DO
NOTHING, and only the run whose INSERT returned a row enqueues its backup — so a duplicated or
concurrent EventBridge event never enqueues twice.

`snapshot` reads what the scheduler needs about many clinics in one statement per batch
(UNION ALL over the clinics' schemas): a scheduler run visits every clinic every hour, and one
round trip per clinic would dominate its time (see bench/scheduler_fleet.py). A batch that
fails is split down to the clinic that fails it (`read_fleet`): that clinic's snapshot
carries the reason, every other clinic is read.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, date, datetime
from typing import Any

from psycopg2 import sql

from clinic_backups.adapters.database import (
    LEASE_EXPIRED,
    SCHEMA_BATCH,
    STALE_BACKUP,
    Database,
    clinic_tables,
    column_lists,
    read_fleet,
)
from clinic_backups.domain.models import ClinicSettings, SlotRecord, SlotStatus
from clinic_backups.domain.ports import ClinicSnapshot, SnapshotWindow
from clinic_backups.domain.schedule import Slot

# The settings row has the columns of `ClinicSettings`, in its order.
_SETTINGS_COLUMNS = tuple(f.name for f in dataclasses.fields(ClinicSettings))


def _settings(row: dict[str, Any]) -> ClinicSettings:
    data = {k: row[k] for k in _SETTINGS_COLUMNS}
    data["weekdays"] = tuple(int(d) for d in data["weekdays"])
    if isinstance(data["updated_at"], str):  # from row_to_json
        data["updated_at"] = datetime.fromisoformat(data["updated_at"])
    return ClinicSettings(**data)


def _slot(row: dict[str, Any]) -> SlotRecord:
    def moment(value: Any) -> datetime:
        return datetime.fromisoformat(value) if isinstance(value, str) else value

    local_date = row["local_date"]
    backup_id = row["backup_id"]
    return SlotRecord(
        local_date=date.fromisoformat(local_date) if isinstance(local_date, str) else local_date,
        local_hour=int(row["local_hour"]),
        scheduled_at=moment(row["scheduled_at"]),
        status=SlotStatus(row["status"]),
        backup_id=uuid.UUID(backup_id) if isinstance(backup_id, str) else backup_id,
        decided_at=moment(row["decided_at"]),
        attempts=int(row["attempts"]),
    )


class PostgresSchedules:
    def __init__(self, db: Database, batch_size: int = SCHEMA_BATCH):
        self._db = db
        self.batch_size = batch_size

    # --- settings -------------------------------------------------------------------------

    def get_settings(self, schema: str) -> ClinicSettings | None:
        with self._db.clinic(schema) as tx:
            row = tx.one("SELECT * FROM {settings}")
            return _settings(row) if row else None

    def save_settings(self, schema: str, settings: ClinicSettings) -> ClinicSettings:
        values = [getattr(settings, c) for c in _SETTINGS_COLUMNS]
        values[_SETTINGS_COLUMNS.index("weekdays")] = list(settings.weekdays)
        with self._db.clinic(schema) as tx:
            saved = tx.one(
                "INSERT INTO {settings} ({cols}) VALUES ({vals}) ON CONFLICT (singleton) "
                "DO UPDATE SET {updates} RETURNING *",
                values,
                updates=sql.SQL(", ").join(
                    sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c))
                    for c in _SETTINGS_COLUMNS
                ),
                **column_lists(_SETTINGS_COLUMNS),
            )
            return _settings(saved)

    # --- the scheduler's read -------------------------------------------------------------

    def snapshot(self, schemas: list[str], window: SnapshotWindow) -> dict[str, ClinicSnapshot]:
        result: dict[str, ClinicSnapshot] = {}
        params = {
            "since": window.slots_since,
            "stuck": window.stuck_before,
            "grace": window.deleted_before,
            # No replica: nothing lags (no backup finished before the beginning of time).
            "replica_lag": window.replica_lag_before or datetime.min.replace(tzinfo=UTC),
        }

        def read(cur: Any, batch: list[str]) -> list[dict[str, Any]]:
            # One transaction per batch: its table locks end with it (see SCHEMA_BATCH).
            cur.execute(sql.SQL(" UNION ALL ").join(self._clinic_query(s) for s in batch), params)
            return list(cur.fetchall())

        rows, failed = read_fleet(self._db, list(schemas), self.batch_size, read)
        for row in rows:
            slots = [_slot(r) for r in (row["slots"] or [])]
            result[row["schema"]] = ClinicSnapshot(
                schema=row["schema"],
                settings=_settings(row["settings"]) if row["settings"] else None,
                slots={(s.local_date, s.local_hour): s for s in slots},
                last_good_at=row["last_good_at"],
                first_slot_at=row["first_slot_at"],
                lock_held=bool(row["lock_held"]),
                stuck=bool(row["stuck"]),
                purgeable=bool(row["purgeable"]),
                replica_lagging=int(row["replica_lagging"] or 0),
            )
        for schema, reason in failed.items():
            result[schema] = ClinicSnapshot(schema=schema, settings=None, error=reason)
        return result

    def _clinic_query(self, schema: str) -> sql.Composed:
        return sql.SQL(
            "SELECT {schema} AS schema,"
            " (SELECT row_to_json(s) FROM {settings} s) AS settings,"
            " (SELECT json_agg(row_to_json(sl)) FROM {slots} sl"
            "   WHERE sl.scheduled_at >= %(since)s) AS slots,"
            " (SELECT max(finished_at) FROM {records} WHERE status = 'completed') AS last_good_at,"
            " (SELECT min(scheduled_at) FROM {slots}) AS first_slot_at,"
            " EXISTS (SELECT 1 FROM {lock}) AS lock_held,"
            # a dead backup: its lease expired (or none covers it), or pending past the threshold
            " (EXISTS (SELECT 1 FROM {records} r WHERE " + STALE_BACKUP + ")"
            "   OR EXISTS (SELECT 1 FROM {lock} l WHERE l.kind IN ('backup', 'reencrypt') AND "
            + LEASE_EXPIRED
            + ")) AS stuck,"
            " (EXISTS (SELECT 1 FROM {records} WHERE status = 'deleted' AND purged_at IS NULL"
            "   AND deleted_at <= %(grace)s)"
            # a purged backup whose replica copy remains, its lock expired: purge it there too
            "   OR EXISTS (SELECT 1 FROM {records} WHERE purged_at IS NOT NULL"
            "   AND replicated_at IS NOT NULL"
            "   AND coalesce(replica_retain_until, '-infinity') <= now())"
            # a re-encryption's previous generation in the replica, its lock expired
            "   OR EXISTS (SELECT 1 FROM {superseded}"
            "   WHERE coalesce(retain_until, '-infinity') <= now())) AS purgeable,"
            " (SELECT count(*) FROM {records} WHERE status = 'completed'"
            "   AND replicated_at IS NULL AND finished_at < %(replica_lag)s) AS replica_lagging"
        ).format(schema=sql.Literal(schema), **clinic_tables(schema))

    # --- slots ----------------------------------------------------------------------------

    def claim_slot(self, schema: str, slot: Slot, backup_id: uuid.UUID, at: datetime) -> bool:
        with self._db.clinic(schema) as tx:
            return tx.found(
                "INSERT INTO {slots} (local_date, local_hour, scheduled_at, status, backup_id, "
                "decided_at, attempts) VALUES (%s, %s, %s, 'due', %s, %s, 1) "
                "ON CONFLICT (local_date, local_hour) DO NOTHING RETURNING 1",
                (*slot.key, slot.scheduled_at, backup_id, at),
            )

    def reclaim_slot(
        self, schema: str, slot: Slot, backup_id: uuid.UUID, at: datetime, due_before: datetime
    ) -> bool:
        with self._db.clinic(schema) as tx:
            return tx.found(
                "UPDATE {slots} SET status = 'due', backup_id = %s, decided_at = %s, "
                "attempts = attempts + 1 WHERE local_date = %s AND local_hour = %s "
                "AND (status = 'skipped_busy' OR (status = 'due' AND decided_at < %s)) "
                "RETURNING 1",
                (backup_id, at, *slot.key, due_before),
            )

    def mark_slot(
        self, schema: str, slot: Slot, status: SlotStatus, at: datetime, backup_id: uuid.UUID | None
    ) -> None:
        with self._db.clinic(schema) as tx:
            tx.execute(
                "UPDATE {slots} SET status = %s, decided_at = %s, "
                "backup_id = coalesce(%s, backup_id) WHERE local_date = %s AND local_hour = %s",
                (status.value, at, backup_id, *slot.key),
            )

    def release_slot(self, schema: str, slot: Slot, backup_id: uuid.UUID) -> None:
        with self._db.clinic(schema) as tx:
            tx.execute(
                "DELETE FROM {slots} WHERE local_date = %s AND local_hour = %s "
                "AND status = 'due' AND backup_id = %s",
                (*slot.key, backup_id),
            )

    def record_missed(self, schema: str, slot: Slot, at: datetime, due_before: datetime) -> bool:
        with self._db.clinic(schema) as tx:
            return tx.found(
                "INSERT INTO {slots} AS sl (local_date, local_hour, scheduled_at, status, "
                "decided_at, attempts) VALUES (%s, %s, %s, 'missed', %s, 0) "
                "ON CONFLICT (local_date, local_hour) DO UPDATE SET status = 'missed', "
                "decided_at = EXCLUDED.decided_at WHERE sl.status = 'skipped_busy' "
                "OR (sl.status = 'due' AND sl.decided_at < %s) RETURNING 1",
                (*slot.key, slot.scheduled_at, at, due_before),
            )
