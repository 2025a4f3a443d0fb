"""What the PostgreSQL adapters share (adapters-internal: only `adapters/*` imports it).

The connection (`Database`: one per thread), a clinic's table names (`clinic_tables`, every
identifier through `psycopg2.sql.Identifier`), the keyset-paged listing (`newest_first`), a
backup record's row (`record_from_row`), and the per-clinic operation lock with its lease.

The lock is a one-row table (`backup_operation_lock`): a backup (a restore, an undo, a
re-encryption) inserts the row in the same transaction that creates its record and deletes it
in the transaction that finishes it. The primary key makes a second concurrent operation fail
in the database itself, not only in code.

The row is a **lease**: the worker that claims the job stamps it with its run's token
(`lease_id`) and the database's `now()` (`renewed_at`), and renews it from a heartbeat.
Whoever asks for the lock after the lease expired (`renewed_at + lease_seconds < now()`) takes
it over, in one transaction: the dead job fails as `stale` with the reason, the row goes, the
new one is inserted (`acquire_lock`). The sweeper expires leases the same way (`expire_lock`).
A pending job (no lease yet) keeps the sweeper's age threshold.

Statements that read many clinics at once (`read_fleet`) split a failing batch down to the
clinic that fails it: one unreadable clinic never hides the others.
"""

from __future__ import annotations

import builtins
import json
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import psycopg2
import psycopg2.errors
import psycopg2.extras
from psycopg2 import sql

from clinic_backups.adapters.migrations import TABLES
from clinic_backups.domain.errors import DatabaseUnavailable, OperationInProgress
from clinic_backups.domain.models import AuditEntry, BackupRecord, BackupStatus, Lease, Trigger
from clinic_backups.domain.names import is_valid_schema_name
from clinic_backups.domain.ports import Metrics
from clinic_backups.observability import logger

psycopg2.extras.register_uuid()


# lock_timeout and statement_timeout: the statement gave up, the session is still good.
TIMEOUTS = (psycopg2.errors.LockNotAvailable, psycopg2.errors.QueryCanceled)


def translate_connect_error(error: psycopg2.Error) -> DatabaseUnavailable:
    # psycopg2's message can include the host and user; the API says only what is safe.
    logger.warning("database unavailable", extra={"pgcode": getattr(error, "pgcode", None)})
    return DatabaseUnavailable("The database is unavailable; try again later.")


T = TypeVar("T")


def newest_first(
    db: Any,
    statement: str,
    names: dict[str, sql.Composable],
    conditions: list[sql.Composable],
    params: list[Any],
    limit: int,
    make: Callable[[dict[str, Any]], T],
) -> tuple[list[T], bool]:
    """One page of a keyset-paged listing, newest first: `statement` has a `{where}` slot
    (the conditions joined with AND) and ends in `LIMIT %s`; one row more than `limit` is
    read to tell whether another page follows."""
    where = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("")
    with db.transaction() as cur:
        cur.execute(sql.SQL(statement).format(where=where, **names), [*params, limit + 1])
        rows = [make(r) for r in cur.fetchall()]
    return rows[:limit], len(rows) > limit


