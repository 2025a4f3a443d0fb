"""Validated settings: one pydantic model per function, read through a cached getter.

Locally every value comes from the environment. In AWS the secret values (database URL, JWT
secret, storage keys) come from Secrets Manager through powertools parameters (cached):
  - `APP_SECRET_ARN`: a JSON secret whose keys are setting names in lower case
    (`database_url`, `jwt_secret`, `s3_access_key_id`, `s3_secret_access_key`,
    `supabase_service_key`, `replica_s3_access_key_id`, `replica_s3_secret_access_key`),
    overlaid on the environment;
  - `DATABASE_SECRET_ARN`: a secret holding only `database_url` (a plain string or JSON with
    that key), so each function group can have its own least-privilege database role.
Nothing here is read at import time.
"""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from clinic_backups.domain.errors import ConfigurationError


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


CsvList = Annotated[list[str], NoDecode]


def _empty_is_none(value: Any) -> Any:
    return None if value == "" else value


# An optional value the template passes as "" when it is not set: unset. On the field itself,
# so every class that declares or inherits it converts it (a named validator could be
# replaced by a subclass's of the same name, and its fields go unchecked).
EmptyIsNone = BeforeValidator(_empty_is_none)
OptionalStr = Annotated[str | None, EmptyIsNone]
OptionalSecret = Annotated[SecretStr | None, EmptyIsNone]

HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512"}
)


def duration_seconds(value: str) -> float:
    """A PostgreSQL duration as the settings allow it (`500ms`, `30s`, `2min`) in seconds."""
    number, unit = re.fullmatch(r"([0-9]+)(ms|s|min)", value).groups()  # type: ignore[union-attr]
    return int(number) * {"ms": 0.001, "s": 1.0, "min": 60.0}[unit]


SECRET_FIELDS = (
    "database_url",
    "jwt_secret",
    "s3_access_key_id",
    "s3_secret_access_key",
    "supabase_service_key",
    "restore_database_url",
    "verify_database_url",
    "replica_s3_access_key_id",
    "replica_s3_secret_access_key",
)


# Who may do what: each a list of the roles (admin, staff) a token's role claim must name.
ROLE_FIELDS = (
    "list_roles",
    "create_roles",
    "download_roles",
    "delete_roles",
    "settings_roles",
    "restore_roles",
    "keys_roles",
)


