"""PostgreSQL adapters: connections, the per-clinic migration, records, audit, tenants.

Every SQL identifier goes through `psycopg2.sql.Identifier`; values are always parameters.
The tables live in each clinic's own schema (see `names.OWNED_TABLES`) and are excluded from
every dump, so restoring an older backup never rolls back history or audit.

The per-clinic operation lock is a one-row table (`backup_operation_lock`): a backup (and,
later, a restore) inserts the row in the same transaction that creates its record and deletes
it in the transaction that finishes it. The primary key makes a second concurrent operation
fail in the database itself, not only in code.
"""

from __future__ import annotations

import builtins
import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg2
import psycopg2.errors
import psycopg2.extras
from psycopg2 import sql

from ..errors import (
    BackupNotCompleted,
    ClinicNotAvailable,
    DatabaseUnavailable,
    OperationInProgress,
)
from ..models import (
    AuditEntry,
    BackupRecord,
    BackupStatus,
    Clinic,
    DumpResult,
    Trigger,
)
from ..names import is_valid_schema_name
from ..observability import logger
from ..ports import ListFilter
from .migrations import MIGRATIONS, TABLES

psycopg2.extras.register_uuid()


def translate_connect_error(error: psycopg2.Error) -> DatabaseUnavailable:
    # psycopg2's message can include the host and user; the API says only what is safe.
    logger.warning("database unavailable", extra={"pgcode": getattr(error, "pgcode", None)})
    return DatabaseUnavailable("The database is unavailable; try again later.")


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
# Statements that read many clinics at once (UNION ALL) take this many schemas each, and each
# batch is its own transaction: a transaction holds a lock on every table it read until it
# ends, and the server's lock table is only max_locks_per_transaction (64) x max_connections
# entries — reading 2,000 clinics in one transaction ran out of it ("out of shared memory").
SCHEMA_BATCH = 100
STALE_MESSAGE = "the backup did not finish within the worker's time limit"


def batches(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


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
)


