"""Pure logic: schema names, storage keys, the archive table of contents, cursors."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from clinic_backups.adapters.pgdump import libpq_environment, parse_toc, redact, toc_violations
from clinic_backups.domain.errors import ConfigurationError, ForeignKeyPrefix, InvalidCursor
from clinic_backups.domain.models import BackupRecord, BackupStatus, Trigger
from clinic_backups.domain.names import (
    DJANGO_TENANTS_SCHEMA_RE,
    backup_storage_key,
    check_key_in_prefix,
    is_tenant_schema_name,
    is_valid_schema_name,
    manifest_key,
)
from clinic_backups.usecases.context import decode_cursor, encode_cursor


@pytest.mark.parametrize(
    "name",
    [
        "clinica_demo",
        "Clinica_Norte",
        "_c1",
        "c" * 63,
        "a1_b2",
        "dunder-mifflin",
        "1clinica",
        "clinica-demo",
        "-",
    ],
)
def test_valid_schema_names(name):
    assert is_valid_schema_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "c" * 64,
        "public",
        "information_schema",
        "pg_temp",
        "PG_toast",
        "clínica",
        "clinica/norte",
        "a..b",
        "a\n",
        "PG_x",
        "a b",
        'a"b',
        "a;b",
        "a/b",
        "a.b",
        None,
        7,
    ],
)
def test_invalid_schema_names(name):
    assert not is_valid_schema_name(name)


def test_the_tenant_rule_is_the_installed_django_tenants_validator():
    # names.py copies django-tenants' validator: a new django-tenants version that changes it
    # fails here, and the product's rule is reviewed with it.
    # Read from its source: importing django_tenants needs configured Django settings.
    import ast
    import importlib.util
    import re
    from pathlib import Path

    spec = importlib.util.find_spec("django_tenants")
    assert spec is not None and spec.origin is not None
    source = Path(spec.origin).parent / "postgresql_backend" / "base.py"
    found = [
        node.value
        for node in ast.walk(ast.parse(source.read_text()))
        if isinstance(node, ast.Assign)
        and any(getattr(t, "id", None) == "PGSQL_VALID_SCHEMA_NAME" for t in node.targets)
    ]
    assert len(found) == 1
    call = found[0]
    assert isinstance(call, ast.Call)
    pattern = ast.literal_eval(call.args[0])
    assert DJANGO_TENANTS_SCHEMA_RE.pattern == pattern
    assert ast.unparse(call.args[1]) == "re.IGNORECASE"
    assert DJANGO_TENANTS_SCHEMA_RE.flags & re.IGNORECASE


@pytest.mark.parametrize("name", ["clinica/norte", "clínica", "a b", "a.b", "public"])
def test_names_django_tenants_accepts_but_the_product_cannot_back_up(name):
    assert is_tenant_schema_name(name)
    assert not is_valid_schema_name(name)


def test_storage_key_layout():
    backup_id = uuid.UUID("12345678-1234-4234-8234-123456789abc")
    at = datetime(2026, 3, 5, 23, 30, 15, tzinfo=UTC)
    key = backup_storage_key("clinica_demo", backup_id, at)
    assert key == "clinica_demo/2026/03/clinica_demo-20260305T233015Z-12345678.dump.age"
    assert manifest_key(key) == key + ".manifest.json"
    plain = backup_storage_key("clinica_demo", backup_id, at, encrypted=False)
    assert plain.endswith("-12345678.dump")
    # a re-encrypted copy never reuses the key of the file it replaces
    again = backup_storage_key("clinica_demo", backup_id, at, generation=2)
    assert again.endswith("-12345678-g2.dump.age") and again != key


def test_keys_outside_the_prefix_are_refused():
    assert (
        check_key_in_prefix("clinica_a/2026/01/x.dump", "clinica_a") == "clinica_a/2026/01/x.dump"
    )
    for key in (
        "clinica_b/2026/01/x.dump",
        "clinica_ab/x.dump",
        "clinica_a/../clinica_b/x.dump",
        "Clinica_a/x.dump",
        "/clinica_a/x.dump",
        "clinica_a//x",
        "clinica_a/..\\x",
    ):
        with pytest.raises(ForeignKeyPrefix):
            check_key_in_prefix(key, "clinica_a")


LISTING = """;
; Archive created at 2026-11-28 06:00:00 UTC
;     dbname: clinics
;     Format: CUSTOM
;
; Selected TOC Entries:
;
5; 2615 16390 SCHEMA - clinica_demo postgres
220; 1259 16391 TABLE clinica_demo patients postgres
219; 1259 16392 SEQUENCE clinica_demo patients_id_seq postgres
3400; 0 0 SEQUENCE OWNED BY clinica_demo patients_id_seq postgres
3350; 0 16391 TABLE DATA clinica_demo patients postgres
3401; 0 0 SEQUENCE SET clinica_demo patients_id_seq postgres
3210; 2606 16400 CONSTRAINT clinica_demo patients patients_pkey postgres
3215; 2606 16401 FK CONSTRAINT clinica_demo appointments appointments_patient_id_fkey postgres
230; 1259 16410 VIEW clinica_demo upcoming_appointments postgres
3220; 1259 16420 INDEX clinica_demo patients_last_name_first_name_idx postgres
"""


def test_toc_parsing_reads_type_schema_and_name():
    entries = parse_toc(LISTING)
    assert len(entries) == 10
    assert entries[0].desc == "SCHEMA" and entries[0].schema == "-"
    assert (entries[4].desc, entries[4].schema, entries[4].name) == (
        "TABLE DATA",
        "clinica_demo",
        "patients",
    )
    assert entries[7].desc == "FK CONSTRAINT"
    assert toc_violations(entries, "clinica_demo") == []


def test_toc_with_another_schema_or_an_owned_table_is_a_violation():
    bad = (
        LISTING + "500; 1259 17000 TABLE clinica_norte patients postgres\n"
        "501; 0 17001 TABLE DATA clinica_demo backup_records postgres\n"
    )
    problems = toc_violations(parse_toc(bad), "clinica_demo")
    assert problems == [
        "TABLE in schema clinica_norte",
        "TABLE DATA backup_records (owned by the backup service)",
    ]
    # case matters
    assert toc_violations(parse_toc(LISTING), "Clinica_Demo")


def test_cursor_round_trip_and_garbage():
    record = BackupRecord(
        id=uuid.uuid4(),
        status=BackupStatus.COMPLETED,
        trigger=Trigger.MANUAL,
        file_name="f",
        storage_key="k",
        created_by="u",
        compression="zstd:3",
        created_at=datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
    )
    assert decode_cursor(encode_cursor(record)) == (record.created_at, record.id)
    for garbage in ("", "abc", "W10", "WyJ4IiwgInkiXQ", "bm90IGpzb24"):
        with pytest.raises(InvalidCursor):
            decode_cursor(garbage)


def test_the_connection_goes_to_pg_dump_through_the_environment_only(monkeypatch):
    monkeypatch.setenv("PGPASSWORD", "leaked-from-host")
    env = libpq_environment(
        "postgresql://dumper:pa%24%24@db.example:6543/clinics?sslmode=require",
        options="-c enable_mergejoin=off",
    )
    assert env["PGHOST"] == "db.example" and env["PGPORT"] == "6543"
    assert env["PGUSER"] == "dumper" and env["PGPASSWORD"] == "pa$$"
    assert env["PGDATABASE"] == "clinics" and env["PGSSLMODE"] == "require"
    assert env["PGOPTIONS"] == "-c enable_mergejoin=off"
    with pytest.raises(ConfigurationError):
        libpq_environment("postgresql://x@y/z?unknown_param=1")


def test_redaction_removes_urls_and_passwords():
    text = "could not connect postgresql://u:secret@h/db password=hunter2 done"
    assert "secret" not in redact(text) and "hunter2" not in redact(text)


def test_every_table_the_migrations_create_is_owned_and_excluded_from_dumps():
    import re

    from clinic_backups.adapters.migrations import MIGRATIONS, TABLES
    from clinic_backups.domain.names import OWNED_TABLES

    created = set()
    for _, statements in MIGRATIONS:
        for statement in statements:
            created |= set(re.findall(r"CREATE TABLE (?:IF NOT EXISTS )?\{(\w+)\}", statement))
    assert {TABLES[p] for p in created} | {"backup_meta"} == set(OWNED_TABLES)
    versions = [v for v, _ in MIGRATIONS]
    assert versions == sorted(versions) == list(range(1, len(versions) + 1))