class CommonSettings(BaseSettings):
    """What every function needs: the database, token verification, tenants, roles."""

    model_config = SettingsConfigDict(
        extra="ignore", case_sensitive=False, frozen=True, defer_build=True
    )

    database_url: SecretStr
    database_connect_timeout: int = Field(default=5, ge=1, le=60)

    # Token verification: jwt_secret for HS* tokens, jwt_jwks_url for RS*/ES*/PS* tokens, or
    # both while a project moves from Supabase's legacy secret to asymmetric keys (each token's
    # `alg` picks its key source; JWT_ALGORITHMS lists what is accepted, each with its source).
    jwt_secret: OptionalSecret = None
    jwt_jwks_url: OptionalStr = None
    jwt_algorithms: CsvList = ["HS256"]
    # Compared without a trailing slash (Supabase: https://<ref>.supabase.co/auth/v1).
    jwt_issuer: str
    jwt_audience: str
    jwt_leeway_seconds: int = Field(default=30, ge=0, le=300)
    # The JWKS is cached this long; a token with an unknown `kid` fetches it again at once,
    # but at most once per jwt_jwks_refresh_seconds (a flood of made-up kids is one fetch).
    jwt_jwks_cache_seconds: float = Field(default=300, gt=0, le=86400)
    jwt_jwks_refresh_seconds: float = Field(default=10, ge=0, le=3600)

    # Claim names as dotted paths (Supabase Auth: app_metadata.tenant, app_metadata.clinic_role).
    tenant_claim: str = "tenant"
    role_claim: str = "clinic_role"
    user_id_claim: str = "sub"
    user_name_claims: CsvList = ["name", "email"]

    # The public tenants table, django-tenants style (`customers_client.schema_name`).
    tenants_table: str = "public.customers_client"
    tenant_schema_column: str = "schema_name"
    tenant_name_column: str = "name"
    tenant_active_column: OptionalStr = "is_active"
    # The one role that owns every clinic's backup_* tables, whichever role creates them (an
    # operator's `migrate` connects as the restore role). Unset: the creating role keeps them
    # (set it: docs/django-tenants.md).
    backup_tables_owner: OptionalStr = None
    # Tenant rows that are not clinics: django-tenants' TENANT_BASE_SCHEMA (a template that
    # clone_schema copies, backup tables included; docs/django-tenants.md). Never backed up,
    # never migrated, refused by the API; counted in every scheduler run's summary.
    excluded_schemas: CsvList = []

    # Who may do what. A download is the whole clinic's patient data: admins only by default.
    list_roles: CsvList = ["admin", "staff"]
    create_roles: CsvList = ["admin", "staff"]
    download_roles: CsvList = ["admin"]
    delete_roles: CsvList = ["admin"]
    # Who may change the clinic's schedule and retention (everyone who may list can read them).
    settings_roles: CsvList = ["admin"]
    # Who may restore a backup over the live clinic, undo a restore and run a verification.
    restore_roles: CsvList = ["admin"]
    # Registering or removing the clinic's encryption keys.
    keys_roles: CsvList = ["admin"]

    # The host installed contrib/django_clinic_backups' maintenance middleware: while a
    # restore runs, the clinic's own application answers 503 (GET /me tells the UI).
    host_maintenance_mode: bool = False

    default_locale: str = "es-ES"
    default_time_zone: str = "Europe/Madrid"

    # A running job (backup, restore, undo, verification, re-encryption; the CLI too) renews
    # its clinic's lease every quarter of this; a lease not renewed for this long (by the
    # database's clock) is dead, and the next request for the clinic takes it over.
    lock_lease_seconds: int = Field(default=120, ge=2, le=3600)

    @field_validator(
        "jwt_algorithms", "user_name_claims", "excluded_schemas", *ROLE_FIELDS, mode="before"
    )
    @classmethod
    def _csv(cls, value: Any) -> Any:
        return _split_csv(value)

    @model_validator(mode="after")
    def _key_sources(self) -> CommonSettings:
        if not self.jwt_secret and not self.jwt_jwks_url:
            raise ValueError("set JWT_SECRET, JWT_JWKS_URL or both")
        # An algorithm is accepted only with the key source of its kind: a secret never
        # verifies RS*/ES* and a JWKS key never HS* (the algorithm-confusion hole).
        allowed = (HMAC_ALGORITHMS if self.jwt_secret else set()) | (
            ASYMMETRIC_ALGORITHMS if self.jwt_jwks_url else set()
        )
        wrong = [alg for alg in self.jwt_algorithms if alg not in allowed]
        if wrong or not self.jwt_algorithms:
            raise ValueError("JWT_ALGORITHMS do not fit the configured key sources")
        return self

    @model_validator(mode="after")
    def _roles(self) -> CommonSettings:
        roles = {"admin", "staff"}
        for name in ROLE_FIELDS:
            if not set(getattr(self, name)) <= roles:
                raise ValueError(f"{name.upper()} may only name admin and staff")
        return self


