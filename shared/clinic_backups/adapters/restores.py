"""PostgreSQL adapter of restore and verification jobs (`backup_restores`, migration 3) and of
what they write on backup records (the light check's counts, the full drill's outcome).

A restore takes the clinic's operation lock (`backup_operation_lock`, kind `restore`, ref =
the job id) in the transaction that creates the job and keeps it until the job ends; an undo
takes it again (kind `undo`). The worker that claims the job stamps the lock row with its
lease (adapters/database.py) and renews it. The job's completion is not written here but
rendered as SQL (`completion_sql`) that the swap runs inside its own transaction, after the
owned tables have moved back: the swap, the job's `completed` status, the lock's release and
the audit entry commit together or not at all — and only while the job still holds its lease.
Verifications take no lock (they change nothing live): their lease is on their own job row.
"""

from __future__ import annotations

import builtins
import json
import uuid
from datetime import datetime
from typing import Any

import psycopg2.extras
from psycopg2 import sql

from clinic_backups.adapters.database import (
    LEASE_EXPIRED,
    LEASE_LIVE,
    SCHEMA_BATCH,
    TIMEOUTS,
    ClinicCursor,
    Database,
    Rollback,
    acquire_lock,
    busy_is_409,
    claim_lease,
    clinic_tables,
    column_lists,
    expire_lock,
    expire_lock_for_taking,
    insert_lock,
    newest_first,
    one_record,
    read_fleet,
    release_lock,
    renew_timeouts,
    report_takeover,
)
from clinic_backups.domain.errors import OperationInProgress, RestoreNotFound, UndoNotAvailable
from clinic_backups.domain.models import (
    AuditEntry,
    BackupRecord,
    Lease,
    RestoreKind,
    RestoreRecord,
    RestoreStatus,
)
from clinic_backups.domain.ports import Metrics

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
NEVER_STARTED = "the job never started (its message expired); nothing changed"
LEASE_GONE = "the job lost the clinic's lease (its worker died?); nothing changed"


# Which of a clinic's jobs are dead (`%(stuck)s`: the age threshold of jobs without a lease).
# A running restore or undo is alive while its lock row carries a live lease (or, claimed
# before leases existed, no lease and an age below the threshold); a running verification
# while its own row's lease is live; a pending one until the age threshold.
def _covered(kind: str, since: str) -> str:
    """A running job of `kind` is covered by its lock row: a live lease, or (claimed before
    leases existed) no lease and `since` within the age threshold."""
    return (
        f"EXISTS (SELECT 1 FROM {{lock}} l WHERE l.kind = '{kind}' AND l.ref_id = r.id AND ("
        f"{LEASE_LIVE} OR l.lease_id IS NULL AND {since} >= %(stuck)s))"
    )


