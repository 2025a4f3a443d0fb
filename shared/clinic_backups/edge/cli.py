"""Operator CLI over the same layer the functions use (no HTTP, no tokens, no 15-minute limit).

    python -m clinic_backups.edge.cli backup  <clinic> [--note TEXT]
    python -m clinic_backups.edge.cli list    <clinic> [--all]
    python -m clinic_backups.edge.cli download <clinic> <backup-id> <file>
    python -m clinic_backups.edge.cli delete  <clinic> <backup-id>
    python -m clinic_backups.edge.cli purge   [<clinic> ...]
    python -m clinic_backups.edge.cli sweep   [<clinic> ...] [--no-orphans]
    python -m clinic_backups.edge.cli rebuild <clinic>
    python -m clinic_backups.edge.cli migrate
    python -m clinic_backups.edge.cli restore <clinic> <backup-id> --confirm <clinic>
    python -m clinic_backups.edge.cli verify  <clinic> <backup-id> [--ephemeral]
    python -m clinic_backups.edge.cli undo    <clinic> <restore-id>
    python -m clinic_backups.edge.cli restores <clinic>
    python -m clinic_backups.edge.cli restore-file <file> --target <database URL> [--identity <key file>]
    python -m clinic_backups.edge.cli doctor   (checks this deployment: clinic_backups.edge.doctor)

`restore-file` is for a clinic opening a downloaded backup on its own machine: it needs no
platform settings, only the file, the clinic's key file (for `.dump.age`), a target database
(which must not already have the clinic's schema) and pg_restore/psql 18+ (PG_BIN_DIR, or on
PATH). It decrypts, converts and loads in one streamed transaction: all or nothing.

`restore`, `verify` and `undo` run the restore worker's own code here, with no 15-minute
limit: the path for clinics too large for Lambda (docs/restore.md).

Settings come from the environment exactly as for the functions (`OperatorSettings`), and a
clinic must be an active row of the tenants table, as for a job. Operators already hold the
database and storage credentials; the CLI adds no power beyond them, and audits what it does
under the actor `operator:<login>`.
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import psycopg2
import psycopg2.errors

from clinic_backups.adapters.postgres import describe_error
from clinic_backups.domain.errors import (
    ApiError,
    BackupNotCompleted,
    BackupRunError,
    ClinicNotAvailable,
    ConfigurationError,
    StorageObjectMissing,
)
from clinic_backups.domain.models import (
    BackupJob,
    BackupStatus,
    Clinic,
    Job,
    ListRestoresQuery,
    Permission,
    RestoreRequest,
    RestoreStatus,
    Role,
    TenantContext,
)
from clinic_backups.domain.names import (
    UNSUPPORTED_NAME,
    is_tenant_schema_name,
    is_valid_schema_name,
)
from clinic_backups.domain.parts import open_stored
from clinic_backups.domain.ports import ListFilter
from clinic_backups.edge import cli_tenants, doctor, responses
from clinic_backups.usecases import backups, restore
from clinic_backups.usecases.context import Services
from clinic_backups.wiring.factory import build_services
from clinic_backups.wiring.settings import OperatorSettings, get_settings


class _Collect:
    """A dispatcher that keeps the job so the CLI runs it in-process, right away."""

    def __init__(self) -> None:
        self.jobs: list[Job] = []

    def enqueue(self, job: Job) -> None:
        self.jobs.append(job)

    def run(self, svc: Services) -> list[Any]:
        """Run every collected job (and the jobs they queue) in order, here."""
        results = []
        while self.jobs:
            job = self.jobs.pop(0)
            if isinstance(job, BackupJob):
                results.append(backups.run_backup_job(svc, job))
            else:
                results.append(restore.run_job(svc, job))
        return results


def _actor() -> str:
    try:
        return f"operator:{getpass.getuser()}"
    except (KeyError, OSError):
        return "operator"


def _services(inactive: str | None = None) -> Services:
    """The operator's services: a restore has no overall deadline here (that one keeps a job
    under Lambda's 15 minutes; each phase keeps its own limit, RESTORE_TIMEOUT_SECONDS,
    DUMP_TIMEOUT_SECONDS); with `inactive`, that one clinic counts as active (`--inactive`)."""
    svc = build_services(get_settings(OperatorSettings))
    config = replace(svc.config, restore_deadline_seconds=None)
    if inactive is None:
        return replace(svc, config=config)
    return replace(svc, config=config, tenants=_WithInactive(svc.tenants, inactive))


class _WithInactive:
    """The tenants table as a command run with `--inactive` sees it: the one clinic the
    operator named counts as active for this command (jobs re-check the table: they must not
    refuse it); every other clinic as stored. The functions never see this."""

    def __init__(self, inner: Any, schema: str) -> None:
        self._inner = inner
        self._schema = schema

    def get(self, schema: str) -> Clinic | None:
        clinic = self._inner.get(schema)
        if clinic is not None and schema == self._schema:
            return Clinic(schema=clinic.schema, name=clinic.name, active=True)
        return clinic  # type: ignore[no-any-return]

    def active_clinics(self) -> list[Clinic]:
        return self._inner.active_clinics()  # type: ignore[no-any-return]

    def unsupported_clinics(self) -> list[str]:
        return self._inner.unsupported_clinics()  # type: ignore[no-any-return]


def _clinic(svc: Services, schema: str) -> TenantContext:
    if is_tenant_schema_name(schema) and not is_valid_schema_name(schema):
        raise ClinicNotAvailable(f"{schema!r}: {UNSUPPORTED_NAME}")
    clinic = svc.tenants.get(schema) if is_valid_schema_name(schema) else None
    if clinic is not None and not clinic.active:
        raise ClinicNotAvailable(
            f"{schema!r} is not an active clinic in the tenants table "
            "(pass --inactive to list or restore a deactivated clinic)"
        )
    if clinic is None:
        raise ClinicNotAvailable(f"{schema!r} is not an active clinic in the tenants table")
    # A clinic never backed up has no backup tables yet (`list` failed with UndefinedTable).
    svc.records.ensure_schema(clinic.schema)
    return TenantContext(
        schema=clinic.schema,
        clinic_name=clinic.name,
        user_id=_actor(),
        user_name=_actor(),
        role=Role.ADMIN,
        permissions=frozenset(Permission),
        request_id="cli",
    )


def _print(data: Any) -> None:
    """The command's result: alone on stdout (logs go to stderr), so `| jq` works."""
    print(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def _error(line: str) -> None:
    print(line, file=sys.stderr)


def cmd_backup(args: argparse.Namespace) -> int:
    svc = _services()
    ctx = _clinic(svc, args.clinic)
    collected = _Collect()
    svc = replace(svc, dispatcher=collected)
    record = backups.start_backup(svc, ctx.schema, **backups.manual_by(ctx, args.note))
    collected.run(svc)
    done = svc.records.get(ctx.schema, record.id)
    assert done is not None
    _print(responses.backup_to_api(done))
    return 0 if done.status == BackupStatus.COMPLETED else 1


def cmd_list(args: argparse.Namespace) -> int:
    svc = _services(args.clinic if args.inactive else None)
    ctx = _clinic(svc, args.clinic)
    items, _ = svc.records.list(ctx.schema, ListFilter(limit=1000, include_deleted=args.all))
    _print([responses.backup_to_api(r) for r in items])
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    svc = _services()
    ctx = _clinic(svc, args.clinic)
    record = backups.get_backup(svc, ctx, args.backup_id)
    if record.status != BackupStatus.COMPLETED:
        raise BackupNotCompleted(f"the backup is {record.status.value}")
    digest = hashlib.sha256()
    size = 0
    body = open_stored(svc.scoped(ctx.schema), record)
    with body, open(args.file, "wb") as out:
        while chunk := body.read(1024 * 1024):
            digest.update(chunk)
            size += len(chunk)
            out.write(chunk)
    if digest.hexdigest() != record.sha256 or size != record.size_bytes:
        print("the downloaded file does not match the backup's checksum", file=sys.stderr)
        return 1
    _print({"file": args.file, "size_bytes": size, "sha256": record.sha256})
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    svc = _services()
    backups.delete_backup(svc, _clinic(svc, args.clinic), args.backup_id)
    return 0


def cmd_purge(args: argparse.Namespace) -> int:
    svc = _services()
    schemas = args.clinics or [c.schema for c in svc.tenants.active_clinics()]
    _print({schema: backups.purge_deleted(svc, _clinic(svc, schema).schema) for schema in schemas})
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from clinic_backups.usecases.sweeper import sweep

    svc = _services()
    schemas = [_clinic(svc, schema).schema for schema in args.clinics] or None
    report = sweep(svc, schemas, orphans=not args.no_orphans)
    _print(report.to_dict())
    return 0 if not report.errors else 1


def cmd_rebuild(args: argparse.Namespace) -> int:
    svc = _services()
    report = backups.rebuild_records(svc, _clinic(svc, args.clinic).schema)
    _print(report.__dict__)
    return 0 if not report.invalid else 1


def cmd_migrate(args: argparse.Namespace) -> int:
    result = backups.migrate_all(_services())
    _print(result)
    if result["unsupported"]:
        _error(f"clinics that cannot be backed up: {result['unsupported']}: {UNSUPPORTED_NAME}")
    return 1 if result["unsupported"] else 0


def cmd_restore(args: argparse.Namespace) -> int:
    svc = _services(args.clinic if args.inactive else None)
    ctx = _clinic(svc, args.clinic)
    collected = _Collect()
    svc = replace(svc, dispatcher=collected)
    job = restore.request_restore(svc, ctx, args.backup_id, RestoreRequest(confirm=args.confirm))
    collected.run(svc)
    done, undoable = restore.get_restore(svc, ctx, str(job.id))
    _print(responses.restore_to_api(done, undoable))
    return 0 if done.status == RestoreStatus.COMPLETED else 1


def cmd_verify(args: argparse.Namespace) -> int:
    svc = _services()
    ctx = _clinic(svc, args.clinic)
    collected = _Collect()
    svc = replace(svc, dispatcher=collected)
    server = None
    if args.ephemeral:
        server, svc = _ephemeral_verifier(svc)
    try:
        job = restore.request_verify(svc, ctx, args.backup_id)
        collected.run(svc)
    finally:
        if server is not None:
            server.stop()
    done, _ = restore.get_restore(svc, ctx, str(job.id))
    _print(responses.restore_to_api(done))
    return 0 if done.status == RestoreStatus.COMPLETED else 1


EPHEMERAL_POSTGRES = "clinic_backups.ephemeral_postgres"
INACTIVE_HELP = "the clinic is deactivated in the tenants table: act on it anyway (explicit)"


def _ephemeral_verifier(svc: Services) -> tuple[Any, Services]:
    """A throwaway PostgreSQL 18 (the embedded server from the layer's wheel) for this one
    drill. The development tools provide it through an entry point, so it exists only where
    they are installed (a checkout with `pip install -e .`), never in the deployed layer."""
    from importlib.metadata import entry_points

    from clinic_backups.adapters.pgdump import PgTools
    from clinic_backups.adapters.pgrestore import VerificationServer
    from clinic_backups.wiring.settings import OperatorSettings, get_settings

    found = list(entry_points(group=EPHEMERAL_POSTGRES))
    if not found:
        raise ConfigurationError(
            "--ephemeral needs the development tools (a checkout with `pip install -e .`)"
        )
    try:
        server = found[0].load()()
    except Exception as error:
        # One line with the fix (e.g. "no PostgreSQL server in …; build it with `make …`").
        raise ConfigurationError(f"--ephemeral could not start its server: {error}") from None
    settings = get_settings(OperatorSettings)
    verifier = VerificationServer(server.url, PgTools(settings.pg_bin_dir), timeout_seconds=86400)
    return server, replace(svc, verifier=verifier, config=replace(svc.config, verify_refused=None))


def cmd_undo(args: argparse.Namespace) -> int:
    svc = _services(args.clinic if args.inactive else None)
    ctx = _clinic(svc, args.clinic)
    collected = _Collect()
    svc = replace(svc, dispatcher=collected)
    restore.request_undo(svc, ctx, args.restore_id)
    collected.run(svc)
    done, _ = restore.get_restore(svc, ctx, args.restore_id)
    _print(responses.restore_to_api(done))
    return 0 if done.status == RestoreStatus.UNDONE else 1


def cmd_restores(args: argparse.Namespace) -> int:
    svc = _services(args.clinic if args.inactive else None)
    ctx = _clinic(svc, args.clinic)
    page = restore.list_restores(svc, ctx, ListRestoresQuery(limit=100))
    _print(responses.restore_page_to_api(page)["items"])
    return 0


def cmd_restore_file(args: argparse.Namespace) -> int:
    import os
    import shutil

    from clinic_backups.adapters.age import DecryptStage
    from clinic_backups.adapters.pgdump import PgTools
    from clinic_backups.adapters.pgrestore import SchemaSwapper

    bin_dir = (
        args.pg_bin
        or os.environ.get("PG_BIN_DIR")
        or os.path.dirname(shutil.which("pg_restore") or "")
    )
    if not bin_dir:
        raise ConfigurationError("pg_restore 18+ not found: pass --pg-bin or set PG_BIN_DIR")
    tools = PgTools(bin_dir)
    if tools.major < 18:
        raise ConfigurationError(f"pg_restore {tools.version} cannot read these archives: 18+")
    with open(args.file, "rb") as raw:
        head = raw.peek(32)[:32] if hasattr(raw, "peek") else b""
        stream: Any = raw
        decrypted = None
        if head.startswith(b"age-encryption.org/v1"):
            if not args.identity:
                raise ConfigurationError("the file is encrypted (age): pass --identity <key file>")
            with open(args.identity) as key_file:
                identities = [
                    line.strip() for line in key_file if line.strip().startswith("AGE-SECRET-KEY-")
                ]
            stream = decrypted = DecryptStage(raw, identities)
        elif not head.startswith(b"PGDMP"):
            raise ConfigurationError("not a backup file (neither age nor a pg_dump archive)")
        try:
            counts = SchemaSwapper(
                database_url=args.target, tools=tools, timeout_seconds=args.timeout
            ).load(stream)
        finally:
            if decrypted is not None:
                decrypted.close()
    _print({"restored": args.file, "tables": counts})
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="clinic-backups",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = top.add_subparsers(dest="command", required=True)
    p = sub.add_parser("backup", help="back up one clinic now (runs here, no time limit)")
    p.add_argument("clinic")
    p.add_argument("--note", default=None)
    p.set_defaults(run=cmd_backup)
    p = sub.add_parser("list", help="a clinic's backups, newest first")
    p.add_argument("clinic")
    p.add_argument("--all", action="store_true", help="include deleted backups")
    p.add_argument("--inactive", action="store_true", help=INACTIVE_HELP)
    p.set_defaults(run=cmd_list)
    p = sub.add_parser("download", help="stream a backup to a file and check its sha256")
    p.add_argument("clinic")
    p.add_argument("backup_id")
    p.add_argument("file")
    p.set_defaults(run=cmd_download)
    p = sub.add_parser("delete", help="soft-delete a backup (purged after the grace period)")
    p.add_argument("clinic")
    p.add_argument("backup_id")
    p.set_defaults(run=cmd_delete)
    p = sub.add_parser("purge", help="remove objects of backups deleted before the grace period")
    p.add_argument("clinics", nargs="*")
    p.set_defaults(run=cmd_purge)
    p = sub.add_parser(
        "sweep",
        help="fail stuck backups, abort stale uploads, purge, report "
        "objects without a record (never deletes them)",
    )
    p.add_argument("clinics", nargs="*")
    p.add_argument("--no-orphans", action="store_true", help="skip listing every object")
    p.set_defaults(run=cmd_sweep)
    p = sub.add_parser("rebuild", help="rebuild a clinic's backup records from the manifests")
    p.add_argument("clinic")
    p.set_defaults(run=cmd_rebuild)
    p = sub.add_parser("migrate", help="create or upgrade the backup tables of every clinic")
    p.set_defaults(run=cmd_migrate)
    p = sub.add_parser(
        "restore",
        help="restore a clinic from one of its backups, here (pre-restore backup, atomic swap)",
    )
    p.add_argument("clinic")
    p.add_argument("backup_id")
    p.add_argument("--confirm", required=True, help="the clinic's schema name, typed exactly")
    p.add_argument("--inactive", action="store_true", help=INACTIVE_HELP)
    p.set_defaults(run=cmd_restore)
    p = sub.add_parser("verify", help="full drill: restore a backup into a scratch database")
    p.add_argument("clinic")
    p.add_argument("backup_id")
    p.add_argument(
        "--ephemeral",
        action="store_true",
        help="start an embedded PostgreSQL 18 for the drill (development checkout)",
    )
    p.set_defaults(run=cmd_verify)
    p = sub.add_parser("undo", help="undo a clinic's latest restore within its undo window")
    p.add_argument("clinic")
    p.add_argument("restore_id")
    p.add_argument("--inactive", action="store_true", help=INACTIVE_HELP)
    p.set_defaults(run=cmd_undo)
    p = sub.add_parser("restores", help="a clinic's restores and verifications, newest first")
    p.add_argument("clinic")
    p.add_argument("--inactive", action="store_true", help=INACTIVE_HELP)
    p.set_defaults(run=cmd_restores)
    p = sub.add_parser(
        "restore-file", help="decrypt a downloaded backup and load it into a database of yours"
    )
    p.add_argument("file")
    p.add_argument("--target", required=True, help="libpq URL of the database to load into")
    p.add_argument("--identity", help="the clinic's key file (clave-backups-<clinic>.txt)")
    p.add_argument("--pg-bin", help="directory of pg_restore and psql 18+")
    p.add_argument("--timeout", type=float, default=24 * 3600)
    p.set_defaults(run=cmd_restore_file)
    p = sub.add_parser("doctor", help="check this deployment: one line per check, ✓ or ✗")
    p.set_defaults(run=doctor.command)
    # Commands of their own modules register themselves here, one line each.
    cli_tenants.register(sub)
    return top


class _CurrentStderr:
    """Whatever `sys.stderr` is when a line is written (a test may swap it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def _logs_to_stderr() -> None:
    """Logs go to stderr: stdout holds the command's result alone (`| jq` works)."""
    from clinic_backups.observability import logger

    # Only the handler powertools registered (stdout by default); a handler someone else
    # added (a test's capture) keeps its stream.
    handler = logger.registered_handler
    if isinstance(handler, logging.StreamHandler) and not isinstance(
        handler.stream, _CurrentStderr
    ):
        handler.setStream(_CurrentStderr())  # type: ignore[arg-type]


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    _logs_to_stderr()
    try:
        return int(args.run(args))
    except psycopg2.errors.InsufficientPrivilege as error:
        print(
            f"error: the database refused ({describe_error(error)}). Fix: run "
            "`clinic-backups grant` as the owner of the clinic schemas (docs/django-tenants.md)",
            file=sys.stderr,
        )
        return 2
    except ApiError as error:
        print(f"error: {error.code}: {error.message}", file=sys.stderr)
        return 2
    except ConfigurationError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    except BackupRunError as error:
        print(f"error: {error.error_code}: {error.message}", file=sys.stderr)
        return 1
    except StorageObjectMissing:
        print(
            "error: backup_file_missing: the backup's file is no longer in storage "
            "(docs/troubleshooting.md)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
