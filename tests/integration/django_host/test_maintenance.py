"""contrib/django_clinic_backups' middleware in the fixture host: while a restore holds a
clinic's lock, that tenant's requests are answered 503 (Spanish page, JSON for the API) and
nothing is written; other tenants go on."""

from __future__ import annotations

import threading
import uuid

import psycopg2
from psycopg2 import sql

from tests.integration.django_host.conftest import DjangoHost, create_tenant
from tests.integration.django_host.test_round_trip import run_cli


def patients(url: str, schema: str) -> int:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, "clinic_patient"))
        )
        n = cur.fetchone()[0]
    conn.close()
    return int(n)


def test_a_restoring_clinic_answers_503_and_accepts_no_write(host_env: DjangoHost):
    from django.test import Client

    host = host_env
    schema, other = f"mant-{host.suffix}", f"otra-{host.suffix}"
    create_tenant(schema, "Clínica en mantenimiento")
    create_tenant(other, "Otra clínica")
    assert run_cli("grant", schema, other)[0] == 0
    rc, _, _ = run_cli("list", schema)  # creates the clinic's backup tables
    assert rc == 0
    web = Client(HTTP_HOST=f"{schema}.test")
    assert web.post("/api/patients/").status_code == 201  # no restore: writes go through

    # Given a restore holds the clinic's lock (requested, not yet claimed by a worker)
    lock = sql.Identifier(schema, "backup_operation_lock")
    with psycopg2.connect(host.admin_url) as conn, conn.cursor() as cur:
        cur.execute(
            sql.SQL(
                "INSERT INTO {} (kind, ref_id, acquired_at) VALUES ('restore', %s, now())"
            ).format(lock),
            (str(uuid.uuid4()),),
        )
    conn.close()
    before = patients(host.admin_url, schema)

    # When the clinic's users write, through the API and through a page
    api = web.post("/api/patients/")
    page = web.post("/patients/", HTTP_ACCEPT="text/html")

    # Then both are refused with 503, in Spanish, and nothing was written
    assert api.status_code == 503 and api["Retry-After"]
    assert api.json()["error"]["code"] == "clinic_restoring"
    assert "restaurando" in api.json()["error"]["message"]
    assert page.status_code == 503 and "text/html" in page["Content-Type"]
    assert "mantenimiento" in page.content.decode()
    assert patients(host.admin_url, schema) == before
    # and another clinic goes on
    assert Client(HTTP_HOST=f"{other}.test").post("/api/patients/").status_code == 201

    # When the swap holds the lock table itself (ACCESS EXCLUSIVE for a moment)
    with psycopg2.connect(host.admin_url) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("DELETE FROM {}").format(lock))
    conn.close()
    holder = psycopg2.connect(host.admin_url)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with holder, holder.cursor() as cur:
            cur.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(lock))
            held.set()
            release.wait(30)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert held.wait(10)
        # Then the request does not wait for it: 503 after the short lock_timeout
        assert web.post("/api/patients/").status_code == 503
    finally:
        release.set()
        thread.join()
        holder.close()
    # And once the lock is gone, writes go through again
    assert web.post("/api/patients/").status_code == 201


def test_me_tells_the_ui_whether_the_host_installed_the_maintenance_middleware(
    host_env: DjangoHost, monkeypatch
):
    from tests import helpers
    from tests.helpers import call, load_event, mint

    schema = f"me-{host_env.suffix}"
    create_tenant(schema, "Clínica Me")
    assert run_cli("grant", schema)[0] == 0
    for value, expected in (("", False), ("true", True)):
        monkeypatch.setenv("HOST_MAINTENANCE_MODE", value or "false")
        helpers.reset_caches()
        reply = call("list_backups", load_event("list_backups/get_me.json", token=mint(schema)))
        assert reply.status == 200, reply.body
        assert reply.body["host_maintenance_mode"] is expected
