"""PostgreSQL adapter of restore and verification jobs (`backup_restores`, migration 3) and of
what they write on backup records (the light check's counts, the full drill's outcome).

A restore takes the clinic's operation lock (`backup_operation_lock`, kind `restore`, ref =
the job id) in the transaction that creates the job and keeps it until the job ends; an undo
takes it again (kind `undo`). The job's completion is not written here but rendered as SQL
(`completion_sql`) that the swap runs inside its own transaction, after the owned tables have
moved back: the swap, the job's `completed` status, the lock's release and the audit entry
commit together or not at all. Verifications take no lock: they change nothing live.
"""

from __future__ import annotations

import builtins
import json
import uuid
from datetime import datetime
from typing import Any

import psycopg2.extras
from psycopg2 import sql

from ..errors import OperationInProgress, RestoreNotFound, UndoNotAvailable
from ..models import AuditEntry, BackupRecord, RestoreKind, RestoreRecord, RestoreStatus
from .migrations import TABLES
from .postgres import SCHEMA_BATCH, Database, _record, _table, batches

_COLUMNS = (
    "id",
    "kind",
    "status",
    "step",
    "backup_id",
    "pre_restore_backup_id",
    "old_schema",
    "undo_schema",
    "undo_until",
    "requested_by",
    "requested_by_name",
    "request_id",
    "created_at",
    "started_at",
    "finished_at",
    "lock_seconds",
    "error_code",
    "error",
    "details",
    "undo_status",
    "undo_requested_by",
    "undo_requested_at",
    "undone_at",
    "undo_error_code",
    "undo_error",
    "dropped_at",
)
# What `update` may change (never status: that has its own transitions).
_UPDATABLE = frozenset(
    {
        "step",
        "pre_restore_backup_id",
        "old_schema",
        "undo_schema",
        "undo_until",
        "details",
        "lock_seconds",
    }
)
STALE_MESSAGE = "the job did not finish within the worker's time limit; nothing changed"


def _restore(row: dict[str, Any]) -> RestoreRecord:
    data = {k: row[k] for k in _COLUMNS}
    data["kind"] = RestoreKind(data["kind"])
    data["status"] = RestoreStatus(data["status"])
    data["details"] = data["details"] or {}
    return RestoreRecord(**data)


def _param(value: Any) -> Any:
    if isinstance(value, RestoreKind | RestoreStatus):
        return value.value
    if isinstance(value, dict):
        return psycopg2.extras.Json(value)
    return value


