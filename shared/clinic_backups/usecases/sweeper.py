"""The sweeper: what cleans up after crashes, deletes and retention. It runs at the end of every
scheduler run (for the clinics that need it) and from the operator CLI
(`python -m clinic_backups.edge.cli sweep`, every clinic, every step).

- **Dead jobs.** A running job renews its clinic's lease (lease.py); one whose lease expired
  (`LOCK_LEASE_SECONDS` without a renewal, by the database's clock) is dead: it fails as
  `stale` with the reason and its lock is released — exactly what the next request for the
  clinic would do (adapters/postgres.py). A live job is never failed, however long it runs.
  A pending record (its job not started: no lease yet) keeps the age threshold: created
  longer ago than the worker timeout plus a margin (`PlatformPolicy.stuck_after`, 900 s + 45
  min by default) it can no longer start, the queue having dropped its message
  (JobQueue.MessageRetentionPeriod ≤ the threshold; tests/unit/test_contracts.py checks it).
  Should a message still arrive, the worker's atomic claim (pending → running) skips it.
- **Unfinished multipart uploads** under a clinic's prefix that no live job may be writing
  (a pending backup, a running one under a live lease, a live re-encryption) are aborted, at
  the first sweep after their job died — no age threshold. An abort that fails (the store is
  down) is retried by every sweep until it holds; a failed backup's record says its parts
  will be removed until then. One bucket-wide listing serves all clinics; each abort goes
  through the clinic's `ScopedStorage`.
- **Soft-deleted backups past the grace period** are purged (`service.purge_deleted`).
- **Activity-log exports** (`<clinic>/audit-exports/…csv.age`, `POST /audit/export`) older
  than `AUDIT_EXPORT_TTL_HOURS` (24 by default, always longer than the signed URL's life) are
  deleted through the clinic's `ScopedStorage`: one listing of that folder only, so no backup
  object is ever a candidate. The scheduler does it in each clinic's daily orphan turn.
- **Objects with no record** are reported (a warning with the keys and the `OrphanObjects`
  metric), never deleted: a missing record is as likely a damaged catalogue (rebuild it from
  the manifests) as garbage.
- **Restores** (when this function has the restore adapters): restore, verification and undo
  jobs whose lease expired (pending ones past the same threshold) fail as `stale` (releasing
  the clinic's lock), and the schemas restores set aside are dropped once their undo window
  is over — only names stored in a restore job, never one in the tenants table, never by
  pattern.

One clinic's failure (a revoked grant, a broken table) never stops the others: the batched
reads of the fleet split a failing batch down to the clinic that fails it, every per-clinic
step is guarded, and each failing clinic is logged, listed in the report (`failed_clinics`)
and counted in the `ClinicsFailed` metric, which the template's alarm watches.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from functools import partial
from typing import Any

from clinic_backups.domain.names import (
    archive_key,
    audit_export_prefix,
    is_valid_schema_name,
    key_stem,
    manifest_key,
)
from clinic_backups.domain.ports import PendingUpload, SchemaCheck
from clinic_backups.observability import logger
from clinic_backups.usecases.backups import PARTS_PENDING, PARTS_REMOVED, purge_deleted
from clinic_backups.usecases.context import Services, audit_by
from clinic_backups.usecases.replica import count_lagging

# An object this young may belong to a record being written right now: not reported yet.
ORPHAN_MIN_AGE = timedelta(hours=1)
ORPHAN_KEYS_LOGGED = 20


@dataclass
class SweepReport:
    stale_failed: int = 0
    uploads_aborted: int = 0
    uploads_in_flight: int = 0
    purged: int = 0
    orphans: dict[str, list[str]] = field(default_factory=dict)
    errors: int = 0
    restores_failed: int = 0
    schemas_dropped: int = 0
    # kept schemas not dropped: objects outside them depend on them (RESTRICT semantics)
    schemas_refused: int = 0
    # completed backups with no replica copy REPLICA_LAG_MINUTES after they finished
    replica_lagging: int = 0
    # activity-log CSV exports older than AUDIT_EXPORT_TTL_HOURS, deleted
    exports_removed: int = 0
    # clinic → the step it failed in (the run's ledger of failing clinics)
    failed_clinics: dict[str, str] = field(default_factory=dict)

    @property
    def orphan_count(self) -> int:
        return sum(len(keys) for keys in self.orphans.values())

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["orphan_count"] = self.orphan_count
        data["clinics_failed"] = len(self.failed_clinics)
        data["failed_clinics"] = dict(sorted(self.failed_clinics.items())[:FAILED_CLINICS_LISTED])
        return data


FAILED_CLINICS_LISTED = 50


def clinic_failed(report: SweepReport, schema: str, step: str, reason: str | None = None) -> None:
    """Record one clinic's failure: logged (error), listed, counted; the run goes on."""
    report.errors += 1
    report.failed_clinics.setdefault(schema, step)
    if reason is not None:
        logger.error(
            "a clinic failed; the others go on",
            extra={"clinic": schema, "step": step, "reason": reason},
        )


