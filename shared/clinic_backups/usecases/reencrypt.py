"""Re-encrypt a backup for the clinic's current keys.

A backup made before the clinic registered a key can only be opened by the platform, so its
download is refused (`encryption_key_required`). An admin can ask for it to be re-encrypted:
`POST /backups/{id}/reencrypt` takes the clinic's operation lock, flags the backup and queues
a job; the restore worker (which holds the platform's identities) then streams

    stored object ─► sha256 check ─► age decrypt ─► archive check (plaintext_sha256)
                  ─► age encrypt (platform + every clinic key now) ─► sha256 ─► new object

into a NEW key (a new generation of the file name: a signed URL is bound to its key, so a key
is never reused for a different file), reads the new object back to verify its checksum, and
only then points the record and a new manifest at it and removes the old object. Any failure
leaves the old object and record exactly as they were.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from dataclasses import replace
from typing import Any

from clinic_backups.domain.errors import (
    ApiError,
    BackupNotCompleted,
    EncryptionKeyRequired,
    LeaseLost,
)
from clinic_backups.domain.models import (
    BackupRecord,
    BackupStatus,
    Permission,
    ReencryptJob,
    TenantContext,
)
from clinic_backups.domain.names import (
    backup_file_name,
    backup_storage_key,
    check_key_in_prefix,
    manifest_key,
)
from clinic_backups.domain.parts import leftover_keys, open_stored, stored_keys, upload_archive
from clinic_backups.domain.streams import HashingReader
from clinic_backups.observability import logger
from clinic_backups.usecases import keys
from clinic_backups.usecases.archive import ChecksumReader, open_archive
from clinic_backups.usecases.backups import (
    ARCHIVE_CONTENT_TYPE,
    LeasedRun,
    leased_run,
    new_lease,
    object_limit,
)
from clinic_backups.usecases.context import (
    Services,
    audit,
    audit_by,
    authorize,
    job_clinic,
    parse_id,
    visible,
)
from clinic_backups.usecases.lease import guarded

_GENERATION = re.compile(r"-g(\d+)\.dump")


def request_reencrypt(svc: Services, ctx: TenantContext, raw_id: str) -> BackupRecord:
    """`POST /backups/{id}/reencrypt` (admins: `manage_encryption_keys`) → 202."""
    backup_id = parse_id(raw_id)
    authorize(svc, ctx, Permission.MANAGE_KEYS, "backup.reencrypt", backup_id)
    record = visible(svc, ctx, backup_id)
    refusal: ApiError | None = None
    if record.status != BackupStatus.COMPLETED or record.encryption != "age":
        refusal = BackupNotCompleted("Only completed, encrypted backups can be re-encrypted.")
    elif not svc.keys.list(ctx.schema):
        refusal = EncryptionKeyRequired(
            "Register your clinic's encryption key first; the backup is then re-encrypted for it."
        )
    if refusal is not None:
        # Refused like every other request: audited with its reason before the answer.
        audit(svc, ctx, "backup.reencrypt", "rejected", backup_id, reason=refusal.code)
        raise refusal
    assert svc.dispatcher is not None
    check_key_in_prefix(record.storage_key, ctx.schema)
    try:
        flagged = svc.records.start_reencrypt(ctx.schema, backup_id, svc.clock.now())
    except ApiError as error:
        audit(svc, ctx, "backup.reencrypt", "rejected", backup_id, reason=error.code)
        raise
    try:
        svc.dispatcher.enqueue(
            ReencryptJob(kind="reencrypt", schema=ctx.schema, backup_id=backup_id)
        )
    except ApiError:
        svc.records.finish_reencrypt(ctx.schema, backup_id)
        audit(svc, ctx, "backup.reencrypt", "rejected", backup_id, reason="queue")
        raise
    audit(svc, ctx, "backup.reencrypt", "accepted", backup_id)
    return flagged


def _next_generation(file_name: str) -> int:
    match = _GENERATION.search(file_name)
    return int(match.group(1)) + 1 if match else 1


def run_reencrypt_job(svc: Services, job: ReencryptJob) -> BackupRecord | None:
    schema = job.schema_name
    log = {"clinic": schema, "backup_id": str(job.backup_id)}
    if not job_clinic(svc, schema, "re-encryption", log):
        return None
    # The claim: the re-encryption's lock row takes this run's lease (a second delivery, or a
    # run after a takeover, finds no lock row without one).
    lease = new_lease(svc)
    if not svc.records.claim_reencrypt(schema, job.backup_id, lease):
        logger.info("re-encryption not pending (a repeated delivery); skipped", extra=log)
        return None
    record = svc.records.get(schema, job.backup_id)
    assert record is not None
    with leased_run(svc, schema, lease, log, backup_id=str(record.id)) as run:
        return _reencrypt(run, record)


def _reencrypt(run: LeasedRun, record: BackupRecord) -> BackupRecord | None:
    svc, schema, lease, beat, log = run
    storage = svc.scoped(schema)
    generation = _next_generation(record.file_name)
    new_key = backup_storage_key(schema, record.id, record.created_at, generation=generation)
    new_name = backup_file_name(schema, record.id, record.created_at, generation=generation)
    written = False
    try:
        recipients = keys.recipients_for(svc, schema)
        keys.check_recipients(svc, recipients)
        with open_archive(svc, schema, record) as archive:
            encrypted = svc.cipher.encrypt(archive.stream, [r["public_key"] for r in recipients])
            hashed = HashingReader(encrypted)
            written = True
            try:
                # Split as a new backup would be, under today's limits.
                parts = upload_archive(
                    storage,
                    new_key,
                    guarded(io.BufferedReader(hashed, 1024 * 1024), beat),
                    ARCHIVE_CONTENT_TYPE,
                    limit=object_limit(svc, storage),
                    split=svc.config.split_archives,
                )
            finally:
                encrypted.close()
            if not (hashed.at_eof and archive.verified()):
                raise BackupNotCompleted("the backup could not be read to its end")
        sha256, size = hashed.hexdigest(), hashed.size
        # Read the new object back: it replaces the old one only once it is known good.
        with open_stored(storage, replace(record, storage_key=new_key, parts=parts)) as body:
            check = ChecksumReader(body, sha256, size, what="re-encrypted file")
            while check.read(1024 * 1024):
                pass
        manifest = _manifest(storage, record, new_key, new_name, sha256, size, recipients)
        manifest["parts"] = parts
        storage.put_bytes(
            manifest_key(new_key), json.dumps(manifest, indent=2).encode(), "application/json"
        )
        beat.stop()
        # Refused (LeaseLost) when the lease was taken over: the record keeps the old object.
        done = svc.records.finish_reencrypt(
            schema,
            record.id,
            storage_key=new_key,
            file_name=new_name,
            size_bytes=size,
            sha256=sha256,
            recipients=recipients,
            lease=lease,
            parts=parts,
            # A replica copy of the old objects stays locked: remembered for the purge.
            superseded_keys=stored_keys(record),
        )
    except BaseException as error:
        # BaseException: a native panic must not leave the backup flagged and the clinic
        # locked either; an interrupt is cleaned up after the same way, then goes on.
        beat.stop()
        logger.warning(
            "re-encryption failed; the backup is unchanged",
            extra={**log, "reason": type(error).__name__},
        )
        if written:
            _remove_new(storage, new_key)
        if isinstance(error, LeaseLost):
            return svc.records.get(schema, record.id)  # the taker cleared the flag and audited
        with contextlib.suppress(LeaseLost):
            svc.records.finish_reencrypt(schema, record.id, lease=lease)
        audit_by(
            svc,
            schema,
            "system",
            "backup.reencrypt",
            "failed",
            backup_id=record.id,
            error=type(error).__name__,
        )
        if isinstance(error, KeyboardInterrupt | SystemExit):
            raise
        return svc.records.get(schema, record.id)
    _remove(storage, stored_keys(record))
    audit_by(
        svc,
        schema,
        "system",
        "backup.reencrypt",
        "completed",
        backup_id=record.id,
        recipients=[r["fingerprint"] for r in recipients],
    )
    logger.info("backup re-encrypted", extra={**log, "generation": generation})
    from clinic_backups.usecases.replica import queue_replication

    queue_replication(svc, schema, record.id)
    return done


def _manifest(
    storage: Any,
    record: BackupRecord,
    key: str,
    name: str,
    sha256: str,
    size: int,
    recipients: list[dict[str, Any]],
) -> dict[str, Any]:
    """The old manifest with the new file's facts, so a rebuild finds the new object."""
    manifest: dict[str, Any] = json.loads(storage.get_bytes(manifest_key(record.storage_key)))
    manifest.update(
        {
            "storage_key": key,
            "file_name": name,
            "sha256": sha256,
            "size_bytes": size,
            "recipients": recipients,
        }
    )
    return manifest


def _remove_new(storage: Any, key: str) -> None:
    """What the failed re-encryption may have written: the new object or its parts, and
    its manifest."""
    try:
        found = leftover_keys(storage, key)
    except Exception:
        found = [key, manifest_key(key)]
    _remove(storage, found)


def _remove(storage: Any, keys_to_remove: list[str]) -> None:
    if not keys_to_remove:
        return
    try:
        storage.delete(keys_to_remove)
    except Exception:
        logger.warning("could not remove objects after re-encryption")
