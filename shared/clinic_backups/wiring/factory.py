"""The one place that picks adapters from settings and wires them into `Services`: each
builder returns its port, so mypy checks every adapter against the port it stands for.

Adapters are created lazily and kept for the container's life (a warm Lambda reuses its
database connection and HTTP clients). Modules of unused adapters are never imported, which
keeps cold starts small: the list function imports neither boto3 nor storage3.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from clinic_backups.domain import ports
from clinic_backups.domain.errors import QueueUnavailable
from clinic_backups.domain.models import Job, PlatformPolicy
from clinic_backups.usecases.context import Config, Services
from clinic_backups.wiring.settings import (
    CommonSettings,
    CreateBackupSettings,
    DownloadBackupSettings,
    EncryptionSettings,
    GraceSettings,
    PolicySettings,
    QueueSettings,
    RestoreSettings,
    SchedulerSettings,
    StorageSettings,
)

if TYPE_CHECKING:  # the adapters' modules load only when a function builds one
    from clinic_backups.adapters.database import Database

_databases: dict[tuple[str, int], Database] = {}
_lock = threading.Lock()


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def _database_url(settings: CommonSettings) -> str:
    """The restore function connects as the restore role (RESTORE_DATABASE_URL) throughout."""
    if isinstance(settings, RestoreSettings) and settings.restore_database_url:
        return settings.restore_database_url.get_secret_value()
    return settings.database_url.get_secret_value()


def database(settings: CommonSettings) -> Database:
    from clinic_backups.adapters.database import Database

    key = (_database_url(settings), settings.database_connect_timeout)
    with _lock:
        if key not in _databases:
            _databases[key] = Database(key[0], connect_timeout=key[1])
        return _databases[key]


def records(
    settings: CommonSettings, metrics: ports.Metrics | None = None
) -> ports.RecordsRepository:
    from clinic_backups.adapters.postgres import PostgresRecords

    return PostgresRecords(database(settings), metrics, settings.backup_tables_owner)


def schedules(settings: CommonSettings) -> ports.SchedulesRepository:
    from clinic_backups.adapters.schedules import PostgresSchedules

    return PostgresSchedules(database(settings))


def policy(settings: CommonSettings) -> PlatformPolicy:
    """The platform's schedule and retention policy (defaults when the model has none)."""
    base = PlatformPolicy()
    defaults = replace(
        base.defaults, time_zone=settings.default_time_zone, locale=settings.default_locale
    )
    if not isinstance(settings, PolicySettings):
        return replace(base, defaults=defaults, lock_lease_seconds=settings.lock_lease_seconds)
    defaults = replace(
        defaults,
        keep_daily=max(settings.retention_keep_daily, settings.min_retention_days),
        keep_weekly=settings.retention_keep_weekly,
        keep_monthly=settings.retention_keep_monthly,
    )
    stuck_after = base.stuck_after
    if isinstance(settings, SchedulerSettings):
        stuck_after = timedelta(
            seconds=settings.worker_timeout_seconds, minutes=settings.stuck_margin_minutes
        )
    return PlatformPolicy(
        defaults=defaults,
        min_retention_days=settings.min_retention_days,
        restore_undo_days=settings.restore_undo_days,
        catch_up=timedelta(hours=settings.schedule_catch_up_hours),
        stuck_after=stuck_after,
        lock_lease_seconds=settings.lock_lease_seconds,
    )


def tenants(settings: CommonSettings) -> ports.TenantDirectory:
    from clinic_backups.adapters.postgres import PostgresTenants

    return PostgresTenants(
        database(settings),
        table=settings.tenants_table,
        schema_column=settings.tenant_schema_column,
        name_column=settings.tenant_name_column,
        active_column=settings.tenant_active_column,
        excluded=settings.excluded_schemas,
    )


def storage(
    settings: StorageSettings, s3_client: Any = None, storage_client: Any = None
) -> ports.ObjectStorage:
    from clinic_backups.adapters.s3 import S3Endpoint, S3Storage

    endpoint = S3Endpoint(
        url=settings.s3_endpoint_url,
        public_url=settings.s3_public_endpoint_url,
        region=settings.s3_region,
        access_key_id=_secret(settings.s3_access_key_id),
        secret_access_key=_secret(settings.s3_secret_access_key),
        chunk_mb=settings.s3_multipart_chunk_mb,
    )
    s3 = S3Storage(settings.storage_bucket, s3_client, endpoint)
    if settings.storage_backend == "s3":
        return s3
    from clinic_backups.adapters.supabase import SupabaseStorage

    assert settings.supabase_url and settings.supabase_service_key
    return SupabaseStorage(
        settings.storage_bucket,
        s3,
        settings.supabase_url,
        settings.supabase_service_key.get_secret_value(),
        storage_client,
    )


