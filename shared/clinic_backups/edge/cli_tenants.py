"""CLI commands for a django-tenants host (docs/django-tenants.md), registered by cli.py:

    clinic-backups grant [<clinic> ...]

`grant` needs only the database settings (`GrantSettings`): DATABASE_URL (whose user is the
backup role unless BACKUP_ROLE), RESTORE_DATABASE_URL (run as that role when set),
BACKUP_TABLES_OWNER and the tenants table. It prints the SQL it ran in its JSON result.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from clinic_backups.adapters.grants import grant
from clinic_backups.wiring.settings import GrantSettings, get_settings


def _tenant_schemas(conn: Any, settings: GrantSettings) -> list[str]:
    """Every tenant's schema, active or not (an inactive clinic may still be restored)."""
    with conn, conn.cursor() as cur:
        cur.execute(
            sql.SQL("SELECT {} FROM {} ORDER BY 1").format(
                sql.Identifier(settings.tenant_schema_column),
                sql.Identifier(*settings.tenants_table.split(".")),
            )
        )
        return [r[0] for r in cur.fetchall()]


def cmd_grant(args: argparse.Namespace) -> int:
    settings = get_settings(GrantSettings)
    functions_url = settings.database_url.get_secret_value()
    backup_role = settings.backup_role or psycopg2.extensions.parse_dsn(functions_url).get("user")
    if not backup_role:
        from clinic_backups.domain.errors import ConfigurationError

        raise ConfigurationError("set BACKUP_ROLE (DATABASE_URL names no user)")
    owner = settings.backup_tables_owner or backup_role
    url = (settings.restore_database_url or settings.database_url).get_secret_value()
    conn = psycopg2.connect(url)
    try:
        clinics = args.clinics or _tenant_schemas(conn, settings)
        report = grant(
            conn,
            backup_role=backup_role,
            tables_owner=owner,
            clinics=clinics,
            tenants_table=settings.tenants_table,
        )
    finally:
        conn.close()
    print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    return 1 if report.not_reassigned else 0


def register(sub: Any) -> None:
    """Add this module's commands to cli.py's subparsers."""
    p = sub.add_parser(
        "grant",
        help="grant the backup role what it needs on every clinic, now and for new tenants "
        "(idempotent; prints the SQL)",
    )
    p.add_argument("clinics", nargs="*", help="default: every tenant in the tenants table")
    p.set_defaults(run=cmd_grant)
