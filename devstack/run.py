"""``make run``: the whole product on this machine, with demo data, behind one local URL.

    python -m devstack.run [--port 8000] [--host 127.0.0.1] [--state-dir DIR]
                           [--storage supabase|s3] [--no-ui-build | --rebuild-ui] [--artifact]

What it starts (each stopped again on Ctrl-C, SIGTERM, SIGHUP or any error; a watchdog,
``devstack.reaper``, stops them even if this process is SIGKILLed):

- **PostgreSQL**: ``DATABASE_URL`` when set (a role that may create roles and schemas, or the
  demo must already be there); otherwise an embedded PostgreSQL 18 on 127.0.0.1 whose data is
  kept in the state folder (``devstack.state``). The demo (``devstack.demo``): the tenants
  table and three clinics owned by ``clinic_app``; the functions connect as ``clinic_backup``
  with least privilege (``devstack.demo.apply_least_privilege``), restores as
  ``clinic_restore`` (``RESTORE_DATABASE_URL``).
- **Verification server**: ``VERIFY_DATABASE_URL`` when set, otherwise a throwaway embedded
  PostgreSQL 18 (a fresh one each start, removed on stop) where verification drills restore
  into scratch databases — never the clinics' own server.
- **Storage**: ``S3_ENDPOINT_URL`` when set, otherwise SeaweedFS on 127.0.0.1 (data and keys
  in the state folder). By default the functions use the product's default backend,
  ``supabase``, on the Supabase Storage stand-in (``devstack.supabase_standin``): uploads go
  through its S3 endpoint (a proxy in front of the store that enforces Supabase's project
  upload limit, 50 MB as on the Free plan unless ``--supabase-global-limit-mb`` says
  otherwise, and the bucket's ``file_size_limit`` and ``allowed_mime_types``; the bucket
  allows ``application/octet-stream`` and ``application/json``, settings kept in
  ``<state>/supabase-buckets.json``), signed URLs and deletes through its REST API;
  ``--storage s3`` gives plain S3 presigned URLs straight from the store.
- **Replica** (the independent copy, 3-2-1): a second SeaweedFS (data in ``<state>/s3-replica``)
  with a versioned, object-locked bucket ``replica``; every completed backup is copied there,
  locked in compliance mode, and read from there when the primary's object is gone. Skipped
  when ``REPLICA_BUCKET`` is set (your own replica) and with ``--artifact`` (the template's
  defaults: no replica).
- **pg_dump**: the Lambda layer built locally (``make -C layers/pgdump layer``).
- **Gateway** (``devstack.gateway``): API Gateway's HTTP API payload v2 for the routes of
  template.yaml, the functions in-process, the local job queue feeding the worker the way
  SQS does, the UI from ``frontend/dist`` at ``/`` and demo tokens at ``/__demo/accounts``.

**--artifact** (``make run ARGS=--artifact``): the functions are not imported from the source
tree but run from the ``sam build`` output (``.aws-sam/build``, what ``sam deploy`` ships)
through the artifact harness (``devstack.artifact``: python3.12 -I -S, awslambdaric, read-only
code, one process per execution environment). The template's queues and the functions' secrets
live on a moto server this stack starts, as in AWS: the functions read their database URLs,
JWT secret, storage keys and the platform's age identity from its Secrets Manager, send jobs to
its SQS, and the template's SQS event source mappings deliver them to the built workers. The
settings are the template's parameter defaults (the local services' endpoints aside); each
container's log is in ``<state>/artifact-logs``.

It prints the URL, the demo accounts and one line for scripts: ``READY <url>``. The running
stack is described in ``<state>/stack.json`` (``devstack.events`` finds it there).
"""

from __future__ import annotations

import argparse
import atexit
import concurrent.futures
import contextlib
import ipaddress
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from devstack import demo, paths, tokens
from devstack.state import StateDir
from devstack.template import load_template

log = logging.getLogger("devstack.run")

DEFAULT_PORT = 8000
# Settings the stack decides: the tokens it mints, the services it started. Everything else
# the functions read comes from template.yaml's defaults unless already set in the environment
# (so `DOWNLOAD_URL_TTL=60 make run` works).
_AWS_ONLY = (
    "APP_SECRET_ARN",
    "DATABASE_SECRET_ARN",
    "JOB_QUEUE_URL",
    "JWT_JWKS_URL",
    "RESTORE_QUEUE_URL",
    "RESTORE_DATABASE_SECRET_ARN",
    "VERIFY_DATABASE_SECRET_ARN",
)


class Shutdown(BaseException):
    """Raised in the main thread by the first SIGINT/SIGTERM/SIGHUP."""


class StartError(Exception):
    """A clear, expected reason the stack cannot start (printed without a traceback)."""


def _redact_url(url: str) -> str:
    import psycopg2.extensions

    try:
        params = psycopg2.extensions.parse_dsn(url)
    except Exception:
        return "(unparseable)"
    return "postgresql://{user}@{host}:{port}/{dbname}".format(
        user=params.get("user", "?"),
        host=params.get("host", "?"),
        port=params.get("port", "5432"),
        dbname=params.get("dbname", "?"),
    )


