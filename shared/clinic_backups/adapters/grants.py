"""The privileges the backup role needs, as SQL the operator (or the host's `post_schema_sync`
receiver) runs: `clinic-backups grant` (docs/django-tenants.md).

Run as a role that owns the clinic schemas or is a member of their owner (the restore role is
one, the application role too). Every statement is idempotent; the command prints each one.

- Database-wide default privileges for each owner of a clinic schema: USAGE and CREATE on the
  schemas it creates later, SELECT on its later tables and sequences. A tenant created after
  this ran (a Django `post_schema_sync`, `clone_schema`) is backed up by the next scheduler run
  with nobody granting anything.
- For every existing clinic: USAGE and CREATE on its schema, SELECT on its tables and
  sequences.
- `backup_*` tables copied from another schema (django-tenants' `clone_schema` copies every
  table of `TENANT_BASE_SCHEMA`, that schema's backup history included) are dropped: they
  describe another clinic (names.py, `meta_stamp`). The product recreates them empty.
- `backup_*` tables owned by any other role are given to the designated owner
  (`BACKUP_TABLES_OWNER`), when the running role may do so.
- `enable_mergejoin = off` for the backup role (BRIEF: pg_dump's catalog query with many
  schemas).

Identifiers only through `psycopg2.sql.Identifier`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from psycopg2 import sql

from clinic_backups.domain.names import OWNED_TABLES, is_valid_schema_name, meta_stamp


@dataclass
class GrantReport:
    database: str
    clinics: list[str]
    sql: list[str] = field(default_factory=list)
    copies_dropped: list[str] = field(default_factory=list)
    not_reassigned: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "clinics": self.clinics,
            "sql": self.sql,
            "copies_dropped": self.copies_dropped,
            "not_reassigned": self.not_reassigned,
        }


def _owners(cur: Any, schemas: list[str]) -> list[str]:
    """The owners of the clinic schemas this role may act for (default privileges)."""
    cur.execute(
        "SELECT DISTINCT pg_get_userbyid(nspowner) FROM pg_namespace "
        "WHERE nspname = ANY(%s) AND pg_has_role(nspowner, 'USAGE') ORDER BY 1",
        (schemas,),
    )
    return [r[0] for r in cur.fetchall()]


def _may_alter_role(cur: Any, role: str) -> bool:
    cur.execute(
        "SELECT rolsuper OR rolcreaterole OR current_user = %s FROM pg_roles "
        "WHERE rolname = current_user",
        (role,),
    )
    row = cur.fetchone()
    return bool(row and row[0])


def _copied(cur: Any, schema: str) -> bool:
    """Whether the schema's `backup_meta` came from another schema (clone_schema)."""
    cur.execute(
        "SELECT obj_description(c.oid, 'pg_class') FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = 'backup_meta' AND c.relkind = 'r'",
        (schema,),
    )
    row = cur.fetchone()
    return row is not None and row[0] != meta_stamp(schema)


def _misowned(cur: Any, schema: str, owner: str) -> list[tuple[str, bool]]:
    """The schema's backup tables owned by another role, and whether we may reassign each."""
    cur.execute(
        "SELECT c.relname, pg_has_role(c.relowner, 'USAGE') AND pg_has_role(%s, 'USAGE') "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = ANY(%s) AND c.relkind = 'r' "
        "AND pg_get_userbyid(c.relowner) <> %s ORDER BY 1",
        (owner, schema, list(OWNED_TABLES), owner),
    )
    return [(r[0], bool(r[1])) for r in cur.fetchall()]


def grant(
    conn: Any,
    *,
    backup_role: str,
    tables_owner: str,
    clinics: Iterable[str],
    tenants_table: str,
) -> GrantReport:
    """Apply (in one transaction) and report every statement run."""
    schemas = sorted({s for s in clinics if is_valid_schema_name(s)})
    backup = sql.Identifier(backup_role)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT current_database()")
        database = cur.fetchone()[0]
        report = GrantReport(database=database, clinics=schemas)

        def run(statement: sql.Composable) -> None:
            report.sql.append(statement.as_string(cur))
            cur.execute(statement)

        table_parts = tenants_table.split(".")
        run(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(database), backup))
        if len(table_parts) == 2:
            run(
                sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
                    sql.Identifier(table_parts[0]), backup
                )
            )
        run(sql.SQL("GRANT SELECT ON {} TO {}").format(sql.Identifier(*table_parts), backup))
        for owner in _owners(cur, schemas):
            role = sql.Identifier(owner)
            for what in ("USAGE, CREATE ON SCHEMAS", "SELECT ON TABLES", "SELECT ON SEQUENCES"):
                run(
                    sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} GRANT " + what + " TO {}").format(
                        role, backup
                    )
                )
        for schema in schemas:
            s = sql.Identifier(schema)
            run(sql.SQL("GRANT USAGE, CREATE ON SCHEMA {} TO {}").format(s, backup))
            run(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(s, backup))
            run(sql.SQL("GRANT SELECT ON ALL SEQUENCES IN SCHEMA {} TO {}").format(s, backup))
            if _copied(cur, schema):
                cur.execute(
                    "SELECT c.relname FROM pg_class c JOIN pg_namespace n "
                    "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = ANY(%s) "
                    "AND c.relkind = 'r' ORDER BY 1",
                    (schema, list(OWNED_TABLES)),
                )
                copied = [r[0] for r in cur.fetchall()]
                run(
                    sql.SQL("DROP TABLE {}").format(
                        sql.SQL(", ").join(sql.Identifier(schema, t) for t in copied)
                    )
                )
                report.copies_dropped.append(schema)
                continue
            # The host's maintenance middleware reads the clinic's lock as the schema's owner.
            cur.execute(
                "SELECT pg_get_userbyid(n.nspowner) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s "
                "AND c.relname = 'backup_operation_lock' AND c.relkind = 'r' "
                "AND pg_has_role(c.relowner, 'USAGE') "
                "AND NOT has_table_privilege(n.nspowner, c.oid, 'SELECT')",
                (schema,),
            )
            for (schema_owner,) in cur.fetchall():
                run(
                    sql.SQL("GRANT SELECT ON {} TO {}").format(
                        sql.Identifier(schema, "backup_operation_lock"),
                        sql.Identifier(schema_owner),
                    )
                )
            for table, allowed in _misowned(cur, schema, tables_owner):
                if allowed:
                    run(
                        sql.SQL("ALTER TABLE {} OWNER TO {}").format(
                            sql.Identifier(schema, table), sql.Identifier(tables_owner)
                        )
                    )
                else:
                    report.not_reassigned.append(f"{schema}.{table}")
        if _may_alter_role(cur, backup_role):
            run(sql.SQL("ALTER ROLE {} SET enable_mergejoin = off").format(backup))
    return report
