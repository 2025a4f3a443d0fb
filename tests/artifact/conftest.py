"""What ships, run as it ships: the session's `sam build` output through the artifact harness
(`devstack.artifact`: python3.12 -I -S, awslambdaric, a local Runtime API, read-only code)
against the real services of this session.

The deployment is `devstack.artifact.deploy_locally`'s, as for `make run ARGS=--artifact`: the
template's parameters as `sam deploy` would be given them (the required ones, and the
endpoints of the local services), the template's queues created on moto's SQS, the secrets in
moto's Secrets Manager — the functions read their database URLs, JWT secret, storage keys and
the platform's age identity from there, as in AWS. Storage is
the product's default backend, Supabase: uploads through the stand-in's S3 endpoint (the
session's `supabase_standin`: a proxy enforcing Supabase's limits in front of the session's
SeaweedFS `s3_server`, bucket `bucket`), signed URLs and deletes from its Storage API. The
database is a new one on the session's PostgreSQL holding the local stack's demo
(`devstack.demo`: clinica_demo, clinica_norte, clinica_sur owned by clinic_app; the functions
connect as clinic_backup, restores as clinic_restore); verification drills run on the
session's embedded PostgreSQL 18.
"""

from __future__ import annotations

import concurrent.futures
import json
import re
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extensions
import pytest
from psycopg2 import sql

from devstack import demo, paths, tokens
from devstack.artifact import (
    ArtifactRuntime,
    Delivery,
    LocalDeployment,
    LocalServices,
    SqsEventSource,
    deploy_locally,
)
from devstack.gateway import Invocation
from devstack.template import Deployment, load_template
from tests import helpers
from tests.conftest import with_dbname


def as_role(url: str, role: str) -> str:
    params = psycopg2.extensions.parse_dsn(url)
    params["user"] = role
    params.pop("password", None)
    return str(psycopg2.extensions.make_dsn(**params))


@dataclass(frozen=True)
class DemoDatabase:
    name: str
    admin_url: str  # the server's superuser, in this database
    backup_url: str  # clinic_backup: what the functions connect as
    restore_url: str  # clinic_restore: restores and the sweeper's schema drops
    app_url: str  # clinic_app: the clinic software, owner of the clinics' data


@pytest.fixture(scope="session")
def demo_database(pg_server: str) -> Iterator[DemoDatabase]:
    name = f"cbartifact_{secrets.token_hex(4)}"
    demo.ensure_database(pg_server, name)
    admin_url = with_dbname(pg_server, name)
    demo.setup_demo(admin_url)
    try:
        yield DemoDatabase(
            name=name,
            admin_url=admin_url,
            backup_url=as_role(admin_url, demo.BACKUP_ROLE),
            restore_url=as_role(admin_url, demo.RESTORE_ROLE),
            app_url=as_role(admin_url, demo.APP_ROLE),
        )
    finally:
        conn = psycopg2.connect(pg_server)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        conn.close()


