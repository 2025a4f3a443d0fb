"""PostgreSQL adapters: the per-clinic migration, records, audit, tenants.

Every SQL identifier goes through `psycopg2.sql.Identifier`; values are always parameters.
The tables live in each clinic's own schema (see `names.OWNED_TABLES`) and are excluded from
every dump, so restoring an older backup never rolls back history or audit.

The connection, the clinic's table names, the fleet's batched reads and the per-clinic
operation lock with its lease are shared with the other PostgreSQL adapters: see
adapters/database.py.
"""

from __future__ import annotations

import builtins
import uuid
from datetime import datetime
from typing import Any

import psycopg2
import psycopg2.errors
import psycopg2.extras
from psycopg2 import sql

from clinic_backups.adapters.database import (
    LEASE_LIVE,
    RECORD_COLUMNS,
    SCHEMA_BATCH,
    STALE_BACKUP,
    TAKE_LOCK_TIMEOUT,
    TIMEOUTS,
    ClinicCursor,
    Database,
    Rollback,
    acquire_lock,
    all_records,
    busy_is_409,
    claim_lease,
    clinic_table,
    clinic_tables,
    column_lists,
    describe_error,
    expire_lock,
    insert_audit,
    newest_first,
    one_record,
    read_fleet,
    record_from_row,
    release_lock,
    renew_timeouts,
    report_takeover,
)
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

LATEST_VERSION = MIGRATIONS[-1][0]
# From this version on, `backup_meta` carries its clinic's stamp (names.meta_stamp).
STAMP_VERSION = 6
NEVER_STARTED = "the backup's job never started (its message expired); nothing was stored"
LEASE_GONE = "the job lost the clinic's lease (its worker died?)"


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


