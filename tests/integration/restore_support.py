"""What the restore tests look at: per-table checksums, sequences, constraints, indexes,
owners and grants, the clinic's lock, and the API calls of a restore."""

from __future__ import annotations

from typing import Any

import psycopg2
from clinic_backups.domain.names import OWNED_TABLES
from psycopg2 import sql

from tests.helpers import Reply, call, load_event, mint


def checksums(url: str, schema: str) -> dict[str, Any]:
    """Every clinic table's rows (md5 of the sorted row texts) and every sequence's state:
    equal dictionaries mean equal data. The service's own tables are left out (they never
    roll back)."""
    out: dict[str, Any] = {}
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind IN ('r', 'S') "
            "ORDER BY 1",
            (schema,),
        )
        for name, kind in cur.fetchall():
            if name in OWNED_TABLES:
                continue
            if kind == "S":
                cur.execute(
                    sql.SQL("SELECT last_value, is_called FROM {}").format(
                        sql.Identifier(schema, name)
                    )
                )
                out[f"sequence {name}"] = cur.fetchone()
            else:
                cur.execute(
                    sql.SQL(
                        "SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' "
                        "ORDER BY t::text), '')) FROM {} t"
                    ).format(sql.Identifier(schema, name))
                )
                out[f"table {name}"] = cur.fetchone()
    conn.close()
    return out


def privileges(url: str, schema: str) -> dict[str, Any]:
    """Owner and grants (as sorted sets; NULL = the defaults) of the schema, of every object
    in it and of its default privileges."""
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT n.nspowner::regrole::text, (SELECT array_agg(a::text ORDER BY a::text) "
            "FROM unnest(coalesce(n.nspacl, acldefault('n', n.nspowner))) a) "
            "FROM pg_namespace n WHERE n.nspname = %s",
            (schema,),
        )
        owner, acl = cur.fetchone()
        cur.execute(
            "SELECT c.relname, c.relkind, c.relowner::regrole::text, "
            "(SELECT array_agg(a::text ORDER BY a::text) FROM unnest(coalesce(c.relacl, "
            "acldefault(CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END::\"char\", "
            "c.relowner))) a) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'S') ORDER BY 1",
            (schema,),
        )
        relations = {name: (kind, rowner, racl) for name, kind, rowner, racl in cur.fetchall()}
        cur.execute(
            "SELECT d.defaclrole::regrole::text, d.defaclobjtype::text, "
            "(SELECT array_agg(a::text ORDER BY a::text) FROM unnest(d.defaclacl) a) "
            "FROM pg_default_acl d JOIN pg_namespace n ON n.oid = d.defaclnamespace "
            "WHERE n.nspname = %s ORDER BY 1, 2",
            (schema,),
        )
        defaults = cur.fetchall()
    conn.close()
    return {"owner": owner, "acl": acl, "relations": relations, "default_acl": defaults}


def structure(url: str, schema: str, *, owned: bool = True) -> dict[str, Any]:
    """Columns (type, default, not null), constraints, indexes, views and sequence ownership
    of every relation in the schema, as PostgreSQL prints them (the service's own tables
    left out when `owned` is false: an archive never holds them)."""
    skip = [] if owned else list(OWNED_TABLES)
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, "
            "pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a "
            "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
            "WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm') AND a.attnum > 0 "
            "AND NOT a.attisdropped AND c.relname <> ALL(%s) ORDER BY 1, a.attnum",
            (schema, skip),
        )
        columns = cur.fetchall()
        cur.execute(
            "SELECT c.relname, k.conname, k.contype::text, pg_get_constraintdef(k.oid) "
            "FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s "
            "AND c.relname <> ALL(%s) ORDER BY 1, 2",
            (schema, skip),
        )
        constraints = cur.fetchall()
        cur.execute(
            "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = %s "
            "AND tablename <> ALL(%s) ORDER BY 1, 2",
            (schema, skip),
        )
        indexes = cur.fetchall()
        cur.execute(
            "SELECT c.relname, pg_get_viewdef(c.oid) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind IN ('v', 'm') ORDER BY 1",
            (schema,),
        )
        views = cur.fetchall()
        cur.execute(
            "SELECT s.relname, t.relname, a.attname FROM pg_depend d "
            "JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' "
            "JOIN pg_class t ON t.oid = d.refobjid "
            "JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid "
            "JOIN pg_namespace n ON n.oid = s.relnamespace "
            "WHERE n.nspname = %s AND d.deptype IN ('a', 'i') ORDER BY 1",
            (schema,),
        )
        sequences = cur.fetchall()
    conn.close()
    return {
        "columns": columns,
        "constraints": constraints,
        "indexes": indexes,
        "views": views,
        "sequences": sequences,
    }