class PostgresRestores:
    """The `RestoresRepository` port on PostgreSQL (tables created by `PostgresRecords`'s
    migrations: call `records.ensure_schema` first)."""

    def __init__(self, db: Database):
        self._db = db

    def _names(self, schema: str) -> dict[str, sql.Composable]:
        return {placeholder: _table(schema, table) for placeholder, table in TABLES.items()}

    # --- jobs ------------------------------------------------------------------------------

    def create(self, schema: str, job: RestoreRecord, *, take_lock: bool) -> RestoreRecord:
        names = self._names(schema)
        with self._db.transaction() as cur:
            if take_lock:
                cur.execute(
                    sql.SQL(
                        "INSERT INTO {lock} (kind, ref_id, acquired_at) VALUES (%s, %s, %s) "
                        "ON CONFLICT (singleton) DO NOTHING RETURNING ref_id"
                    ).format(**names),
                    (job.kind.value, job.id, job.created_at),
                )
                if cur.fetchone() is None:
                    raise OperationInProgress()
            cur.execute(
                sql.SQL("INSERT INTO {restores} ({cols}) VALUES ({vals}) RETURNING *").format(
                    cols=sql.SQL(", ").join(sql.Identifier(c) for c in _COLUMNS),
                    vals=sql.SQL(", ").join(sql.Placeholder() for _ in _COLUMNS),
                    **names,
                ),
                [_param(getattr(job, c)) for c in _COLUMNS],
            )
            return _restore(cur.fetchone())

    def claim(
        self, schema: str, restore_id: uuid.UUID, step: str, at: datetime
    ) -> RestoreRecord | None:
        with self._db.transaction() as cur:
            cur.execute(
                sql.SQL(
                    "UPDATE {restores} SET status = 'running', started_at = %s, step = %s "
                    "WHERE id = %s AND status = 'pending' RETURNING *"
                ).format(**self._names(schema)),
                (at, step, restore_id),
            )
            row = cur.fetchone()
            return _restore(row) if row else None

    def update(self, schema: str, restore_id: uuid.UUID, **fields: Any) -> None:
        unknown = set(fields) - _UPDATABLE
        if unknown:
            raise ValueError(f"not updatable: {sorted(unknown)}")
        if not fields:
            return
        # `details` is merged into what is there (jsonb ||), everything else replaced.
        sets = [
            sql.SQL("details = details || %s")
            if k == "details"
            else sql.SQL("{} = %s").format(sql.Identifier(k))
            for k in fields
        ]
        with self._db.transaction() as cur:
            cur.execute(
                sql.SQL("UPDATE {restores} SET {sets} WHERE id = %s").format(
                    sets=sql.SQL(", ").join(sets), **self._names(schema)
                ),
                [*(_param(v) for v in fields.values()), restore_id],
            )

    def fail(
        self,
        schema: str,
        restore_id: uuid.UUID,
        error_code: str,
        error: str,
        at: datetime,
        details: dict[str, Any] | None = None,
    ) -> None:
        names = self._names(schema)
        with self._db.transaction() as cur:
            cur.execute(
                sql.SQL(
                    "UPDATE {restores} SET status = 'failed', finished_at = %s, error_code = %s, "
                    "error = %s, details = details || %s WHERE id = %s "
                    "AND status IN ('pending', 'running')"
                ).format(**names),
                (at, error_code, error[:500], psycopg2.extras.Json(details or {}), restore_id),
            )
            cur.execute(
                sql.SQL("DELETE FROM {lock} WHERE ref_id = %s").format(**names), (restore_id,)
            )

    def complete(
        self, schema: str, restore_id: uuid.UUID, at: datetime, details: dict[str, Any]
    ) -> None:
        with self._db.transaction() as cur:
            cur.execute(
                sql.SQL(
                    "UPDATE {restores} SET status = 'completed', finished_at = %s, step = 'done', "
                    "details = details || %s WHERE id = %s AND status = 'running'"
                ).format(**self._names(schema)),
                (at, psycopg2.extras.Json(details), restore_id),
            )

    def get(self, schema: str, restore_id: uuid.UUID) -> RestoreRecord | None:
        with self._db.transaction() as cur:
            cur.execute(
                sql.SQL("SELECT * FROM {restores} WHERE id = %s").format(**self._names(schema)),
                (restore_id,),
            )
            row = cur.fetchone()
            return _restore(row) if row else None

    def list(
        self, schema: str, limit: int, cursor: tuple[datetime, uuid.UUID] | None, kind: str | None
    ) -> tuple[builtins.list[RestoreRecord], bool]:
        conditions: builtins.list[sql.Composable] = []
        params: builtins.list[Any] = []
        if kind is not None:
            conditions.append(sql.SQL("kind = %s"))
            params.append(kind)
        if cursor is not None:
            conditions.append(sql.SQL("(created_at, id) < (%s, %s)"))
            params.extend(cursor)
        where = (
            sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("")
        )
        with self._db.transaction() as cur:
            cur.execute(
                sql.SQL(
                    "SELECT * FROM {restores}{where} ORDER BY created_at DESC, id DESC LIMIT %s"
                ).format(where=where, **self._names(schema)),
                [*params, limit + 1],
            )
            rows = [_restore(r) for r in cur.fetchall()]
        return rows[:limit], len(rows) > limit

    def _latest_completed(self, cur: Any, schema: str) -> dict[str, Any] | None:
        cur.execute(
            sql.SQL(
                "SELECT * FROM {restores} WHERE kind = 'restore' AND status = 'completed' "
                "ORDER BY created_at DESC, id DESC LIMIT 1"
            ).format(**self._names(schema))
        )
        row = cur.fetchone()
        return dict(row) if row else None

    def undoable(self, schema: str, now: datetime) -> uuid.UUID | None:
        with self._db.transaction() as cur:
            row = self._latest_completed(cur, schema)
        if row is None or row["dropped_at"] is not None or row["old_schema"] is None:
            return None
        if row["undo_until"] is None or row["undo_until"] <= now:
            return None
        return uuid.UUID(str(row["id"]))

    def request_undo(
        self, schema: str, restore_id: uuid.UUID, by: str, at: datetime
    ) -> RestoreRecord:
        names = self._names(schema)
        with self._db.transaction() as cur:
            cur.execute(
                sql.SQL("SELECT * FROM {restores} WHERE id = %s FOR UPDATE").format(**names),
                (restore_id,),
            )
            row = cur.fetchone()
            if row is None:
                raise RestoreNotFound()
            if row["kind"] != "restore":
                # It exists (GET /restores/{id} shows it): a verification changed nothing.
                raise UndoNotAvailable("A verification changed nothing: there is nothing to undo.")
            latest = self._latest_completed(cur, schema)
            if row["status"] != "completed" or latest is None or latest["id"] != row["id"]:
                raise UndoNotAvailable(
                    "Only the clinic's latest completed restore can be undone."
                    if row["status"] != "undone"
                    else "This restore was already undone."
                )
            if row["undo_status"] in ("pending", "running"):
                raise OperationInProgress("The undo of this restore is already in progress.")
            if (
                row["dropped_at"] is not None
                or row["undo_until"] is None
                or row["undo_until"] <= at
            ):
                raise UndoNotAvailable(
                    "The undo window of this restore is over: the clinic's previous data is gone."
                )
            cur.execute(
                sql.SQL(
                    "INSERT INTO {lock} (kind, ref_id, acquired_at) VALUES ('undo', %s, %s) "
                    "ON CONFLICT (singleton) DO NOTHING RETURNING ref_id"
                ).format(**names),
                (restore_id, at),
            )
            if cur.fetchone() is None:
                raise OperationInProgress()
            cur.execute(
                sql.SQL(
                    "UPDATE {restores} SET undo_status = 'pending', undo_requested_by = %s, "
                    "undo_requested_at = %s, undo_error_code = NULL, undo_error = NULL, "
                    "step = 'undo_queued' WHERE id = %s RETURNING *"
                ).format(**names),
                (by, at, restore_id),
            )
            return _restore(cur.fetchone())

    def claim_undo(self, schema: str, restore_id: uuid.UUID) -> RestoreRecord | None:
        with self._db.transaction() as cur:
            cur.execute(
                sql.SQL(
                    "UPDATE {restores} SET undo_status = 'running', step = 'undoing' "
                    "WHERE id = %s AND undo_status = 'pending' AND status = 'completed' "
                    "RETURNING *"
                ).format(**self._names(schema)),
                (restore_id,),
            )
            row = cur.fetchone()
            return _restore(row) if row else None

    def fail_undo(self, schema: str, restore_id: uuid.UUID, error_code: str, error: str) -> None:
        names = self._names(schema)
        with self._db.transaction() as cur:
            cur.execute(
                sql.SQL(
                    "UPDATE {restores} SET undo_status = 'failed', undo_error_code = %s, "
                    "undo_error = %s, step = 'done' WHERE id = %s "
                    "AND undo_status IN ('pending', 'running')"
                ).format(**names),
                (error_code, error[:500], restore_id),
            )
            cur.execute(
                sql.SQL("DELETE FROM {lock} WHERE ref_id = %s").format(**names), (restore_id,)
            )

    def completion_sql(
        self, schema: str, restore_id: uuid.UUID, entry: AuditEntry, *, undo: bool = False
    ) -> str:
        names = self._names(schema)
        if undo:
            update = sql.SQL(
                "UPDATE {restores} SET status = 'undone', undo_status = NULL, step = 'undone', "
                "undone_at = clock_timestamp() WHERE id = {id} AND status = 'completed' "
                "AND undo_status = 'running'"
            )
        else:
            update = sql.SQL(
                "UPDATE {restores} SET status = 'completed', step = 'done', "
                "finished_at = clock_timestamp() WHERE id = {id} AND status = 'running'"
            )
        statement = sql.SQL(
            "DO $cb$ BEGIN {update}; IF NOT FOUND THEN RAISE EXCEPTION "
            "'the restore job is no longer running (failed by the sweeper?)'; END IF; END $cb$;\n"
            "DELETE FROM {lock} WHERE ref_id = {id};\n"
            "INSERT INTO {audit} (id, at, action, outcome, actor_id, actor_name, actor_role, "
            "request_id, backup_id, details) VALUES ({audit_id}, clock_timestamp(), {action}, "
            "{outcome}, {actor_id}, {actor_name}, {actor_role}, {request_id}, {backup_id}, "
            "{details});\n"
        ).format(
            update=update.format(id=sql.Literal(str(restore_id)), **names),
            id=sql.Literal(str(restore_id)),
            audit_id=sql.Literal(str(uuid.uuid4())),
            action=sql.Literal(entry.action),
            outcome=sql.Literal(entry.outcome),
            actor_id=sql.Literal(entry.actor_id),
            actor_name=sql.Literal(entry.actor_name),
            actor_role=sql.Literal(entry.actor_role),
            request_id=sql.Literal(entry.request_id),
            backup_id=sql.Literal(str(entry.backup_id) if entry.backup_id else None),
            details=sql.Literal(json.dumps(entry.details)),
            **names,
        )
        with self._db.transaction() as cur:
            return str(statement.as_string(cur.connection))

    # --- the sweeper ---------------------------------------------------------------------------

    def fail_stale(self, schema: str, before: datetime, at: datetime) -> builtins.list[uuid.UUID]:
        names = self._names(schema)
        with self._db.transaction() as cur:
            cur.execute(
                sql.SQL(
                    "UPDATE {restores} SET status = 'failed', finished_at = %s, "
                    "error_code = 'stale', error = %s WHERE status IN ('pending', 'running') "
                    "AND coalesce(started_at, created_at) < %s RETURNING id"
                ).format(**names),
                (at, STALE_MESSAGE, before),
            )
            ids = [r["id"] for r in cur.fetchall()]
            cur.execute(
                sql.SQL(
                    "UPDATE {restores} SET undo_status = 'failed', undo_error_code = 'stale', "
                    "undo_error = %s, step = 'done' WHERE undo_status IN ('pending', 'running') "
                    "AND undo_requested_at < %s RETURNING id"
                ).format(**names),
                (STALE_MESSAGE, before),
            )
            ids += [r["id"] for r in cur.fetchall()]
            if ids:
                cur.execute(
                    sql.SQL("DELETE FROM {lock} WHERE ref_id = ANY(%s::uuid[])").format(**names),
                    (ids,),
                )
            return ids

    def droppable(self, schema: str, now: datetime) -> builtins.list[tuple[uuid.UUID, str]]:
        with self._db.transaction() as cur:
            cur.execute(
                sql.SQL(
                    "SELECT id, CASE WHEN status = 'undone' THEN undo_schema ELSE old_schema END "
                    "AS name FROM {restores} WHERE kind = 'restore' AND dropped_at IS NULL "
                    "AND undo_until < %s AND ((status = 'completed' AND old_schema IS NOT NULL "
                    "AND undo_status IS DISTINCT FROM 'running' "
                    "AND undo_status IS DISTINCT FROM 'pending') "
                    "OR (status = 'undone' AND undo_schema IS NOT NULL)) ORDER BY created_at"
                ).format(**self._names(schema)),
                (now,),
            )
            return [(r["id"], r["name"]) for r in cur.fetchall()]

    def mark_dropped(self, schema: str, restore_id: uuid.UUID, at: datetime) -> None:
        with self._db.transaction() as cur:
            cur.execute(
                sql.SQL("UPDATE {restores} SET dropped_at = %s WHERE id = %s").format(
                    **self._names(schema)
                ),
                (at, restore_id),
            )

    def hints(
        self, schemas: builtins.list[str], stuck_before: datetime, now: datetime
    ) -> dict[str, tuple[bool, bool]]:
        found: dict[str, tuple[bool, bool]] = {}
        for batch in batches(sorted(schemas), SCHEMA_BATCH):
            with self._db.transaction() as cur:
                cur.execute(
                    sql.SQL(" UNION ALL ").join(
                        sql.SQL(
                            "SELECT {name} AS schema, "
                            "bool_or(status IN ('pending', 'running') "
                            "AND coalesce(started_at, created_at) < %(stuck)s "
                            "OR undo_status IN ('pending', 'running') "
                            "AND undo_requested_at < %(stuck)s) AS stale, "
                            "bool_or(kind = 'restore' AND dropped_at IS NULL "
                            "AND undo_until < %(now)s AND status IN ('completed', 'undone')) "
                            "AS droppable FROM {table}"
                        ).format(name=sql.Literal(schema), table=_table(schema, TABLES["restores"]))
                        for schema in batch
                    ),
                    {"stuck": stuck_before, "now": now},
                )
                for row in cur.fetchall():
                    if row["stale"] or row["droppable"]:
                        found[row["schema"]] = (bool(row["stale"]), bool(row["droppable"]))
        return found

    # --- verification results on backup records ----------------------------------------------

    def set_check(
        self,
        schema: str,
        backup_id: uuid.UUID,
        outcome: str,
        counts: dict[str, int] | None,
        error: str | None,
        at: datetime,
    ) -> BackupRecord | None:
        with self._db.transaction() as cur:
            cur.execute(
                sql.SQL(
                    "UPDATE {records} SET check_outcome = %s, table_counts = %s, "
                    "check_error = %s, checked_at = %s WHERE id = %s RETURNING *"
                ).format(**self._names(schema)),
                (
                    outcome,
                    psycopg2.extras.Json(counts) if counts is not None else None,
                    error[:500] if error else None,
                    at,
                    backup_id,
                ),
            )
            row = cur.fetchone()
            return _record(row) if row else None

    def set_verification(
        self, schema: str, backup_id: uuid.UUID, outcome: str, details: dict[str, Any], at: datetime
    ) -> BackupRecord | None:
        with self._db.transaction() as cur:
            cur.execute(
                sql.SQL(
                    "UPDATE {records} SET verify_outcome = %s, verify_details = %s, "
                    "verified_at = %s WHERE id = %s RETURNING *"
                ).format(**self._names(schema)),
                (outcome, psycopg2.extras.Json(details), at, backup_id),
            )
            row = cur.fetchone()
            return _record(row) if row else None