class Database:
    """One connection per thread, opened lazily and reopened after a failure."""

    def __init__(
        self, url: str, connect_timeout: int = 5, application_name: str = "clinic-backups"
    ):
        self._url = url
        self._connect_timeout = connect_timeout
        self._application_name = application_name
        self._local = threading.local()

    def _connection(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            try:
                conn = psycopg2.connect(
                    self._url,
                    connect_timeout=self._connect_timeout,
                    application_name=self._application_name,
                )
            except psycopg2.OperationalError as error:
                raise translate_connect_error(error) from None
            self._local.conn = conn
        return conn

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """A cursor (rows as dicts) inside one transaction: commit on success, else rollback."""
        conn = self._connection()
        try:
            with conn, conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                yield cur
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as error:
            if isinstance(error, TIMEOUTS) and not conn.closed:
                raise  # a lock_timeout or statement_timeout: the connection is fine
            self.close()
            raise translate_connect_error(error) from None

    @contextmanager
    def clinic(self, schema: str) -> Iterator[ClinicCursor]:
        """`transaction()` for statements on one clinic's tables (see `ClinicCursor`)."""
        names = clinic_tables(schema)  # an invalid schema name fails before any connection
        with self.transaction() as cur:
            yield ClinicCursor(cur, schema, names)

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            try:
                conn.close()
            except psycopg2.Error:
                pass
            self._local.conn = None


def clinic_table(schema: str, name: str) -> sql.Identifier:
    if not is_valid_schema_name(schema):
        raise ValueError("not a valid clinic schema name")
    return sql.Identifier(schema, name)


def clinic_tables(schema: str) -> dict[str, sql.Composable]:
    """The clinic's tables by their statement placeholder (`{records}`, `{lock}`, …)."""
    return {placeholder: clinic_table(schema, name) for placeholder, name in TABLES.items()}


def column_lists(columns: Sequence[str]) -> dict[str, sql.Composable]:
    """`{cols}` and `{vals}` of an INSERT of `columns` (one placeholder each)."""
    return {
        "cols": sql.SQL(", ").join(sql.Identifier(c) for c in columns),
        "vals": sql.SQL(", ").join(sql.Placeholder() for _ in columns),
    }


class ClinicCursor:
    """One clinic's statements in one transaction. A statement names the clinic's tables by
    their placeholders (`{records}`, `{lock}`, … : `migrations.TABLES`), any other identifier
    as a composed `part` (`psycopg2.sql`), and takes every value as a parameter."""

    def __init__(self, cur: Any, schema: str, names: dict[str, sql.Composable]):
        self.cur = cur
        self.schema = schema
        self.names = names

    def execute(self, statement: str, params: Any = None, **parts: sql.Composable) -> Any:
        """Run `statement`; the cursor, for its rows."""
        self.cur.execute(sql.SQL(statement).format(**parts, **self.names), params)
        return self.cur

    def one(self, statement: str, params: Any = None, **parts: sql.Composable) -> Any:
        """Run `statement`; its first row (a dict), None when it returned none."""
        return self.execute(statement, params, **parts).fetchone()

    def found(self, statement: str, params: Any = None, **parts: sql.Composable) -> bool:
        """Run `statement`; whether it returned a row (it claimed, inserted, matched…)."""
        return self.execute(statement, params, **parts).fetchone() is not None

    def all(
        self, statement: str, params: Any = None, **parts: sql.Composable
    ) -> builtins.list[dict[str, Any]]:
        """Run `statement`; every row it returned."""
        return list(self.execute(statement, params, **parts).fetchall())


# Statements that read many clinics at once (UNION ALL) take this many schemas each, and each
# batch is its own transaction: a transaction holds a lock on every table it read until it
# ends, and the server's lock table is only max_locks_per_transaction (64) x max_connections
# entries — reading 2,000 clinics in one transaction ran out of it ("out of shared memory").
SCHEMA_BATCH = 100
# A request waits at most this long for the lock row (a restore's swap holds the lock table
# for the moment it moves the service's tables back), then answers 409.
TAKE_LOCK_TIMEOUT = "5s"
LOCK_KINDS = ("backup", "reencrypt", "restore", "undo")


def batches(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def describe_error(error: psycopg2.Error) -> str:
    """The server's one-line reason (`permission denied for schema x`): never DETAIL, which
    can quote rows, never a connection string."""
    diag = getattr(error, "diag", None)
    message = getattr(diag, "message_primary", None) or type(error).__name__
    return str(message)[:200]


def read_fleet(
    db: Database,
    schemas: list[str],
    size: int,
    read: Callable[[Any, list[str]], builtins.list[dict[str, Any]]],
) -> tuple[builtins.list[dict[str, Any]], dict[str, str]]:
    """`read(cursor, batch)` over `schemas` in batches of `size`, each batch its own
    transaction (its table locks end with it). A batch whose statement fails is split in
    two, and again, down to the clinic that fails it: that clinic is returned with the
    reason, the others are read. A lost database fails the whole read (DatabaseUnavailable):
    splitting would only repeat the failure."""
    rows: builtins.list[dict[str, Any]] = []
    failed: dict[str, str] = {}
    todo = list(batches(list(schemas), size))
    while todo:
        batch = todo.pop(0)
        try:
            with db.transaction() as cur:
                rows += read(cur, batch)
        except psycopg2.Error as error:
            if len(batch) == 1:
                failed[batch[0]] = describe_error(error)
                logger.error(
                    "a clinic could not be read with the others; it is skipped",
                    extra={"clinic": batch[0], "reason": failed[batch[0]]},
                )
            else:
                half = len(batch) // 2
                todo[:0] = [batch[:half], batch[half:]]
    return rows, failed


# --- leases -------------------------------------------------------------------------------------
# SQL shared by the single-clinic statements and the fleet's batched reads. `{lock}`,
# `{records}` and `{restores}` are the clinic's tables; `%(stuck)s` the age threshold of jobs
# without a lease (pending ones, and running ones from before leases).

# (Plain SQL text, composed into statements that are then `.format`ted with the tables.)
LEASE_EXPIRED = (
    "l.lease_id IS NOT NULL AND l.renewed_at + l.lease_seconds * interval '1 second' < now()"
)
LEASE_LIVE = (
    "l.lease_id IS NOT NULL AND l.renewed_at + l.lease_seconds * interval '1 second' >= now()"
)
# A running backup is alive while a live lease covers it: its own lock row, or the lock of
# the restore it is the pre-restore backup of. A lock row without a lease (a job claimed
# before leases existed) keeps the age threshold.
BACKUP_ALIVE = (
    "EXISTS (SELECT 1 FROM {lock} l WHERE (l.ref_id = r.id OR l.ref_id IN "
    "(SELECT s.id FROM {restores} s WHERE s.pre_restore_backup_id = r.id)) AND ("
    + LEASE_LIVE
    + " OR l.lease_id IS NULL AND coalesce(r.started_at, r.created_at) >= %(stuck)s))"
)
STALE_BACKUP = (
    "(r.status = 'pending' AND r.created_at < %(stuck)s "
    "OR r.status = 'running' AND NOT " + BACKUP_ALIVE + ")"
)


@dataclass(frozen=True)
class Takeover:
    """An expired lease freed: its job (`kind`, `ref_id`) failed as stale."""

    kind: str
    ref_id: uuid.UUID
    backups_failed: builtins.list[uuid.UUID]


def insert_audit(tx: ClinicCursor, entry: AuditEntry) -> None:
    tx.execute(
        "INSERT INTO {audit} (id, at, action, outcome, actor_id, actor_name, actor_role, "
        "request_id, backup_id, details) VALUES (%s, now(), %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            uuid.uuid4(),
            entry.action,
            entry.outcome,
            entry.actor_id,
            entry.actor_name,
            entry.actor_role,
            entry.request_id,
            entry.backup_id,
            json.dumps(entry.details),
        ),
    )


# A backup job (pending or running) that a takeover or the sweeper fails as stale.
FAIL_BACKUP = (
    "UPDATE {records} SET status = 'failed', finished_at = %s, error_code = 'stale', "
    "error = %s WHERE id = %s AND status IN ('pending', 'running') RETURNING id"
)
JOB_ACTIONS = {
    "backup": "backup.run",
    "reencrypt": "backup.reencrypt",
    "restore": "restore.run",
    "undo": "restore.undo",
}


def expire_lock(
    tx: ClinicCursor, at: datetime, kinds: tuple[str, ...] = LOCK_KINDS
) -> Takeover | None:
    """If the clinic's lock is held under an expired lease, fail its job as stale (with the
    reason) and delete the row, in the caller's transaction. The row is locked first (FOR
    UPDATE re-checks the expiry on the newest version: a renewal that committed meanwhile
    wins)."""
    row = tx.one(
        "SELECT l.kind, l.ref_id, l.lease_id, "
        "round(extract(epoch FROM now() - l.renewed_at))::int AS silent "
        "FROM {lock} l WHERE " + LEASE_EXPIRED + " AND l.kind = ANY(%s) FOR UPDATE",
        (list(kinds),),
    )
    if row is None:
        return None
    kind, ref = row["kind"], row["ref_id"]
    reason = (
        f"the job stopped renewing the clinic's lease {row['silent']} s ago (its worker "
        "died or lost the database) and it was taken over"
    )
    backups = _fail_expired_job(tx, kind, ref, reason, at)
    tx.execute("DELETE FROM {lock} WHERE lease_id = %s", (row["lease_id"],))
    insert_audit(
        tx,
        AuditEntry(
            action=JOB_ACTIONS[kind],
            outcome="failed",
            actor_id="lease",
            backup_id=ref if kind in ("backup", "reencrypt") else None,
            details={"error_code": "stale", "job_id": str(ref), "silent_seconds": row["silent"]},
        ),
    )
    logger.warning(
        "an expired lease was taken over; its job failed as stale",
        extra={
            "clinic": tx.schema,
            "kind": kind,
            "job_id": str(ref),
            "silent_seconds": row["silent"],
        },
    )
    return Takeover(kind=kind, ref_id=ref, backups_failed=backups)


def _fail_expired_job(
    tx: ClinicCursor, kind: str, ref: uuid.UUID, reason: str, at: datetime
) -> builtins.list[uuid.UUID]:
    """Fail the job an expired lease held; the backups failed with it."""
    backups: builtins.list[uuid.UUID] = []
    if kind == "backup":
        rows = tx.all(FAIL_BACKUP, (at, f"{reason}; any unfinished upload is removed", ref))
        backups += [r["id"] for r in rows]
    elif kind == "reencrypt":
        tx.execute("UPDATE {records} SET reencrypting = false WHERE id = %s", (ref,))
    elif kind == "restore":
        for failed in tx.all(
            "UPDATE {restores} SET status = 'failed', finished_at = %s, error_code = 'stale', "
            "error = %s WHERE id = %s AND status IN ('pending', 'running') "
            "RETURNING pre_restore_backup_id",
            (at, f"{reason}; nothing changed", ref),
        ):
            if failed["pre_restore_backup_id"] is not None:
                why = f"{reason} (the restore it was made for)"
                rows = tx.all(FAIL_BACKUP, (at, why, failed["pre_restore_backup_id"]))
                backups += [r["id"] for r in rows]
    else:  # undo
        tx.execute(
            "UPDATE {restores} SET undo_status = 'failed', undo_error_code = 'stale', "
            "undo_error = %s, step = 'done' WHERE id = %s "
            "AND undo_status IN ('pending', 'running')",
            (f"{reason}; nothing changed", ref),
        )
    return backups


def acquire_lock(tx: ClinicCursor, kind: str, ref_id: uuid.UUID, at: datetime) -> Takeover | None:
    """Insert the clinic's lock row for a new job, taking over an expired lease first (same
    transaction); OperationInProgress when a live (or pending) job holds it."""
    takeover = expire_lock_for_taking(tx, at)
    insert_lock(tx, kind, ref_id, at)
    return takeover


def expire_lock_for_taking(tx: ClinicCursor, at: datetime) -> Takeover | None:
    tx.cur.execute("SET LOCAL lock_timeout = %s", (TAKE_LOCK_TIMEOUT,))
    return expire_lock(tx, at)


def insert_lock(tx: ClinicCursor, kind: str, ref_id: uuid.UUID, at: datetime) -> None:
    if not tx.found(
        "INSERT INTO {lock} (kind, ref_id, acquired_at) VALUES (%s, %s, %s) "
        "ON CONFLICT (singleton) DO NOTHING RETURNING ref_id",
        (kind, ref_id, at),
    ):
        raise OperationInProgress()


def release_lock(tx: ClinicCursor, kind: str, ref_id: uuid.UUID, lease: Lease | None) -> bool:
    """Delete the job's lock row: with its `lease`, only while the job still holds it (False
    when it was taken over); without one (never claimed: no lease on the row), by the job."""
    if lease is not None:
        return tx.found("DELETE FROM {lock} WHERE lease_id = %s RETURNING 1", (lease.id,))
    tx.execute(
        "DELETE FROM {lock} WHERE ref_id = %s AND kind = %s AND lease_id IS NULL", (ref_id, kind)
    )
    return True


def report_takeover(metrics: Metrics | None, takeover: Takeover | None) -> None:
    """The metrics of a takeover, once its transaction committed: the dead job failed."""
    if takeover is None or metrics is None:
        return
    metrics.add("LeasesTakenOver", 1, "Count")
    if takeover.backups_failed:
        metrics.add("BackupFailed", len(takeover.backups_failed), "Count")
    if takeover.kind == "restore":
        metrics.add("RestoreFailed", 1, "Count")


@contextmanager
def busy_is_409() -> Iterator[None]:
    """The lock row stayed locked past TAKE_LOCK_TIMEOUT: the clinic is busy."""
    try:
        yield
    except TIMEOUTS:
        raise OperationInProgress("The clinic is busy; try again in a moment.") from None


def claim_lease(tx: ClinicCursor, kind: str, ref_id: uuid.UUID, lease: Lease) -> bool:
    """Stamp the job's lock row (still without a lease: pending) with this run's lease."""
    return tx.found(
        "UPDATE {lock} SET lease_id = %s, renewed_at = now(), lease_seconds = %s "
        "WHERE kind = %s AND ref_id = %s AND lease_id IS NULL RETURNING 1",
        (lease.id, lease.seconds, kind, ref_id),
    )


def renew_timeouts(tx: ClinicCursor, lease: Lease) -> None:
    """A renewal never waits long (the swap may hold the lock table for a moment): a quarter
    of a beat, at most 2 s; a renewal that gives up is tried again at the next beat."""
    wait_ms = max(100, min(2000, int(lease.seconds * 1000 / 8)))
    tx.cur.execute("SET LOCAL lock_timeout = %s", (f"{wait_ms}ms",))
    tx.cur.execute("SET LOCAL statement_timeout = %s", (f"{wait_ms * 2}ms",))


class Rollback(Exception):
    """Leave a transaction without committing (and without an error for the caller)."""


RECORD_COLUMNS = (
    "id",
    "status",
    "trigger",
    "file_name",
    "storage_key",
    "size_bytes",
    "sha256",
    "encryption",
    "format",
    "compression",
    "pg_dump_version",
    "server_version",
    "created_by",
    "created_by_name",
    "created_at",
    "started_at",
    "finished_at",
    "deleted_at",
    "deleted_by",
    "purged_at",
    "error",
    "error_code",
    "note",
    "keep",
    "table_counts",
    "checked_at",
    "check_outcome",
    "check_error",
    "verified_at",
    "verify_outcome",
    "verify_details",
    "plaintext_sha256",
    "recipients",
    "reencrypting",
    "cancel_requested_at",
    "file_missing_at",
    "parts",
    "replicated_at",
    "replica_retain_until",
    "primary_damaged_at",
)


def record_from_row(row: dict[str, Any]) -> BackupRecord:
    data = {k: row[k] for k in RECORD_COLUMNS}
    data["status"] = BackupStatus(data["status"])
    data["trigger"] = Trigger(data["trigger"])
    return BackupRecord(**data)


def one_record(
    tx: ClinicCursor, statement: str, params: Any = None, **parts: sql.Composable
) -> BackupRecord | None:
    """The backup record `statement` returned, if any."""
    row = tx.one(statement, params, **parts)
    return record_from_row(row) if row else None


def all_records(
    tx: ClinicCursor, statement: str, params: Any = None
) -> builtins.list[BackupRecord]:
    """The backup records `statement` returned."""
    return [record_from_row(row) for row in tx.all(statement, params)]