def guarded(report: SweepReport, step: str, schema: str | None, run: Callable[[], None]) -> None:
    """One clinic's failing step is logged and counted; the sweep goes on with the others."""
    try:
        run()
    except Exception:
        logger.exception("sweeper step failed", extra={"step": step, "clinic": schema})
        if schema is None:
            report.errors += 1
        else:
            clinic_failed(report, schema, step)


def unprepared(report: SweepReport, check: SchemaCheck) -> set[str]:
    """The clinics `ensure_schemas` could not prepare: failures recorded; all to be skipped."""
    for schema, reason in check.failed.items():
        clinic_failed(report, schema, "migrate", reason)
    return set(check.unavailable) | set(check.failed)


def fail_stuck(svc: Services, schema: str, report: SweepReport) -> None:
    now = svc.clock.now()
    for backup_id in svc.records.fail_stale(schema, now - svc.config.policy.stuck_after, now):
        report.stale_failed += 1
        svc.metrics.add("BackupFailed", 1, "Count")
        audit_by(
            svc, schema, "sweeper", "backup.run", "failed", backup_id=backup_id, error_code="stale"
        )
        logger.warning(
            "stuck backup failed as stale", extra={"clinic": schema, "backup_id": str(backup_id)}
        )


def abort_stale_uploads(svc: Services, schemas: Collection[str], report: SweepReport) -> None:
    assert svc.storage is not None
    by_clinic: dict[str, list[PendingUpload]] = defaultdict(list)
    # One listing of the whole bucket instead of one per clinic (thousands of calls an hour).
    # Listed before the jobs are read: an upload in the listing was started by a job whose
    # claim (and lease) had committed, so its job is seen below.
    for upload in svc.storage.pending_uploads(""):
        schema = upload.key.split("/", 1)[0]
        if schema in schemas:
            by_clinic[schema].append(upload)
    for schema, uploads in sorted(by_clinic.items()):
        guarded(report, "uploads", schema, partial(_abort, svc, schema, uploads, report))


def _abort(svc: Services, schema: str, uploads: list[PendingUpload], report: SweepReport) -> None:
    """Abort the uploads no live job may be writing. A re-encryption writes a new generation
    of its backup's key: keys are compared by their stem (the key without the generation)."""
    live = {
        key_stem(key)
        for key in svc.records.keys_in_flight(
            schema, svc.clock.now() - svc.config.policy.stuck_after
        )
    }
    storage = svc.scoped(schema)
    for upload in uploads:
        if key_stem(upload.key) in live:
            report.uploads_in_flight += 1
            continue
        storage.abort_upload(upload.key, upload.upload_id)
        report.uploads_aborted += 1
        svc.records.note_upload_removed(
            schema, archive_key(upload.key), PARTS_PENDING, PARTS_REMOVED
        )
        logger.info(
            "aborted an unfinished upload",
            extra={"clinic": schema, "initiated": upload.initiated.isoformat()},
        )


def purge(svc: Services, schema: str, report: SweepReport) -> None:
    report.purged += purge_deleted(svc, schema)


def count_replica_lag(svc: Services, schema: str, report: SweepReport) -> None:
    report.replica_lagging += count_lagging(svc, schema)


def expire_exports(svc: Services, schema: str, report: SweepReport) -> None:
    """Delete the clinic's activity-log exports written more than `audit_export_ttl` ago."""
    cutoff = svc.clock.now() - svc.config.audit_export_ttl
    storage = svc.scoped(schema)
    old = sorted(
        info.key
        for info in storage.list(audit_export_prefix(schema))
        # No date (a store that does not say): kept, never guessed old.
        if info.last_modified is not None and info.last_modified < cutoff
    )
    if not old:
        return
    storage.delete(old)
    report.exports_removed += len(old)
    logger.info("removed expired activity-log exports", extra={"clinic": schema, "count": len(old)})


def find_orphans(svc: Services, schema: str, report: SweepReport) -> None:
    now = svc.clock.now()
    known = svc.records.known_keys(schema)
    expected = known | {manifest_key(k) for k in known}
    exports = audit_export_prefix(schema)  # the activity log's CSV exports have no record
    orphans = sorted(
        info.key
        for info in svc.scoped(schema).list()
        if info.key not in expected
        and not info.key.startswith(exports)
        and (info.last_modified is None or info.last_modified < now - ORPHAN_MIN_AGE)
    )
    if orphans:
        report.orphans[schema] = orphans
        logger.warning(
            "objects without a backup record (kept: rebuild the records from the "
            "manifests, or remove them by hand)",
            extra={"clinic": schema, "count": len(orphans), "keys": orphans[:ORPHAN_KEYS_LOGGED]},
        )


def fail_stuck_restores(svc: Services, schema: str, report: SweepReport) -> None:
    assert svc.restores is not None
    now = svc.clock.now()
    for restore_id in svc.restores.fail_stale(schema, now - svc.config.policy.stuck_after, now):
        report.restores_failed += 1
        audit_by(
            svc,
            schema,
            "sweeper",
            "restore.run",
            "failed",
            restore_id=str(restore_id),
            error_code="stale",
        )
        logger.warning(
            "stuck restore job failed as stale",
            extra={"clinic": schema, "restore_id": str(restore_id)},
        )


