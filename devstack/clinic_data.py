"""Realistic clinic data laid out as django-tenants does: a public tenants table and one
schema per clinic with patients, staff, appointments, treatments and invoices (foreign keys,
sequences, indexes, a view), Spanish names. Used by the local stack's demo, the tests and the
benchmarks. Rows are generated inside PostgreSQL (generate_series), so hundreds of MB take
seconds, not minutes.
"""

from __future__ import annotations

from typing import Any

from psycopg2 import sql

TENANTS_TABLE = ("public", "customers_client")

FIRST_NAMES = [
    "María",
    "José",
    "Carmen",
    "Antonio",
    "Lucía",
    "Manuel",
    "Ana",
    "Francisco",
    "Isabel",
    "David",
    "Laura",
    "Javier",
    "Marta",
    "Daniel",
    "Elena",
    "Carlos",
    "Paula",
    "Miguel",
    "Cristina",
    "Alejandro",
    "Sofía",
    "Pablo",
    "Nuria",
    "Sergio",
    "Rocío",
    "Jorge",
    "Pilar",
    "Alberto",
    "Beatriz",
    "Raúl",
    "Inés",
    "Álvaro",
    "Teresa",
    "Fernando",
    "Irene",
    "Rubén",
]
LAST_NAMES = [
    "García",
    "Fernández",
    "González",
    "Rodríguez",
    "López",
    "Martínez",
    "Sánchez",
    "Pérez",
    "Gómez",
    "Martín",
    "Jiménez",
    "Ruiz",
    "Hernández",
    "Díaz",
    "Moreno",
    "Muñoz",
    "Álvarez",
    "Romero",
    "Alonso",
    "Gutiérrez",
    "Navarro",
    "Torres",
    "Domínguez",
    "Vázquez",
    "Ramos",
    "Gil",
    "Ramírez",
    "Serrano",
    "Blanco",
    "Molina",
    "Morales",
    "Suárez",
    "Ortega",
    "Delgado",
]
TREATMENTS = [
    ("CONS", "Consulta general", 45),
    ("LIMP", "Limpieza dental", 60),
    ("EMP", "Empaste", 70),
    ("ENDO", "Endodoncia", 250),
    ("EXT", "Extracción", 90),
    ("ORTO", "Revisión de ortodoncia", 55),
    ("RX", "Radiografía panorámica", 35),
    ("IMPL", "Implante", 950),
    ("BLAN", "Blanqueamiento", 300),
    ("FISIO", "Sesión de fisioterapia", 40),
    ("ANAL", "Análisis de sangre", 25),
    ("VAC", "Vacunación", 20),
]
STAFF_ROLES = ["médico", "enfermería", "higienista", "recepción", "fisioterapeuta"]


def _array(values: list[str]) -> sql.Composable:
    return sql.SQL("(ARRAY[{}]::text[])").format(sql.SQL(", ").join(sql.Literal(v) for v in values))


def ensure_tenants_table(cur: Any) -> None:
    """django-tenants' tenant model table (app `customers`, model `Client`), plus is_active."""
    cur.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {t} ("
            " id serial PRIMARY KEY,"
            " schema_name varchar(63) NOT NULL UNIQUE,"
            " name varchar(100) NOT NULL,"
            " is_active boolean NOT NULL DEFAULT true,"
            " created_on date NOT NULL DEFAULT current_date)"
        ).format(t=sql.Identifier(*TENANTS_TABLE))
    )


def register_tenant(cur: Any, schema: str, name: str, active: bool = True) -> None:
    cur.execute(
        sql.SQL(
            "INSERT INTO {t} (schema_name, name, is_active) VALUES (%s, %s, %s) "
            "ON CONFLICT (schema_name) DO UPDATE SET name = EXCLUDED.name, is_active = EXCLUDED.is_active"
        ).format(t=sql.Identifier(*TENANTS_TABLE)),
        (schema, name, active),
    )