class StorageSettings(BaseSettings):
    """Object storage: Supabase Storage (default in AWS) or any S3-compatible store."""

    model_config = SettingsConfigDict(
        extra="ignore", case_sensitive=False, frozen=True, defer_build=True
    )

    storage_backend: Literal["supabase", "s3"] = "supabase"
    storage_bucket: str = "backups"
    s3_endpoint_url: OptionalStr = None
    # Host used in presigned URLs when the browser reaches the store by another name.
    s3_public_endpoint_url: OptionalStr = None
    s3_region: str = "us-east-1"
    s3_access_key_id: SecretStr | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_multipart_chunk_mb: int = Field(default=8, ge=5, le=512)
    # The project's upload limit (Supabase: 50 MB on Free and by default; the API does not
    # expose it), in MB of 1,000,000 bytes; unset: only the bucket's file_size_limit and S3's
    # 10,000 parts count. An archive above the smallest limit is stored as numbered parts,
    # unless STORAGE_SPLIT_ARCHIVES is false (the backup then fails storage_object_too_large).
    storage_max_object_mb: Annotated[int | None, EmptyIsNone] = Field(default=None, ge=1)
    storage_split_archives: bool = True
    supabase_url: OptionalStr = None
    supabase_service_key: SecretStr | None = None
    # The independent replica (3-2-1): any S3 API in another failure domain (another account
    # or provider). Unset REPLICA_BUCKET: no replica, the product behaves as without one.
    replica_bucket: OptionalStr = None
    replica_s3_endpoint_url: OptionalStr = None
    replica_s3_public_endpoint_url: OptionalStr = None
    replica_region: str = "us-east-1"
    replica_s3_access_key_id: OptionalSecret = None
    replica_s3_secret_access_key: OptionalSecret = None
    # "compliance": every copy carries an S3 Object Lock in compliance mode (the bucket must
    # be created with Object Lock, hence versioned); "off": a store without Object Lock.
    replica_object_lock: Literal["compliance", "off"] = "compliance"
    # A kept backup's copy is locked this long (it has no tier end): six years, HIPAA's
    # documentation period (§164.316(b)(2)(i)).
    replica_keep_lock_days: int = Field(default=2190, ge=1, le=36500)
    # Completed backups not replicated this long after they finished count as lagging
    # (metric ReplicaLagging, alarm in the template).
    replica_lag_minutes: int = Field(default=120, ge=5, le=10080)

    @model_validator(mode="after")
    def _backend_complete(self) -> StorageSettings:
        if self.storage_backend == "supabase":
            missing = [
                name
                for name in (
                    "supabase_url",
                    "supabase_service_key",
                    "s3_endpoint_url",
                    "s3_access_key_id",
                    "s3_secret_access_key",
                )
                if not getattr(self, name)
            ]
            if missing:
                raise ValueError("supabase storage needs " + ", ".join(m.upper() for m in missing))
        return self


class QueueSettings(BaseSettings):
    model_config = SettingsConfigDict(
        extra="ignore", case_sensitive=False, frozen=True, defer_build=True
    )

    job_queue: Literal["sqs", "local"] = "sqs"
    job_queue_url: str | None = None
    # Restore, verification and undo jobs (and the light check after each backup) go on their
    # own queue: a long restore never waits behind, or takes the place of, backup jobs.
    restore_queue_url: str | None = None

    @model_validator(mode="after")
    def _queue_url(self) -> QueueSettings:
        if self.job_queue == "sqs" and not self.job_queue_url:
            raise ValueError("JOB_QUEUE_URL is required with JOB_QUEUE=sqs")
        return self


class PolicySettings(BaseSettings):
    """Schedules and retention: the defaults of a clinic that never saved its settings
    (enabled, daily at 03:00 in DEFAULT_TIME_ZONE, the RETENTION_KEEP_* below) and the
    platform floor no clinic setting can go below."""

    model_config = SettingsConfigDict(
        extra="ignore", case_sensitive=False, frozen=True, defer_build=True
    )

    # The floor: retention never deletes a scheduled backup younger than this many days,
    # whatever the clinic chose, and `keep_daily` cannot be set below it (an older row below
    # a raised floor counts as the floor).
    min_retention_days: int = Field(default=7, ge=1, le=366)
    # GFS defaults: the newest scheduled backup of each of the last 7 days, 4 ISO weeks and 6
    # months that have one (14 files after a year of daily backups).
    retention_keep_daily: int = Field(default=7, ge=1, le=366)
    retention_keep_weekly: int = Field(default=4, ge=0, le=260)
    retention_keep_monthly: int = Field(default=6, ge=0, le=120)
    # pre_restore backups are protected from retention this long (the restore's undo window).
    restore_undo_days: int = Field(default=3, ge=0, le=365)
    # A slot still runs this long after its time (late or repeated events, a busy clinic);
    # after that it is recorded as missed.
    schedule_catch_up_hours: int = Field(default=6, ge=1, le=23)


