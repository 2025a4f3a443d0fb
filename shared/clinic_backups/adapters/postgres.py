"""PostgreSQL adapters: connections, the per-clinic migration, records, audit, tenants.

Every SQL identifier goes through `psycopg2.sql.Identifier`; values are always parameters.
The tables live in each clinic's own schema (see `names.OWNED_TABLES`) and are excluded from
every dump, so restoring an older backup never rolls back history or audit.

The per-clinic operation lock is a one-row table (`backup_operation_lock`): a backup (a
restore, an undo, a re-encryption) inserts the row in the same transaction that creates its
record and deletes it in the transaction that finishes it. The primary key makes a second
concurrent operation fail in the database itself, not only in code.

The row is a **lease**: the worker that claims the job stamps it with its run's token
(`lease_id`) and the database's `now()` (`renewed_at`), and renews it from a heartbeat.
Whoever asks for the lock after the lease expired (`renewed_at + lease_seconds < now()`) takes
it over, in one transaction: the dead job fails as `stale` with the reason, the row goes, the
new one is inserted (`_take_lock`). The sweeper expires leases the same way (`_expire_lock`).
A pending job (no lease yet) keeps the sweeper's age threshold.

Statements that read many clinics at once (`read_fleet`) split a failing batch down to the
clinic that fails it: one unreadable clinic never hides the others.
"""

from __future__ import annotations

import builtins
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import psycopg2
import psycopg2.errors
import psycopg2.extras
from psycopg2 import sql

from clinic_backups.adapters.migrations import MIGRATIONS, TABLES
from clinic_backups.domain.errors import (
    BackupCancelled,
    BackupNotCompleted,
    ClinicNotAvailable,
    CopiedBackupTables,
    DatabaseUnavailable,
    LeaseLost,
    OperationInProgress,
)
from clinic_backups.domain.models import (
    AuditEntry,
    AuditRecord,
    BackupRecord,
    BackupStatus,
    Clinic,
    DumpResult,
    Lease,
    SupersededCopy,
    Trigger,
)
from clinic_backups.domain.names import (
    OWNED_TABLES,
    RESERVED_SCHEMAS,
    is_valid_schema_name,
    meta_stamp,
)
from clinic_backups.domain.ports import (
    CANCEL,
    AuditFilter,
    ListFilter,
    Metrics,
    Renewal,
    SchemaCheck,
)
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

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            try:
                conn.close()
            except psycopg2.Error:
                pass
            self._local.conn = None


def _table(schema: str, name: str) -> sql.Identifier:
    if not is_valid_schema_name(schema):
        raise ValueError("not a valid clinic schema name")
    return sql.Identifier(schema, name)


LATEST_VERSION = MIGRATIONS[-1][0]
# From this version on, `backup_meta` carries its clinic's stamp (names.meta_stamp).
STAMP_VERSION = 6
# Statements that read many clinics at once (UNION ALL) take this many schemas each, and each
# batch is its own transaction: a transaction holds a lock on every table it read until it
# ends, and the server's lock table is only max_locks_per_transaction (64) x max_connections
# entries — reading 2,000 clinics in one transaction ran out of it ("out of shared memory").
SCHEMA_BATCH = 100
NEVER_STARTED = "the backup's job never started (its message expired); nothing was stored"
LEASE_GONE = "the job lost the clinic's lease (its worker died?)"
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