def create_clinic_schema(
    cur: Any,
    schema: str,
    *,
    patients: int = 2000,
    note_bytes: int = 120,
    owner: str | None = None,
    seed: float = 0.42,
) -> None:
    """Create (or fill, when empty) one clinic's schema. Idempotent: an existing, filled
    clinic is left alone. `note_bytes` pads each patient's and appointment's notes with random
    hex words (compressing about 2:1, like real notes), which is how the benchmarks reach a
    given size."""
    s = sql.Identifier(schema)
    cur.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
    if cur.fetchone() is None:
        if owner:
            cur.execute(
                sql.SQL("CREATE SCHEMA {s} AUTHORIZATION {o}").format(s=s, o=sql.Identifier(owner))
            )
        else:
            cur.execute(sql.SQL("CREATE SCHEMA {s}").format(s=s))
    if owner:
        cur.execute(sql.SQL("SET LOCAL ROLE {o}").format(o=sql.Identifier(owner)))
    cur.execute(sql.SQL("SELECT to_regclass(%s)"), (f'"{schema}".patients',))
    if cur.fetchone()[0] is not None:
        if owner:
            cur.execute("RESET ROLE")
        return

    t = {
        name: sql.Identifier(schema, name)
        for name in (
            "staff",
            "patients",
            "treatments",
            "appointments",
            "invoices",
            "invoice_lines",
            "upcoming_appointments",
        )
    }
    cur.execute("SELECT setseed(%s)", (seed,))
    statements = [
        """CREATE TABLE {staff} (
             id serial PRIMARY KEY,
             full_name text NOT NULL,
             role text NOT NULL,
             email text NOT NULL UNIQUE,
             hired_on date NOT NULL)""",
        """CREATE TABLE {patients} (
             id bigserial PRIMARY KEY,
             first_name text NOT NULL,
             last_name text NOT NULL,
             dni char(9) NOT NULL UNIQUE,
             birth_date date NOT NULL,
             phone text,
             email text,
             address text,
             notes text,
             created_at timestamptz NOT NULL DEFAULT now())""",
        "CREATE INDEX ON {patients} (last_name, first_name)",
        """CREATE TABLE {treatments} (
             id serial PRIMARY KEY,
             code text NOT NULL UNIQUE,
             name text NOT NULL,
             price numeric(10,2) NOT NULL CHECK (price >= 0))""",
        """CREATE TABLE {appointments} (
             id bigserial PRIMARY KEY,
             patient_id bigint NOT NULL REFERENCES {patients} (id) ON DELETE CASCADE,
             staff_id integer NOT NULL REFERENCES {staff} (id),
             treatment_id integer REFERENCES {treatments} (id),
             starts_at timestamptz NOT NULL,
             status text NOT NULL CHECK (status IN ('programada','realizada','cancelada','no_asistió')),
             reason text)""",
        "CREATE INDEX ON {appointments} (patient_id)",
        "CREATE INDEX ON {appointments} (starts_at)",
        """CREATE TABLE {invoices} (
             id bigserial PRIMARY KEY,
             patient_id bigint NOT NULL REFERENCES {patients} (id),
             appointment_id bigint REFERENCES {appointments} (id),
             number text NOT NULL UNIQUE,
             issued_on date NOT NULL,
             total numeric(12,2) NOT NULL,
             paid boolean NOT NULL DEFAULT false)""",
        "CREATE INDEX ON {invoices} (patient_id)",
        """CREATE TABLE {invoice_lines} (
             invoice_id bigint NOT NULL REFERENCES {invoices} (id) ON DELETE CASCADE,
             line_no smallint NOT NULL,
             treatment_id integer NOT NULL REFERENCES {treatments} (id),
             quantity smallint NOT NULL DEFAULT 1,
             amount numeric(12,2) NOT NULL,
             PRIMARY KEY (invoice_id, line_no))""",
        """CREATE VIEW {upcoming_appointments} AS
             SELECT a.id, a.starts_at, p.first_name || ' ' || p.last_name AS patient,
                    s.full_name AS professional, a.reason
             FROM {appointments} a
             JOIN {patients} p ON p.id = a.patient_id
             JOIN {staff} s ON s.id = a.staff_id
             WHERE a.status = 'programada' AND a.starts_at >= now()""",
    ]
    for statement in statements:
        cur.execute(sql.SQL(statement).format(**t))

    first, last = _array(FIRST_NAMES), _array(LAST_NAMES)
    staff_count = max(5, min(40, patients // 100))
    cur.execute(
        sql.SQL(
            "INSERT INTO {staff} (full_name, role, email, hired_on) "
            "SELECT f[1 + (i * 7) %% cardinality(f)] || ' ' || l[1 + (i * 11) %% cardinality(l)], "
            "       {roles}[1 + i %% 5], 'prof' || i || '@' || {domain}, "
            "       date '2010-01-01' + (i * 97) %% 4000 "
            "FROM generate_series(1, %s) i, (SELECT {first} AS f, {last} AS l) names"
        ).format(
            roles=_array(STAFF_ROLES),
            domain=sql.Literal(f"{schema}.example.es"),
            first=first,
            last=last,
            **t,
        ),
        (staff_count,),
    )
    for code, name, price in TREATMENTS:
        cur.execute(
            sql.SQL("INSERT INTO {treatments} (code, name, price) VALUES (%s, %s, %s)").format(**t),
            (code, name, price),
        )
    cur.execute(
        sql.SQL(
            "INSERT INTO {patients} (first_name, last_name, dni, birth_date, phone, email, address, notes) "
            "SELECT f[1 + (i * 13) %% cardinality(f)], "
            "       l[1 + (i * 17) %% cardinality(l)] || ' ' || l[1 + (i * 5) %% cardinality(l)], "
            "       lpad(i::text, 8, '0') || substr('TRWAGMYFPDXBNJZSQVHLCKE', 1 + i %% 23, 1), "
            "       date '1940-01-01' + (i * 37) %% 29000, "
            "       '6' || lpad(((i * 7919) %% 100000000)::text, 8, '0'), "
            "       'paciente' || i || '@correo.es', "
            "       'Calle ' || l[1 + i %% cardinality(l)] || ', ' || (1 + i %% 120), "
            "       left((SELECT string_agg(md5(random()::text), ' ') "
            "             FROM generate_series(0, %s / 33 + i * 0)), %s) "
            "FROM generate_series(1, %s) i, (SELECT {first} AS f, {last} AS l) names"
        ).format(first=first, last=last, **t),
        (note_bytes, note_bytes, patients),
    )
    cur.execute(
        sql.SQL(
            "INSERT INTO {appointments} (patient_id, staff_id, treatment_id, starts_at, status, reason) "
            "SELECT 1 + (i * 31) %% %s, 1 + i %% %s, 1 + i %% 12, "
            "       date_trunc('day', now()) - interval '700 days' + (i %% 1000) * interval '1 day' "
            "         + (i %% 9) * interval '1 hour', "
            "       (ARRAY['programada','realizada','cancelada','no_asistió'])[1 + i %% 4], "
            "       left((SELECT string_agg(md5(random()::text), ' ') "
            "             FROM generate_series(0, %s / 33 + i * 0)), %s) "
            "FROM generate_series(1, %s) i"
        ).format(**t),
        (patients, staff_count, note_bytes // 2, note_bytes // 2, patients * 3),
    )
    cur.execute(
        sql.SQL(
            "INSERT INTO {invoices} (patient_id, appointment_id, number, issued_on, total, paid) "
            "SELECT a.patient_id, a.id, 'F-' || lpad(a.id::text, 8, '0'), a.starts_at::date, "
            "       t.price, a.id % 5 <> 0 "
            "FROM {appointments} a JOIN {treatments} t ON t.id = a.treatment_id "
            "WHERE a.status = 'realizada'"
        ).format(**t)
    )
    cur.execute(
        sql.SQL(
            "INSERT INTO {invoice_lines} (invoice_id, line_no, treatment_id, quantity, amount) "
            "SELECT i.id, 1, a.treatment_id, 1, i.total FROM {invoices} i "
            "JOIN {appointments} a ON a.id = i.appointment_id"
        ).format(**t)
    )
    cur.execute(sql.SQL("ANALYZE {patients}").format(**t))
    if owner:
        cur.execute("RESET ROLE")


def row_counts(cur: Any, schema: str) -> dict[str, int]:
    """Row count of every ordinary table of a clinic (for restore checks)."""
    cur.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relkind IN ('r', 'p') ORDER BY 1",
        (schema,),
    )
    counts = {}
    for (name,) in cur.fetchall():
        cur.execute(sql.SQL("SELECT count(*) FROM {t}").format(t=sql.Identifier(schema, name)))
        counts[name] = cur.fetchone()[0]
    return counts
