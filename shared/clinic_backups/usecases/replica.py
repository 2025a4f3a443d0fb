"""The independent replica (3-2-1): every completed backup copied to a second S3 store in
another failure domain, each copy locked (S3 Object Lock, compliance mode) and checked.

- `queue_replication` puts a `replicate` job on the restore queue after a backup completes
  (and after a re-encryption, whose new objects replace the old ones).
- `run_replicate_job` streams every object of the backup (the archive or each part of a split
  archive, then the manifest) from the primary to the replica with boto3's managed transfer,
  the sha256 of the bytes read checked against the record, reads the copy back and checks it
  again, then sets `replicated_at` (and `replica_retain_until`) on the record.
- `read_source` is where restore, verify and download turn to the replica: when an object of
  the backup is missing from the primary, or its size is not the recorded one.
- `extend_lock` moves the lock later when a backup is promoted (kept); `purge_replica` deletes a
  purged backup's copy once its lock allows (else a later sweep tries again), and
  `purge_superseded` the copies of a re-encryption's previous generation (remembered with
  their lock date when the record moved to the new objects: migration 11).
- `count_lagging` feeds the `ReplicaLagging` metric (and its alarm).

Every key goes through `ScopedReplica`: the replica holds the clinic's objects under the same
`<schema>/` prefix as the primary, and a key outside it is never read, written or deleted.
No replica configured (`svc.replica is None`): every function here does nothing.
"""

from __future__ import annotations

import io
import uuid
from dataclasses import replace
from datetime import datetime, timedelta

from clinic_backups.domain.errors import ChecksumMismatch, StorageObjectMissing, StorageUnavailable
from clinic_backups.domain.models import BackupRecord, BackupStatus, ReplicateJob
from clinic_backups.domain.names import check_key_in_prefix, manifest_key
from clinic_backups.domain.parts import stored_keys
from clinic_backups.domain.retention import RetentionPolicy, lock_horizon
from clinic_backups.domain.storage import ScopedStorage
from clinic_backups.observability import logger
from clinic_backups.usecases.archive import ChecksumReader
from clinic_backups.usecases.context import Services, audit_by, job_clinic

ARCHIVE_CONTENT_TYPE = "application/octet-stream"
# A copy is always locked at least this long past the moment it is made (a backup older than
# its horizon, copied late, still gets a lock in the future).
MIN_LOCK = timedelta(days=1)


def queue_replication(svc: Services, schema: str, backup_id: uuid.UUID) -> None:
    """Queue the copy of a completed backup. Failure-tolerant: the backup is done whatever
    happens here, and the lag metric tells the operator about a copy that never came."""
    if svc.replica is None or svc.dispatcher is None:
        return
    try:
        svc.dispatcher.enqueue(ReplicateJob(kind="replicate", schema=schema, backup_id=backup_id))
    except Exception:
        logger.warning(
            "could not queue the replica copy; the backup itself succeeded",
            extra={"clinic": schema, "backup_id": str(backup_id)},
        )


def _policy(svc: Services, schema: str) -> RetentionPolicy:
    from clinic_backups.usecases.backups import clinic_settings

    settings = clinic_settings(svc, schema) if svc.schedules else svc.config.policy.defaults
    return RetentionPolicy.for_clinic(
        settings, svc.config.policy.min_retention_days, svc.config.policy.restore_undo_days
    )


def retain_until(svc: Services, schema: str, record: BackupRecord) -> datetime:
    """The lock of the copy: the end of the longest tier the backup can be kept under now."""
    horizon = lock_horizon(record, _policy(svc, schema), svc.config.replica_keep_lock_days)
    return max(horizon, svc.clock.now() + MIN_LOCK)


def _expected(record: BackupRecord) -> list[tuple[str, str, int]]:
    """(key, sha256, size) of every object that holds the backup's bytes."""
    if record.parts:
        return [(str(p["key"]), str(p["sha256"]), int(p["size_bytes"])) for p in record.parts]
    assert record.sha256 is not None and record.size_bytes is not None
    return [(record.storage_key, record.sha256, record.size_bytes)]


def _read_back(storage: ScopedStorage, key: str, sha256: str, size: int) -> None:
    with storage.open_read(key) as body:
        check = ChecksumReader(body, sha256, size, what="replica copy")
        while check.read(1024 * 1024):
            pass