STALE_JOB = (
    "(r.status = 'pending' AND r.created_at < %(stuck)s "
    "OR r.status = 'running' AND r.kind = 'restore' AND NOT "
    + _covered("restore", "coalesce(r.started_at, r.created_at)")
    + " OR r.status = 'running' AND r.kind = 'verify' AND NOT (r.lease_id IS NOT NULL AND "
    "r.renewed_at + r.lease_seconds * interval '1 second' >= now() "
    "OR r.lease_id IS NULL AND coalesce(r.started_at, r.created_at) >= %(stuck)s))"
)
STALE_UNDO = (
    "(r.undo_status = 'pending' AND r.undo_requested_at < %(stuck)s "
    "OR r.undo_status = 'running' AND NOT " + _covered("undo", "r.undo_requested_at") + ")"
)


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

    def __init__(self, db: Database, metrics: Metrics | None = None):
        self._db = db
        self._metrics = metrics

    # --- jobs ------------------------------------------------------------------------------

    def create(self, schema: str, job: RestoreRecord, *, take_lock: bool) -> RestoreRecord:
        takeover = None
        with busy_is_409(), self._db.clinic(schema) as tx:
            if take_lock:
                takeover = acquire_lock(tx, job.kind.value, job.id, job.created_at)
            created = _restore(
                tx.one(
                    "INSERT INTO {restores} ({cols}) VALUES ({vals}) RETURNING *",
                    [_param(getattr(job, c)) for c in _COLUMNS],
                    **column_lists(_COLUMNS),
                )
            )
        report_takeover(self._metrics, takeover)
        return created

    def claim(
        self,
        schema: str,
        restore_id: uuid.UUID,
        step: str,
        at: datetime,
        lease: Lease | None = None,
    ) -> RestoreRecord | None:
        try:
            with self._db.clinic(schema) as tx:
                row = tx.one(
                    "UPDATE {restores} SET status = 'running', started_at = %s, step = %s "
                    "WHERE id = %s AND status = 'pending' RETURNING *",
                    (at, step, restore_id),
                )
                if row is None:
                    return None
                if lease is None:
                    return _restore(row)
                if row["kind"] == "verify":
                    return _restore(
                        tx.one(
                            "UPDATE {restores} SET lease_id = %s, renewed_at = now(), "
                            "lease_seconds = %s WHERE id = %s RETURNING *",
                            (lease.id, lease.seconds, restore_id),
                        )
                    )
                if not claim_lease(tx, "restore", restore_id, lease):
                    raise Rollback()  # its lock is gone (failed meanwhile): nothing to run
                return _restore(row)
        except Rollback:
            return None

    def renew_lease(self, schema: str, lease: Lease) -> bool | None:
        try:
            with self._db.clinic(schema) as tx:
                renew_timeouts(tx, lease)
                return tx.found(
                    "UPDATE {restores} SET renewed_at = now() WHERE lease_id = %s "
                    "AND status = 'running' RETURNING 1",
                    (lease.id,),
                )
        except TIMEOUTS:
            return None

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
        with self._db.clinic(schema) as tx:
            tx.execute(
                "UPDATE {restores} SET {sets} WHERE id = %s",
                [*(_param(v) for v in fields.values()), restore_id],
                sets=sql.SQL(", ").join(sets),
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
        with self._db.clinic(schema) as tx:
            tx.execute(
                "UPDATE {restores} SET status = 'failed', finished_at = %s, error_code = %s, "
                "error = %s, details = details || %s WHERE id = %s "
                "AND status IN ('pending', 'running')",
                (at, error_code, error[:500], psycopg2.extras.Json(details or {}), restore_id),
            )
            tx.execute("DELETE FROM {lock} WHERE ref_id = %s", (restore_id,))

    def complete(
        self, schema: str, restore_id: uuid.UUID, at: datetime, details: dict[str, Any]
    ) -> None:
        with self._db.clinic(schema) as tx:
            tx.execute(
                "UPDATE {restores} SET status = 'completed', finished_at = %s, step = 'done', "
                "details = details || %s WHERE id = %s AND status = 'running'",
                (at, psycopg2.extras.Json(details), restore_id),
            )

    def get(self, schema: str, restore_id: uuid.UUID) -> RestoreRecord | None:
        with self._db.clinic(schema) as tx:
            row = tx.one("SELECT * FROM {restores} WHERE id = %s", (restore_id,))
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
        return newest_first(
            self._db,
            "SELECT * FROM {restores}{where} ORDER BY created_at DESC, id DESC LIMIT %s",
            clinic_tables(schema),
            conditions,
            params,
            limit,
            _restore,
        )

    def _latest_completed(self, tx: ClinicCursor) -> dict[str, Any] | None:
        row = tx.one(
            "SELECT * FROM {restores} WHERE kind = 'restore' AND status = 'completed' "
            "ORDER BY created_at DESC, id DESC LIMIT 1"
        )
        return dict(row) if row else None

    def undoable(self, schema: str, now: datetime) -> uuid.UUID | None:
        with self._db.clinic(schema) as tx:
            row = self._latest_completed(tx)
        if row is None or row["dropped_at"] is not None or row["old_schema"] is None:
            return None
        if row["undo_until"] is None or row["undo_until"] <= now:
            return None
        return uuid.UUID(str(row["id"]))

    def request_undo(
        self, schema: str, restore_id: uuid.UUID, by: str, at: datetime
    ) -> RestoreRecord:
        with busy_is_409(), self._db.clinic(schema) as tx:
            # An expired lease first: a dead undo of this very restore is taken over (and
            # failed) before its status is read. A refusal below rolls all of it back.
            takeover = expire_lock_for_taking(tx, at)
            row = tx.one("SELECT * FROM {restores} WHERE id = %s FOR UPDATE", (restore_id,))
            if row is None:
                raise RestoreNotFound()
            if row["kind"] != "restore":
                # It exists (GET /restores/{id} shows it): a verification changed nothing.
                raise UndoNotAvailable("A verification changed nothing: there is nothing to undo.")
            latest = self._latest_completed(tx)
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
            insert_lock(tx, "undo", restore_id, at)
            requested = _restore(
                tx.one(
                    "UPDATE {restores} SET undo_status = 'pending', undo_requested_by = %s, "
                    "undo_requested_at = %s, undo_error_code = NULL, undo_error = NULL, "
                    "step = 'undo_queued' WHERE id = %s RETURNING *",
                    (by, at, restore_id),
                )
            )
        report_takeover(self._metrics, takeover)
        return requested

    def claim_undo(
        self, schema: str, restore_id: uuid.UUID, lease: Lease | None = None
    ) -> RestoreRecord | None:
        try:
            with self._db.clinic(schema) as tx:
                row = tx.one(
                    "UPDATE {restores} SET undo_status = 'running', step = 'undoing' "
                    "WHERE id = %s AND undo_status = 'pending' AND status = 'completed' "
                    "RETURNING *",
                    (restore_id,),
                )
                if row is None:
                    return None
                if lease is not None and not claim_lease(tx, "undo", restore_id, lease):
                    raise Rollback()
                return _restore(row)
        except Rollback:
            return None

    def fail_undo(
        self,
        schema: str,
        restore_id: uuid.UUID,
        error_code: str,
        error: str,
        lease: Lease | None = None,
    ) -> None:
        with self._db.clinic(schema) as tx:
            # With a lease, only while this run holds it: after a takeover, an undo of the same
            # restore may have been requested since, and is not this job's to fail.
            if not release_lock(tx, "undo", restore_id, lease):
                return
            tx.execute(
                "UPDATE {restores} SET undo_status = 'failed', undo_error_code = %s, "
                "undo_error = %s, step = 'done' WHERE id = %s "
                "AND undo_status IN ('pending', 'running')",
                (error_code, error[:500], restore_id),
            )

    def completion_sql(
        self,
        schema: str,
        restore_id: uuid.UUID,
        entry: AuditEntry,
        *,
        undo: bool = False,
        lease: Lease | None = None,
    ) -> str:
        names = clinic_tables(schema)
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
        # The lease check runs after the owned tables moved back: the swap holds the lock
        # table from then to its COMMIT, so no takeover can come between check and COMMIT.
        # A takeover that came before failed the job (the status check) and deleted the row.
        release = (
            sql.SQL(
                "DELETE FROM {lock} WHERE ref_id = {id} AND lease_id = {lease}; IF NOT FOUND "
                "THEN RAISE EXCEPTION 'the job no longer holds the clinic''s lease (taken "
                "over)'; END IF;"
            ).format(id=sql.Literal(str(restore_id)), lease=sql.Literal(str(lease.id)), **names)
            if lease is not None
            else sql.SQL("DELETE FROM {lock} WHERE ref_id = {id};").format(
                id=sql.Literal(str(restore_id)), **names
            )
        )
        statement = sql.SQL(
            "DO $cb$ BEGIN {update}; IF NOT FOUND THEN RAISE EXCEPTION "
            "'the restore job is no longer running (failed by the sweeper?)'; END IF; "
            "{release} END $cb$;\n"
            "INSERT INTO {audit} (id, at, action, outcome, actor_id, actor_name, actor_role, "
            "request_id, backup_id, details) VALUES ({audit_id}, clock_timestamp(), {action}, "
            "{outcome}, {actor_id}, {actor_name}, {actor_role}, {request_id}, {backup_id}, "
            "{details});\n"
        ).format(
            update=update.format(id=sql.Literal(str(restore_id)), **names),
            release=release,
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
        with self._db.clinic(schema) as tx:
            return str(statement.as_string(tx.cur.connection))

    # --- the sweeper ---------------------------------------------------------------------------

    def fail_stale(self, schema: str, before: datetime, at: datetime) -> builtins.list[uuid.UUID]:
        with self._db.clinic(schema) as tx:
            # A restore or undo whose lease expired, as a request would take it over.
            takeover = expire_lock(tx, at, ("restore", "undo"))
            ids = [takeover.ref_id] if takeover else []
            params = {"at": at, "stuck": before, "never": NEVER_STARTED, "gone": LEASE_GONE}
            jobs = [
                r["id"]
                for r in tx.all(
                    "UPDATE {restores} r SET status = 'failed', finished_at = %(at)s, "
                    "error_code = 'stale', error = CASE WHEN r.status = 'pending' "
                    "THEN %(never)s ELSE %(gone)s END WHERE " + STALE_JOB + " RETURNING id",
                    params,
                )
            ]
            undos = [
                r["id"]
                for r in tx.all(
                    "UPDATE {restores} r SET undo_status = 'failed', undo_error_code = 'stale', "
                    "undo_error = CASE WHEN r.undo_status = 'pending' THEN %(never)s "
                    "ELSE %(gone)s END, step = 'done' WHERE " + STALE_UNDO + " RETURNING id",
                    params,
                )
            ]
            # Their rows: pending ones never had a lease; running ones lost theirs.
            if jobs:
                tx.execute(
                    "DELETE FROM {lock} WHERE kind = 'restore' AND ref_id = ANY(%s::uuid[])",
                    (jobs,),
                )
            if undos:
                tx.execute(
                    "DELETE FROM {lock} WHERE kind = 'undo' AND ref_id = ANY(%s::uuid[])", (undos,)
                )
            return ids + jobs + undos

    def droppable(self, schema: str, now: datetime) -> builtins.list[tuple[uuid.UUID, str]]:
        with self._db.clinic(schema) as tx:
            return [
                (r["id"], r["name"])
                for r in tx.all(
                    "SELECT id, CASE WHEN status = 'undone' THEN undo_schema ELSE old_schema END "
                    "AS name FROM {restores} WHERE kind = 'restore' AND dropped_at IS NULL "
                    "AND undo_until < %s AND ((status = 'completed' AND old_schema IS NOT NULL "
                    "AND undo_status IS DISTINCT FROM 'running' "
                    "AND undo_status IS DISTINCT FROM 'pending') "
                    "OR (status = 'undone' AND undo_schema IS NOT NULL)) ORDER BY created_at",
                    (now,),
                )
            ]

    def mark_dropped(self, schema: str, restore_id: uuid.UUID, at: datetime) -> None:
        with self._db.clinic(schema) as tx:
            tx.execute("UPDATE {restores} SET dropped_at = %s WHERE id = %s", (at, restore_id))

    def hints(
        self, schemas: builtins.list[str], stuck_before: datetime, now: datetime
    ) -> tuple[dict[str, tuple[bool, bool]], dict[str, str]]:
        def read(cur: Any, batch: builtins.list[str]) -> builtins.list[dict[str, Any]]:
            cur.execute(
                sql.SQL(" UNION ALL ").join(self._hint_query(schema) for schema in batch),
                {"stuck": stuck_before, "now": now},
            )
            return list(cur.fetchall())

        rows, failed = read_fleet(self._db, sorted(schemas), SCHEMA_BATCH, read)
        found = {
            row["schema"]: (bool(row["stale"]), bool(row["droppable"]))
            for row in rows
            if row["stale"] or row["droppable"]
        }
        return found, failed

    def _hint_query(self, schema: str) -> sql.Composed:
        return sql.SQL(
            "SELECT {name} AS schema, "
            "bool_or(" + STALE_JOB + " OR " + STALE_UNDO + ") "
            "OR EXISTS (SELECT 1 FROM {lock} l WHERE l.kind IN ('restore', 'undo') AND "
            + LEASE_EXPIRED
            + ") AS stale, "
            "bool_or(r.kind = 'restore' AND r.dropped_at IS NULL "
            "AND r.undo_until < %(now)s AND r.status IN ('completed', 'undone')) "
            "AS droppable FROM {restores} r"
        ).format(name=sql.Literal(schema), **clinic_tables(schema))

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
        return self._result(
            schema,
            backup_id,
            check_outcome=outcome,
            table_counts=psycopg2.extras.Json(counts) if counts is not None else None,
            check_error=error[:500] if error else None,
            checked_at=at,
        )

    def set_verification(
        self, schema: str, backup_id: uuid.UUID, outcome: str, details: dict[str, Any], at: datetime
    ) -> BackupRecord | None:
        return self._result(
            schema,
            backup_id,
            verify_outcome=outcome,
            verify_details=psycopg2.extras.Json(details),
            verified_at=at,
        )

    def _result(self, schema: str, backup_id: uuid.UUID, **columns: Any) -> BackupRecord | None:
        """One verification result written on a backup record (`columns` by name)."""
        sets = sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in columns)
        with self._db.clinic(schema) as tx:
            return one_record(
                tx,
                "UPDATE {records} SET {sets} WHERE id = %s RETURNING *",
                [*columns.values(), backup_id],
                sets=sets,
            )
