"""Erasures survive a restore (GDPR art. 17): a django-tenants host erases a patient after a
backup and records it in its ledger in `public`; the restore calls the host's
RESTORE_ERASURE_FUNCTION inside the swap's transaction, so the restored clinic never shows
the patient again."""

from __future__ import annotations

import secrets
from datetime import date

import psycopg2
import pytest
from psycopg2 import sql

from devstack import demo
from tests import helpers
from tests.integration.django_host.conftest import DjangoHost, create_tenant
from tests.integration.django_host.test_round_trip import populate, run_cli
from tests.integration.restore_support import backup, restore


def install_erasure_hook(url: str, tag: str) -> tuple[str, str]:
    """The host's ledger (public, outside every clinic) and its re-apply function; names."""
    ledger, function = f"erasure_ledger_{tag}", f"reapply_erasures_{tag}"
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            sql.SQL(
                "CREATE TABLE public.{} (clinic text NOT NULL, model text NOT NULL, "
                "object_id bigint NOT NULL, erased_at timestamptz NOT NULL DEFAULT now())"
            ).format(sql.Identifier(ledger))
        )
        cur.execute(
            sql.SQL("GRANT SELECT, INSERT ON public.{} TO {}, {}").format(
                sql.Identifier(ledger),
                sql.Identifier(demo.RESTORE_ROLE),
                sql.Identifier(demo.APP_ROLE),
            )
        )
        cur.execute(
            sql.SQL(
                """CREATE FUNCTION public.{function}(clinic text) RETURNS void
                LANGUAGE plpgsql AS $fn$
                DECLARE erased bigint;
                BEGIN
                    FOR erased IN SELECT object_id FROM public.{ledger}
                                  WHERE {ledger}.clinic = $1 AND model = 'clinic.patient'
                    LOOP
                        EXECUTE format('DELETE FROM %I.clinic_patient_tags WHERE patient_id = $1',
                                       $1) USING erased;
                        EXECUTE format('DELETE FROM %I.clinic_patient WHERE id = $1', $1)
                            USING erased;
                    END LOOP;
                END
                $fn$"""
            ).format(function=sql.Identifier(function), ledger=sql.Identifier(ledger))
        )
    conn.close()
    return ledger, function


def test_a_patient_erased_after_a_backup_stays_erased_when_it_is_restored(
    host_env: DjangoHost, monkeypatch: pytest.MonkeyPatch, sqs, restore_sqs
):
    from django_tenants.utils import schema_context

    from tests.django_fixture.clinic.models import Patient, Tag

    host = host_env
    tag = secrets.token_hex(3)
    schema = f"borrado-{host.suffix}-{tag}"
    create_tenant(schema, "Clínica con derecho de supresión")
    assert run_cli("grant", schema)[0] == 0
    populate(schema, patients=4, seed=7)
    with schema_context(schema):
        erased = Patient.objects.create(
            name="Paciente que pidió la supresión", birth_date=date(1980, 5, 1)
        )
        erased.tags.set(Tag.objects.all()[:2])
        before = Patient.objects.count()
    ledger, function = install_erasure_hook(host.admin_url, tag)

    # Given a backup that holds the patient
    source = backup(schema, sqs)
    # When the host erases the patient (art. 17) and records it in its ledger, in public
    with schema_context(schema):
        Patient.objects.filter(id=erased.id).delete()
    with psycopg2.connect(host.app_url) as conn, conn.cursor() as cur:
        cur.execute(
            sql.SQL("INSERT INTO public.{} (clinic, model, object_id) VALUES (%s, %s, %s)").format(
                sql.Identifier(ledger)
            ),
            (schema, "clinic.patient", erased.id),
        )
    conn.close()
    # and that backup is restored with the host's hook configured
    monkeypatch.setenv("RESTORE_ERASURE_FUNCTION", f"public.{function}")
    helpers.reset_caches()
    job = restore(schema, source["id"], restore_sqs)

    # Then the restore completed and the patient is still gone; everyone else came back
    assert job["status"] == "completed", job
    with schema_context(schema):
        assert not Patient.objects.filter(id=erased.id).exists()
        assert Patient.objects.count() == before - 1
        assert not Patient.tags.through.objects.filter(patient_id=erased.id).exists()
    # (the ledger, outside the clinic's schema, was never rolled back)
    with psycopg2.connect(host.admin_url) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT count(*) FROM public.{}").format(sql.Identifier(ledger)))
        assert cur.fetchone()[0] == 1
        cur.execute(sql.SQL("DROP FUNCTION public.{}(text)").format(sql.Identifier(function)))
        cur.execute(sql.SQL("DROP TABLE public.{}").format(sql.Identifier(ledger)))
    conn.close()