class EncryptionSettings(BaseSettings):
    """age encryption. Every backup is encrypted to the platform's current restore recipient
    (the first of PLATFORM_AGE_RECIPIENTS) and to every key the clinic registered. The
    identities (private keys, newest and older ones after a rotation) are only given to what
    decrypts: restore, verify and re-encryption."""

    model_config = SettingsConfigDict(
        extra="ignore", case_sensitive=False, frozen=True, defer_build=True
    )

    platform_age_recipients: CsvList = []
    platform_age_identities: SecretStr | None = None

    @field_validator("platform_age_recipients", mode="before")
    @classmethod
    def _recipients_csv(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("platform_age_recipients")
    @classmethod
    def _public_keys(cls, value: list[str]) -> list[str]:
        from clinic_backups.adapters.age import recipient_problem

        # Proven, not only parsed: a platform key age cannot encrypt to would fail every backup.
        if any(recipient_problem(key) is not None for key in value):
            raise ValueError("must be age X25519 public keys (age1…) that age can encrypt to")
        return value

    def identities(self) -> list[str]:
        """The platform's identities, one per line or comma (never logged)."""
        if self.platform_age_identities is None:
            return []
        raw = self.platform_age_identities.get_secret_value().replace(",", "\n")
        return [
            line.strip() for line in raw.splitlines() if line.strip().startswith("AGE-SECRET-KEY-")
        ]


class EncryptionKeysSettings(CommonSettings, QueueSettings):
    """encryption_keys: the clinic's public keys, and queueing a backup's re-encryption (the
    restore worker, which holds the platform's identities, does it)."""


class GraceSettings(BaseSettings):
    """How long a deleted backup stays recoverable (undelete) before its file is purged; the
    list shows it too (`purge_after`)."""

    model_config = SettingsConfigDict(
        extra="ignore", case_sensitive=False, frozen=True, defer_build=True
    )

    delete_grace_days: int = Field(default=7, ge=0, le=365)


class ReplicaFlagSettings(BaseSettings):
    """Whether the product keeps an independent replica (REPLICA_BUCKET set), for a function
    that never touches it but tells the UI (`GET /me` replica_configured)."""

    model_config = SettingsConfigDict(
        extra="ignore", case_sensitive=False, frozen=True, defer_build=True
    )

    replica_bucket: str | None = None


class ListBackupsSettings(CommonSettings, GraceSettings, ReplicaFlagSettings):
    pass


class BackupSettingsSettings(CommonSettings, PolicySettings):
    """backup_settings: `GET/PUT /backup-settings`."""


class DownloadBackupSettings(CommonSettings, StorageSettings):
    download_url_ttl: int = Field(default=300, ge=30, le=3600)


class DeleteBackupSettings(CommonSettings, StorageSettings, GraceSettings):
    pass


class CreateBackupSettings(
    CommonSettings, StorageSettings, QueueSettings, PolicySettings, EncryptionSettings
):
    # Where pg_dump/pg_restore live: the PgDumpLayer mounts them at /opt/bin.
    pg_bin_dir: str = "/opt/bin"
    dump_timeout_seconds: int = Field(default=840, ge=1, le=3600)
    dump_compression: str = "zstd:3"
    dump_lock_wait_timeout: str = "60s"
    # BRIEF: with thousands of schemas one catalog query of pg_dump picks a bad merge join.
    dump_disable_mergejoin: bool = True
    manual_backups_per_day: int = Field(default=10, ge=0, le=1000)

    @model_validator(mode="after")
    def _always_encrypted(self) -> CreateBackupSettings:
        if not self.platform_age_recipients:
            raise ValueError("PLATFORM_AGE_RECIPIENTS is required: every backup is encrypted")
        return self


class RestoreSettings(CreateBackupSettings):
    """restore_backup: restores, undos, verifications (and the pre-restore backup)."""

    # A role that may rename the clinic's schema and act as its owner (docs/security.md);
    # unset = DATABASE_URL. The whole restore function connects with it.
    restore_database_url: OptionalSecret = None
    # The restore's own limit (pg_restore and psql), below the function's 900 s.
    restore_timeout_seconds: int = Field(default=840, ge=10, le=3600)
    # How long the swap waits to lock the clinic's tables against writes (a PostgreSQL
    # duration); a session holding them longer makes the restore fail as clinic_busy.
    restore_lock_timeout: str = Field(default="30s", pattern=r"^[0-9]{1,6}(ms|s|min)$")
    # Where full verification drills run (a server URL whose role may CREATE DATABASE);
    # unset = no full verification (503 verification_unavailable).
    verify_database_url: OptionalSecret = None
    # The drill refuses the clinic database's own server unless this says otherwise.
    verify_allow_production_server: bool = False
    # The host's erasure hook: a function `schema.name(text)` that the restore (and the undo)
    # calls with the clinic's schema name inside the swap's transaction, after the service's
    # tables moved back and before the COMMIT, to re-apply the erasures (GDPR art. 17) its
    # ledger — outside the clinic's schema — records. Its failure rolls the restore back.
    # Unset: none. Plain identifiers only (letters, digits, _), both parts required.
    restore_erasure_function: OptionalStr = Field(
        default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}\.[A-Za-z_][A-Za-z0-9_]{0,62}$"
    )

    @property
    def erasure_function(self) -> tuple[str, str] | None:
        if self.restore_erasure_function is None:
            return None
        schema, name = self.restore_erasure_function.split(".")
        return schema, name

    @model_validator(mode="after")
    def _lease_outlives_the_swap_lock(self) -> RestoreSettings:
        # While the swap moves the service's tables back it holds the lock table, and the
        # heartbeat's renewals wait: the lease must outlive that wait.
        if self.lock_lease_seconds <= duration_seconds(self.restore_lock_timeout):
            raise ValueError("LOCK_LEASE_SECONDS must be longer than RESTORE_LOCK_TIMEOUT")
        return self


