"""The local stack (`python -m devstack.run`) driven over HTTP, as a developer or the UI would.

One stack is started as a subprocess on a fresh state folder with an embedded PostgreSQL and
SeaweedFS (DATABASE_URL and S3_ENDPOINT_URL unset); the tests sign in with the demo accounts,
back a clinic up through the gateway, restore the download and count the patients, then stop
the stack and look for anything it left running. A second start on the same state folder must
be faster and change nothing; that one is SIGKILLed, to check the watchdog reaps its servers.

Run with `-s` to see the measured start times.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg2
import pyrage
import pytest
from psycopg2 import sql
from pyrage import x25519

from devstack import demo, paths
from tests.e2e.conftest import REPO, LocalStack


def _auth(account: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {account['token']}"}


def _snapshot(admin_url: str) -> dict[str, Any]:
    """The demo as the database holds it, catalog row versions (xmin) included: a second
    start that rewrote anything, even to the same value, shows up here."""
    schemas = [c.schema for c in demo.CLINICS]
    with psycopg2.connect(admin_url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT xmin::text, schema_name, name, is_active FROM public.customers_client "
            "ORDER BY schema_name"
        )
        tenants = cur.fetchall()
        cur.execute(
            "SELECT n.nspname, n.xmin::text, n.nspacl::text FROM pg_namespace n "
            "WHERE n.nspname = ANY(%s) OR n.nspname = 'public' ORDER BY 1",
            (schemas,),
        )
        namespaces = cur.fetchall()
        cur.execute(
            "SELECT n.nspname, c.relname, c.xmin::text, c.relacl::text FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = ANY(%s) ORDER BY 1, 2",
            (schemas,),
        )
        relations = cur.fetchall()
        cur.execute(
            "SELECT xmin::text, defaclobjtype::text, defaclacl::text FROM pg_default_acl "
            "ORDER BY 1, 2"
        )
        default_acls = cur.fetchall()
        cur.execute("SELECT xmin::text, setconfig::text FROM pg_db_role_setting ORDER BY 1")
        role_settings = cur.fetchall()
        cur.execute("SELECT rolname, xmin::text FROM pg_authid ORDER BY 1")
        roles = cur.fetchall()
        patients = {}
        for schema in schemas:
            cur.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, "patients"))
            )
            patients[schema] = cur.fetchone()[0]
    return {
        "tenants": tenants,
        "namespaces": namespaces,
        "relations": relations,
        "default_acls": default_acls,
        "role_settings": role_settings,
        "roles": roles,
        "patients": patients,
    }


def _with_db(url: str, dbname: str) -> str:
    params = psycopg2.extensions.parse_dsn(url)
    params["dbname"] = dbname
    return str(psycopg2.extensions.make_dsn(**params))


# --- the tests -------------------------------------------------------------------------------


@pytest.mark.e2e
def test_demo_accounts_cover_every_clinic_and_role(accounts: dict[tuple[str, str], Any]) -> None:
    expected = {(c.schema, role) for c in demo.CLINICS for role in ("admin", "staff")}
    assert set(accounts) == expected
    for (clinic, _role), account in accounts.items():
        assert account["clinic_name"] == demo.clinic(clinic).name
        assert account["user_name"] and account["token"].count(".") == 2


@pytest.mark.e2e
def test_admin_backup_downloads_and_restores_with_the_clinics_patients(
    stack: LocalStack, accounts: dict[tuple[str, str], Any], tmp_path: Path
) -> None:
    admin = accounts[("clinica_demo", "admin")]
    with stack.client() as client:
        # Given an admin of clinica_demo, who the gateway passes to the functions
        me = client.get("/me", headers=_auth(admin))
        assert me.status_code == 200, me.text
        assert me.json()["clinic"]["schema"] == "clinica_demo"

        # And the clinic registered its own encryption key (the private half stays here)
        identity = x25519.Identity.generate()
        registered = client.post(
            "/encryption-keys",
            headers=_auth(admin),
            json={"label": "e2e", "public_key": str(identity.to_public())},
        )
        assert registered.status_code == 201, registered.text

        # When they create a backup and wait for the worker (the local queue, as SQS would)
        created = client.post("/backups", headers=_auth(admin), json={"note": "e2e"})
        assert created.status_code == 202, created.text
        backup_id = created.json()["id"]
        deadline = time.monotonic() + 30
        while True:
            record = client.get(f"/backups/{backup_id}", headers=_auth(admin))
            assert record.status_code == 200, record.text
            if record.json()["status"] in ("completed", "failed") or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert record.json()["status"] == "completed", record.json()

        # And download it through the signed URL (Supabase Storage's, by default)
        download = client.get(f"/backups/{backup_id}/download", headers=_auth(admin))
        assert download.status_code == 200, download.text
        signed = download.json()
    assert "/storage/v1/object/sign/" in signed["url"]
    with httpx.Client(trust_env=False, timeout=30) as plain:
        archive = plain.get(signed["url"])
    assert archive.status_code == 200
    assert len(archive.content) == signed["size_bytes"] == record.json()["size_bytes"]
    # The file is age-encrypted; the clinic's key opens it
    assert signed["file_name"].endswith(".dump.age")
    dump = tmp_path / "backup.dump"
    dump.write_bytes(pyrage.decrypt(archive.content, [identity]))

    # Then the layer's pg_restore brings back the clinic with every patient
    scratch = f"restore_{uuid.uuid4().hex[:8]}"
    admin_conn = psycopg2.connect(stack.admin_url)
    admin_conn.autocommit = True
    try:
        with admin_conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(scratch)))
            cur.execute("SELECT count(*) FROM clinica_demo.patients")
            expected = cur.fetchone()[0]
        restore = subprocess.run(
            [
                str(paths.pgdump_layer_bin_dir() / "pg_restore"),
                "--exit-on-error",
                "-d",
                _with_db(stack.admin_url, scratch),
                str(dump),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert restore.returncode == 0, restore.stderr
        with psycopg2.connect(_with_db(stack.admin_url, scratch)) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM clinica_demo.patients")
            restored = cur.fetchone()[0]
        with admin_conn.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(scratch)))
    finally:
        admin_conn.close()
    assert restored == expected == demo.clinic("clinica_demo").patients
    stack.backup_id = backup_id  # type: ignore[attr-defined]


@pytest.mark.e2e
def test_staff_download_is_403(stack: LocalStack, accounts: dict[tuple[str, str], Any]) -> None:
    # Given staff of the clinic whose completed backup the admin made (when that test ran)
    staff = accounts[("clinica_demo", "staff")]
    backup_id = getattr(stack, "backup_id", str(uuid.uuid4()))
    with stack.client() as client:
        listed = client.get("/backups", headers=_auth(staff))
        download = client.get(f"/backups/{backup_id}/download", headers=_auth(staff))
    # Then they see the history but may not take the clinic's data home
    assert listed.status_code == 200
    assert download.status_code == 403
    assert download.json()["error"]["code"] == "forbidden"
    assert "url" not in download.text


@pytest.mark.e2e
def test_gateway_answers_like_api_gateway_in_the_projects_error_shape(stack: LocalStack) -> None:
    with stack.client() as client:
        unknown = client.get("/backups/1/2/3")
        wrong_method = client.put("/backups")
        # any method at all (http.server answered TRACE with a 501 HTML page)
        trace = client.request("TRACE", "/me")
        made_up = client.request("PROPFIND", "/backups")
        no_token = client.get("/me")
        page = client.get("/")
        too_big = client.post(
            "/backups",
            content=b"x" * (10 * 1024 * 1024 + 1),
            headers={"Content-Type": "application/json"},
        )
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "not_found"
    assert wrong_method.status_code == 404
    for answer in (trace, made_up):
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found"
    # /me reaches the function (401 from it), the UI never shadows an API route
    assert no_token.status_code == 401
    assert no_token.json()["error"]["code"] == "missing_token"
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert too_big.status_code == 413
    assert too_big.json()["error"]["code"] == "payload_too_large"


@pytest.mark.e2e
def test_api_answers_are_json_nosniff_no_store_and_the_ui_has_a_csp(
    stack: LocalStack, accounts: dict[tuple[str, str], Any]
) -> None:
    admin = accounts[("clinica_norte", "admin")]
    with stack.client() as client:
        answers = {
            "me": client.get("/me", headers=_auth(admin)),
            "list": client.get("/backups", headers=_auth(admin)),
            "keys": client.get("/encryption-keys", headers=_auth(admin)),
            "missing_token": client.get("/me"),
            "bad_json": client.post(
                "/backups",
                content=b"{",
                headers={**_auth(admin), "Content-Type": "application/json"},
            ),
            "not_found": client.get(f"/backups/{uuid.uuid4()}", headers=_auth(admin)),
            "no_route": client.get("/backups/1/2/3"),
            "too_big": client.post("/backups", content=b"x" * (10 * 1024 * 1024 + 1)),
        }
        page = client.get("/")
        deep_link = client.get("/some/client/route")
        asset = next(
            client.get(f"/assets/{p.name}")
            for p in (REPO / "frontend" / "dist" / "assets").glob("*.js")
        )
    for name, answer in answers.items():
        assert answer.headers["content-type"] == "application/json", name
        assert answer.headers["x-content-type-options"] == "nosniff", name
        assert answer.headers["cache-control"] == "no-store", name
        answer.json()
    for served in (page, deep_link, asset):
        assert served.status_code == 200
        csp = served.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
        assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp
        assert served.headers["referrer-policy"] == "no-referrer"
        assert served.headers["x-frame-options"] == "DENY"
        assert served.headers["x-content-type-options"] == "nosniff"


@pytest.mark.e2e
def test_local_endpoints_refuse_a_foreign_host_name(stack: LocalStack) -> None:
    with stack.client() as client:
        rebound = client.get("/__demo/accounts", headers={"Host": "attacker.example"})
        form_post = client.post(
            "/__local/invoke/list_backups", content=b"{}", headers={"Content-Type": "text/plain"}
        )
    assert rebound.status_code == 404
    assert form_post.status_code == 400


@pytest.mark.e2e
def test_access_log_has_no_token_and_no_signed_url_query(
    stack: LocalStack, accounts: dict[tuple[str, str], Any]
) -> None:
    admin = accounts[("clinica_sur", "admin")]
    with stack.client() as client:
        client.get("/backups?limit=5&status=completed", headers=_auth(admin))
    time.sleep(0.2)
    logs = stack.stdout_path.read_text(errors="replace") + stack.stderr_path.read_text(
        errors="replace"
    )
    for account in accounts.values():
        assert account["token"] not in logs
    assert "token=" not in logs
    assert "limit=5" not in logs
    assert '"GET /backups"' in logs


@pytest.mark.e2e
def test_sigterm_stops_every_process_the_stack_started(stack: LocalStack) -> None:
    assert stack.proc is not None and stack.proc.poll() is None
    assert {"postgres", "weed", "reaper"} <= set(stack.children)
    stack.snapshot = _snapshot(stack.admin_url)  # type: ignore[attr-defined]

    code = stack.signal(signal.SIGTERM)

    assert code == 0, stack.log_tail()
    assert stack.wait_no_leftovers(timeout=5) == []
    assert not (stack.state_dir / "stack.json").exists()


@pytest.mark.e2e
def test_second_start_is_faster_changes_nothing_and_sigkill_leaves_no_orphans(
    stack: LocalStack,
) -> None:
    # Given the first run, stopped (this test also runs on its own)
    if not hasattr(stack, "snapshot"):
        stack.snapshot = _snapshot(stack.admin_url)  # type: ignore[attr-defined]
    stack.stop()
    first, first_steps = stack.ready_seconds, stack.info["start_steps_seconds"]
    before = stack.snapshot  # type: ignore[attr-defined]

    # When it starts again on the same state folder
    stack.start()
    second, second_steps = stack.ready_seconds, stack.info["start_steps_seconds"]
    print(
        f"\nlocal stack: command to READY {first:.2f} s on a new state folder, "
        f"{second:.2f} s on the second start (database + demo step "
        f"{first_steps['database']:.2f} s, then {second_steps['database']:.2f} s)"
    )

    # Then it is quicker (no initdb, no demo data to make), and the demo is exactly as it
    # was: not even rewritten
    assert second_steps["database"] < first_steps["database"] / 2
    assert second < first
    assert _snapshot(stack.admin_url) == before

    # And when the stack is killed outright, its watchdog stops the servers
    stack.signal(signal.SIGKILL)
    assert stack.wait_no_leftovers(timeout=15) == []


def test_token_minting_and_devstack_stay_out_of_deployed_code() -> None:
    """Demo tokens are minted only in devstack, which is never deployed: nothing under shared/
    (the layer) or functions/ may name devstack or sign a JWT."""
    offenders = []
    for top in ("shared", "functions"):
        for path in (REPO / top).rglob("*"):
            if not path.is_file() or "__pycache__" in path.parts or path.suffix == ".pyc":
                continue
            text = path.read_text(errors="ignore")
            offenders += [
                f"{path.relative_to(REPO)}: {needle}"
                for needle in ("devstack", "jwt.encode")
                if needle in text
            ]
    assert offenders == []


def test_gateway_routes_are_the_templates_http_api_events() -> None:
    from samtranslator.yaml_helper import yaml_parse

    from devstack.template import load_template

    raw = yaml_parse((REPO / "template.yaml").read_text())
    expected = set()
    for resource in raw["Resources"].values():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        folder = Path(resource["Properties"]["CodeUri"]).name
        for event in (resource["Properties"].get("Events") or {}).values():
            if event["Type"] == "HttpApi":
                props = event["Properties"]
                expected.add((props["Method"].upper(), props["Path"], folder))
    served = {(r.method, r.path, r.function) for r in load_template().routes}
    assert served == expected and served


def test_http_event_has_the_shape_of_the_sample_api_gateway_event() -> None:
    from devstack.gateway import build_http_event
    from devstack.template import load_template

    sample = json.loads((REPO / "events" / "list_backups" / "get_backup.json").read_text())
    route = next(r for r in load_template().routes if r.route_key == "GET /backups/{id}")
    backup_id = str(uuid.uuid4())
    event = build_http_event(
        method="GET",
        raw_path=f"/backups/{backup_id}",
        raw_query="a=1&a=2&b=",
        headers=[
            ("Host", "127.0.0.1:8000"),
            ("Authorization", "Bearer x"),
            ("Cookie", "c1=1; c2=2"),
            ("User-Agent", "pytest"),
        ],
        body=b"",
        route=route,
        path_parameters={"id": backup_id},
        source_ip="127.0.0.1",
        protocol="HTTP/1.1",
        request_id="req-1",
    )
    assert set(sample) - {"body"} <= set(event)
    assert set(sample["requestContext"]) <= set(event["requestContext"])
    assert set(sample["requestContext"]["http"]) == set(event["requestContext"]["http"])
    assert event["routeKey"] == sample["routeKey"] == "GET /backups/{id}"
    assert event["pathParameters"] == {"id": backup_id}
    assert event["queryStringParameters"] == {"a": "1,2", "b": ""}
    assert event["cookies"] == ["c1=1", "c2=2"] and "cookie" not in event["headers"]
    assert event["headers"]["authorization"] == "Bearer x"  # lower-cased names
