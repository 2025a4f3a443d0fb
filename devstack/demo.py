"""The local stack's demo: three clinics laid out as django-tenants does, the database roles
of a real deployment, and the demo users who sign in to them.

Roles (as in production, three of them):
  - ``clinic_app``: the Django application's role; it owns the clinic schemas and their data.
  - ``clinic_backup``: the backup service's role, which the functions connect as. It gets the
    least privilege a schema dump needs and nothing more: ``apply_least_privilege`` below is
    the one place that says what that is (docs and tests point at it).
  - ``clinic_restore``: the restore function's role (``RESTORE_DATABASE_URL``): a member of
    ``clinic_app`` (to rename a clinic's schema and create the restored one as its owner) and
    of ``clinic_backup`` (the owner of the ``backup_*`` tables a restore moves back), with
    CREATE on the database (renaming a schema needs it). Rights the dump role must not have.

``setup_demo`` is idempotent: a second run finds everything in place and changes nothing (a
clinic that exists is left alone, even a deactivated one, so a restart never undoes what a
developer changed on purpose).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg2
import psycopg2.errors
from psycopg2 import sql

from devstack import clinic_data

__all__ = [
    "APP_ROLE",
    "BACKUP_ROLE",
    "CLINICS",
    "DEMO_DATABASE",
    "RESTORE_ROLE",
    "USERS",
    "Clinic",
    "DemoUser",
    "apply_least_privilege",
    "demo_present",
    "ensure_roles",
    "privileges_in_place",
    "setup_demo",
]

APP_ROLE = "clinic_app"
BACKUP_ROLE = "clinic_backup"
RESTORE_ROLE = "clinic_restore"
# The database the embedded server keeps the demo in (an external DATABASE_URL keeps its own).
DEMO_DATABASE = "clinics"


@dataclass(frozen=True)
class Clinic:
    schema: str
    name: str
    patients: int
    seed: float


@dataclass(frozen=True)
class DemoUser:
    clinic: str
    role: str  # the token's clinic_role: admin | staff
    sub: str
    name: str


# Different sizes, so a backup restored into the wrong clinic cannot go unnoticed.
CLINICS: tuple[Clinic, ...] = (
    Clinic("clinica_demo", "Clínica Demo", 3000, 0.11),
    Clinic("clinica_norte", "Clínica Norte", 2400, 0.22),
    Clinic("clinica_sur", "Clínica Sur", 3600, 0.33),
)

USERS: tuple[DemoUser, ...] = (
    DemoUser("clinica_demo", "admin", "demo-clinica_demo-admin", "Dra. Ana Pérez"),
    DemoUser("clinica_demo", "staff", "demo-clinica_demo-staff", "Luis Gómez"),
    DemoUser("clinica_norte", "admin", "demo-clinica_norte-admin", "Dr. Javier Etxeberria"),
    DemoUser("clinica_norte", "staff", "demo-clinica_norte-staff", "Lucía Fernández"),
    DemoUser("clinica_sur", "admin", "demo-clinica_sur-admin", "Dra. Rocío Martín"),
    DemoUser("clinica_sur", "staff", "demo-clinica_sur-staff", "Manuel Ortega"),
)


def clinic(schema: str) -> Clinic:
    return next(c for c in CLINICS if c.schema == schema)


# --- roles and privileges --------------------------------------------------------------------


# Marks roles this module created, so the stack may set their password on a server that does
# not trust local connections, and never touches a role someone else made.
ROLE_COMMENT = "created by the clinic-backups local stack (devstack.demo)"


def ensure_roles(cur: Any, roles: Iterable[str] = (APP_ROLE, BACKUP_ROLE)) -> list[str]:
    """``CREATE ROLE <name> LOGIN`` for each role that is missing; returns those created."""
    created = []
    for role in roles:
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
        if cur.fetchone() is None:
            cur.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
            cur.execute(
                sql.SQL("COMMENT ON ROLE {} IS {}").format(
                    sql.Identifier(role), sql.Literal(ROLE_COMMENT)
                )
            )
            created.append(role)
    return created


def created_by_us(cur: Any, role: str) -> bool:
    cur.execute(
        "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = %s", (role,)
    )
    row = cur.fetchone()
    return row is not None and row[0] == ROLE_COMMENT


def apply_least_privilege(
    cur: Any,
    database: str,
    clinics: Iterable[str],
    *,
    app_role: str = APP_ROLE,
    backup_role: str = BACKUP_ROLE,
    restore_role: str = RESTORE_ROLE,
) -> None:
    """Everything the backup role may do, and so everything a dump of a clinic needs.

    - CONNECT to the database; read the public tenants table (which clinics exist and are
      active) and nothing else in ``public``.
    - In each clinic schema (owned by the app role): USAGE, SELECT on every table and sequence
      (pg_dump reads them and takes ACCESS SHARE locks), and CREATE for the ``backup_*``
      tables the service owns there. Default privileges extend SELECT to tables and sequences
      the app creates later (a Django migration), so a new table never breaks the next dump.
    - ``enable_mergejoin = off`` for the role: with thousands of schemas one catalog query of
      pg_dump picks a bad merge join (BRIEF: 23.6 s → 1.57 s). Set on the role because a
      connection pooler may drop startup options.

    No ownership, no write on clinic data, no superuser, no BYPASSRLS. Identifiers always go
    through ``sql.Identifier``.

    The restore role gets what a restore needs and the backup role must not have: membership
    of the app role and of the backup role, and CREATE on the database.
    """
    ensure_roles(cur, (app_role, backup_role, restore_role))
    app, backup = sql.Identifier(app_role), sql.Identifier(backup_role)
    restore = sql.Identifier(restore_role)
    statements = [
        sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(database), backup),
        sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(backup),
        sql.SQL("GRANT SELECT ON {} TO {}").format(
            sql.Identifier(*clinic_data.TENANTS_TABLE), backup
        ),
    ]
    for schema in clinics:
        s = sql.Identifier(schema)
        statements += [
            sql.SQL("GRANT USAGE, CREATE ON SCHEMA {} TO {}").format(s, backup),
            sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(s, backup),
            sql.SQL("GRANT SELECT ON ALL SEQUENCES IN SCHEMA {} TO {}").format(s, backup),
            sql.SQL(
                "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {} GRANT SELECT ON TABLES TO {}"
            ).format(app, s, backup),
            sql.SQL(
                "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {} GRANT SELECT ON SEQUENCES TO {}"
            ).format(app, s, backup),
        ]
    statements.append(sql.SQL("ALTER ROLE {} SET enable_mergejoin = off").format(backup))
    statements += [
        sql.SQL("GRANT {}, {} TO {}").format(app, backup, restore),
        sql.SQL("GRANT CONNECT, CREATE ON DATABASE {} TO {}").format(
            sql.Identifier(database), restore
        ),
    ]
    for statement in statements:
        cur.execute(statement)


def privileges_in_place(
    cur: Any,
    database: str,
    clinics: Iterable[str],
    *,
    app_role: str = APP_ROLE,
    backup_role: str = BACKUP_ROLE,
    restore_role: str = RESTORE_ROLE,
) -> bool:
    """Whether the backup role already has everything `apply_least_privilege` grants.

    Re-running a GRANT that is already in place leaves the ACL as it was but still rewrites
    the catalog rows; checking first lets a second start change nothing at all.
    """
    schemas = list(clinics)
    roles = [app_role, backup_role, restore_role]
    cur.execute("SELECT 1 FROM pg_roles WHERE rolname = ANY(%s)", (roles,))
    if len(cur.fetchall()) != len(roles):
        return False
    cur.execute(
        """
        SELECT has_database_privilege(%(b)s, %(db)s, 'CONNECT')
           AND pg_has_role(%(r)s, %(a)s, 'MEMBER') AND pg_has_role(%(r)s, %(b)s, 'MEMBER')
           AND has_database_privilege(%(r)s, %(db)s, 'CREATE')
           AND has_schema_privilege(%(b)s, 'public', 'USAGE')
           AND has_table_privilege(%(b)s, %(tenants)s, 'SELECT')
           AND EXISTS (SELECT 1 FROM pg_db_role_setting s
                       WHERE s.setrole = %(b)s::regrole AND s.setdatabase = 0
                         AND 'enable_mergejoin=off' = ANY(s.setconfig))
           AND NOT EXISTS (  -- a clinic schema the role cannot use or create in
                 SELECT 1 FROM unnest(%(schemas)s::text[]) AS c(name)
                 WHERE NOT has_schema_privilege(%(b)s, c.name, 'USAGE')
                    OR NOT has_schema_privilege(%(b)s, c.name, 'CREATE'))
           AND NOT EXISTS (  -- a table, view or sequence it cannot read
                 SELECT 1 FROM pg_class r JOIN pg_namespace n ON n.oid = r.relnamespace
                 WHERE n.nspname = ANY(%(schemas)s)
                   AND r.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
                   AND NOT has_table_privilege(%(b)s, r.oid, 'SELECT'))
           AND (SELECT count(*) FROM pg_default_acl d
                JOIN pg_namespace n ON n.oid = d.defaclnamespace
                CROSS JOIN LATERAL aclexplode(d.defaclacl) a
                WHERE d.defaclrole = %(a)s::regrole AND n.nspname = ANY(%(schemas)s)
                  AND d.defaclobjtype IN ('r', 'S') AND a.grantee = %(b)s::regrole
                  AND a.privilege_type = 'SELECT') = 2 * cardinality(%(schemas)s::text[])
        """,
        {
            "a": app_role,
            "b": backup_role,
            "r": restore_role,
            "db": database,
            "schemas": schemas,
            "tenants": ".".join(clinic_data.TENANTS_TABLE),
        },
    )
    return bool(cur.fetchone()[0])


# --- the demo data ---------------------------------------------------------------------------


def demo_present(cur: Any) -> bool:
    """Whether the demo clinics, their tenant rows and the backup role already exist."""
    cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (BACKUP_ROLE,))
    if cur.fetchone() is None:
        return False
    tenants = ".".join(clinic_data.TENANTS_TABLE)
    cur.execute("SELECT to_regclass(%s)", (tenants,))
    if cur.fetchone()[0] is None:
        return False
    # A role that may not read the tenants table still sees the catalog: check rows if it can.
    cur.execute("SELECT has_table_privilege(%s, 'SELECT')", (tenants,))
    if cur.fetchone()[0]:
        cur.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE schema_name = ANY(%s)").format(
                sql.Identifier(*clinic_data.TENANTS_TABLE)
            ),
            ([c.schema for c in CLINICS],),
        )
        if cur.fetchone()[0] != len(CLINICS):
            return False
    # From the catalog, not to_regclass: that needs USAGE on the clinic schemas.
    cur.execute(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = ANY(%s) AND c.relname = 'patients' AND c.relkind = 'r'",
        ([c.schema for c in CLINICS],),
    )
    return bool(cur.fetchone()[0] == len(CLINICS))


def _database_of(conn: Any) -> str:
    with conn.cursor() as cur:
        cur.execute("SELECT current_database()")
        return str(cur.fetchone()[0])


def ensure_database(admin_url: str, name: str = DEMO_DATABASE) -> bool:
    """Create the demo database, owned by the app role (as Django's database is), unless it
    exists. Returns whether it was created."""
    conn = psycopg2.connect(admin_url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            ensure_roles(cur)
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone() is not None:
                return False
            cur.execute(
                sql.SQL("CREATE DATABASE {} OWNER {} ENCODING 'UTF8' TEMPLATE template0").format(
                    sql.Identifier(name), sql.Identifier(APP_ROLE)
                )
            )
            return True
    finally:
        conn.close()


def setup_demo(url: str) -> str:
    """Create (or complete) the demo in the database of `url`, as a role that may create roles
    and schemas. Returns what happened, in a few words."""
    conn = psycopg2.connect(url)
    try:
        database = _database_of(conn)
        with conn, conn.cursor() as cur:
            schemas = [c.schema for c in CLINICS]
            if demo_present(cur):
                if privileges_in_place(cur, database, schemas):
                    return "demo data in place"
                apply_least_privilege(cur, database, schemas)
                return "demo data in place; privileges of clinic_backup restored"
            ensure_roles(cur)
            # django-tenants' shared table, made by the app role (it owns the public tables).
            cur.execute("SELECT to_regclass(%s)", (".".join(clinic_data.TENANTS_TABLE),))
            if cur.fetchone()[0] is None:
                cur.execute("SELECT has_schema_privilege(%s, 'public', 'CREATE')", (APP_ROLE,))
                as_app = bool(cur.fetchone()[0])
                if as_app:
                    cur.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(APP_ROLE)))
                clinic_data.ensure_tenants_table(cur)
                if as_app:
                    cur.execute("RESET ROLE")
            made = []
            for c in CLINICS:
                cur.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (c.schema,))
                if cur.fetchone() is None:
                    made.append(c.schema)
                clinic_data.create_clinic_schema(
                    cur, c.schema, patients=c.patients, owner=APP_ROLE, seed=c.seed
                )
                _register_if_missing(cur, c)
            apply_least_privilege(cur, database, schemas)
        return "created " + ", ".join(made) if made else "completed the demo data"
    finally:
        conn.close()


def _register_if_missing(cur: Any, c: Clinic) -> None:
    cur.execute(
        sql.SQL(
            "INSERT INTO {} (schema_name, name, is_active) VALUES (%s, %s, true) "
            "ON CONFLICT (schema_name) DO NOTHING"
        ).format(sql.Identifier(*clinic_data.TENANTS_TABLE)),
        (c.schema, c.name),
    )


def set_password(url: str, role: str, password: str) -> None:
    """Give `role` a password (for servers that do not trust local connections)."""
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(
                sql.SQL("ALTER ROLE {} PASSWORD %s").format(sql.Identifier(role)), (password,)
            )
    finally:
        conn.close()


def insufficient_privilege(error: BaseException) -> bool:
    return isinstance(error, psycopg2.errors.InsufficientPrivilege)
