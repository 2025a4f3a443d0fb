"""The erasure hook (RESTORE_ERASURE_FUNCTION) on a plain clinic schema with a ledger in
`public`: it runs inside the swap's transaction, so its failure rolls the whole restore back
(nothing half-done: the live data, the schemas and the lock as they were), and a function
that is missing fails the pre-check before anything changes; an undo re-applies the erasures
made since the restore."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import psycopg2
import pytest
from psycopg2 import sql

from tests import helpers
from tests.integration.conftest import RestoreDatabase
from tests.integration.restore_support import (
    backup,
    checksums,
    get_restore,
    lock_rows,
    restore,
    schemas_like,
    undo,
)


@pytest.fixture
def hook(restore_env_pg15: RestoreDatabase) -> Iterator[str]:
    """`public.<name>(clinic)`: refuses (raises) whenever the clinic's patients table has
    rows — the swap's dry run (schema only, empty tables) passes, the swap itself fails after
    the tables moved back."""
    name = f"erasures_{secrets.token_hex(4)}"
    conn = psycopg2.connect(restore_env_pg15.admin_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL(
                """CREATE FUNCTION public.{}(clinic text) RETURNS void LANGUAGE plpgsql AS $fn$
                DECLARE found boolean;
                BEGIN
                    EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I.patients)', clinic)
                        INTO found;
                    IF found THEN
                        RAISE EXCEPTION 'erasure ledger unavailable';
                    END IF;
                END
                $fn$"""
            ).format(sql.Identifier(name))
        )
    yield name
    with conn.cursor() as cur:
        cur.execute(sql.SQL("DROP FUNCTION IF EXISTS public.{}(text)").format(sql.Identifier(name)))
    conn.close()


def use_hook(monkeypatch: pytest.MonkeyPatch, qualified: str) -> None:
    monkeypatch.setenv("RESTORE_ERASURE_FUNCTION", qualified)
    helpers.reset_caches()


def test_a_failing_erasure_hook_rolls_the_whole_restore_back(
    restore_env_pg15: RestoreDatabase, owned_clinic_pg15, sqs, restore_sqs, hook, monkeypatch
):
    url = restore_env_pg15.admin_url
    schema = owned_clinic_pg15(patients=20)
    source = backup(schema, sqs)
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            sql.SQL("UPDATE {} SET notes = 'después de la copia'").format(
                sql.Identifier(schema, "patients")
            )
        )
    conn.close()
    live = checksums(url, schema)

    use_hook(monkeypatch, f"public.{hook}")
    job = restore(schema, source["id"], restore_sqs)

    assert job["status"] == "failed", job
    assert "erasure ledger unavailable" in (job["error"] or ""), job
    assert checksums(url, schema) == live  # the data after the backup, untouched
    assert schemas_like(url, schema) == [schema]  # no kept schema left behind
    assert lock_rows(url, schema) == []


def test_a_missing_erasure_function_fails_the_pre_check(
    restore_env_pg15: RestoreDatabase, owned_clinic_pg15, sqs, restore_sqs, monkeypatch
):
    url = restore_env_pg15.admin_url
    schema = owned_clinic_pg15(patients=10)
    source = backup(schema, sqs)
    live = checksums(url, schema)
    use_hook(monkeypatch, f"public.no_such_{secrets.token_hex(3)}")
    job = restore(schema, source["id"], restore_sqs)
    assert job["status"] == "failed", job
    assert "does not exist" in (job["error"] or ""), job
    assert checksums(url, schema) == live
    assert schemas_like(url, schema) == [schema] and lock_rows(url, schema) == []


def test_an_undo_re_applies_the_erasures_made_since_the_restore(
    restore_env_pg15: RestoreDatabase, owned_clinic_pg15, sqs, restore_sqs, monkeypatch
):
    url = restore_env_pg15.admin_url
    schema = owned_clinic_pg15(patients=10)
    tag = secrets.token_hex(4)
    ledger, function = f"ledger_{tag}", f"anonymise_{tag}"
    conn = psycopg2.connect(url)
    conn.autocommit = True
    with conn.cursor() as cur:
        # The host's ledger (public) and its hook: erasure by anonymising the patient's row
        cur.execute(
            sql.SQL("CREATE TABLE public.{} (clinic text, patient_id bigint)").format(
                sql.Identifier(ledger)
            )
        )
        cur.execute(sql.SQL("GRANT SELECT ON public.{} TO PUBLIC").format(sql.Identifier(ledger)))
        cur.execute(
            sql.SQL(
                """CREATE FUNCTION public.{function}(clinic text) RETURNS void
                LANGUAGE plpgsql AS $fn$
                BEGIN
                    EXECUTE format('UPDATE %I.patients SET first_name = ''[suprimido]'', '
                                   'last_name = ''[suprimido]'', phone = NULL, email = NULL, '
                                   'address = NULL, notes = NULL WHERE id IN (SELECT patient_id '
                                   'FROM public.%I WHERE clinic = $1)', clinic, {ledger_text})
                        USING clinic;
                END
                $fn$"""
            ).format(function=sql.Identifier(function), ledger_text=sql.Literal(ledger))
        )
        cur.execute(sql.SQL("SELECT min(id) FROM {}").format(sql.Identifier(schema, "patients")))
        patient = cur.fetchone()[0]
    source = backup(schema, sqs)
    use_hook(monkeypatch, f"public.{function}")
    job = restore(schema, source["id"], restore_sqs)
    assert job["status"] == "completed", job

    # When the patient is erased after the restore, and the restore is then undone
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL("INSERT INTO public.{} VALUES (%s, %s)").format(sql.Identifier(ledger)),
            (schema, patient),
        )
    reply = undo(schema, job["id"])
    assert reply.status == 202, reply.body
    restore_sqs.drain_into_worker()
    assert get_restore(schema, job["id"])["status"] == "undone"

    # Then the data from before the restore is back, with the erasure applied to it
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL("SELECT first_name, email FROM {} WHERE id = %s").format(
                sql.Identifier(schema, "patients")
            ),
            (patient,),
        )
        assert cur.fetchone() == ("[suprimido]", None)
        cur.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE first_name = '[suprimido]'").format(
                sql.Identifier(schema, "patients")
            )
        )
        assert cur.fetchone()[0] == 1
        cur.execute(sql.SQL("DROP FUNCTION public.{}(text)").format(sql.Identifier(function)))
        cur.execute(sql.SQL("DROP TABLE public.{}").format(sql.Identifier(ledger)))
    conn.close()
