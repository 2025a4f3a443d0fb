"""`doctor` against the local stack's real pieces: PostgreSQL laid out with the least-privilege
roles, the Supabase stand-in (Buckets API, signed URLs, its S3 endpoint over SeaweedFS), a
JWKS served over HTTP, moto's SQS. It passes there, and names the fix for each gap a test
introduces: a revoked grant, a bucket made public, a wrong issuer."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import jwt
import psycopg2
import pytest
from clinic_backups.edge.cli import main
from cryptography.hazmat.primitives.asymmetric import ec

from tests.helpers import JsonServer, reset_caches


class Jwks:
    """Supabase Auth's JWKS endpoint: `<project>/auth/v1/.well-known/jwks.json`."""

    def __init__(self) -> None:
        key = ec.generate_private_key(ec.SECP256R1()).public_key()
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key))
        jwk.update({"alg": "ES256", "kid": "doctor-test", "key_ops": ["verify"], "ext": True})
        self.http = JsonServer(lambda path: {"keys": [jwk]})
        self.issuer = f"{self.http.base_url}/auth/v1"
        self.url = f"{self.issuer}/.well-known/jwks.json"

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def deployment(
    supabase_env: Any,
    restore_env_pg15: Any,
    owned_clinic_pg15: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[dict[str, Any]]:
    """A deployment as in production: Supabase storage, the backup and restore roles, two
    clinics owned by the app role, the legacy secret and a JWKS together (a key rotation)."""
    jwks = Jwks()
    monkeypatch.setenv("JWT_JWKS_URL", jwks.url)
    monkeypatch.setenv("JWT_ALGORITHMS", "HS256,ES256")
    monkeypatch.setenv("JWT_ISSUER", jwks.issuer + "/")
    reset_caches()
    clinics = [owned_clinic_pg15(patients=5), owned_clinic_pg15(patients=5)]
    yield {"jwks": jwks, "clinics": clinics, "db": restore_env_pg15, "standin": supabase_env}
    jwks.close()
    reset_caches()


def doctor(capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    reset_caches()
    code = main(["doctor"])
    return code, capsys.readouterr().out.splitlines()


def test_doctor_passes_on_a_healthy_deployment(
    deployment: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines = doctor(capsys)
    assert code == 0, lines
    assert all(line.startswith("✓ ") for line in lines), lines
    names = [line[2:].split(":")[0] for line in lines]
    assert names == [
        "database",
        "privileges",
        "restore role",
        "pg_dump",
        "pg_restore",
        "bucket",
        "bucket file_size_limit",
        "bucket MIME types",
        "signed URL",
        "JWKS",
        "issuer",
        "platform recipient",
        "backup queue",
        "restore queue",
    ]
    assert "may back up all 2 active clinic(s)" in lines[1]
    # Nothing secret on the way: no connection string, no signed URL, no key.
    text = "\n".join(lines)
    assert "postgresql://" not in text and "token=" not in text and "AGE-SECRET" not in text


def test_doctor_names_the_fix_for_each_gap(
    deployment: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given three gaps: a revoked grant, the bucket made public, a wrong issuer
    schema = deployment["clinics"][0]
    admin = psycopg2.connect(deployment["db"].admin_url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'REVOKE SELECT ON "{schema}".patients FROM clinic_backup')
    deployment["standin"].buckets.update(bucket, public=True)
    monkeypatch.setenv("JWT_ISSUER", "https://wrong.supabase.co/auth/v1")

    # When the doctor runs
    code, lines = doctor(capsys)

    # Then it fails, and each ✗ line says what to do
    assert code == 1
    failed = {line[2:].split(":")[0]: line for line in lines if line.startswith("✗ ")}
    assert set(failed) == {f"privileges {schema}", "bucket", "issuer"}, lines
    grant = failed[f"privileges {schema}"]
    assert "clinic_backup lacks SELECT on 1 table(s)" in grant
    assert f'GRANT SELECT ON ALL TABLES IN SCHEMA "{schema}" TO "clinic_backup";' in grant
    assert "Public off" in failed["bucket"] and f'"{bucket}" is public' not in failed["bucket"]
    assert f"'{bucket}' is public" in failed["bucket"]
    assert f"set JWT_ISSUER={deployment['jwks'].issuer}" in failed["issuer"]

    # And following the fixes makes it pass again (the SQL exactly as printed)
    fix_sql = re.search(r"— fix: run: (.*)$", grant)
    assert fix_sql is not None
    with admin.cursor() as cur:
        cur.execute(fix_sql.group(1))
    admin.close()
    deployment["standin"].buckets.update(bucket, public=False)
    monkeypatch.setenv("JWT_ISSUER", deployment["jwks"].issuer)
    code, lines = doctor(capsys)
    assert code == 0, lines


def test_doctor_checks_an_s3_bucket_and_the_bucket_s_mime_types(
    app_env: dict[str, str], supabase_standin: Any, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clinic_backups.edge.doctor import Doctor
    from clinic_backups.wiring.settings import OperatorSettings, get_settings

    # SeaweedFS as the S3 store: the bucket refuses anonymous reads, the round trip works.
    s3 = Doctor(get_settings(OperatorSettings))
    lines = [c.line() for c in (*s3.bucket(), *s3.signed_url())]
    assert lines == [
        f"✓ bucket: '{bucket}' exists and refuses anonymous reads",
        "✓ signed URL: store, signed download, delete: round trip ok",
    ]

    # Supabase with a MIME allow-list that leaves out the manifests: named, with the fix.
    for name, value in supabase_standin.product_env(bucket).items():
        monkeypatch.setenv(name, value)
    reset_caches()
    saved = supabase_standin.buckets.snapshot(bucket)
    supabase_standin.buckets.update(
        bucket, allowed_mime_types=["application/octet-stream"], file_size_limit=50_000_000
    )
    try:
        checks = {c.name: c for c in Doctor(get_settings(OperatorSettings)).bucket()}
    finally:
        supabase_standin.buckets.restore(bucket, saved)
        reset_caches()
    assert checks["bucket file_size_limit"].detail.startswith("50000000 bytes")
    mime = checks["bucket MIME types"]
    assert not mime.ok and "refuses application/json" in mime.detail
    assert mime.fix is not None and "Allowed MIME types" in mime.fix