def _with_role(url: str, user: str, password: str | None) -> str:
    import psycopg2.extensions

    params = psycopg2.extensions.parse_dsn(url)
    params["user"] = user
    params.pop("password", None)
    if password:
        params["password"] = password
    return str(psycopg2.extensions.make_dsn(**params))


@dataclass
class Options:
    host: str
    port: int
    state_dir: Path | None
    storage: str
    ui_build: str  # "auto" | "never" | "always"
    pg_port: int | None
    artifact: bool = False  # run the sam build output through devstack.artifact
    supabase_global_limit_mb: int | None = None  # the stand-in's project upload limit
    # Write the demo clinics into DATABASE_URL's database (one this stack did not create).
    demo: bool = False


class Stack:
    """Everything `run` starts, and the order it is stopped in."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.state = StateDir(options.state_dir)
        self.template = load_template()
        self.started_at = time.monotonic()
        self.reaper: Any = None
        self.pg: Any = None  # EmbeddedPostgres when we run one
        self.weed: Any = None
        self.replica_weed: Any = None  # the replica's SeaweedFS, when we run one
        self.supabase: Any = None  # devstack.supabase_standin.SupabaseStandIn
        self.store_endpoint = ""  # where the objects are (SeaweedFS or S3_ENDPOINT_URL)
        self.runtime: Any = None
        self.gateway: Any = None
        self.queue: Any = None
        self.verify_pg: Any = None  # the throwaway verification server, when we run one
        self.moto: Any = None  # --artifact: the queues and secrets of the deployment
        self.event_source: Any = None  # --artifact: SQS → the built workers
        self.audience = ""  # the JWT audience the functions check
        self.restore_url = ""
        self.verify_line = ""
        self.npm: subprocess.Popen[bytes] | None = None
        self._startup: concurrent.futures.ThreadPoolExecutor | None = None
        self._stopped = False
        self._stop_lock = threading.Lock()
        self.admin_url: str | None = None  # the embedded server's superuser URL (for tests)
        self.database_line = ""
        self.storage_line = ""
        self.replica_line = ""
        self.ui_note = ""
        self.timings: dict[str, float] = {}
        self.broken: list[str] = []  # functions whose module failed to import
        self.hurry = threading.Event()  # a second signal while stopping: stop waiting

    # -- start -------------------------------------------------------------------------------

    def start(self) -> None:
        self.state.prepare()
        self._refuse_second_stack()
        external_db = os.environ.get("DATABASE_URL") or None
        external_s3 = os.environ.get("S3_ENDPOINT_URL") or None
        secrets = self.state.secrets()
        self._set_static_environment()

        from devstack.reaper import Reaper

        self.reaper = Reaper().start()
        self._timed("make", self._build_tools, external_db is None)

        from devstack.gateway import FunctionRuntime

        artifact = self.options.artifact
        if artifact:
            self._check_build()
        else:
            self.runtime = FunctionRuntime(self.template)
        # The slow parts run side by side: database + demo, object storage, the UI build,
        # and importing the functions (their cold start, so import errors show now).
        self._startup = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="start")
        database = self._startup.submit(
            self._timed, "database", self._start_database, external_db, secrets
        )
        storage = self._startup.submit(
            self._timed, "storage", self._start_storage, external_s3, secrets
        )
        ui = self._startup.submit(self._timed, "ui", self._prepare_ui)
        verify = self._startup.submit(self._timed, "verification database", self._start_verify)
        replica = (
            None
            if artifact or os.environ.get("REPLICA_BUCKET")
            else self._startup.submit(self._timed, "replica", self._start_replica)
        )
        moto = self._startup.submit(self._timed, "moto", self._start_moto) if artifact else None
        warm = {
            f: self._startup.submit(self._timed, f"import {f}", self.runtime.warm, f)
            for f in ([] if artifact else self.template.functions)
        }
        backup_url = database.result()
        storage_env = storage.result()
        storage_env["VERIFY_DATABASE_URL"] = verify.result()
        storage_env["RESTORE_DATABASE_URL"] = self.restore_url
        if replica is not None:
            storage_env.update(replica.result())
        elif os.environ.get("REPLICA_BUCKET"):
            self.replica_line = f"REPLICA_BUCKET {os.environ['REPLICA_BUCKET']} (yours)"
        ui.result()
        if moto is not None:
            self._start_artifact(secrets, backup_url, storage_env, moto.result())
        else:
            self.broken = [f for f, future in warm.items() if not future.result()]
        self._startup.shutdown()

        self._set_service_environment(secrets, backup_url, storage_env)
        self._start_gateway(secrets)

    # -- --artifact: the sam build output through devstack.artifact ------------------------

    def _check_build(self) -> None:
        from devstack.artifact import ArtifactError, python312

        missing = []
        if not (paths.sam_build_dir() / "template.yaml").is_file():
            missing.append("the sam build output (make build)")
        if not (paths.lambda_runtime_dir() / "awslambdaric").is_dir():
            missing.append("the Lambda runtime interface client (make lambda-runtime)")
        try:
            python312()
        except ArtifactError as error:
            missing.append(str(error))
        if missing:
            raise StartError(
                "--artifact needs " + "; ".join(missing) + ": `make run ARGS=--artifact` makes them"
            )

    def _start_moto(self) -> str:
        from moto.server import ThreadedMotoServer

        from devstack.postgres import find_free_port

        port = find_free_port()
        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self.moto.start()
        return f"http://127.0.0.1:{port}"

    def _start_artifact(
        self, secrets: dict[str, str], backup_url: str, storage_env: dict[str, str], moto: str
    ) -> None:
        """Deploy the built stack onto the local services (devstack.artifact.deploy_locally),
        then start one warm container per function."""
        from devstack.artifact import (
            ArtifactError,
            ArtifactRuntime,
            LocalServices,
            SqsEventSource,
            deploy_locally,
        )

        built = load_template(paths.sam_build_dir() / "template.yaml")
        local = deploy_locally(
            built,
            LocalServices(
                moto_url=moto,
                database_url=backup_url,
                restore_database_url=self.restore_url,
                verify_database_url=storage_env["VERIFY_DATABASE_URL"],
                jwt_secret=secrets["jwt_secret"],
                jwt_issuer=tokens.DEMO_ISSUER,
                platform_identity=secrets["platform_age_identity"],
                storage_backend=self.options.storage,
                bucket=storage_env["STORAGE_BUCKET"],
                s3_endpoint_url=storage_env["S3_ENDPOINT_URL"],
                s3_region=storage_env["S3_REGION"],
                s3_access_key_id=storage_env["S3_ACCESS_KEY_ID"],
                s3_secret_access_key=storage_env["S3_SECRET_ACCESS_KEY"],
                supabase_url=storage_env["SUPABASE_URL"],
                supabase_service_key=storage_env["SUPABASE_SERVICE_KEY"],
            ),
            name="local",
        )
        self.audience = str(built.resolve({"Ref": "JwtAudience"}, local.deployment))
        try:
            self.runtime = ArtifactRuntime(
                self.template,
                local.deployment,
                service_environment=local.service_environment,
                log_dir=self.state.root / "artifact-logs",
                on_start=lambda pid: self.reaper.watch(pid, signal.SIGKILL),
            )
        except ArtifactError as error:
            raise StartError(str(error)) from None
        assert self._startup is not None
        warm = {
            f: self._startup.submit(self._timed, f"cold start {f}", self.runtime.warm, f)
            for f in self.template.functions
        }
        self.broken = [f for f, future in warm.items() if not future.result()]
        self.event_source = SqsEventSource(self.runtime, local.sqs, local.deployment)

    def _timed(self, name: str, step: Any, *args: Any) -> Any:
        started = time.monotonic()
        try:
            return step(*args)
        finally:
            self.timings[name] = time.monotonic() - started

    def _refuse_second_stack(self) -> None:
        info = self.state.read_stack()
        if not info:
            return
        from devstack.reaper import process_start_time

        pid = info.get("pid")
        if isinstance(pid, int) and process_start_time(pid) == info.get("pid_start"):
            raise StartError(
                f"a stack already runs from {self.state.root} (pid {pid}, {info.get('url')}); "
                "stop it first, or use another --state-dir"
            )

    def _build_tools(self, embedded: bool) -> None:
        """pg_dump's layer (and the server tree for the embedded database): make is
        idempotent, a few ms when up to date."""
        targets = ["layer", "pg-server"] if embedded else ["layer"]
        started = time.monotonic()
        result = subprocess.run(
            ["make", "-s", "-C", str(paths.pgdump_layer_makefile_dir()), *targets],
            stdout=sys.stderr,
            check=False,
        )
        if result.returncode != 0:
            missing = [
                t
                for t, p in (
                    ("layer", paths.pgdump_layer_bin_dir() / "pg_dump"),
                    ("pg-server", paths.pg_server_bin_dir() / "postgres"),
                )
                if t in targets and not p.exists()
            ]
            if missing:
                raise StartError(f"`make -C layers/pgdump {' '.join(missing)}` failed")
            log.warning("make -C layers/pgdump failed; using the tools already built")
        log.debug("tools ready in %.2fs", time.monotonic() - started)

    def _start_database(self, external_url: str | None, secrets: dict[str, str]) -> str:
        """Start or reach PostgreSQL, set up the demo; return the backup role's URL."""
        import psycopg2

        if external_url is None:
            from devstack.postgres import EmbeddedPostgres, EmbeddedPostgresError

            data_dir = self.state.postgres_dir() / "data"
            for attempt in range(1, 4):
                self.pg = EmbeddedPostgres(
                    data_dir, port=self.options.pg_port, settings={"synchronous_commit": "off"}
                )
                try:
                    self.pg.start()
                    break
                except EmbeddedPostgresError as error:
                    # A free port picked a moment ago can be taken before postgres binds it
                    # (other servers start on this machine too): try another one.
                    taken = "Address already in use" in str(error)
                    if not taken or self.options.pg_port is not None or attempt == 3:
                        raise
                    log.info("PostgreSQL's port %s was taken; trying another", self.pg.port)
            self.reaper.watch(self.pg.pid, signal.SIGINT)
            host_port = f"{self.pg.host}:{self.pg.port}"
            created = demo.ensure_database(self.pg.url)
            admin_url = f"postgresql://postgres@{host_port}/{demo.DEMO_DATABASE}"
            what = demo.setup_demo(admin_url)
            if created:
                what = f"new database {demo.DEMO_DATABASE}; {what}"
            self.admin_url = admin_url
            self.database_line = (
                f"{admin_url} (embedded PostgreSQL 18, data in {self.pg.data_dir}; {what})"
            )
            # Trust authentication on loopback: the roles need no password.
            self.restore_url = f"postgresql://{demo.RESTORE_ROLE}@{host_port}/{demo.DEMO_DATABASE}"
            return f"postgresql://{demo.BACKUP_ROLE}@{host_port}/{demo.DEMO_DATABASE}"

        self.admin_url = None
        if not self.options.demo:
            # Not our database (a real django-tenants one, say): nothing is written into it
            # unless asked. Its tenants are the clinics.
            try:
                with (
                    contextlib.closing(psycopg2.connect(external_url)) as conn,
                    conn.cursor() as cur,
                ):
                    present = demo.demo_present(cur)
            except psycopg2.OperationalError as error:
                raise StartError(
                    f"cannot reach DATABASE_URL ({_redact_url(external_url)}): "
                    f"{str(error).strip().splitlines()[0]}"
                ) from None
            what = (
                "its own tenants; the demo clinics are there"
                if present
                else "its own tenants; no demo data written (--demo adds the demo clinics)"
            )
            self.restore_url = os.environ.get("RESTORE_DATABASE_URL") or external_url
            self.database_line = f"{_redact_url(external_url)} (DATABASE_URL; {what})"
            return self._backup_role_url(external_url, secrets)
        try:
            what = demo.setup_demo(external_url)
        except psycopg2.errors.InsufficientPrivilege:
            with contextlib.closing(psycopg2.connect(external_url)) as conn, conn.cursor() as cur:
                present = demo.demo_present(cur)
            if not present:
                raise StartError(
                    "DATABASE_URL's role may not create roles and schemas, and the demo data "
                    "is not there: use a role with CREATEROLE that may create schemas, or "
                    "unset DATABASE_URL for the embedded PostgreSQL"
                ) from None
            what = (
                "demo setup skipped: DATABASE_URL's role may not create roles and schemas, "
                "and the demo data is already there"
            )
        except psycopg2.OperationalError as error:
            raise StartError(
                f"cannot reach DATABASE_URL ({_redact_url(external_url)}): "
                f"{str(error).strip().splitlines()[0]}"
            ) from None
        backup_url = self._backup_role_url(external_url, secrets)
        # Restores need the restore role (docs/security.md); without one, DATABASE_URL's own.
        self.restore_url = os.environ.get("RESTORE_DATABASE_URL") or external_url
        self.database_line = f"{_redact_url(external_url)} (DATABASE_URL; {what})"
        return backup_url

    def _backup_role_url(self, admin_url: str, secrets: dict[str, str]) -> str:
        """The functions' URL on an external server: BACKUP_DATABASE_URL, else clinic_backup
        with the state folder's password (set only on a role this stack created)."""
        import psycopg2

        given = os.environ.get("BACKUP_DATABASE_URL")
        if given:
            return given
        url = _with_role(admin_url, demo.BACKUP_ROLE, secrets["backup_db_password"])
        for attempt in (1, 2):
            try:
                psycopg2.connect(url, connect_timeout=5).close()
                return url
            except psycopg2.OperationalError:
                if attempt == 2:
                    break
                with contextlib.closing(psycopg2.connect(admin_url)) as conn:
                    conn.autocommit = True
                    with conn.cursor() as cur:
                        ours = demo.created_by_us(cur, demo.BACKUP_ROLE)
                if not ours:
                    break
                demo.set_password(admin_url, demo.BACKUP_ROLE, secrets["backup_db_password"])
        log.warning(
            "cannot sign in as %s on DATABASE_URL's server; the functions use "
            "DATABASE_URL's own role (not least privilege). Set BACKUP_DATABASE_URL "
            "to connect as %s.",
            demo.BACKUP_ROLE,
            demo.BACKUP_ROLE,
        )
        return admin_url

    def _start_storage(
        self, external_endpoint: str | None, secrets: dict[str, str]
    ) -> dict[str, str]:
        """Start or reach S3 (and the Supabase Storage API); return the storage settings."""
        bucket = os.environ.get("STORAGE_BUCKET") or self.template.environment().get(
            "STORAGE_BUCKET", "backups"
        )
        if external_endpoint is None:
            from devstack.seaweed import SeaweedS3

            self.weed = SeaweedS3(
                self.state.s3_dir(),
                access_key=secrets["s3_access_key"],
                secret_key=secrets["s3_secret_key"],
            )
            self.weed.start()
            self.reaper.watch(self.weed.pid, signal.SIGTERM)
            self.weed.ensure_bucket(bucket)
            client = self.weed.client()
            store_keys = (self.weed.access_key, self.weed.secret_key, self.weed.region)
            s3 = {
                "S3_ENDPOINT_URL": self.weed.endpoint_url,
                "S3_ACCESS_KEY_ID": self.weed.access_key,
                "S3_SECRET_ACCESS_KEY": self.weed.secret_key,
                "S3_REGION": self.weed.region,
            }
            where = f"SeaweedFS S3 {self.weed.endpoint_url}, data in {self.weed.data_dir}"
        else:
            import boto3
            from botocore.config import Config
            from botocore.exceptions import ClientError

            region = os.environ.get("S3_REGION") or self.template.environment().get(
                "S3_REGION", "us-east-1"
            )
            access = os.environ.get("S3_ACCESS_KEY_ID") or os.environ.get("AWS_ACCESS_KEY_ID")
            secret = os.environ.get("S3_SECRET_ACCESS_KEY") or os.environ.get(
                "AWS_SECRET_ACCESS_KEY"
            )
            client = boto3.client(
                "s3",
                endpoint_url=external_endpoint,
                region_name=region,
                aws_access_key_id=access,
                aws_secret_access_key=secret,
                config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
            )
            try:
                client.head_bucket(Bucket=bucket)
            except ClientError:
                client.create_bucket(Bucket=bucket)
            s3 = {
                "S3_ENDPOINT_URL": external_endpoint,
                "S3_REGION": region,
                "S3_ACCESS_KEY_ID": access or "",
                "S3_SECRET_ACCESS_KEY": secret or "",
            }
            store_keys = (access or "", secret or "", region)
            where = f"S3_ENDPOINT_URL {external_endpoint}"
        self.store_endpoint = s3["S3_ENDPOINT_URL"]

        env = {
            "STORAGE_BACKEND": self.options.storage,
            "STORAGE_BUCKET": bucket,
            **s3,
            "SUPABASE_URL": "",
            "SUPABASE_SERVICE_KEY": "",
        }
        if self.options.storage == "supabase":
            self._start_supabase(client, store_keys, secrets, bucket, env)
            self.storage_line = (
                f"supabase: Storage API {self.supabase.rest.storage_url}, S3 endpoint "
                f"{self.supabase.s3.endpoint_url} (project limit "
                f"{self.supabase.buckets.global_file_size_limit / 2**20:g} MiB, bucket {bucket}: "
                f"{_bucket_summary(self.supabase.buckets.find(bucket))}; settings in "
                f"{self.state.root / 'supabase-buckets.json'}), objects in {where}"
            )
        else:
            self.storage_line = f"s3: presigned URLs from {where}; bucket {bucket}"
        return env

    def _start_replica(self) -> dict[str, str]:
        """A second SeaweedFS holding the replica bucket, created with Object Lock (hence
        versioned: SeaweedFS enforces compliance-mode locks only there)."""
        from botocore.exceptions import ClientError

        from devstack.seaweed import SeaweedS3

        path = self.state.root / "s3-replica"
        path.mkdir(mode=0o700, exist_ok=True)
        self.replica_weed = SeaweedS3(path)
        self.replica_weed.start()
        self.reaper.watch(self.replica_weed.pid, signal.SIGTERM)
        client = self.replica_weed.client()
        bucket = "replica"
        try:
            client.head_bucket(Bucket=bucket)
        except ClientError:
            client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
        self.replica_line = (
            f"SeaweedFS S3 {self.replica_weed.endpoint_url}, bucket {bucket} (versioned, "
            f"Object Lock: compliance), data in {self.replica_weed.data_dir}"
        )
        return {
            "REPLICA_BUCKET": bucket,
            "REPLICA_S3_ENDPOINT_URL": self.replica_weed.endpoint_url,
            "REPLICA_S3_ACCESS_KEY_ID": self.replica_weed.access_key,
            "REPLICA_S3_SECRET_ACCESS_KEY": self.replica_weed.secret_key,
            "REPLICA_REGION": self.replica_weed.region,
        }

    def _start_supabase(
        self,
        client: Any,
        store_keys: tuple[str, str, str],
        secrets: dict[str, str],
        bucket: str,
        env: dict[str, str],
    ) -> None:
        """The Supabase Storage stand-in over the store; the functions upload through its S3
        endpoint, as they upload through Supabase's in production."""
        from devstack.supabase_standin import SupabaseStandIn, Upstream

        config = self.state.root / "supabase-buckets.json"
        first_start = not config.exists()
        access, secret, region = store_keys
        self.supabase = SupabaseStandIn(
            client,
            Upstream(self.store_endpoint, access, secret, region),
            secrets["supabase_jwt_secret"],
            s3_access_key=secrets["supabase_s3_access_key"],
            s3_secret_key=secrets["supabase_s3_secret_key"],
            region=region,
            config_path=config,
        )
        if first_start:
            # As docs/deployment.md asks a clinic to set its bucket up.
            self.supabase.buckets.update(
                bucket, allowed_mime_types=["application/octet-stream", "application/json"]
            )
        if self.options.supabase_global_limit_mb is not None:
            self.supabase.buckets.global_file_size_limit = (
                self.options.supabase_global_limit_mb * 1024 * 1024
            )
        self.supabase.start()
        env.update(self.supabase.product_env(bucket))

    def _prepare_ui(self) -> None:
        frontend = paths.repo_root() / "frontend"
        index = frontend / "dist" / "index.html"
        mode = self.options.ui_build
        if index.is_file() and mode != "always":
            if _newer_sources(frontend, index.stat().st_mtime):
                log.warning(
                    "frontend/dist is older than frontend/src: the UI served is the "
                    "last build (--rebuild-ui rebuilds it)"
                )
            return
        if mode == "never":
            self.ui_note = "frontend/dist/index.html does not exist (--no-ui-build)."
            return
        if not (frontend / "package.json").is_file():
            self.ui_note = "There is no frontend/package.json to build it from."
            return
        try:
            self._npm_build(frontend)
        except (OSError, subprocess.CalledProcessError) as error:
            log.warning("the UI build failed (%s); serving a placeholder page at /", error)
            self.ui_note = f"The build failed: {error}. See the stack's log."

    def _npm_build(self, frontend: Path) -> None:
        lock = frontend / "package-lock.json"
        installed = frontend / "node_modules" / ".package-lock.json"
        steps = []
        if not installed.exists() or (
            lock.exists() and lock.stat().st_mtime > installed.stat().st_mtime
        ):
            steps.append(["npm", "ci", "--no-audit", "--no-fund"])
        steps.append(["npm", "run", "build"])
        for step in steps:
            log.info("UI: %s (in frontend/)", " ".join(step))
            # stdout to our stderr: stdout is for the lines scripts parse.
            self.npm = subprocess.Popen(
                step, cwd=frontend, stdout=sys.stderr, stdin=subprocess.DEVNULL
            )
            code = self.npm.wait()
            self.npm = None
            if code != 0:
                raise subprocess.CalledProcessError(code, step)

    def _set_static_environment(self) -> None:
        """Before any function is imported: template defaults, then what the stack fixes."""
        for conflict in self.template.environment_conflicts():
            log.warning(
                "template.yaml gives functions different values (%s); locally they "
                "share one process and the first value",
                conflict,
            )
        for name, value in self.template.environment().items():
            if name not in _AWS_ONLY:
                os.environ.setdefault(name, value)
        fixed = {
            "JOB_QUEUE": "local",
            "PG_BIN_DIR": str(paths.pgdump_layer_bin_dir()),
            "JWT_ISSUER": tokens.DEMO_ISSUER,
            "JWT_ALGORITHMS": "HS256",
            "TENANT_CLAIM": "tenant",
            "ROLE_CLAIM": "clinic_role",
            "USER_ID_CLAIM": "sub",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        for name in _AWS_ONLY:
            fixed[name] = ""
        os.environ.update(fixed)
        # JOB_QUEUE=local: the functions imported here enqueue into this process's LocalQueue
        # (started with the gateway); the deployed layer has no local queue of its own.
        from devstack import local_queue

        local_queue.install()
        # EMF metric blobs on every invocation drown the local log; opt back in if wanted.
        os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")

    def _start_verify(self) -> str:
        """VERIFY_DATABASE_URL, or a throwaway embedded PostgreSQL 18 for verification drills."""
        given = os.environ.get("VERIFY_DATABASE_URL")
        if given:
            self.verify_line = f"{_redact_url(given)} (VERIFY_DATABASE_URL)"
            return given
        from devstack.postgres import ephemeral_server

        self.verify_pg = ephemeral_server()
        self.reaper.watch(self.verify_pg.pid, signal.SIGINT)
        self.verify_line = f"{self.verify_pg.url} (throwaway embedded PostgreSQL 18)"
        return str(self.verify_pg.url)

    def _set_service_environment(
        self, secrets: dict[str, str], backup_url: str, storage_env: dict[str, str]
    ) -> None:
        from clinic_backups.adapters.age import public_key_of

        identity = secrets["platform_age_identity"]
        os.environ.update(
            {
                "DATABASE_URL": backup_url,
                "JWT_SECRET": secrets["jwt_secret"],
                # age: backups are encrypted to this platform key; restore/verify decrypt
                # with its identity (the local stack's own, kept in the state folder).
                "PLATFORM_AGE_RECIPIENTS": public_key_of(identity),
                "PLATFORM_AGE_IDENTITIES": identity,
                **storage_env,
            }
        )

    def _start_gateway(self, secrets: dict[str, str]) -> None:
        from devstack.gateway import Gateway, JobWorker
        from devstack.local_queue import LocalQueue

        if self.event_source is not None:
            self.event_source.start()
            event_source = self.event_source

            def after_invoke() -> None:
                event_source.wait_idle(timeout=900)

            audience = self.audience
        else:
            self.queue = LocalQueue.shared()
            self.queue.start(JobWorker(self.runtime))
            queue = self.queue

            def after_invoke() -> None:
                queue.join(timeout=900)

            audience = os.environ.get("JWT_AUDIENCE") or tokens.DEMO_AUDIENCE

        def accounts() -> list[dict[str, str]]:
            return tokens.demo_accounts(secrets["jwt_secret"], audience=audience)

        self.gateway = Gateway(
            self.runtime,
            host=self.options.host,
            port=self.options.port,
            static_dir=paths.repo_root() / "frontend" / "dist",
            demo_accounts=accounts,
            after_invoke=after_invoke,
            ui_note=self.ui_note or "frontend/dist/index.html does not exist.",
        )
        try:
            self.gateway.start()
        except OSError as error:
            raise StartError(
                f"cannot listen on {self.options.host}:{self.options.port} "
                f"({error.strerror}); pass --port N, or --port 0 for a free one"
            ) from None
        from devstack.reaper import process_start_time

        children = {"reaper": self.reaper.pid}
        if self.pg is not None:
            children["postgres"] = self.pg.pid
        if self.weed is not None:
            children["weed"] = self.weed.pid
        if self.verify_pg is not None:
            children["verify_postgres"] = self.verify_pg.pid
        self.state.write_stack(
            {
                "url": self.gateway.url,
                "pid": os.getpid(),
                "pid_start": process_start_time(os.getpid()),
                "children": children,
                "postgres_admin_url": self.admin_url,
                "start_steps_seconds": {k: round(v, 3) for k, v in self.timings.items()},
                "storage_backend": self.options.storage,
                # Where the backups are (the keys stay in secrets.json): tests scan it.
                "s3_endpoint_url": self.store_endpoint,
                # What the functions upload through (the Supabase stand-in's S3 endpoint).
                "functions_s3_endpoint_url": os.environ.get("S3_ENDPOINT_URL"),
                "storage_bucket": os.environ.get("STORAGE_BUCKET"),
                "artifact": self.options.artifact,
            }
        )

    # -- stop --------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop everything that was started; safe to call twice (atexit + finally)."""
        with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
        self._stop_npm()  # before waiting for the start steps: one of them waits for npm
        if self._startup is not None:
            # A start step may still be bringing a server up: let it finish, then stop it.
            self._startup.shutdown(wait=True, cancel_futures=True)
        # In order: nothing new comes in, running work ends, then the servers (side by side:
        # they do not depend on each other any more), then the watchdog.
        self._stop_steps([("gateway", lambda: self.gateway and self.gateway.stop())])
        self._stop_steps([("job queue", self._stop_queue)])
        self._stop_steps([("functions", lambda: self.runtime and self.runtime.shutdown())])
        self._stop_steps(
            [
                ("supabase storage", lambda: self.supabase and self.supabase.stop()),
                ("seaweedfs", lambda: self.weed and self.weed.stop()),
                ("replica", lambda: self.replica_weed and self.replica_weed.stop()),
                ("postgresql", lambda: self.pg and self.pg.stop()),
                ("verification server", lambda: self.verify_pg and self.verify_pg.stop()),
                ("moto", lambda: self.moto and self.moto.stop()),
            ]
        )
        self._stop_steps([("watchdog", lambda: self.reaper and self.reaper.close())])
        self.state.clear_stack(os.getpid())

    def _stop_queue(self, grace: float = 30.0) -> None:
        """Let running backups finish (a killed one would leave its clinic locked), unless a
        second Ctrl-C says not to wait."""
        if self.event_source is not None:
            # Stop receiving; a delivery under way ends with its invocation.
            self.event_source.stop()
            return
        if self.queue is None:
            return
        if not self.queue.join(timeout=0.1):
            print(
                f"waiting up to {grace:.0f} s for running backups (Ctrl-C again: stop now)",
                file=sys.stderr,
                flush=True,
            )
            deadline = time.monotonic() + grace
            while not self.hurry.is_set() and time.monotonic() < deadline:
                if self.queue.join(timeout=0.2):
                    break
        self.queue.stop()

    @staticmethod
    def _stop_steps(steps: list[tuple[str, Any]]) -> None:
        def run(name: str, step: Any) -> None:
            started = time.monotonic()
            try:
                step()
            except Exception:
                log.exception("stopping %s failed", name)
            log.debug("stopped %s in %.2fs", name, time.monotonic() - started)

        if len(steps) == 1:
            run(*steps[0])
            return
        threads = [
            threading.Thread(target=run, args=step, name=f"stop-{step[0]}") for step in steps
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _stop_npm(self) -> None:
        proc = self.npm
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    # -- report ------------------------------------------------------------------------------

    def describe(self) -> str:
        assert self.gateway is not None
        lines = [
            "",
            "Clinic backups — local stack",
            f"  UI and API   {self.gateway.url}",
            f"  PostgreSQL   {self.database_line}",
            f"  Storage      {self.storage_line}",
            f"  Verification {self.verify_line}",
            f"  Replica      {self.replica_line or 'none'}",
            f"  State        {self.state.root}",
        ]
        if self.options.artifact:
            lines += [
                f"  Functions    the sam build output ({paths.sam_build_dir()}), run by the "
                "artifact harness",
                f"  Their logs   {self.state.root / 'artifact-logs'}",
                "  Queues       moto SQS (the template's queues; jobs reach the built workers)",
            ]
        lines += [f"  Note         {note}" for note in self.state.notes]
        if self.ui_note:
            lines.append(f"  UI           not built: {self.ui_note}")
        lines += [
            f"  WARNING      functions/{f} failed to import (see the log): its routes answer 500"
            for f in self.broken
        ]
        lines.append("  Routes (template.yaml):")
        lines += [f"    {r.route_key:<28} functions/{r.function}" for r in self.template.routes]
        lines.append(f"  Demo accounts (fresh tokens: {self.gateway.url}/__demo/accounts):")
        lines += [
            f"    {u.clinic:<14} {demo.clinic(u.clinic).name:<14} {u.role:<6} {u.name}"
            for u in demo.USERS
        ]
        lines.append("  Scheduled run: python -m devstack.events schedule")
        if not _is_loopback_host(self.options.host):
            lines.append(
                f"  WARNING      listening on {self.options.host}: the API is reachable "
                "from the network (/__demo and /__local answer loopback clients only)"
            )
        return "\n".join(lines)


def _bucket_summary(bucket: Any) -> str:
    limit = bucket.file_size_limit
    size = f"file_size_limit {limit:,} B" if limit else "no file_size_limit"
    types = ", ".join(bucket.allowed_mime_types) if bucket.allowed_mime_types else "any type"
    return f"{'public' if bucket.public else 'private'}, {size}, {types}"


def _newer_sources(frontend: Path, built: float) -> bool:
    sources = [
        frontend / "index.html",
        frontend / "package-lock.json",
        *(frontend / "src").rglob("*"),
    ]
    return any(p.is_file() and p.stat().st_mtime > built for p in sources)


def _is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _expected_errors() -> tuple[type[Exception], ...]:
    """Failures with a message that says it all: no traceback for these."""
    from devstack.postgres import EmbeddedPostgresError
    from devstack.seaweed import SeaweedStartError

    return (StartError, EmbeddedPostgresError, SeaweedStartError)


def parse_args(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.run", description="Run the clinic backups stack locally."
    )
    parser.add_argument(
        "--host",
        default=None,
        help="address to listen on (default 127.0.0.1; 0.0.0.0 and other "
        "non-loopback addresses only when given here)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"default {DEFAULT_PORT}; 0 picks a free port",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="where data, keys and logs live (default <repo>/.local)",
    )
    parser.add_argument(
        "--storage",
        choices=["supabase", "s3"],
        default="supabase",
        help="storage backend of the functions (default supabase, the product's)",
    )
    parser.add_argument(
        "--supabase-global-limit-mb",
        type=int,
        default=None,
        help="the Supabase stand-in's project upload limit in MiB (default: as kept in the "
        "state folder, 50 at first, Supabase Free's)",
    )
    parser.add_argument(
        "--pg-port",
        type=int,
        default=None,
        help="port of the embedded PostgreSQL (default: a free one)",
    )
    ui = parser.add_mutually_exclusive_group()
    ui.add_argument(
        "--no-ui-build",
        dest="ui_build",
        action="store_const",
        const="never",
        default="auto",
        help="never run npm; serve a placeholder if the UI is missing",
    )
    parser.add_argument(
        "--artifact",
        action="store_true",
        help="run the functions from the sam build output (make build) as Lambda does",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="with DATABASE_URL: write the demo clinics, roles and grants into that database "
        "(never done unless asked: it is not a database this stack created)",
    )
    ui.add_argument(
        "--rebuild-ui",
        dest="ui_build",
        action="store_const",
        const="always",
        help="build frontend/ even if frontend/dist exists",
    )
    args = parser.parse_args(argv)
    host = args.host or "127.0.0.1"
    if not 0 <= args.port <= 65535:
        parser.error("--port must be 0-65535")
    return Options(
        host=host,
        port=args.port,
        state_dir=args.state_dir,
        storage=args.storage,
        ui_build=args.ui_build,
        pg_port=args.pg_port,
        artifact=args.artifact,
        supabase_global_limit_mb=args.supabase_global_limit_mb,
        demo=args.demo,
    )


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )
    # The functions flush metrics on every invocation; with none recorded powertools warns.
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    for noisy in ("botocore", "boto3", "s3transfer", "urllib3", "httpx", "httpcore", "werkzeug"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    stack = Stack(options)
    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def stopping(signum: int, frame: FrameType | None) -> None:
        stack.hurry.set()
        print("still stopping…", file=sys.stderr, flush=True)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        # Only the first signal interrupts; the rest must not cut the clean-up short.
        for sig in signals:
            signal.signal(sig, stopping)
        raise Shutdown(signal.Signals(signum).name)

    for sig in signals:
        signal.signal(sig, on_signal)
    atexit.register(stack.stop)
    code = 0
    try:
        stack.start()
        print(stack.describe(), flush=True)
        elapsed = time.monotonic() - stack.started_at
        steps = ", ".join(f"{k} {v:.2f}" for k, v in stack.timings.items())
        log.info("start steps (s, the slow ones side by side): %s", steps)
        print(f"Ready in {elapsed:.2f} s. Ctrl-C stops everything.", flush=True)
        print(f"READY {stack.gateway.url}", flush=True)
        threading.Event().wait()  # until a signal raises Shutdown
    except Shutdown as reason:
        print(f"\n{reason}: stopping…", file=sys.stderr, flush=True)
    except Exception as error:
        if isinstance(error, _expected_errors()):
            print(f"cannot start: {error}", file=sys.stderr, flush=True)
        else:
            log.exception("the local stack failed")
        code = 1
    finally:
        for sig in signals:
            signal.signal(sig, stopping)
        stack.stop()
    print("stopped", file=sys.stderr, flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