class SchedulerSettings(DeleteBackupSettings, QueueSettings, PolicySettings):
    """scheduler: the hourly run (due slots, then the sweeper)."""

    # The worker's Lambda timeout (template: CreateBackupFunction.Timeout). A pending or running
    # record older than this plus the margin can no longer finish: the queue drops messages
    # older than that (JobQueue.MessageRetentionPeriod) and no invocation runs longer.
    worker_timeout_seconds: int = Field(default=900, ge=60, le=900)
    stuck_margin_minutes: int = Field(default=45, ge=5, le=1440)
    # Kept schemas past the undo window are dropped as this role (the restore role: only it
    # may drop a schema the clinic's owner owns); unset = DATABASE_URL.
    restore_database_url: OptionalSecret = None
    # A full verification drill of each clinic's newest completed backup once a week.
    verify_weekly: bool = False
    # The activity log's CSV exports (`POST /audit/export`) are removed this long after they
    # were written. At least 2 h: always longer than the signed URL's life (DOWNLOAD_URL_TTL,
    # at most 1 h), so a link is never broken before it expires.
    audit_export_ttl_hours: int = Field(default=24, ge=2, le=24 * 30)


class OperatorSettings(RestoreSettings, DownloadBackupSettings, SchedulerSettings):
    """Everything but token verification: for the operator CLI and the local stack. Operators
    hold the credentials themselves and never verify a token, so the JWT settings are not
    asked for (the functions' settings still require them)."""

    jwt_issuer: str = ""
    jwt_audience: str = ""

    @model_validator(mode="after")
    def _key_sources(self) -> OperatorSettings:
        # Replaces CommonSettings' check of the token settings (same name); the roles are
        # still checked (`_roles`).
        return self