def run_replicate_job(svc: Services, job: ReplicateJob) -> BackupRecord | None:
    """Copy one completed backup to the replica. Safe to deliver twice (a copied backup is
    skipped; a second copy only adds a version). Storage trouble raises, so the queue retries;
    a primary whose bytes do not match the record is not copied (a wrong copy protects
    nothing) and is counted (`ReplicaCopyRefused`)."""
    if svc.replica is None:
        return None
    schema = job.schema_name
    log = {"clinic": schema, "backup_id": str(job.backup_id)}
    if not job_clinic(svc, schema, "replica job", log):
        return None
    record = svc.records.get(schema, job.backup_id)
    if record is None or record.status != BackupStatus.COMPLETED or record.replicated_at:
        return None
    check_key_in_prefix(record.storage_key, schema)
    primary = svc.scoped(schema)
    replica = svc.replica_scoped(schema)
    until = retain_until(svc, schema, record) if svc.replica.object_lock else None
    started = svc.clock.now()
    copied: list[str] = []
    try:
        for key, sha256, size in _expected(record):
            with primary.open_read(key) as body:
                # The sha256 of what is sent: a wrong byte fails the read at the end, and
                # boto3 aborts the upload (no copy of a damaged object is kept).
                checked = ChecksumReader(body, sha256, size)
                replica.upload_locked(key, checked, ARCHIVE_CONTENT_TYPE, until)  # type: ignore[arg-type]
            copied.append(key)
            _read_back(replica, key, sha256, size)
        manifest = primary.get_bytes(manifest_key(record.storage_key))
        replica.upload_locked(
            manifest_key(record.storage_key), io.BytesIO(manifest), "application/json", until
        )
        copied.append(manifest_key(record.storage_key))
    except (ChecksumMismatch, StorageObjectMissing) as error:
        _superseded_meanwhile(svc, schema, record, copied, until)
        logger.warning(
            "replica copy refused: the primary object is missing or does not match the record",
            extra={**log, "reason": type(error).__name__},
        )
        svc.metrics.add("ReplicaCopyRefused", 1, "Count")
        audit_by(
            svc,
            schema,
            "system",
            "backup.replicate",
            "refused",
            backup_id=record.id,
            reason=type(error).__name__,
        )
        return None
    done = svc.records.mark_replicated(
        schema, record.id, svc.clock.now(), until, storage_key=record.storage_key
    )
    if done is None:
        # A re-encryption replaced the objects while they were copied: this copy is of the
        # old generation (the re-encryption queued its own copy of the new one).
        _superseded_meanwhile(svc, schema, record, copied, until)
        return None
    seconds = (svc.clock.now() - started).total_seconds()
    svc.metrics.add("BackupReplicated", 1, "Count")
    logger.info(
        "backup copied to the replica",
        extra={**log, "objects": len(_expected(record)) + 1, "locked": until is not None},
    )
    audit_by(
        svc,
        schema,
        "system",
        "backup.replicate",
        "completed",
        backup_id=record.id,
        retain_until=until.isoformat() if until else None,
        seconds=round(seconds, 3),
    )
    return done


def _superseded_meanwhile(
    svc: Services,
    schema: str,
    record: BackupRecord,
    copied: list[str],
    until: datetime | None,
) -> None:
    """Copies made of objects a re-encryption replaced during the job: no record points at
    them, so they are remembered for the purge (locked copies cannot be deleted now)."""
    if not copied:
        return
    current = svc.records.get(schema, record.id)
    if current is not None and current.storage_key == record.storage_key:
        return  # the same objects: a retry writes the same keys, the record's purge covers them
    svc.records.remember_superseded(schema, record.id, copied, until, svc.clock.now())
    logger.info(
        "the backup was re-encrypted during its copy; the old copies are left for the purge",
        extra={"clinic": schema, "backup_id": str(record.id), "objects": len(copied)},
    )


# --- reading from the replica ------------------------------------------------------------------


def _intact(storage: ScopedStorage, record: BackupRecord) -> bool:
    """Every object of the backup is there with its recorded size."""
    for key, _sha, size in _expected(record):
        info = storage.head(key)
        if info is None or info.size != size:
            return False
    return True


def replica_ready(svc: Services, record: BackupRecord) -> bool:
    return (
        svc.replica is not None
        and record.replicated_at is not None
        and record.sha256 is not None
        and record.size_bytes is not None
    )


def read_source(
    svc: Services, schema: str, record: BackupRecord, used_for: str
) -> tuple[ScopedStorage, bool]:
    """Where to read the backup's bytes: the primary, unless its store does not answer, one
    of its objects is missing or has the wrong size, or a read found its sha256 wrong — and
    the replica holds an intact copy. (True: the replica.) The use is logged and audited
    (never a key or a URL)."""
    primary = svc.scoped(schema)
    if not replica_ready(svc, record):
        return primary, False
    unreachable: StorageUnavailable | None = None
    if record.primary_damaged_at is None:
        try:
            if _intact(primary, record):
                return primary, False
        except StorageUnavailable as error:
            # The primary store is down or gone (a deleted project): the replica, if it can.
            unreachable = error
    replica = svc.replica_scoped(schema)
    try:
        usable = _intact(replica, record)
    except StorageUnavailable:
        logger.warning(
            "the replica store is unavailable",
            extra={"clinic": schema, "backup_id": str(record.id)},
        )
        usable = False
    if not usable:
        if unreachable is not None:
            raise unreachable
        return primary, False
    logger.warning(
        "primary copy missing or damaged; reading the backup from the replica",
        extra={"clinic": schema, "backup_id": str(record.id), "used_for": used_for},
    )
    svc.metrics.add("ReplicaRead", 1, "Count")
    audit_by(
        svc,
        schema,
        "system",
        "backup.replica_read",
        "used",
        backup_id=record.id,
        **{"for": used_for},
    )
    return replica, True