def lock_rows(url: str, schema: str) -> list[tuple[Any, ...]]:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            sql.SQL("SELECT kind, ref_id::text FROM {}").format(
                sql.Identifier(schema, "backup_operation_lock")
            )
        )
        rows = cur.fetchall()
    conn.close()
    return rows


def schemas_like(url: str, schema: str) -> list[str]:
    """The clinic's schema and any schema a restore of it set aside."""
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname = %s OR nspname LIKE %s ORDER BY 1",
            (schema, schema.replace("_", r"\_") + r"\_\_%"),
        )
        names = [r[0] for r in cur.fetchall()]
    conn.close()
    return names


def backup(schema: str, sqs: Any, note: str | None = None) -> dict[str, Any]:
    """A manual backup through the API and the worker; returns the completed record."""
    token = mint(schema)
    reply = call(
        "create_backup",
        load_event(
            "create_backup/post_backups.json",
            token=token,
            body={"note": note} if note else None,
        ),
    )
    assert reply.status == 202, reply.body
    sqs.drain_into_worker()
    record = get_backup(schema, reply.body["id"])
    assert record["status"] == "completed", record
    return record


def get_backup(schema: str, backup_id: str) -> dict[str, Any]:
    reply = call(
        "list_backups",
        load_event("list_backups/get_backup.json", token=mint(schema), backup_id=backup_id),
    )
    assert reply.status == 200, reply.body
    return dict(reply.body)


def request_restore(schema: str, backup_id: str, confirm: Any = ..., role: str = "admin") -> Reply:
    body = {"confirm": schema} if confirm is ... else confirm
    return call(
        "restore_backup",
        load_event(
            "restore_backup/post_restore.json",
            token=mint(schema, role),
            backup_id=backup_id,
            body=body,
        ),
    )


def get_restore(schema: str, restore_id: str) -> dict[str, Any]:
    reply = call(
        "restore_backup",
        load_event("restore_backup/get_restore.json", token=mint(schema), backup_id=restore_id),
    )
    assert reply.status == 200, reply.body
    return dict(reply.body)


def restore(schema: str, backup_id: str, restore_sqs: Any) -> dict[str, Any]:
    """Request a restore and run the restore queue; returns the job as the API shows it."""
    reply = request_restore(schema, backup_id)
    assert reply.status == 202, reply.body
    restore_sqs.drain_into_worker()
    return get_restore(schema, reply.body["id"])


def undo(schema: str, restore_id: str) -> Reply:
    return call(
        "restore_backup",
        load_event("restore_backup/post_undo.json", token=mint(schema), backup_id=restore_id),
    )


def archived_table_data(schema: str, backup_id: str, table: str) -> str:
    """One table's COPY data in a stored backup, as pg_restore writes it out: the archive read
    back through the product (sha256 checked, age decrypted)."""
    import subprocess
    import uuid

    from clinic_backups.usecases.archive import open_archive
    from clinic_backups.wiring.factory import build_services
    from clinic_backups.wiring.settings import RestoreSettings, get_settings

    svc = build_services(get_settings(RestoreSettings))
    record = svc.records.get(schema, uuid.UUID(backup_id))
    assert record is not None and svc.restorer is not None
    pg_restore = svc.restorer.tools.path("pg_restore")  # type: ignore[attr-defined]
    with open_archive(svc, schema, record) as archive:
        data = archive.stream.read()
        assert archive.verified()
    return subprocess.run(
        [pg_restore, "--data-only", f"--table={table}", "--file=-"],
        input=data,
        capture_output=True,
        check=True,
    ).stdout.decode()