def _db_value(value: Any) -> Any:
    """A record field as a query parameter (enums by value, JSON columns wrapped)."""
    if isinstance(value, BackupStatus | Trigger):
        return value.value
    if isinstance(value, dict | list):
        # jsonb columns (table_counts, verify_details, recipients); records have no arrays
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

    def __init__(self, db: Database):
        self._db = db
        self._migrated: set[str] = set()

    def _names(self, schema: str) -> dict[str, sql.Composable]:
        return {placeholder: _table(schema, table) for placeholder, table in TABLES.items()}

    # --- migrations ---------------------------------------------------------------------

    def ensure_schema(self, schema: str) -> None:
        if schema in self._migrated:
            return
        names = self._names(schema)
        with self._db.transaction() as cur:
            cur.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
            if cur.fetchone() is None:
                raise ClinicNotAvailable()
            # One migrator per clinic at a time; others wait and then see the new version.
            cur.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                (f"clinic_backups:migrate:{schema}",),
            )
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
                    cur.execute(sql.SQL(statement).format(**names))
                cur.execute(
                    sql.SQL(
                        "INSERT INTO {meta} (version) VALUES (%s) "
                        "ON CONFLICT (singleton) DO UPDATE SET version = EXCLUDED.version"
                    ).format(**names),
                    (version,),
                )
                logger.info("migrated clinic tables", extra={"clinic": schema, "version": version})
        self._migrated.add(schema)

    # --- records ------------------------------------------------------------------------

    def create_pending(self, schema: str, record: BackupRecord) -> BackupRecord:
        names = self._names(schema)
        with self._db.transaction() as cur:
            cur.execute(
                sql.SQL(
                    "INSERT INTO {lock} (kind, ref_id, acquired_at) VALUES ('backup', %s, %s) "
                    "ON CONFLICT (singleton) DO NOTHING RETURNING ref_id"
                ).format(**names),
                (record.id, record.created_at),
            )
            if cur.fetchone() is None:
                raise OperationInProgress()
            _insert_record(cur, names, record, "returning")
            return _record(cur.fetchone())

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

    def claim(self, schema: str, backup_id: uuid.UUID, at: datetime) -> BackupRecord | None:
        with self._db.transaction() as cur:
            cur.execute(
                sql.SQL(
                    "UPDATE {records} SET status = 'running', started_at = %s "
                    "WHERE id = %s AND status = 'pending' RETURNING *"
                ).format(**self._names(schema)),
                (at, backup_id),
            )
            row = cur.fetchone()
            return _record(row) if row else None

    def complete(
        self,
        schema: str,
        backup_id: uuid.UUID,
        result: DumpResult,
        at: datetime,
        recipients: builtins.list[dict[str, Any]] | None = None,
    ) -> BackupRecord:
        names = self._names(schema)
        with self._db.transaction() as cur:
            cur.execute(
                sql.SQL(
                    "UPDATE {records} SET status = 'completed', finished_at = %s, size_bytes = %s, "
                    "sha256 = %s, plaintext_sha256 = %s, recipients = %s, pg_dump_version = %s, "
                    "server_version = %s, error = NULL, error_code = NULL "
                    "WHERE id = %s AND status = 'running' RETURNING *"
                ).format(**names),
                (
                    at,
                    result.size_bytes,
                    result.sha256,
                    result.plaintext_sha256,
                    psycopg2.extras.Json(recipients or []),
                    result.pg_dump_version,
                    result.server_version,
                    backup_id,
                ),
            )
            row = cur.fetchone()
            cur.execute(
                sql.SQL("DELETE FROM {lock} WHERE ref_id = %s").format(**names), (backup_id,)
            )
            if row is None:
                raise RuntimeError("the backup was no longer running when it completed")
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

    # --- re-encryption (holds the clinic's operation lock, like a backup or a restore) ---

    def start_reencrypt(self, schema: str, backup_id: uuid.UUID, at: datetime) -> BackupRecord:
        """Take the clinic's lock for this backup and flag it; OperationInProgress if busy."""
        names = self._names(schema)
        with self._db.transaction() as cur:
            cur.execute(
                sql.SQL(
                    "INSERT INTO {lock} (kind, ref_id, acquired_at) VALUES ('reencrypt', %s, %s) "
                    "ON CONFLICT (singleton) DO NOTHING RETURNING ref_id"
                ).format(**names),
                (backup_id, at),
            )
            if cur.fetchone() is None:
                raise OperationInProgress()
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
            return _record(row)

    def holds_reencrypt(self, schema: str, backup_id: uuid.UUID) -> bool:
        with self._db.transaction() as cur:
            cur.execute(
                sql.SQL(
                    "SELECT 1 FROM {lock} l JOIN {records} r ON r.id = l.ref_id "
                    "WHERE l.kind = 'reencrypt' AND l.ref_id = %s AND r.reencrypting"
                ).format(**self._names(schema)),
                (backup_id,),
            )
            return cur.fetchone() is not None

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
    ) -> BackupRecord | None:
        """Point the record at the new object (when given), clear the flag, release the lock."""
        names = self._names(schema)
        with self._db.transaction() as cur:
            if storage_key is not None:
                cur.execute(
                    sql.SQL(
                        "UPDATE {records} SET storage_key = %s, file_name = %s, size_bytes = %s, "
                        "sha256 = %s, recipients = %s, reencrypting = false WHERE id = %s "
                        "RETURNING *"
                    ).format(**names),
                    (
                        storage_key,
                        file_name,
                        size_bytes,
                        sha256,
                        psycopg2.extras.Json(recipients or []),
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
            cur.execute(
                sql.SQL("DELETE FROM {lock} WHERE ref_id = %s AND kind = 'reencrypt'").format(
                    **names
                ),
                (backup_id,),
            )
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
        where = (
            sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("")
        )
        with self._db.transaction() as cur:
            cur.execute(
                sql.SQL(
                    "SELECT * FROM {records}{where} ORDER BY created_at DESC, id DESC LIMIT %s"
                ).format(where=where, **self._names(schema)),
                [*params, query.limit + 1],
            )
            rows = [_record(r) for r in cur.fetchall()]
        return rows[: query.limit], len(rows) > query.limit

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
                sql.SQL("UPDATE {records} SET purged_at = %s WHERE id = %s").format(
                    **self._names(schema)
                ),
                (at, backup_id),
            )

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

    def ensure_schemas(self, schemas: builtins.list[str]) -> builtins.list[str]:
        todo = [s for s in schemas if s not in self._migrated]
        if todo:
            # One catalog read (and one UNION ALL per batch) instead of a migration
            # transaction per clinic: a scheduler run visits every clinic every hour.
            for schema, version in self._versions(todo).items():
                if version == LATEST_VERSION:
                    self._migrated.add(schema)
        unavailable = []
        for schema in todo:
            if schema in self._migrated:
                continue
            try:
                self.ensure_schema(schema)
            except ClinicNotAvailable:
                unavailable.append(schema)
        return unavailable

    def _versions(self, schemas: builtins.list[str]) -> dict[str, int]:
        versions: dict[str, int] = {}
        with self._db.transaction() as cur:
            cur.execute(
                "SELECT n.nspname FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relname = %s AND c.relkind = 'r' AND n.nspname = ANY(%s)",
                (TABLES["meta"], list(schemas)),
            )
            having = sorted(r["nspname"] for r in cur.fetchall())
        for batch in batches(having, SCHEMA_BATCH):
            with self._db.transaction() as cur:
                cur.execute(
                    sql.SQL(" UNION ALL ").join(
                        sql.SQL("SELECT {} AS schema, version FROM {}").format(
                            sql.Literal(schema), _table(schema, TABLES["meta"])
                        )
                        for schema in batch
                    )
                )
                versions.update({r["schema"]: r["version"] for r in cur.fetchall()})
        return versions

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
            cur.execute(
                sql.SQL(
                    "UPDATE {records} SET status = 'failed', finished_at = %s, error_code = 'stale', "
                    "error = %s WHERE status IN ('pending', 'running') "
                    "AND coalesce(started_at, created_at) < %s RETURNING id"
                ).format(**names),
                (at, STALE_MESSAGE, before),
            )
            ids = [r["id"] for r in cur.fetchall()]
            if ids:
                cur.execute(
                    sql.SQL("DELETE FROM {lock} WHERE ref_id = ANY(%s::uuid[])").format(**names),
                    (ids,),
                )
            return ids

    def keys_in_flight(self, schema: str) -> set[str]:
        with self._db.transaction() as cur:
            cur.execute(
                sql.SQL(
                    "SELECT storage_key FROM {records} WHERE status IN ('pending', 'running')"
                ).format(**self._names(schema))
            )
            return {r["storage_key"] for r in cur.fetchall()}

    def known_keys(self, schema: str) -> set[str]:
        with self._db.transaction() as cur:
            cur.execute(
                sql.SQL("SELECT storage_key FROM {records} WHERE purged_at IS NULL").format(
                    **self._names(schema)
                )
            )
            return {r["storage_key"] for r in cur.fetchall()}

    def audit(self, schema: str, entry: AuditEntry) -> None:
        with self._db.transaction() as cur:
            cur.execute(
                sql.SQL(
                    "INSERT INTO {audit} (id, at, action, outcome, actor_id, actor_name, actor_role, "
                    "request_id, backup_id, details) VALUES (%s, now(), %s, %s, %s, %s, %s, %s, %s, %s)"
                ).format(**self._names(schema)),
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


class PostgresTenants:
    """The `TenantDirectory` port over the platform's public tenants table (read-only)."""

    def __init__(
        self,
        db: Database,
        table: str,
        schema_column: str,
        name_column: str,
        active_column: str | None,
    ):
        parts = table.split(".")
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
        if row is None or row["schema"] != schema:
            return None
        return Clinic(schema=row["schema"], name=row["name"] or schema, active=bool(row["active"]))

    def active_clinics(self) -> builtins.list[Clinic]:
        with self._db.transaction() as cur:
            cur.execute(self._select() + sql.SQL(" ORDER BY 1"))
            rows = cur.fetchall()
        return [
            Clinic(schema=r["schema"], name=r["name"] or r["schema"], active=True)
            for r in rows
            if r["active"] and is_valid_schema_name(r["schema"])
        ]