def after_mismatch(
    svc: Services, schema: str, record: BackupRecord, error: Exception
) -> BackupRecord:
    """A read of the primary's copy failed: `ChecksumMismatch`, or an archive that could not be
    read (`ArchiveInvalid`: age refusing a damaged chunk shows first), which counts only when
    the primary's stored bytes do not match the record's sha256. With a checked replica copy,
    mark the primary damaged (every later read, download included, uses the replica) and
    return the record to read again; otherwise re-raise `error`."""
    if not replica_ready(svc, record) or record.primary_damaged_at is not None:
        raise error
    if not isinstance(error, ChecksumMismatch) and _primary_matches(svc, schema, record):
        raise error
    now = svc.clock.now()
    svc.records.mark_primary_damaged(schema, record.id, now)
    logger.warning(
        "the primary copy does not match its sha256; reading the replica's",
        extra={"clinic": schema, "backup_id": str(record.id)},
    )
    svc.metrics.add("PrimaryCopyDamaged", 1, "Count")
    return replace(record, primary_damaged_at=now)


def _primary_matches(svc: Services, schema: str, record: BackupRecord) -> bool:
    primary = svc.scoped(schema)
    try:
        for key, sha256, size in _expected(record):
            _read_back(primary, key, sha256, size)
    except (ChecksumMismatch, StorageObjectMissing):
        return False
    return True


# --- promotion, purge, lag ---------------------------------------------------------------------


def extend_lock(svc: Services, schema: str, record: BackupRecord) -> None:
    """After a promotion (kept): move the copy's lock to the backup's new horizon when that is
    later than the lock it has. Failure-tolerant (logged, counted): the promotion stands, and
    the lock it had still holds."""
    if (
        svc.replica is None
        or not svc.replica.object_lock
        or record.replicated_at is None
        or record.status != BackupStatus.COMPLETED
    ):
        return
    until = retain_until(svc, schema, record)
    if record.replica_retain_until is not None and record.replica_retain_until >= until:
        return
    replica = svc.replica_scoped(schema)
    try:
        for key in stored_keys(record):
            replica.extend_lock(key, until)
    except StorageUnavailable:
        logger.warning(
            "could not extend the replica copy's lock",
            extra={"clinic": schema, "backup_id": str(record.id)},
        )
        svc.metrics.add("ReplicaLockExtendFailed", 1, "Count")
        return
    svc.records.set_replica_retain_until(schema, record.id, until)
    logger.info(
        "replica lock extended",
        extra={"clinic": schema, "backup_id": str(record.id), "retain_until": until.isoformat()},
    )


def _delete_copy(
    svc: Services, schema: str, keys: list[str], backup_id: uuid.UUID, what: str, outcome: str
) -> bool:
    """Delete every version of one copy in the replica, audited; False (logged) while the
    store still refuses it (locked: a later sweep tries again)."""
    if not svc.replica_scoped(schema).delete_versions(keys):
        logger.info(
            f"{what} still locked; left for a later sweep",
            extra={"clinic": schema, "backup_id": str(backup_id)},
        )
        return False
    audit_by(svc, schema, "system", "backup.purge", outcome, backup_id=backup_id, objects=len(keys))
    return True


def purge_replica(svc: Services, schema: str, records: list[BackupRecord]) -> int:
    """Delete the replica copies of purged backups whose lock has expired; a copy still
    locked is left for a later sweep. Returns how many copies went."""
    if svc.replica is None:
        return 0
    gone = 0
    for record in records:
        if _delete_copy(
            svc, schema, stored_keys(record), record.id, "replica copy", "replica_purged"
        ):
            svc.records.clear_replicated(schema, record.id)
            gone += 1
    return gone


def purge_superseded(svc: Services, schema: str) -> int:
    """Delete the replica copies no record points at any more (a re-encryption's previous
    generation) once their lock has passed; the store refusing (still locked) leaves them
    for a later sweep. Returns how many generations went."""
    if svc.replica is None:
        return 0
    gone = 0
    for copy in svc.records.superseded_purgeable(schema, svc.clock.now()):
        if _delete_copy(
            svc,
            schema,
            copy.keys,
            copy.backup_id,
            "superseded replica copy",
            "replica_superseded_purged",
        ):
            svc.records.forget_superseded(schema, copy.id)
            gone += 1
    return gone


def count_lagging(svc: Services, schema: str) -> int:
    """Completed backups finished more than REPLICA_LAG_MINUTES ago with no replica copy."""
    if svc.replica is None:
        return 0
    before = svc.clock.now() - timedelta(minutes=svc.config.replica_lag_minutes)
    return svc.records.unreplicated_since(schema, before)
