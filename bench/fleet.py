"""Generate many clinic schemas quickly (for the many-schemas and scheduler benchmarks)."""

from __future__ import annotations

import psycopg2
from psycopg2 import sql

from devstack import clinic_data

TABLES_PER_CLINIC = 25


def ensure_fleet(url: str, count: int, prefix: str = "fleet_") -> list[str]:
    """`count` small clinic schemas of ~25 tables each (with keys, an index and a sequence),
    registered as tenants; created once and reused by later runs."""
    names = [f"{prefix}{i:05d}" for i in range(count)]
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        clinic_data.ensure_tenants_table(cur)
        cur.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", (prefix + "%",))
        existing = {r[0] for r in cur.fetchall()}
    missing = [n for n in names if n not in existing]
    for start in range(0, len(missing), 50):
        with psycopg2.connect(url) as conn, conn.cursor() as cur:
            for schema in missing[start : start + 50]:
                cur.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
                for t in range(TABLES_PER_CLINIC):
                    cur.execute(
                        sql.SQL(
                            "CREATE TABLE {t} (id bigserial PRIMARY KEY, name text NOT NULL, "
                            "created_at timestamptz NOT NULL DEFAULT now(), amount numeric(12,2))"
                        ).format(t=sql.Identifier(schema, f"t{t:02d}"))
                    )
                    cur.execute(
                        sql.SQL("CREATE INDEX ON {t} (name)").format(
                            t=sql.Identifier(schema, f"t{t:02d}")
                        )
                    )
                clinic_data.register_tenant(cur, schema, f"Fleet {schema}")
    return names