def _insert_audit(cur: Any, names: dict[str, Any], entry: AuditEntry) -> None:
    cur.execute(
        sql.SQL(
            "INSERT INTO {audit} (id, at, action, outcome, actor_id, actor_name, actor_role, "
            "request_id, backup_id, details) VALUES (%s, now(), %s, %s, %s, %s, %s, %s, %s, %s)"
        ).format(**names),
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


def _expire_lock(
    cur: Any,
    names: dict[str, Any],
    schema: str,
    at: datetime,
    kinds: tuple[str, ...] = LOCK_KINDS,
) -> Takeover | None:
    """If the clinic's lock is held under an expired lease, fail its job as stale (with the
    reason) and delete the row, in the caller's transaction. The row is locked first (FOR
    UPDATE re-checks the expiry on the newest version: a renewal that committed meanwhile
    wins)."""
    cur.execute(
        sql.SQL(
            "SELECT l.kind, l.ref_id, l.lease_id, "
            "round(extract(epoch FROM now() - l.renewed_at))::int AS silent "
            "FROM {lock} l WHERE " + LEASE_EXPIRED + " AND l.kind = ANY(%s) FOR UPDATE"
        ).format(**names),
        (list(kinds),),
    )
    row = cur.fetchone()
    if row is None:
        return None
    kind, ref = row["kind"], row["ref_id"]
    reason = (
        f"the job stopped renewing the clinic's lease {row['silent']} s ago (its worker "
        "died or lost the database) and it was taken over"
    )
    backups: builtins.list[uuid.UUID] = []
    fail_backup = sql.SQL(
        "UPDATE {records} SET status = 'failed', finished_at = %s, error_code = 'stale', "
        "error = %s WHERE id = %s AND status IN ('pending', 'running') RETURNING id"
    ).format(**names)
    if kind == "backup":
        cur.execute(fail_backup, (at, f"{reason}; any unfinished upload is removed", ref))
        backups += [r["id"] for r in cur.fetchall()]
    elif kind == "reencrypt":
        cur.execute(
            sql.SQL("UPDATE {records} SET reencrypting = false WHERE id = %s").format(**names),
            (ref,),
        )
    elif kind == "restore":
        cur.execute(
            sql.SQL(
                "UPDATE {restores} SET status = 'failed', finished_at = %s, error_code = 'stale', "
                "error = %s WHERE id = %s AND status IN ('pending', 'running') "
                "RETURNING pre_restore_backup_id"
            ).format(**names),
            (at, f"{reason}; nothing changed", ref),
        )
        for failed in cur.fetchall():
            if failed["pre_restore_backup_id"] is not None:
                cur.execute(
                    fail_backup,
                    (
                        at,
                        f"{reason} (the restore it was made for)",
                        failed["pre_restore_backup_id"],
                    ),
                )
                backups += [r["id"] for r in cur.fetchall()]
    else:  # undo
        cur.execute(
            sql.SQL(
                "UPDATE {restores} SET undo_status = 'failed', undo_error_code = 'stale', "
                "undo_error = %s, step = 'done' WHERE id = %s "
                "AND undo_status IN ('pending', 'running')"
            ).format(**names),
            (f"{reason}; nothing changed", ref),
        )
    cur.execute(
        sql.SQL("DELETE FROM {lock} WHERE lease_id = %s").format(**names), (row["lease_id"],)
    )
    action = {
        "backup": "backup.run",
        "reencrypt": "backup.reencrypt",
        "restore": "restore.run",
        "undo": "restore.undo",
    }[kind]
    _insert_audit(
        cur,
        names,
        AuditEntry(
            action=action,
            outcome="failed",
            actor_id="lease",
            backup_id=ref if kind in ("backup", "reencrypt") else None,
            details={"error_code": "stale", "job_id": str(ref), "silent_seconds": row["silent"]},
        ),
    )
    logger.warning(
        "an expired lease was taken over; its job failed as stale",
        extra={"clinic": schema, "kind": kind, "job_id": str(ref), "silent_seconds": row["silent"]},
    )
    return Takeover(kind=kind, ref_id=ref, backups_failed=backups)


def _take_lock(
    cur: Any, names: dict[str, Any], schema: str, kind: str, ref_id: uuid.UUID, at: datetime
) -> Takeover | None:
    """Insert the clinic's lock row for a new job, taking over an expired lease first (same
    transaction); OperationInProgress when a live (or pending) job holds it."""
    takeover = _expire_lock_for_taking(cur, names, schema, at)
    _insert_lock(cur, names, kind, ref_id, at)
    return takeover


def _expire_lock_for_taking(
    cur: Any, names: dict[str, Any], schema: str, at: datetime
) -> Takeover | None:
    cur.execute("SET LOCAL lock_timeout = %s", (TAKE_LOCK_TIMEOUT,))
    return _expire_lock(cur, names, schema, at)


def _insert_lock(
    cur: Any, names: dict[str, Any], kind: str, ref_id: uuid.UUID, at: datetime
) -> None:
    cur.execute(
        sql.SQL(
            "INSERT INTO {lock} (kind, ref_id, acquired_at) VALUES (%s, %s, %s) "
            "ON CONFLICT (singleton) DO NOTHING RETURNING ref_id"
        ).format(**names),
        (kind, ref_id, at),
    )
    if cur.fetchone() is None:
        raise OperationInProgress()


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


def claim_lease(
    cur: Any, names: dict[str, Any], kind: str, ref_id: uuid.UUID, lease: Lease
) -> bool:
    """Stamp the job's lock row (still without a lease: pending) with this run's lease."""
    cur.execute(
        sql.SQL(
            "UPDATE {lock} SET lease_id = %s, renewed_at = now(), lease_seconds = %s "
            "WHERE kind = %s AND ref_id = %s AND lease_id IS NULL RETURNING 1"
        ).format(**names),
        (lease.id, lease.seconds, kind, ref_id),
    )
    return cur.fetchone() is not None


def renew_timeouts(cur: Any, lease: Lease) -> None:
    """A renewal never waits long (the swap may hold the lock table for a moment): a quarter
    of a beat, at most 2 s; a renewal that gives up is tried again at the next beat."""
    wait_ms = max(100, min(2000, int(lease.seconds * 1000 / 8)))
    cur.execute("SET LOCAL lock_timeout = %s", (f"{wait_ms}ms",))
    cur.execute("SET LOCAL statement_timeout = %s", (f"{wait_ms * 2}ms",))


class _Rollback(Exception):
    """Leave a transaction without committing (and without an error for the caller)."""


_RECORD_COLUMNS = (
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


def _db_value(value: Any) -> Any:
    """A record field as a query parameter (enums by value, JSON columns wrapped)."""
    if isinstance(value, BackupStatus | Trigger):
        return value.value
    if isinstance(value, dict | list):
        # jsonb columns (table_counts, verify_details, recipients, parts); no arrays
        return psycopg2.extras.Json(value)
    return value


_INSERT_TAILS = {
    "returning": sql.SQL("RETURNING *"),
    "if_new": sql.SQL("ON CONFLICT DO NOTHING RETURNING id"),
}


def _insert_record(cur: Any, names: dict[str, Any], record: BackupRecord, tail: str) -> None:
    """INSERT every column of `record`, then `_INSERT_TAILS[tail]`."""
    columns = list(_RECORD_COLUMNS)
    cur.execute(
        sql.SQL("INSERT INTO {records} ({cols}) VALUES ({vals}) {tail}").format(
            cols=sql.SQL(", ").join(sql.Identifier(c) for c in columns),
            vals=sql.SQL(", ").join(sql.Placeholder() for _ in columns),
            tail=_INSERT_TAILS[tail],
            **names,
        ),
        [_db_value(getattr(record, c)) for c in columns],
    )


def _record(row: dict[str, Any]) -> BackupRecord:
    data = {k: row[k] for k in _RECORD_COLUMNS}
    data["status"] = BackupStatus(data["status"])
    data["trigger"] = Trigger(data["trigger"])
    return BackupRecord(**data)


class PostgresRecords:
    """The `RecordsRepository` port on PostgreSQL."""

    def __init__(
        self, db: Database, metrics: Metrics | None = None, tables_owner: str | None = None
    ):
        self._db = db
        self._migrated: set[str] = set()
        # BACKUP_TABLES_OWNER: the one role that owns every clinic's backup_* tables, whichever
        # role created them (an operator's migrate, a function's first request).
        self._tables_owner = tables_owner
        # Takeovers of expired leases are counted here, where they happen (LeasesTakenOver,
        # and BackupFailed for the dead backup: the alarm's metric).
        self._metrics = metrics

    def _names(self, schema: str) -> dict[str, sql.Composable]:
        return {placeholder: _table(schema, table) for placeholder, table in TABLES.items()}

    # --- migrations ---------------------------------------------------------------------

    def ensure_schema(self, schema: str) -> None:
        if schema in self._migrated:
            return
        names = self._names(schema)
        stamp = meta_stamp(schema)
        with self._db.transaction() as cur:
            cur.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
            if cur.fetchone() is None:
                raise ClinicNotAvailable()
            # Up to date: no DDL. (CREATE TABLE IF NOT EXISTS locks the schema, and a restore's
            # swap holds that lock until it commits: a request would wait for the swap.)
            cur.execute(
                "SELECT obj_description(c.oid, 'pg_class') AS stamp FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relname = %s AND c.relkind = 'r'",
                (schema, TABLES["meta"]),
            )
            meta = cur.fetchone()
            copied = False
            if meta is not None:
                cur.execute(sql.SQL("SELECT version FROM {meta}").format(**names))
                row = cur.fetchone()
                version = row["version"] if row is not None else 0
                copied = version >= STAMP_VERSION and meta["stamp"] != stamp
                if not copied and version == LATEST_VERSION and self._owned_right(cur, schema):
                    self._migrated.add(schema)
                    return
            # One migrator per clinic at a time; others wait and then see the new version.
            cur.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                (f"clinic_backups:migrate:{schema}",),
            )
            if copied:
                self._clean_copy(cur, names, schema)
            cur.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {meta} ("
                    " singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),"
                    " version integer NOT NULL)"
                ).format(**names)
            )
            cur.execute(sql.SQL("SELECT version FROM {meta}").format(**names))
            row = cur.fetchone()
            current = row["version"] if row else 0
            for version, statements in MIGRATIONS:
                if version <= current:
                    continue
                for statement in statements:
                    cur.execute(sql.SQL(statement).format(stamp=sql.Literal(stamp), **names))
                cur.execute(
                    sql.SQL(
                        "INSERT INTO {meta} (version) VALUES (%s) "
                        "ON CONFLICT (singleton) DO UPDATE SET version = EXCLUDED.version"
                    ).format(**names),
                    (version,),
                )
                logger.info("migrated clinic tables", extra={"clinic": schema, "version": version})
            self._give_to_owner(cur, schema)
        self._migrated.add(schema)

    def _owned_right(self, cur: Any, schema: str) -> bool:
        """Whether every backup table of the clinic is owned by BACKUP_TABLES_OWNER (unset:
        nothing to check)."""
        if not self._tables_owner:
            return True
        cur.execute(
            "SELECT count(*) AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = ANY(%s) AND c.relkind = 'r' "
            "AND pg_get_userbyid(c.relowner) <> %s",
            (schema, list(OWNED_TABLES), self._tables_owner),
        )
        return bool(cur.fetchone()["n"] == 0)

    def _give_to_owner(self, cur: Any, schema: str) -> None:
        """Every backup table of the clinic to BACKUP_TABLES_OWNER, whichever role created it:
        an operator's `migrate` (the restore role) must not leave tables the functions' role
        cannot write. Tables this role may not give away are left, and logged with the fix."""
        if not self._tables_owner:
            return
        # The schema's owner (the host's role) may read the clinic's lock: the host's
        # maintenance middleware (contrib/django_clinic_backups) answers 503 while a restore
        # holds it. Nothing else of ours.
        cur.execute(
            "SELECT c.relname, pg_get_userbyid(n.nspowner) AS schema_owner FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s "
            "AND c.relname = %s AND c.relkind = 'r' AND pg_has_role(c.relowner, 'USAGE') "
            "AND NOT has_table_privilege(n.nspowner, c.oid, 'SELECT')",
            (schema, TABLES["lock"]),
        )
        for row in cur.fetchall():
            cur.execute(
                sql.SQL("GRANT SELECT ON {} TO {}").format(
                    sql.Identifier(schema, row["relname"]), sql.Identifier(row["schema_owner"])
                )
            )
        cur.execute(
            "SELECT c.relname, pg_has_role(c.relowner, 'USAGE') AND pg_has_role(%s, 'USAGE') "
            "AS allowed FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = ANY(%s) AND c.relkind = 'r' "
            "AND pg_get_userbyid(c.relowner) <> %s ORDER BY 1",
            (self._tables_owner, schema, list(OWNED_TABLES), self._tables_owner),
        )
        for row in cur.fetchall():
            if not row["allowed"]:
                logger.error(
                    "a backup table is not owned by BACKUP_TABLES_OWNER; run clinic-backups grant",
                    extra={"clinic": schema, "table": row["relname"]},
                )
                continue
            cur.execute(
                sql.SQL("ALTER TABLE {} OWNER TO {}").format(
                    sql.Identifier(schema, row["relname"]), sql.Identifier(self._tables_owner)
                )
            )

    def _clean_copy(self, cur: Any, names: dict[str, sql.Composable], schema: str) -> None:
        """The clinic's backup tables were copied from another schema (clone_schema): their
        rows describe that clinic (its backups, keys, restores, slots), so they are emptied
        before anything reads them. The copied records' objects belong to the other clinic and
        are never touched."""
        try:
            cur.execute("SAVEPOINT clean_copy")
            cur.execute(
                sql.SQL("SELECT count(*) AS n FROM {records}").format(**names),
            )
            copied_records = cur.fetchone()["n"]
            cur.execute(
                sql.SQL("TRUNCATE {}").format(
                    sql.SQL(", ").join(
                        names[p]
                        for p in (
                            "records",
                            "audit",
                            "lock",
                            "settings",
                            "slots",
                            "restores",
                            "keys",
                        )
                    )
                )
            )
            cur.execute(
                sql.SQL("COMMENT ON TABLE {meta} IS {stamp}").format(
                    stamp=sql.Literal(meta_stamp(schema)), **names
                )
            )
            cur.execute("RELEASE SAVEPOINT clean_copy")
        except psycopg2.errors.InsufficientPrivilege:
            cur.execute("ROLLBACK TO SAVEPOINT clean_copy")
            raise CopiedBackupTables(
                "the clinic's backup tables were copied from another schema (clone_schema) "
                "and this role may not clean them: run `clinic-backups grant`"
            ) from None
        logger.warning(
            "the clinic's backup tables were another schema's copy (clone_schema); emptied",
            extra={"clinic": schema, "copied_records": copied_records},
        )

    # --- records ------------------------------------------------------------------------

    def create_pending(self, schema: str, record: BackupRecord) -> BackupRecord:
        names = self._names(schema)
        with busy_is_409(), self._db.transaction() as cur:
            takeover = _take_lock(cur, names, schema, "backup", record.id, record.created_at)
            _insert_record(cur, names, record, "returning")
            created = _record(cur.fetchone())
        report_takeover(self._metrics, takeover)
        return created

    def create_pending_under_lock(
        self, schema: str, record: BackupRecord, lock_ref: uuid.UUID
    ) -> BackupRecord:
        names = self._names(schema)
        with self._db.transaction() as cur:
            # The caller's lock row, held (and kept) while this record is inserted.
            cur.execute(
                sql.SQL("SELECT 1 FROM {lock} WHERE ref_id = %s FOR SHARE").format(**names),
                (lock_ref,),
            )
            if cur.fetchone() is None:
                raise OperationInProgress("The operation no longer holds the clinic's lock.")
            _insert_record(cur, names, record, "returning")
            return _record(cur.fetchone())

    def claim(
        self, schema: str, backup_id: uuid.UUID, at: datetime, lease: Lease | None = None
    ) -> BackupRecord | None:
        names = self._names(schema)
        try:
            with self._db.transaction() as cur:
                cur.execute(
                    sql.SQL(
                        "UPDATE {records} SET status = 'running', started_at = %s "
                        "WHERE id = %s AND status = 'pending' RETURNING *"
                    ).format(**names),
                    (at, backup_id),
                )
                row = cur.fetchone()
                if row is None:
                    return None
                # The job's lock row takes this run's lease in the same transaction: there is
                # no moment when the backup runs without one.
                if lease is not None and not claim_lease(cur, names, "backup", backup_id, lease):
                    logger.warning(
                        "a pending backup without its lock row; not run",
                        extra={"clinic": schema, "backup_id": str(backup_id)},
                    )
                    raise _Rollback()
                return _record(row)
        except _Rollback:
            return None

    def renew_lease(self, schema: str, lease: Lease) -> Renewal:
        """One heartbeat: True renewed, False the lease is gone (released or taken over),
        None the lock table was busy (the swap moving the service's tables): next beat;
        `CANCEL` renewed, and the backup holding it was asked to cancel (same statement)."""
        try:
            with self._db.transaction() as cur:
                renew_timeouts(cur, lease)
                cur.execute(
                    sql.SQL(
                        "UPDATE {lock} l SET renewed_at = now() WHERE lease_id = %s RETURNING "
                        "l.kind = 'backup' AND EXISTS (SELECT 1 FROM {records} r "
                        "WHERE r.id = l.ref_id AND r.cancel_requested_at IS NOT NULL) AS cancel"
                    ).format(**self._names(schema)),
                    (lease.id,),
                )
                row = cur.fetchone()
                if row is None:
                    return False
                return CANCEL if row["cancel"] else True
        except TIMEOUTS:
            return None

    def release_thread_connection(self) -> None:
        self._db.close()

    def complete(
        self,
        schema: str,
        backup_id: uuid.UUID,
        result: DumpResult,
        at: datetime,
        recipients: builtins.list[dict[str, Any]] | None = None,
        parts: builtins.list[dict[str, Any]] | None = None,
    ) -> BackupRecord:
        names = self._names(schema)
        with self._db.transaction() as cur:
            cur.execute(
                sql.SQL(
                    "UPDATE {records} SET status = 'completed', finished_at = %s, size_bytes = %s, "
                    "sha256 = %s, plaintext_sha256 = %s, recipients = %s, parts = %s, "
                    "pg_dump_version = %s, server_version = %s, error = NULL, error_code = NULL "
                    "WHERE id = %s AND status = 'running' AND cancel_requested_at IS NULL "
                    "RETURNING *"
                ).format(**names),
                (
                    at,
                    result.size_bytes,
                    result.sha256,
                    result.plaintext_sha256,
                    psycopg2.extras.Json(recipients or []),
                    psycopg2.extras.Json(parts) if parts else None,
                    result.pg_dump_version,
                    result.server_version,
                    backup_id,
                ),
            )
            row = cur.fetchone()
            if row is None:
                cur.execute(
                    sql.SQL(
                        "SELECT 1 FROM {records} WHERE id = %s AND status = 'running' "
                        "AND cancel_requested_at IS NOT NULL"
                    ).format(**names),
                    (backup_id,),
                )
                if cur.fetchone() is not None:
                    # Cancelled after the last beat: a cancel that was answered 202 wins.
                    raise BackupCancelled()
                # Failed meanwhile: its lease was taken over (or the sweeper failed it).
                raise LeaseLost("the backup was no longer running when it completed")
            cur.execute(
                sql.SQL("DELETE FROM {lock} WHERE ref_id = %s").format(**names), (backup_id,)
            )
            return _record(row)

    def fail(
        self, schema: str, backup_id: uuid.UUID, error_code: str, error: str, at: datetime
    ) -> None:
        names = self._names(schema)
        with self._db.transaction() as cur:
            cur.execute(
                sql.SQL(
                    "UPDATE {records} SET status = 'failed', finished_at = %s, error_code = %s, "
                    "error = %s WHERE id = %s AND status IN ('pending', 'running')"
                ).format(**names),
                (at, error_code, error[:500], backup_id),
            )
            cur.execute(
                sql.SQL("DELETE FROM {lock} WHERE ref_id = %s").format(**names), (backup_id,)
            )

    # --- cancel -----------------------------------------------------------------------

    def request_cancel(
        self, schema: str, backup_id: uuid.UUID, at: datetime
    ) -> BackupRecord | None:
        names = self._names(schema)
        with busy_is_409(), self._db.transaction() as cur:
            # The row lock orders this against the worker's claim (pending → running).
            cur.execute(
                sql.SQL("SELECT status FROM {records} WHERE id = %s FOR UPDATE").format(**names),
                (backup_id,),
            )
            row = cur.fetchone()
            if row is None:
                return None
            if row["status"] == "pending":
                # Its job has not started (it has no lease): it ends here, and the worker's
                # claim will find nothing pending.
                cur.execute(
                    sql.SQL(
                        "UPDATE {records} SET status = 'cancelled', finished_at = %s, "
                        "cancel_requested_at = %s WHERE id = %s RETURNING *"
                    ).format(**names),
                    (at, at, backup_id),
                )
                cancelled = _record(cur.fetchone())
                cur.execute("SET LOCAL lock_timeout = %s", (TAKE_LOCK_TIMEOUT,))
                cur.execute(
                    sql.SQL(
                        "DELETE FROM {lock} WHERE ref_id = %s AND kind = 'backup' "
                        "AND lease_id IS NULL"
                    ).format(**names),
                    (backup_id,),
                )
                return cancelled
            cur.execute(
                sql.SQL(
                    "UPDATE {records} SET cancel_requested_at = coalesce(cancel_requested_at, %s) "
                    "WHERE id = %s AND status = 'running' RETURNING *"
                ).format(**names),
                (at, backup_id),
            )
            updated = cur.fetchone()
            if updated is not None:
                return _record(updated)
            cur.execute(
                sql.SQL("SELECT * FROM {records} WHERE id = %s").format(**names), (backup_id,)
            )
            return _record(cur.fetchone())

    def finish_cancelled(self, schema: str, backup_id: uuid.UUID, at: datetime) -> bool:
        names = self._names(schema)
        with self._db.transaction() as cur:
            cur.execute(
                sql.SQL(
                    "UPDATE {records} SET status = 'cancelled', finished_at = %s "
                    "WHERE id = %s AND status = 'running' RETURNING 1"
                ).format(**names),
                (at, backup_id),
            )
            if cur.fetchone() is None:
                return False  # taken over meanwhile: the taker failed it and freed the lock
            cur.execute(
                sql.SQL("DELETE FROM {lock} WHERE ref_id = %s AND kind = 'backup'").format(**names),
                (backup_id,),
            )
            return True

    # --- re-encryption (holds the clinic's operation lock, like a backup or a restore) ---

    def start_reencrypt(self, schema: str, backup_id: uuid.UUID, at: datetime) -> BackupRecord:
        """Take the clinic's lock for this backup and flag it; OperationInProgress if busy."""
        names = self._names(schema)
        with busy_is_409(), self._db.transaction() as cur:
            takeover = _take_lock(cur, names, schema, "reencrypt", backup_id, at)
            cur.execute(
                sql.SQL(
                    "UPDATE {records} SET reencrypting = true WHERE id = %s AND status = 'completed' "
                    "RETURNING *"
                ).format(**names),
                (backup_id,),
            )
            row = cur.fetchone()
            if row is None:
                raise BackupNotCompleted("Only completed backups can be re-encrypted.")
            flagged = _record(row)
        report_takeover(self._metrics, takeover)
        return flagged

    def claim_reencrypt(self, schema: str, backup_id: uuid.UUID, lease: Lease) -> bool:
        names = self._names(schema)
        with self._db.transaction() as cur:
            cur.execute(
                sql.SQL("SELECT 1 FROM {records} WHERE id = %s AND reencrypting").format(**names),
                (backup_id,),
            )
            return cur.fetchone() is not None and claim_lease(
                cur, names, "reencrypt", backup_id, lease
            )

    def finish_reencrypt(
        self,
        schema: str,
        backup_id: uuid.UUID,
        *,
        storage_key: str | None = None,
        file_name: str | None = None,
        size_bytes: int | None = None,
        sha256: str | None = None,
        recipients: builtins.list[dict[str, Any]] | None = None,
        lease: Lease | None = None,
        parts: builtins.list[dict[str, Any]] | None = None,
        superseded_keys: builtins.list[str] | None = None,
    ) -> BackupRecord | None:
        """Point the record at the new object (when given), clear the flag, release the lock.
        With the job's `lease`, only while it still holds it: LeaseLost otherwise (the taker
        cleared the flag; the record keeps pointing at the old object). A replica copy of the
        old objects is remembered (`superseded_keys`, its lock date) in the same transaction."""
        names = self._names(schema)
        with self._db.transaction() as cur:
            if lease is not None:
                cur.execute(
                    sql.SQL("DELETE FROM {lock} WHERE lease_id = %s RETURNING 1").format(**names),
                    (lease.id,),
                )
                if cur.fetchone() is None:
                    raise LeaseLost("the re-encryption lost the clinic's lease")
            else:
                # Never claimed (its job could not be queued): the row has no lease.
                cur.execute(
                    sql.SQL(
                        "DELETE FROM {lock} WHERE ref_id = %s AND kind = 'reencrypt' "
                        "AND lease_id IS NULL"
                    ).format(**names),
                    (backup_id,),
                )
            if storage_key is not None and superseded_keys:
                # The old generation's replica copies stay locked; no record would name them.
                cur.execute(
                    sql.SQL(
                        "INSERT INTO {superseded} (id, backup_id, keys, retain_until, "
                        "superseded_at) SELECT %s, id, %s, replica_retain_until, now() "
                        "FROM {records} WHERE id = %s AND replicated_at IS NOT NULL"
                    ).format(**names),
                    (uuid.uuid4(), psycopg2.extras.Json(superseded_keys), backup_id),
                )
            if storage_key is not None:
                cur.execute(
                    sql.SQL(
                        "UPDATE {records} SET storage_key = %s, file_name = %s, size_bytes = %s, "
                        "sha256 = %s, recipients = %s, parts = %s, reencrypting = false, "
                        # New objects: the replica's copy (of the old ones) no longer is one.
                        "replicated_at = NULL, replica_retain_until = NULL, "
                        "primary_damaged_at = NULL WHERE id = %s RETURNING *"
                    ).format(**names),
                    (
                        storage_key,
                        file_name,
                        size_bytes,
                        sha256,
                        psycopg2.extras.Json(recipients or []),
                        psycopg2.extras.Json(parts) if parts else None,
                        backup_id,
                    ),
                )
            else:
                cur.execute(
                    sql.SQL(
                        "UPDATE {records} SET reencrypting = false WHERE id = %s RETURNING *"
                    ).format(**names),
                    (backup_id,),
                )
            row = cur.fetchone()
            return _record(row) if row else None

    def get(self, schema: str, backup_id: uuid.UUID) -> BackupRecord | None:
        with self._db.transaction() as cur:
            cur.execute(
                sql.SQL("SELECT * FROM {records} WHERE id = %s").format(**self._names(schema)),
                (backup_id,),
            )
            row = cur.fetchone()
            return _record(row) if row else None

    def list(self, schema: str, query: ListFilter) -> tuple[list[BackupRecord], bool]:
        conditions: builtins.list[sql.Composable] = []
        params: builtins.list[Any] = []
        if query.status is not None:
            conditions.append(sql.SQL("status = %s"))
            params.append(query.status.value)
        if not query.include_deleted:
            conditions.append(sql.SQL("status <> 'deleted'"))
        if query.cursor is not None:
            conditions.append(sql.SQL("(created_at, id) < (%s, %s)"))
            params.extend(query.cursor)
        return newest_first(
            self._db,
            "SELECT * FROM {records}{where} ORDER BY created_at DESC, id DESC LIMIT %s",
            self._names(schema),
            conditions,
            params,
            query.limit,
            _record,
        )

    def soft_delete(
        self, schema: str, backup_id: uuid.UUID, by: str, at: datetime
    ) -> BackupRecord | None:
        names = self._names(schema)
        with self._db.transaction() as cur:
            cur.execute(
                sql.SQL("SELECT * FROM {records} WHERE id = %s FOR UPDATE").format(**names),
                (backup_id,),
            )
            row = cur.fetchone()
            if row is None:
                return None
            if row["status"] in ("pending", "running"):
                raise OperationInProgress("The backup is still running; wait until it ends.")
            if row["status"] == "deleted":
                return _record(row)
            cur.execute(
                sql.SQL(
                    "UPDATE {records} SET status = 'deleted', deleted_at = %s, deleted_by = %s "
                    "WHERE id = %s RETURNING *"
                ).format(**names),
                (at, by, backup_id),
            )
            return _record(cur.fetchone())

    def purgeable(self, schema: str, deleted_before: datetime) -> builtins.list[BackupRecord]:
        with self._db.transaction() as cur:
            cur.execute(
                sql.SQL(
                    "SELECT * FROM {records} WHERE status = 'deleted' AND purged_at IS NULL "
                    "AND deleted_at <= %s ORDER BY deleted_at"
                ).format(**self._names(schema)),
                (deleted_before,),
            )
            return [_record(r) for r in cur.fetchall()]

    def mark_purged(self, schema: str, backup_id: uuid.UUID, at: datetime) -> None:
        with self._db.transaction() as cur:
            cur.execute(
                sql.SQL(
                    "UPDATE {records} SET purged_at = %s WHERE id = %s AND status = 'deleted'"
                ).format(**self._names(schema)),
                (at, backup_id),
            )

    def undelete(
        self, schema: str, backup_id: uuid.UUID, deleted_after: datetime
    ) -> BackupRecord | None:
        with self._db.transaction() as cur:
            cur.execute(
                sql.SQL(
                    "UPDATE {records} SET status = 'completed', deleted_at = NULL, "
                    "deleted_by = NULL WHERE id = %s AND status = 'deleted' "
                    "AND purged_at IS NULL AND deleted_at > %s AND size_bytes IS NOT NULL "
                    "AND sha256 IS NOT NULL RETURNING *"
                ).format(**self._names(schema)),
                (backup_id, deleted_after),
            )
            row = cur.fetchone()
            return _record(row) if row else None

    def insert_from_manifest(self, schema: str, record: BackupRecord) -> bool:
        with self._db.transaction() as cur:
            _insert_record(cur, self._names(schema), record, "if_new")
            return cur.fetchone() is not None

    def count_since(self, schema: str, trigger: str, since: datetime) -> int:
        with self._db.transaction() as cur:
            cur.execute(
                sql.SQL(
                    "SELECT count(*) AS n FROM {records} WHERE trigger = %s AND created_at >= %s"
                ).format(**self._names(schema)),
                (trigger, since),
            )
            return int(cur.fetchone()["n"])

    # --- schedules, retention and the sweeper -------------------------------------------

    def ensure_schemas(self, schemas: builtins.list[str]) -> SchemaCheck:
        check = SchemaCheck()
        todo = [s for s in schemas if s not in self._migrated]
        if todo:
            # One catalog read (and one UNION ALL per batch) instead of a migration
            # transaction per clinic: a scheduler run visits every clinic every hour.
            versions, check.failed = self._versions(todo)
            for schema, version in versions.items():
                if version == LATEST_VERSION:
                    self._migrated.add(schema)
        for schema in todo:
            if schema in self._migrated or schema in check.failed:
                continue
            try:
                self.ensure_schema(schema)
            except ClinicNotAvailable:
                check.unavailable.append(schema)
            except CopiedBackupTables as error:
                check.failed[schema] = str(error)
                logger.error(
                    "a clinic's backup tables are another schema's copy; it is skipped",
                    extra={"clinic": schema, "reason": check.failed[schema]},
                )
            except DatabaseUnavailable:
                raise
            except psycopg2.Error as error:
                # This clinic only (a revoked grant, a broken table): the others go on.
                check.failed[schema] = describe_error(error)
                logger.error(
                    "a clinic's tables could not be migrated; it is skipped",
                    extra={"clinic": schema, "reason": check.failed[schema]},
                )
        return check

    def _versions(self, schemas: builtins.list[str]) -> tuple[dict[str, int], dict[str, str]]:
        with self._db.transaction() as cur:
            # A copied meta (clone_schema: its stamp names another schema) and tables owned by
            # another role than BACKUP_TABLES_OWNER go through ensure_schema, which fixes them.
            cur.execute(
                "SELECT n.nspname, obj_description(c.oid, 'pg_class') AS stamp, "
                "(SELECT count(*) FROM pg_class o WHERE o.relnamespace = n.oid "
                " AND o.relname = ANY(%s) AND o.relkind = 'r' "
                " AND %s::text IS NOT NULL AND pg_get_userbyid(o.relowner) <> %s) AS misowned "
                "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relname = %s AND c.relkind = 'r' AND n.nspname = ANY(%s)",
                (
                    list(OWNED_TABLES),
                    self._tables_owner,
                    self._tables_owner,
                    TABLES["meta"],
                    list(schemas),
                ),
            )
            having = sorted(
                r["nspname"]
                for r in cur.fetchall()
                if r["stamp"] in (None, meta_stamp(r["nspname"])) and not r["misowned"]
            )

        def read(cur: Any, batch: builtins.list[str]) -> builtins.list[dict[str, Any]]:
            cur.execute(
                sql.SQL(" UNION ALL ").join(
                    sql.SQL("SELECT {} AS schema, version FROM {}").format(
                        sql.Literal(schema), _table(schema, TABLES["meta"])
                    )
                    for schema in batch
                )
            )
            return list(cur.fetchall())

        rows, failed = read_fleet(self._db, having, SCHEMA_BATCH, read)
        return {r["schema"]: r["version"] for r in rows}, failed

    def completed_backups(self, schema: str) -> builtins.list[BackupRecord]:
        with self._db.transaction() as cur:
            cur.execute(
                sql.SQL(
                    "SELECT * FROM {records} WHERE status = 'completed' "
                    "ORDER BY created_at DESC, id DESC"
                ).format(**self._names(schema))
            )
            return [_record(r) for r in cur.fetchall()]

    def retire(
        self, schema: str, backup_ids: builtins.list[uuid.UUID], by: str, at: datetime
    ) -> builtins.list[BackupRecord]:
        if not backup_ids:
            return []
        with self._db.transaction() as cur:
            cur.execute(
                sql.SQL(
                    "UPDATE {records} SET status = 'deleted', deleted_at = %s, deleted_by = %s "
                    "WHERE id = ANY(%s::uuid[]) AND status = 'completed' AND NOT keep RETURNING *"
                ).format(**self._names(schema)),
                (at, by, list(backup_ids)),
            )
            return [_record(r) for r in cur.fetchall()]

    def set_keep(self, schema: str, backup_id: uuid.UUID, keep: bool) -> BackupRecord | None:
        with self._db.transaction() as cur:
            cur.execute(
                sql.SQL("UPDATE {records} SET keep = %s WHERE id = %s RETURNING *").format(
                    **self._names(schema)
                ),
                (keep, backup_id),
            )
            row = cur.fetchone()
            return _record(row) if row else None

    def mark_file_missing(self, schema: str, backup_id: uuid.UUID, at: datetime) -> None:
        with self._db.transaction() as cur:
            cur.execute(
                sql.SQL(
                    "UPDATE {records} SET file_missing_at = %s "
                    "WHERE id = %s AND file_missing_at IS NULL"
                ).format(**self._names(schema)),
                (at, backup_id),
            )

    def mark_replicated(
        self,
        schema: str,
        backup_id: uuid.UUID,
        at: datetime,
        retain_until: datetime | None,
        storage_key: str | None = None,
    ) -> BackupRecord | None:
        with self._db.transaction() as cur:
            cur.execute(
                sql.SQL(
                    "UPDATE {records} SET replicated_at = %s, replica_retain_until = %s "
                    "WHERE id = %s AND (%s::text IS NULL OR storage_key = %s) RETURNING *"
                ).format(**self._names(schema)),
                (at, retain_until, backup_id, storage_key, storage_key),
            )
            row = cur.fetchone()
            return _record(row) if row else None

    def remember_superseded(
        self,
        schema: str,
        backup_id: uuid.UUID,
        keys: builtins.list[str],
        retain_until: datetime | None,
        at: datetime,
    ) -> None:
        with self._db.transaction() as cur:
            cur.execute(
                sql.SQL(
                    "INSERT INTO {superseded} (id, backup_id, keys, retain_until, superseded_at) "
                    "VALUES (%s, %s, %s, %s, %s)"
                ).format(**self._names(schema)),
                (uuid.uuid4(), backup_id, psycopg2.extras.Json(keys), retain_until, at),
            )

    def superseded_purgeable(self, schema: str, now: datetime) -> builtins.list[SupersededCopy]:
        with self._db.transaction() as cur:
            cur.execute(
                sql.SQL(
                    "SELECT * FROM {superseded} "
                    "WHERE coalesce(retain_until, '-infinity') <= %s ORDER BY superseded_at"
                ).format(**self._names(schema)),
                (now,),
            )
            return [
                SupersededCopy(
                    id=r["id"],
                    backup_id=r["backup_id"],
                    keys=[str(k) for k in r["keys"]],
                    retain_until=r["retain_until"],
                    superseded_at=r["superseded_at"],
                )
                for r in cur.fetchall()
            ]

    def forget_superseded(self, schema: str, copy_id: uuid.UUID) -> None:
        with self._db.transaction() as cur:
            cur.execute(
                sql.SQL("DELETE FROM {superseded} WHERE id = %s").format(**self._names(schema)),
                (copy_id,),
            )

    def set_replica_retain_until(
        self, schema: str, backup_id: uuid.UUID, retain_until: datetime
    ) -> None:
        with self._db.transaction() as cur:
            cur.execute(
                sql.SQL(
                    "UPDATE {records} SET replica_retain_until = %s "
                    "WHERE id = %s AND replicated_at IS NOT NULL"
                ).format(**self._names(schema)),
                (retain_until, backup_id),
            )

    def mark_primary_damaged(self, schema: str, backup_id: uuid.UUID, at: datetime) -> None:
        with self._db.transaction() as cur:
            cur.execute(
                sql.SQL(
                    "UPDATE {records} SET primary_damaged_at = %s "
                    "WHERE id = %s AND primary_damaged_at IS NULL"
                ).format(**self._names(schema)),
                (at, backup_id),
            )

    def clear_replicated(self, schema: str, backup_id: uuid.UUID) -> None:
        with self._db.transaction() as cur:
            cur.execute(
                sql.SQL(
                    "UPDATE {records} SET replicated_at = NULL, replica_retain_until = NULL "
                    "WHERE id = %s"
                ).format(**self._names(schema)),
                (backup_id,),
            )

    def replica_purgeable(self, schema: str, now: datetime) -> builtins.list[BackupRecord]:
        """Purged backups whose replica copy is still there and whose lock has expired."""
        with self._db.transaction() as cur:
            cur.execute(
                sql.SQL(
                    "SELECT * FROM {records} WHERE purged_at IS NOT NULL "
                    "AND replicated_at IS NOT NULL "
                    "AND (replica_retain_until IS NULL OR replica_retain_until <= %s) "
                    "ORDER BY purged_at"
                ).format(**self._names(schema)),
                (now,),
            )
            return [_record(r) for r in cur.fetchall()]

    def unreplicated_since(self, schema: str, before: datetime) -> int:
        """Completed backups finished before `before` whose replica copy is not done."""
        with self._db.transaction() as cur:
            cur.execute(
                sql.SQL(
                    "SELECT count(*) AS n FROM {records} WHERE status = 'completed' "
                    "AND replicated_at IS NULL AND finished_at < %s"
                ).format(**self._names(schema)),
                (before,),
            )
            return int(cur.fetchone()["n"])

    def backups_in_use(self, schema: str) -> set[uuid.UUID]:
        # Restores and verifications not yet finished read their backup (and a restore its
        # pre-restore backup, the undo's way back).
        with self._db.transaction() as cur:
            cur.execute(
                sql.SQL(
                    "SELECT backup_id AS id FROM {restores} WHERE status IN ('pending', 'running') "
                    "UNION SELECT pre_restore_backup_id FROM {restores} "
                    "WHERE status IN ('pending', 'running') AND pre_restore_backup_id IS NOT NULL"
                ).format(**self._names(schema))
            )
            return {r["id"] for r in cur.fetchall()}

    def fail_stale(self, schema: str, before: datetime, at: datetime) -> builtins.list[uuid.UUID]:
        names = self._names(schema)
        with self._db.transaction() as cur:
            # A backup (or re-encryption) whose lease expired, as a request would take it over.
            takeover = _expire_lock(cur, names, schema, at, ("backup", "reencrypt"))
            ids = list(takeover.backups_failed) if takeover else []
            # Pending ones past the age threshold (their message is gone); running ones that no
            # live lease covers (however long they have run: a live one renews its lease).
            cur.execute(
                sql.SQL(
                    "UPDATE {records} r SET status = 'failed', finished_at = %(at)s, "
                    "error_code = 'stale', error = CASE WHEN r.status = 'pending' "
                    "THEN %(never)s ELSE %(gone)s END WHERE " + STALE_BACKUP + " RETURNING id"
                ).format(**names),
                {"at": at, "stuck": before, "never": NEVER_STARTED, "gone": LEASE_GONE},
            )
            stale = [r["id"] for r in cur.fetchall()]
            if stale:
                cur.execute(
                    sql.SQL("DELETE FROM {lock} WHERE ref_id = ANY(%s::uuid[])").format(**names),
                    (stale,),
                )
            return ids + stale

    def keys_in_flight(self, schema: str, stuck_before: datetime) -> set[str]:
        with self._db.transaction() as cur:
            cur.execute(
                sql.SQL(
                    "SELECT r.storage_key FROM {records} r WHERE r.status IN ('pending', 'running') "
                    "AND NOT " + STALE_BACKUP + " UNION "
                    "SELECT r.storage_key FROM {lock} l JOIN {records} r ON r.id = l.ref_id "
                    "WHERE l.kind = 'reencrypt' AND (l.lease_id IS NULL OR " + LEASE_LIVE + ")"
                ).format(**self._names(schema)),
                {"stuck": stuck_before},
            )
            return {r["storage_key"] for r in cur.fetchall()}

    def note_upload_removed(self, schema: str, storage_key: str, pending: str, done: str) -> None:
        with self._db.transaction() as cur:
            cur.execute(
                sql.SQL(
                    "UPDATE {records} SET error = replace(error, %s, %s) "
                    "WHERE storage_key = %s AND status = 'failed' AND strpos(error, %s) > 0"
                ).format(**self._names(schema)),
                (pending, done, storage_key, pending),
            )

    def known_keys(self, schema: str) -> set[str]:
        with self._db.transaction() as cur:
            cur.execute(
                sql.SQL("SELECT storage_key, parts FROM {records} WHERE purged_at IS NULL").format(
                    **self._names(schema)
                )
            )
            keys = set()
            for row in cur.fetchall():
                keys.add(row["storage_key"])
                # A split backup's objects are its parts (its storage_key names none).
                keys.update(str(part["key"]) for part in row["parts"] or [])
            return keys

    def audit(self, schema: str, entry: AuditEntry) -> None:
        with self._db.transaction() as cur:
            _insert_audit(cur, self._names(schema), entry)

    def list_audit(
        self, schema: str, query: AuditFilter
    ) -> tuple[builtins.list[AuditRecord], bool]:
        conditions: builtins.list[sql.Composable] = []
        params: builtins.list[Any] = []
        if query.action is not None:
            if "." in query.action:
                conditions.append(sql.SQL("action = %s"))
                params.append(query.action)
            else:  # a family: `backup` = every `backup.*` (starts_with: no LIKE pattern)
                conditions.append(sql.SQL("starts_with(action, %s)"))
                params.append(query.action + ".")
        if query.since is not None:
            conditions.append(sql.SQL("at >= %s"))
            params.append(query.since)
        if query.until is not None:
            conditions.append(sql.SQL("at < %s"))
            params.append(query.until)
        if query.cursor is not None:
            conditions.append(sql.SQL("(at, id) < (%s, %s)"))
            params.extend(query.cursor)
        # A backup id the caller sent that is not one of the clinic's own (a refused attempt
        # on another clinic's id) is never echoed back: shown as null.
        return newest_first(
            self._db,
            "SELECT id, at, action, outcome, actor_id, actor_name, actor_role, request_id, "
            "CASE WHEN EXISTS (SELECT 1 FROM {records} r WHERE r.id = a.backup_id) "
            "THEN a.backup_id END AS backup_id, details "
            "FROM {audit} a{where} ORDER BY at DESC, id DESC LIMIT %s",
            self._names(schema),
            conditions,
            params,
            query.limit,
            lambda row: AuditRecord(**row),
        )