@pytest.fixture(scope="session")
def lambda_runtime() -> Path:
    """awslambdaric and its dependencies (make does nothing when they are installed)."""
    subprocess.run(
        ["make", "-s", "lambda-runtime"],
        cwd=paths.repo_root(),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return paths.lambda_runtime_dir()


@dataclass
class Deployed:
    """The built stack as deployed here, and what a caller of it holds."""

    local: LocalDeployment
    jwt_secret: str
    jwt_issuer: str
    bucket: str
    database: DemoDatabase
    # Values no response or log line may ever contain.
    secrets: list[str] = field(default_factory=list)

    @property
    def deployment(self) -> Deployment:
        return self.local.deployment

    @property
    def sqs(self) -> Any:
        return self.local.sqs

    def token(self, clinic: str, role: str = "admin") -> str:
        user = next(u for u in demo.USERS if u.clinic == clinic and u.role == role)
        return tokens.mint(
            self.jwt_secret,
            sub=user.sub,
            name=user.name,
            tenant=user.clinic,
            clinic_role=user.role,
            issuer=self.jwt_issuer,
        )


@pytest.fixture(scope="session")
def local_deployment(
    sam_build: Path,
    moto_server: str,
    s3_server: Any,
    bucket: str,
    supabase_standin: Any,
    demo_database: DemoDatabase,
    pg18_server: str,
) -> Deployed:
    jwt_secret = secrets.token_urlsafe(48)
    local = deploy_locally(
        load_template(sam_build / "template.yaml"),
        LocalServices(
            moto_url=moto_server,
            database_url=demo_database.backup_url,
            restore_database_url=demo_database.restore_url,
            verify_database_url=pg18_server,
            jwt_secret=jwt_secret,
            jwt_issuer=tokens.DEMO_ISSUER,
            platform_identity=helpers.PLATFORM_IDENTITY,
            storage_backend="supabase",  # the template's default
            bucket=bucket,
            # Supabase's S3 endpoint (the stand-in's proxy, in front of SeaweedFS)
            s3_endpoint_url=supabase_standin.s3.endpoint_url,
            s3_region=supabase_standin.s3.region,
            s3_access_key_id=supabase_standin.s3.access_key,
            s3_secret_access_key=supabase_standin.s3.secret_key,
            supabase_url=supabase_standin.url,
            supabase_service_key=supabase_standin.service_key,
        ),
        name=f"artifact-{secrets.token_hex(4)}",
    )
    return Deployed(
        local=local,
        jwt_secret=jwt_secret,
        jwt_issuer=tokens.DEMO_ISSUER,
        bucket=bucket,
        database=demo_database,
        secrets=[
            jwt_secret,
            s3_server.secret_key,
            supabase_standin.s3.secret_key,
            supabase_standin.service_key,
            helpers.PLATFORM_IDENTITY,
        ],
    )


class Harness:
    """The built functions, invoked as Lambda would invoke them."""

    def __init__(self, runtime: ArtifactRuntime, events: SqsEventSource, local: Deployed):
        self.runtime = runtime
        self.events = events
        self.local = local

    def invoke(self, function: str, event: Any) -> Invocation:
        return self.runtime.invoke(function, event)

    def payload(self, function: str, event: Any) -> Any:
        result = self.invoke(function, event)
        assert result.error is None, result.lambda_error()
        return result.payload

    def call(self, function: str, event: dict[str, Any]) -> helpers.Reply:
        """An HTTP event: the function's answer as API Gateway would return it."""
        raw = self.payload(function, event)
        body = raw.get("body")
        return helpers.Reply(
            status=raw["statusCode"],
            body=json.loads(body) if body else None,
            headers=raw.get("headers") or {},
        )

    def drain(self) -> list[Delivery]:
        """Deliver every queued job (and the jobs those queue) to the built functions; each
        delivery must succeed."""
        deliveries = self.events.drain()
        for delivery in deliveries:
            assert not delivery.failed, (
                delivery.queue,
                delivery.bodies,
                delivery.invocation.payload,
                delivery.invocation.error and delivery.invocation.lambda_error(),
            )
        return deliveries

    def queued(self, queue: str) -> list[dict[str, Any]]:
        """The bodies waiting on a queue (received and made visible again at once)."""
        url = self.local.deployment.resources[queue]
        messages = self.local.sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0
        ).get("Messages", [])
        return [json.loads(m["Body"]) for m in messages]

    def logs(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.runtime.log_files())


@pytest.fixture(scope="session")
def harness(
    sam_build: Path,
    lambda_runtime: Path,
    local_deployment: Deployed,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Harness]:
    runtime = ArtifactRuntime(
        load_template(),
        local_deployment.deployment,
        service_environment=local_deployment.local.service_environment,
        log_dir=tmp_path_factory.mktemp("artifact-logs"),
        build_dir=sam_build,
        runtime_dir=lambda_runtime,
        max_containers=2,
    )
    # Every function's cold start, side by side.
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(runtime.warm, runtime.available()))
    events = SqsEventSource(runtime, local_deployment.sqs, local_deployment.deployment)
    try:
        yield Harness(runtime, events, local_deployment)
    finally:
        runtime.shutdown()


# --- the sample events ------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"REPLACE_WITH_TOKEN(?: \(make token CLINIC=(\w+) ROLE=(\w+)\))?")


def sample_event(relative: str, local: Deployed, ids: dict[str, str] | None = None) -> Any:
    """An event of `events/` as `sam local invoke -e` sends it, with a token minted for the
    clinic and role its placeholder names, and the sample id replaced by `ids`' value."""
    text = (helpers.EVENTS / relative).read_text()

    def token(match: re.Match[str]) -> str:
        return local.token(match.group(1) or "clinica_demo", match.group(2) or "admin")

    text = _PLACEHOLDER.sub(token, text)
    for placeholder, value in (ids or {}).items():
        text = text.replace(placeholder, value)
    return json.loads(text)