def replica(settings: StorageSettings, s3_client: Any = None) -> ports.ReplicaStorage | None:
    """The replica store (REPLICA_BUCKET), or None when no replica is configured."""
    if not settings.replica_bucket:
        return None
    from clinic_backups.adapters.s3 import S3Endpoint, S3Replica

    endpoint = S3Endpoint(
        url=settings.replica_s3_endpoint_url,
        public_url=settings.replica_s3_public_endpoint_url,
        region=settings.replica_region,
        access_key_id=_secret(settings.replica_s3_access_key_id),
        secret_access_key=_secret(settings.replica_s3_secret_access_key),
        chunk_mb=settings.s3_multipart_chunk_mb,
    )
    lock = settings.replica_object_lock == "compliance"
    return S3Replica(settings.replica_bucket, s3_client, endpoint, object_lock=lock)


class _NoLocalQueue:
    """`JOB_QUEUE=local` in a process that installed no local queue: every job is refused
    (503 service_unavailable), as a queue without a worker refuses it."""

    def enqueue(self, job: Job) -> None:
        raise QueueUnavailable("The local job queue has no worker.")

    def enqueue_batch(self, jobs: Sequence[Job]) -> list[ports.EnqueueFailure]:
        return [ports.EnqueueFailure(job, QueueUnavailable.code) for job in jobs]


# `JOB_QUEUE=local`: the dispatcher the local stack installed in this process
# (its local tooling, never deployed). The deployed layer has no local queue of its own.
_local_dispatcher: Callable[[], ports.JobDispatcher] = _NoLocalQueue


def use_local_dispatcher(build: Callable[[], ports.JobDispatcher] | None) -> None:
    """Functions built from now on with `JOB_QUEUE=local` enqueue through `build()`
    (None: through none, every job refused)."""
    global _local_dispatcher
    _local_dispatcher = build or _NoLocalQueue


def dispatcher(settings: QueueSettings, sqs_client: Any = None) -> ports.JobDispatcher:
    if settings.job_queue == "local":
        return _local_dispatcher()
    from clinic_backups.adapters.queues import SqsDispatcher

    assert settings.job_queue_url
    return SqsDispatcher(
        settings.job_queue_url, sqs_client, restore_queue_url=settings.restore_queue_url
    )


def dumper(settings: CreateBackupSettings) -> ports.Dumper:
    from clinic_backups.adapters.pgdump import PgDumpRunner, PgTools

    return PgDumpRunner(
        database_url=settings.database_url.get_secret_value(),
        tools=PgTools(settings.pg_bin_dir),
        timeout_seconds=settings.dump_timeout_seconds,
        compression=settings.dump_compression,
        lock_wait_timeout=settings.dump_lock_wait_timeout,
        disable_mergejoin=settings.dump_disable_mergejoin,
    )


def restore_adapters(
    settings: CommonSettings, metrics: ports.Metrics | None = None
) -> tuple[ports.RestoresRepository, ports.Restorer]:
    """The restores repository and the schema swapper (pg_restore/psql as the restore role;
    without the pg tools, only what needs none: dropping kept schemas)."""
    from clinic_backups.adapters.pgdump import PgTools
    from clinic_backups.adapters.pgrestore import SchemaSwapper
    from clinic_backups.adapters.restores import PostgresRestores

    url = getattr(settings, "restore_database_url", None) or settings.database_url
    swapper = SchemaSwapper(
        database_url=url.get_secret_value(), connect_timeout=settings.database_connect_timeout
    )
    if isinstance(settings, RestoreSettings):
        swapper.tools = PgTools(settings.pg_bin_dir)
        swapper.timeout_seconds = settings.restore_timeout_seconds
        swapper.lock_timeout = settings.restore_lock_timeout
        swapper.erasure_function = settings.erasure_function
    return PostgresRestores(database(settings), metrics), swapper