def drop_kept_schemas(svc: Services, schema: str, report: SweepReport) -> None:
    """Drop the schemas the clinic's restores set aside, once their undo window is over."""
    assert svc.restores is not None and svc.restorer is not None
    now = svc.clock.now()
    for restore_id, name in svc.restores.droppable(schema, now):
        # Stored by a restore, but never a clinic: not the clinic itself, not a tenant.
        if name == schema or not is_valid_schema_name(name) or svc.tenants.get(name) is not None:
            logger.error(
                "a kept schema's name is a clinic; not dropped",
                extra={"clinic": schema, "restore_id": str(restore_id)},
            )
            continue
        # RESTRICT semantics: the kept schema's own objects go, anything outside that depends
        # on them (a view in `public` that followed the rename) stops the drop.
        outside = svc.restorer.drop_schema(name)
        if outside:
            report.schemas_refused += 1
            svc.metrics.add("KeptSchemaHasDependents", 1, "Count")
            logger.error(
                "a kept schema has dependents outside it; not dropped (drop or move them)",
                extra={
                    "clinic": schema,
                    "restore_id": str(restore_id),
                    "dependents": [f"{nsp}: {what}" for nsp, what in outside[:50]],
                },
            )
            audit_by(
                svc,
                schema,
                "sweeper",
                "restore.drop",
                "refused",
                restore_id=str(restore_id),
                dependents=len(outside),
            )
            continue
        svc.restores.mark_dropped(schema, restore_id, now)
        report.schemas_dropped += 1
        audit_by(svc, schema, "sweeper", "restore.drop", "dropped", restore_id=str(restore_id))
        logger.info(
            "dropped a kept schema past its undo window",
            extra={"clinic": schema, "restore_id": str(restore_id)},
        )


def sweep_restores(svc: Services, schemas: Collection[str], report: SweepReport) -> None:
    """Both restore steps, only for the clinics that need them (one batched read)."""
    if svc.restores is None or svc.restorer is None:
        return
    now = svc.clock.now()
    hints, failed = svc.restores.hints(sorted(schemas), now - svc.config.policy.stuck_after, now)
    for schema, reason in failed.items():
        clinic_failed(report, schema, "restores", reason)
    for schema, (stale, droppable) in sorted(hints.items()):
        if stale:
            guarded(report, "restores", schema, partial(fail_stuck_restores, svc, schema, report))
        if droppable:
            guarded(report, "kept schemas", schema, partial(drop_kept_schemas, svc, schema, report))


def sweep(svc: Services, schemas: list[str] | None = None, *, orphans: bool = True) -> SweepReport:
    """Every step for every given clinic (all active clinics by default): the operator's
    sweep. The scheduler runs the same steps, only for the clinics that need them."""
    report = SweepReport()
    chosen = schemas or [c.schema for c in svc.tenants.active_clinics()]
    skipped = unprepared(report, svc.records.ensure_schemas(chosen))
    chosen = [s for s in chosen if s not in skipped]
    for schema in chosen:
        guarded(report, "stuck", schema, partial(fail_stuck, svc, schema, report))
    guarded(report, "restores", None, partial(sweep_restores, svc, chosen, report))
    guarded(report, "uploads", None, partial(abort_stale_uploads, svc, set(chosen), report))
    for schema in chosen:
        guarded(report, "purge", schema, partial(purge, svc, schema, report))
    if svc.replica is not None:
        for schema in chosen:
            guarded(report, "replica", schema, partial(count_replica_lag, svc, schema, report))
    if svc.storage is not None:
        for schema in chosen:
            guarded(report, "exports", schema, partial(expire_exports, svc, schema, report))
    if orphans:
        for schema in chosen:
            guarded(report, "orphans", schema, partial(find_orphans, svc, schema, report))
    emit_metrics(svc, report)
    return report


def emit_metrics(svc: Services, report: SweepReport) -> None:
    svc.metrics.add("StaleBackupsFailed", report.stale_failed, "Count")
    svc.metrics.add("UploadsAborted", report.uploads_aborted, "Count")
    svc.metrics.add("BackupsPurged", report.purged, "Count")
    svc.metrics.add("OrphanObjects", report.orphan_count, "Count")
    svc.metrics.add("SweeperErrors", report.errors, "Count")
    svc.metrics.add("RestoresFailedStale", report.restores_failed, "Count")
    svc.metrics.add("KeptSchemasDropped", report.schemas_dropped, "Count")
    svc.metrics.add("AuditExportsRemoved", report.exports_removed, "Count")
    svc.metrics.add("ClinicsFailed", len(report.failed_clinics), "Count")
    if svc.replica is not None:
        # The replica's copies not made in time (the ReplicaLagAlarm watches it).
        svc.metrics.add("ReplicaLagging", report.replica_lagging, "Count")
        if report.replica_lagging:
            logger.warning(
                "completed backups without a replica copy",
                extra={
                    "count": report.replica_lagging,
                    "after_minutes": svc.config.replica_lag_minutes,
                },
            )