class PostgresTenants:
    """The `TenantDirectory` port over the platform's public tenants table (read-only)."""

    def __init__(
        self,
        db: Database,
        table: str,
        schema_column: str,
        name_column: str,
        active_column: str | None,
        excluded: builtins.list[str] | None = None,
    ):
        parts = table.split(".")
        self.excluded = frozenset(excluded or ())
        if not 1 <= len(parts) <= 2 or not all(parts):
            raise ValueError("TENANTS_TABLE must be <table> or <schema>.<table>")
        self._db = db
        self._table = sql.Identifier(*parts)
        self._schema_col = sql.Identifier(schema_column)
        self._name_col = sql.Identifier(name_column)
        self._active = sql.Identifier(active_column) if active_column else sql.SQL("true")

    def _select(self) -> sql.Composed:
        return sql.SQL(
            "SELECT {schema} AS schema, {name}::text AS name, {active} AS active FROM {table}"
        ).format(
            schema=self._schema_col, name=self._name_col, active=self._active, table=self._table
        )

    def get(self, schema: str) -> Clinic | None:
        with self._db.transaction() as cur:
            # Exact, case-sensitive match: "Clinica_Norte" never finds "clinica_norte".
            cur.execute(
                self._select() + sql.SQL(" WHERE {col} = %s").format(col=self._schema_col),
                (schema,),
            )
            row = cur.fetchone()
        if row is None or row["schema"] != schema or schema in self.excluded:
            return None
        return Clinic(schema=row["schema"], name=row["name"] or schema, active=bool(row["active"]))

    def active_clinics(self) -> builtins.list[Clinic]:
        with self._db.transaction() as cur:
            cur.execute(self._select() + sql.SQL(" ORDER BY 1"))
            rows = cur.fetchall()
        return [
            Clinic(schema=r["schema"], name=r["name"] or r["schema"], active=True)
            for r in rows
            if r["active"]
            and is_valid_schema_name(r["schema"])
            and r["schema"] not in self.excluded
        ]

    def unsupported_clinics(self) -> builtins.list[str]:
        with self._db.transaction() as cur:
            cur.execute(self._select() + sql.SQL(" ORDER BY 1"))
            rows = cur.fetchall()
        # `public` is django-tenants' shared schema (its public tenant), never a clinic.
        return [
            r["schema"]
            for r in rows
            if r["active"]
            and not is_valid_schema_name(r["schema"])
            and r["schema"] not in RESERVED_SCHEMAS
            and r["schema"] not in self.excluded
        ]