def verifier(settings: RestoreSettings) -> tuple[ports.Verifier | None, str | None]:
    """The verification server, or why there is none (VERIFY_DATABASE_URL unset, or naming
    the clinic database's own server without VERIFY_ALLOW_PRODUCTION_SERVER)."""
    from clinic_backups.adapters.pgdump import PgTools
    from clinic_backups.adapters.pgrestore import VerificationServer, same_server

    if settings.verify_database_url is None:
        return None, "Backup verification is not configured (VERIFY_DATABASE_URL)."
    url = settings.verify_database_url.get_secret_value()
    production = (_database_url(settings), settings.database_url.get_secret_value())
    if any(same_server(url, p) for p in production) and not settings.verify_allow_production_server:
        return None, (
            "VERIFY_DATABASE_URL names the clinic database's own server; verification drills "
            "run there only with VERIFY_ALLOW_PRODUCTION_SERVER=true."
        )
    return (
        VerificationServer(
            url,
            PgTools(settings.pg_bin_dir),
            timeout_seconds=settings.restore_timeout_seconds,
            connect_timeout=settings.database_connect_timeout,
        ),
        None,
    )


def keys(settings: CommonSettings) -> ports.KeysRepository:
    from clinic_backups.adapters.keys import PostgresKeys

    return PostgresKeys(database(settings))


def config(settings: CommonSettings) -> Config:
    """The values the use cases read, from whatever the settings model describes (the
    `Config` defaults where the model has no such setting)."""
    values: dict[str, Any] = {
        "policy": policy(settings),
        "host_maintenance_mode": settings.host_maintenance_mode,
        "replica_configured": bool(getattr(settings, "replica_bucket", None)),
    }
    if isinstance(settings, StorageSettings):
        if settings.storage_max_object_mb is not None:
            values["max_object_bytes"] = settings.storage_max_object_mb * 1_000_000
        values["split_archives"] = settings.storage_split_archives
        values["replica_keep_lock_days"] = settings.replica_keep_lock_days
        values["replica_lag_minutes"] = settings.replica_lag_minutes
    if isinstance(settings, CreateBackupSettings):
        values["compression"] = settings.dump_compression
        values["manual_backups_per_day"] = settings.manual_backups_per_day
    if isinstance(settings, DownloadBackupSettings):
        values["download_ttl"] = settings.download_url_ttl
    if isinstance(settings, GraceSettings):
        values["delete_grace_days"] = settings.delete_grace_days
    if isinstance(settings, RestoreSettings):
        values["restore_deadline_seconds"] = settings.restore_timeout_seconds
    if isinstance(settings, SchedulerSettings):
        values["verify_weekly"] = settings.verify_weekly
        values["audit_export_ttl"] = timedelta(hours=settings.audit_export_ttl_hours)
    if isinstance(settings, EncryptionSettings):
        values["platform_recipients"] = list(settings.platform_age_recipients)
        values["platform_identities"] = settings.identities()
    return Config(**values)


def build_services(settings: CommonSettings) -> Services:
    """Services for whatever the settings model describes (storage, queue, dumper…), built in
    one step: nothing is changed on it afterwards."""
    from clinic_backups.adapters.age import AgeCipher
    from clinic_backups.observability import PowertoolsMetrics

    metrics = PowertoolsMetrics()
    settings_config = config(settings)
    restores, restorer = (
        restore_adapters(settings, metrics)
        if isinstance(settings, RestoreSettings | SchedulerSettings)
        else (None, None)
    )
    verifying, verify_refused = (
        verifier(settings) if isinstance(settings, RestoreSettings) else (None, None)
    )
    if verify_refused is not None:
        settings_config = replace(settings_config, verify_refused=verify_refused)
    storage_settings = settings if isinstance(settings, StorageSettings) else None
    return Services(
        records=records(settings, metrics),
        tenants=tenants(settings),
        cipher=AgeCipher(),
        config=settings_config,
        storage=storage(storage_settings) if storage_settings else None,
        dispatcher=dispatcher(settings) if isinstance(settings, QueueSettings) else None,
        dumper=dumper(settings) if isinstance(settings, CreateBackupSettings) else None,
        metrics=metrics,
        schedules=schedules(settings),
        restores=restores,
        restorer=restorer,
        verifier=verifying,
        keys=keys(settings),
        replica=replica(storage_settings) if storage_settings else None,
    )