def _insert_record(tx: ClinicCursor, record: BackupRecord, tail: str) -> Any:
    """INSERT every column of `record`, then `_INSERT_TAILS[tail]`; the row it returned."""
    return tx.one(
        "INSERT INTO {records} ({cols}) VALUES ({vals}) {tail}",
        [_db_value(getattr(record, c)) for c in RECORD_COLUMNS],
        tail=_INSERT_TAILS[tail],
        **column_lists(RECORD_COLUMNS),
    )


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

    # --- migrations ---------------------------------------------------------------------

    def ensure_schema(self, schema: str) -> None:
        if schema in self._migrated:
            return
        names = clinic_tables(schema)
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
        with busy_is_409(), self._db.clinic(schema) as tx:
            takeover = acquire_lock(tx, "backup", record.id, record.created_at)
            created = record_from_row(_insert_record(tx, record, "returning"))
        report_takeover(self._metrics, takeover)
        return created

    def create_pending_under_lock(
        self, schema: str, record: BackupRecord, lock_ref: uuid.UUID
    ) -> BackupRecord:
        with self._db.clinic(schema) as tx:
            # The caller's lock row, held (and kept) while this record is inserted.
            if not tx.found("SELECT 1 FROM {lock} WHERE ref_id = %s FOR SHARE", (lock_ref,)):
                raise OperationInProgress("The operation no longer holds the clinic's lock.")
            return record_from_row(_insert_record(tx, record, "returning"))

    def claim(
        self, schema: str, backup_id: uuid.UUID, at: datetime, lease: Lease | None = None
    ) -> BackupRecord | None:
        try:
            with self._db.clinic(schema) as tx:
                row = tx.one(
                    "UPDATE {records} SET status = 'running', started_at = %s "
                    "WHERE id = %s AND status = 'pending' RETURNING *",
                    (at, backup_id),
                )
                if row is None:
                    return None
                # The job's lock row takes this run's lease in the same transaction: there is
                # no moment when the backup runs without one.
                if lease is not None and not claim_lease(tx, "backup", backup_id, lease):
                    logger.warning(
                        "a pending backup without its lock row; not run",
                        extra={"clinic": schema, "backup_id": str(backup_id)},
                    )
                    raise Rollback()
                return record_from_row(row)
        except Rollback:
            return None

    def renew_lease(self, schema: str, lease: Lease) -> Renewal:
        # One statement renews the lease and reads whether its backup was asked to cancel.
        try:
            with self._db.clinic(schema) as tx:
                renew_timeouts(tx, lease)
                row = tx.one(
                    "UPDATE {lock} l SET renewed_at = now() WHERE lease_id = %s RETURNING "
                    "l.kind = 'backup' AND EXISTS (SELECT 1 FROM {records} r "
                    "WHERE r.id = l.ref_id AND r.cancel_requested_at IS NOT NULL) AS cancel",
                    (lease.id,),
                )
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
        with self._db.clinic(schema) as tx:
            row = tx.one(
                "UPDATE {records} SET status = 'completed', finished_at = %s, size_bytes = %s, "
                "sha256 = %s, plaintext_sha256 = %s, recipients = %s, parts = %s, "
                "pg_dump_version = %s, server_version = %s, error = NULL, error_code = NULL "
                "WHERE id = %s AND status = 'running' AND cancel_requested_at IS NULL "
                "RETURNING *",
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
            if row is None:
                if tx.found(
                    "SELECT 1 FROM {records} WHERE id = %s AND status = 'running' "
                    "AND cancel_requested_at IS NOT NULL",
                    (backup_id,),
                ):
                    # Cancelled after the last beat: a cancel that was answered 202 wins.
                    raise BackupCancelled()
                # Failed meanwhile: its lease was taken over (or the sweeper failed it).
                raise LeaseLost("the backup was no longer running when it completed")
            tx.execute("DELETE FROM {lock} WHERE ref_id = %s", (backup_id,))
            return record_from_row(row)

    def fail(
        self, schema: str, backup_id: uuid.UUID, error_code: str, error: str, at: datetime
    ) -> None:
        with self._db.clinic(schema) as tx:
            tx.execute(
                "UPDATE {records} SET status = 'failed', finished_at = %s, error_code = %s, "
                "error = %s WHERE id = %s AND status IN ('pending', 'running')",
                (at, error_code, error[:500], backup_id),
            )
            tx.execute("DELETE FROM {lock} WHERE ref_id = %s", (backup_id,))

    # --- cancel -----------------------------------------------------------------------

    def request_cancel(
        self, schema: str, backup_id: uuid.UUID, at: datetime
    ) -> BackupRecord | None:
        with busy_is_409(), self._db.clinic(schema) as tx:
            # The row lock orders this against the worker's claim (pending → running).
            row = tx.one("SELECT status FROM {records} WHERE id = %s FOR UPDATE", (backup_id,))
            if row is None:
                return None
            if row["status"] == "pending":
                # Its job has not started (it has no lease): it ends here, and the worker's
                # claim will find nothing pending.
                cancelled = record_from_row(
                    tx.one(
                        "UPDATE {records} SET status = 'cancelled', finished_at = %s, "
                        "cancel_requested_at = %s WHERE id = %s RETURNING *",
                        (at, at, backup_id),
                    )
                )
                tx.cur.execute("SET LOCAL lock_timeout = %s", (TAKE_LOCK_TIMEOUT,))
                tx.execute(
                    "DELETE FROM {lock} WHERE ref_id = %s AND kind = 'backup' AND lease_id IS NULL",
                    (backup_id,),
                )
                return cancelled
            updated = tx.one(
                "UPDATE {records} SET cancel_requested_at = coalesce(cancel_requested_at, %s) "
                "WHERE id = %s AND status = 'running' RETURNING *",
                (at, backup_id),
            )
            if updated is not None:
                return record_from_row(updated)
            return record_from_row(tx.one("SELECT * FROM {records} WHERE id = %s", (backup_id,)))

    def finish_cancelled(self, schema: str, backup_id: uuid.UUID, at: datetime) -> bool:
        with self._db.clinic(schema) as tx:
            if not tx.found(
                "UPDATE {records} SET status = 'cancelled', finished_at = %s "
                "WHERE id = %s AND status = 'running' RETURNING 1",
                (at, backup_id),
            ):
                return False  # taken over meanwhile: the taker failed it and freed the lock
            tx.execute("DELETE FROM {lock} WHERE ref_id = %s AND kind = 'backup'", (backup_id,))
            return True

    # --- re-encryption (holds the clinic's operation lock, like a backup or a restore) ---

    def start_reencrypt(self, schema: str, backup_id: uuid.UUID, at: datetime) -> BackupRecord:
        with busy_is_409(), self._db.clinic(schema) as tx:
            takeover = acquire_lock(tx, "reencrypt", backup_id, at)
            row = tx.one(
                "UPDATE {records} SET reencrypting = true WHERE id = %s AND status = 'completed' "
                "RETURNING *",
                (backup_id,),
            )
            if row is None:
                raise BackupNotCompleted("Only completed backups can be re-encrypted.")
            flagged = record_from_row(row)
        report_takeover(self._metrics, takeover)
        return flagged

    def claim_reencrypt(self, schema: str, backup_id: uuid.UUID, lease: Lease) -> bool:
        with self._db.clinic(schema) as tx:
            return tx.found(
                "SELECT 1 FROM {records} WHERE id = %s AND reencrypting", (backup_id,)
            ) and claim_lease(tx, "reencrypt", backup_id, lease)

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
        # After a takeover the taker cleared the flag: the record keeps its old object.
        with self._db.clinic(schema) as tx:
            # Without a lease: never claimed (its job could not be queued).
            if not release_lock(tx, "reencrypt", backup_id, lease):
                raise LeaseLost("the re-encryption lost the clinic's lease")
            if storage_key is not None and superseded_keys:
                # The old generation's replica copies stay locked; no record would name them.
                tx.execute(
                    "INSERT INTO {superseded} (id, backup_id, keys, retain_until, "
                    "superseded_at) SELECT %s, id, %s, replica_retain_until, now() "
                    "FROM {records} WHERE id = %s AND replicated_at IS NOT NULL",
                    (uuid.uuid4(), psycopg2.extras.Json(superseded_keys), backup_id),
                )
            if storage_key is not None:
                row = tx.one(
                    "UPDATE {records} SET storage_key = %s, file_name = %s, size_bytes = %s, "
                    "sha256 = %s, recipients = %s, parts = %s, reencrypting = false, "
                    # New objects: the replica's copy (of the old ones) no longer is one.
                    "replicated_at = NULL, replica_retain_until = NULL, "
                    "primary_damaged_at = NULL WHERE id = %s RETURNING *",
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
                row = tx.one(
                    "UPDATE {records} SET reencrypting = false WHERE id = %s RETURNING *",
                    (backup_id,),
                )
            return record_from_row(row) if row else None

    def get(self, schema: str, backup_id: uuid.UUID) -> BackupRecord | None:
        with self._db.clinic(schema) as tx:
            return one_record(tx, "SELECT * FROM {records} WHERE id = %s", (backup_id,))

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
            clinic_tables(schema),
            conditions,
            params,
            query.limit,
            record_from_row,
        )

    def soft_delete(
        self, schema: str, backup_id: uuid.UUID, by: str, at: datetime
    ) -> BackupRecord | None:
        with self._db.clinic(schema) as tx:
            row = tx.one("SELECT * FROM {records} WHERE id = %s FOR UPDATE", (backup_id,))
            if row is None:
                return None
            if row["status"] in ("pending", "running"):
                raise OperationInProgress("The backup is still running; wait until it ends.")
            if row["status"] == "deleted":
                return record_from_row(row)
            return record_from_row(
                tx.one(
                    "UPDATE {records} SET status = 'deleted', deleted_at = %s, deleted_by = %s "
                    "WHERE id = %s RETURNING *",
                    (at, by, backup_id),
                )
            )

    def purgeable(self, schema: str, deleted_before: datetime) -> builtins.list[BackupRecord]:
        with self._db.clinic(schema) as tx:
            return all_records(
                tx,
                "SELECT * FROM {records} WHERE status = 'deleted' AND purged_at IS NULL "
                "AND deleted_at <= %s ORDER BY deleted_at",
                (deleted_before,),
            )

    def mark_purged(self, schema: str, backup_id: uuid.UUID, at: datetime) -> None:
        with self._db.clinic(schema) as tx:
            tx.execute(
                "UPDATE {records} SET purged_at = %s WHERE id = %s AND status = 'deleted'",
                (at, backup_id),
            )

    def undelete(
        self, schema: str, backup_id: uuid.UUID, deleted_after: datetime
    ) -> BackupRecord | None:
        with self._db.clinic(schema) as tx:
            return one_record(
                tx,
                "UPDATE {records} SET status = 'completed', deleted_at = NULL, "
                "deleted_by = NULL WHERE id = %s AND status = 'deleted' "
                "AND purged_at IS NULL AND deleted_at > %s AND size_bytes IS NOT NULL "
                "AND sha256 IS NOT NULL RETURNING *",
                (backup_id, deleted_after),
            )

    def insert_from_manifest(self, schema: str, record: BackupRecord) -> bool:
        with self._db.clinic(schema) as tx:
            return _insert_record(tx, record, "if_new") is not None

    def count_since(self, schema: str, trigger: str, since: datetime) -> int:
        with self._db.clinic(schema) as tx:
            return int(
                tx.one(
                    "SELECT count(*) AS n FROM {records} WHERE trigger = %s AND created_at >= %s",
                    (trigger, since),
                )["n"]
            )

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
                        sql.Literal(schema), clinic_table(schema, TABLES["meta"])
                    )
                    for schema in batch
                )
            )
            return list(cur.fetchall())

        rows, failed = read_fleet(self._db, having, SCHEMA_BATCH, read)
        return {r["schema"]: r["version"] for r in rows}, failed

    def completed_backups(self, schema: str) -> builtins.list[BackupRecord]:
        with self._db.clinic(schema) as tx:
            return all_records(
                tx,
                "SELECT * FROM {records} WHERE status = 'completed' "
                "ORDER BY created_at DESC, id DESC",
            )

    def retire(
        self, schema: str, backup_ids: builtins.list[uuid.UUID], by: str, at: datetime
    ) -> builtins.list[BackupRecord]:
        if not backup_ids:
            return []
        with self._db.clinic(schema) as tx:
            return all_records(
                tx,
                "UPDATE {records} SET status = 'deleted', deleted_at = %s, deleted_by = %s "
                "WHERE id = ANY(%s::uuid[]) AND status = 'completed' AND NOT keep RETURNING *",
                (at, by, list(backup_ids)),
            )

    def set_keep(self, schema: str, backup_id: uuid.UUID, keep: bool) -> BackupRecord | None:
        with self._db.clinic(schema) as tx:
            return one_record(
                tx, "UPDATE {records} SET keep = %s WHERE id = %s RETURNING *", (keep, backup_id)
            )

    def mark_file_missing(self, schema: str, backup_id: uuid.UUID, at: datetime) -> None:
        self._stamp_once(schema, backup_id, "file_missing_at", at)

    def _stamp_once(self, schema: str, backup_id: uuid.UUID, column: str, at: datetime) -> None:
        """Set the record's `column` to `at` unless it is already set (the first sighting)."""
        with self._db.clinic(schema) as tx:
            tx.execute(
                "UPDATE {records} SET {column} = %s WHERE id = %s AND {column} IS NULL",
                (at, backup_id),
                column=sql.Identifier(column),
            )

    def mark_replicated(
        self,
        schema: str,
        backup_id: uuid.UUID,
        at: datetime,
        retain_until: datetime | None,
        storage_key: str | None = None,
    ) -> BackupRecord | None:
        with self._db.clinic(schema) as tx:
            return one_record(
                tx,
                "UPDATE {records} SET replicated_at = %s, replica_retain_until = %s "
                "WHERE id = %s AND (%s::text IS NULL OR storage_key = %s) RETURNING *",
                (at, retain_until, backup_id, storage_key, storage_key),
            )

    def remember_superseded(
        self,
        schema: str,
        backup_id: uuid.UUID,
        keys: builtins.list[str],
        retain_until: datetime | None,
        at: datetime,
    ) -> None:
        with self._db.clinic(schema) as tx:
            tx.execute(
                "INSERT INTO {superseded} (id, backup_id, keys, retain_until, superseded_at) "
                "VALUES (%s, %s, %s, %s, %s)",
                (uuid.uuid4(), backup_id, psycopg2.extras.Json(keys), retain_until, at),
            )

    def superseded_purgeable(self, schema: str, now: datetime) -> builtins.list[SupersededCopy]:
        with self._db.clinic(schema) as tx:
            rows = tx.all(
                "SELECT * FROM {superseded} "
                "WHERE coalesce(retain_until, '-infinity') <= %s ORDER BY superseded_at",
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
                for r in rows
            ]

    def forget_superseded(self, schema: str, copy_id: uuid.UUID) -> None:
        with self._db.clinic(schema) as tx:
            tx.execute("DELETE FROM {superseded} WHERE id = %s", (copy_id,))

    def set_replica_retain_until(
        self, schema: str, backup_id: uuid.UUID, retain_until: datetime
    ) -> None:
        with self._db.clinic(schema) as tx:
            tx.execute(
                "UPDATE {records} SET replica_retain_until = %s "
                "WHERE id = %s AND replicated_at IS NOT NULL",
                (retain_until, backup_id),
            )

    def mark_primary_damaged(self, schema: str, backup_id: uuid.UUID, at: datetime) -> None:
        self._stamp_once(schema, backup_id, "primary_damaged_at", at)

    def clear_replicated(self, schema: str, backup_id: uuid.UUID) -> None:
        with self._db.clinic(schema) as tx:
            tx.execute(
                "UPDATE {records} SET replicated_at = NULL, replica_retain_until = NULL "
                "WHERE id = %s",
                (backup_id,),
            )

    def replica_purgeable(self, schema: str, now: datetime) -> builtins.list[BackupRecord]:
        with self._db.clinic(schema) as tx:
            return all_records(
                tx,
                "SELECT * FROM {records} WHERE purged_at IS NOT NULL "
                "AND replicated_at IS NOT NULL "
                "AND (replica_retain_until IS NULL OR replica_retain_until <= %s) "
                "ORDER BY purged_at",
                (now,),
            )

    def unreplicated_since(self, schema: str, before: datetime) -> int:
        with self._db.clinic(schema) as tx:
            return int(
                tx.one(
                    "SELECT count(*) AS n FROM {records} WHERE status = 'completed' "
                    "AND replicated_at IS NULL AND finished_at < %s",
                    (before,),
                )["n"]
            )

    def backups_in_use(self, schema: str) -> set[uuid.UUID]:
        # Restores and verifications not yet finished read their backup (and a restore its
        # pre-restore backup, the undo's way back).
        with self._db.clinic(schema) as tx:
            return {
                r["id"]
                for r in tx.all(
                    "SELECT backup_id AS id FROM {restores} WHERE status IN ('pending', 'running') "
                    "UNION SELECT pre_restore_backup_id FROM {restores} "
                    "WHERE status IN ('pending', 'running') AND pre_restore_backup_id IS NOT NULL"
                )
            }

    def fail_stale(self, schema: str, before: datetime, at: datetime) -> builtins.list[uuid.UUID]:
        with self._db.clinic(schema) as tx:
            # A backup (or re-encryption) whose lease expired, as a request would take it over.
            takeover = expire_lock(tx, at, ("backup", "reencrypt"))
            ids = list(takeover.backups_failed) if takeover else []
            # Pending ones past the age threshold (their message is gone); running ones that no
            # live lease covers (however long they have run: a live one renews its lease).
            stale = [
                r["id"]
                for r in tx.all(
                    "UPDATE {records} r SET status = 'failed', finished_at = %(at)s, "
                    "error_code = 'stale', error = CASE WHEN r.status = 'pending' "
                    "THEN %(never)s ELSE %(gone)s END WHERE " + STALE_BACKUP + " RETURNING id",
                    {"at": at, "stuck": before, "never": NEVER_STARTED, "gone": LEASE_GONE},
                )
            ]
            if stale:
                tx.execute("DELETE FROM {lock} WHERE ref_id = ANY(%s::uuid[])", (stale,))
            return ids + stale

    def keys_in_flight(self, schema: str, stuck_before: datetime) -> set[str]:
        with self._db.clinic(schema) as tx:
            return {
                r["storage_key"]
                for r in tx.all(
                    "SELECT r.storage_key FROM {records} r WHERE r.status IN ('pending', 'running') "
                    "AND NOT " + STALE_BACKUP + " UNION "
                    "SELECT r.storage_key FROM {lock} l JOIN {records} r ON r.id = l.ref_id "
                    "WHERE l.kind = 'reencrypt' AND (l.lease_id IS NULL OR " + LEASE_LIVE + ")",
                    {"stuck": stuck_before},
                )
            }

    def note_upload_removed(self, schema: str, storage_key: str, pending: str, done: str) -> None:
        with self._db.clinic(schema) as tx:
            tx.execute(
                "UPDATE {records} SET error = replace(error, %s, %s) "
                "WHERE storage_key = %s AND status = 'failed' AND strpos(error, %s) > 0",
                (pending, done, storage_key, pending),
            )

    def known_keys(self, schema: str) -> set[str]:
        with self._db.clinic(schema) as tx:
            keys = set()
            for row in tx.all("SELECT storage_key, parts FROM {records} WHERE purged_at IS NULL"):
                keys.add(row["storage_key"])
                # A split backup's objects are its parts (its storage_key names none).
                keys.update(str(part["key"]) for part in row["parts"] or [])
            return keys

    def audit(self, schema: str, entry: AuditEntry) -> None:
        with self._db.clinic(schema) as tx:
            insert_audit(tx, entry)

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
            clinic_tables(schema),
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