class GrantSettings(BaseSettings):
    """`clinic-backups grant`: the database and the roles, nothing else."""

    model_config = SettingsConfigDict(
        extra="ignore", case_sensitive=False, frozen=True, defer_build=True
    )

    # The functions' role; its user name is the backup role unless BACKUP_ROLE says otherwise.
    database_url: SecretStr
    # The grants run as this role when set (it owns the clinics or is a member of their owner).
    restore_database_url: OptionalSecret = None
    backup_role: OptionalStr = None
    backup_tables_owner: OptionalStr = None
    tenants_table: str = "public.customers_client"
    tenant_schema_column: str = "schema_name"


S = TypeVar("S", bound=BaseSettings)


def _fetch_secret(arn: str) -> str:
    # powertools caches the value (5 minutes by default) across invocations.
    from aws_lambda_powertools.utilities import parameters

    try:
        value = parameters.get_secret(arn, max_age=300)
    except parameters.exceptions.GetParameterError:
        # Not found, not allowed or unreachable: the operator must look; say which setting.
        raise ConfigurationError(
            "a secret named by APP_SECRET_ARN/DATABASE_SECRET_ARN could not be read"
        ) from None
    if isinstance(value, bytes):
        value = value.decode()
    return str(value)


class SecretSources(BaseSettings):
    """Where the secret values live in AWS (both unset locally)."""

    model_config = SettingsConfigDict(
        extra="ignore", case_sensitive=False, frozen=True, defer_build=True
    )

    app_secret_arn: str | None = None
    database_secret_arn: str | None = None
    # Secrets holding the restore role's and the verification server's URLs (plain strings,
    # or JSON with `database_url`).
    restore_database_secret_arn: str | None = None
    verify_database_secret_arn: str | None = None
    # The platform's age identities (one per line), given only to what decrypts: restore,
    # verify and re-encryption (the restore function). Never in the app secret.
    platform_identity_secret_arn: str | None = None


def _secret_overlay(sources: SecretSources) -> dict[str, Any]:
    overlay: dict[str, Any] = {}
    if sources.app_secret_arn:
        data = json.loads(_fetch_secret(sources.app_secret_arn))
        overlay.update({k: v for k, v in data.items() if k in SECRET_FIELDS and v})
    if sources.database_secret_arn:
        raw = _fetch_secret(sources.database_secret_arn)
        try:
            parsed = json.loads(raw)
        except json.JSONDecodeError:
            parsed = raw
        overlay["database_url"] = parsed["database_url"] if isinstance(parsed, dict) else raw
    for arn, name in (
        (sources.restore_database_secret_arn, "restore_database_url"),
        (sources.verify_database_secret_arn, "verify_database_url"),
    ):
        if arn:
            raw = _fetch_secret(arn)
            try:
                parsed = json.loads(raw)
            except json.JSONDecodeError:
                parsed = raw
            overlay[name] = parsed["database_url"] if isinstance(parsed, dict) else raw
    if sources.platform_identity_secret_arn:
        overlay["platform_age_identities"] = _fetch_secret(sources.platform_identity_secret_arn)
    return overlay


def _describe(error: ValidationError) -> str:
    # Field names and reasons only: a value could be a secret.
    parts = []
    for item in error.errors(include_input=False, include_url=False):
        where = ".".join(str(p) for p in item["loc"]) or "settings"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


@cache
def get_settings(model: type[S]) -> S:
    """Validated settings for one function, secrets overlaid (cached for the container)."""
    try:
        overlay = _secret_overlay(SecretSources())
        # Explicit values win over the environment in pydantic-settings.
        return model(**overlay)
    except ValidationError as error:
        raise ConfigurationError(_describe(error)) from None
