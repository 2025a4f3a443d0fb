"""Domain errors.

Raised deep in the layer and mapped to HTTP in exactly one place (`clinic_backups.edge.api`).
Each API error carries a stable `code` from the list documented in `openapi.yaml`
(`ErrorCode`), a message and field details, and nothing of HTTP: the status for a code lives
in the edge's `STATUS_BY_CODE`, never chosen by message text.
Messages are safe to show to a clinic user: they never carry a token, a claim set, a
connection string or a signed URL.

Backup failures recorded on a record (`error_code`) are a separate, documented list
(`BackupErrorCode`): they describe why a worker run failed, not an HTTP answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True)
class FieldProblem:
    field: str
    message: str


class ApiError(Exception):
    """An error the API answers with `{"error": {"code", "message"}}`."""

    code: ClassVar[str] = "internal_error"
    default_message: ClassVar[str] = "Unexpected error."

    def __init__(self, message: str | None = None, details: list[FieldProblem] | None = None):
        self.message = message or self.default_message
        self.details = details or []
        super().__init__(self.message)


class BadRequest(ApiError):
    code = "bad_request"
    default_message = "The request is malformed."


class InvalidCursor(ApiError):
    code = "invalid_cursor"
    default_message = "The pagination cursor is not valid."


class MissingToken(ApiError):
    code = "missing_token"
    default_message = "Authentication is required."


class InvalidToken(ApiError):
    code = "invalid_token"
    default_message = "The access token is not valid."


class TokenExpired(ApiError):
    code = "token_expired"
    default_message = "The access token has expired."


class Forbidden(ApiError):
    code = "forbidden"
    default_message = "Your role does not allow this action."


class ClinicNotAvailable(ApiError):
    code = "clinic_not_available"
    default_message = "Your clinic is not available for backups."


class RouteNotFound(ApiError):
    code = "not_found"
    default_message = "No such route."


class BackupNotFound(ApiError):
    code = "backup_not_found"
    default_message = "No backup with that id exists in your clinic."


class OperationInProgress(ApiError):
    code = "operation_in_progress"
    default_message = "A backup or restore of this clinic is already in progress."


class BackupNotCompleted(ApiError):
    code = "backup_not_completed"
    default_message = "The backup is not completed."


class BackupPurged(ApiError):
    code = "backup_purged"
    default_message = (
        "This backup was permanently removed after its grace period and cannot be recovered."
    )


class BackupNotCancellable(ApiError):
    code = "backup_not_cancellable"
    default_message = "This backup has already finished and cannot be cancelled."


class BackupFileMissing(ApiError):
    """The backup's record is there but its file is not in storage (removed behind the
    product's back, or lost): said plainly, and the record is marked (`file_missing_at`)."""

    code = "backup_file_missing"
    default_message = "The file of this backup is no longer in storage."


class RestoreNotFound(ApiError):
    code = "restore_not_found"
    default_message = "No restore or verification with that id exists in your clinic."


class UndoNotAvailable(ApiError):
    code = "undo_not_available"
    default_message = (
        "This restore can no longer be undone: only the clinic's latest completed restore, "
        "within its undo window, can be."
    )


class VerificationUnavailable(ApiError):
    code = "verification_unavailable"
    default_message = (
        "Backup verification is not configured (no verification database); ask the operator."
    )


class PayloadTooLarge(ApiError):
    code = "payload_too_large"
    default_message = "The request body is too large."


class ValidationFailed(ApiError):
    code = "validation_error"
    default_message = "Some fields are not valid."


class KeyNotFound(ApiError):
    code = "key_not_found"
    default_message = "No encryption key with that id is registered for your clinic."


class EncryptionKeyRequired(ApiError):
    code = "encryption_key_required"
    default_message = (
        "This backup is encrypted only with the platform's key: register your clinic's "
        "encryption key, then ask for the backup to be re-encrypted for it."
    )


class KeyAlreadyRegistered(ApiError):
    code = "key_already_registered"
    default_message = "That public key is already registered for your clinic."


class PrivateKeyRefused(ApiError):
    code = "private_key_refused"
    default_message = (
        "That is a private key (AGE-SECRET-KEY-…): never share it. Register only the public "
        "key (age1…); keep the private key file safe on your side."
    )


class QuotaExceeded(ApiError):
    code = "quota_exceeded"
    default_message = "The clinic reached its daily limit of manual backups."


class ServiceUnavailable(ApiError):
    code = "service_unavailable"
    default_message = "A service the backups depend on is unavailable; try again later."


class ConfigurationError(Exception):
    """Settings are missing or invalid. Answered as a plain 500; the log names the fields."""


class CopiedBackupTables(ConfigurationError):
    """A clinic's `backup_*` tables are another schema's copy (django-tenants' clone_schema)
    and this role may not clean them: `clinic-backups grant` drops the copies."""


# --- backup run failures (stored on the record, not HTTP answers) -------------------------

BACKUP_ERROR_CODES = (
    "dump_failed",
    "dump_timeout",
    "archive_invalid",
    "foreign_objects_in_archive",
    "server_version_unsupported",
    "storage_failed",
    "storage_object_too_large",
    "encryption_failed",
    "clinic_not_available",
    "stale",
    # restores and verifications (the error_code of a restore job, or of a backup's check)
    "checksum_mismatch",
    "backup_file_missing",
    "missing_dependency",
    "restore_failed",
    "restore_interrupted",
    "clinic_busy",
    "pre_restore_backup_failed",
    "outside_dependents",
    "verification_failed",
    "verification_unavailable",
    "internal_error",
)


class BackupRunError(Exception):
    """A backup run failed for a reason the record should show (`error_code`, `error`)."""

    error_code: ClassVar[str] = "internal_error"

    def __init__(self, message: str):
        # Kept short: it is stored on the record and shown to the clinic.
        self.message = message[:500]
        super().__init__(self.message)


class DumpFailed(BackupRunError):
    error_code = "dump_failed"


class DumpTimeout(BackupRunError):
    error_code = "dump_timeout"


class ArchiveInvalid(BackupRunError):
    error_code = "archive_invalid"


class ForeignObjectsInArchive(BackupRunError):
    error_code = "foreign_objects_in_archive"


class ServerVersionUnsupported(BackupRunError):
    error_code = "server_version_unsupported"


class StorageFailed(BackupRunError):
    error_code = "storage_failed"


class StorageObjectTooLarge(BackupRunError):
    """The store refuses objects as large as the archive (Supabase's project or bucket upload
    limit, `EntityTooLarge`) and it could not be split under that limit (splitting is off, or
    it would take more parts than a backup may have). Nothing was kept."""

    error_code = "storage_object_too_large"


class EncryptionFailed(BackupRunError):
    """age could not encrypt the archive: a recipient it cannot encrypt to (the reason names
    the key), or the native library failed. Nothing was stored."""

    error_code = "encryption_failed"


class ClinicGone(BackupRunError):
    error_code = "clinic_not_available"


class ChecksumMismatch(BackupRunError):
    """The stored object's sha256 (or size) differs from its record: damaged or tampered."""

    error_code = "checksum_mismatch"


class FileMissing(BackupRunError):
    """The backup's file is not in storage (the record is marked `file_missing_at`)."""

    error_code = "backup_file_missing"


class MissingDependency(BackupRunError):
    """The archive needs an object of another schema (extension, type, table) that is gone."""

    error_code = "missing_dependency"


class RestoreFailed(BackupRunError):
    """The archive's SQL failed in the restore transaction; nothing changed."""

    error_code = "restore_failed"


class RestoreInterrupted(BackupRunError):
    """pg_restore or psql stopped, or the connection was lost; nothing changed."""

    error_code = "restore_interrupted"


class ClinicBusy(BackupRunError):
    """The clinic's tables could not be locked within RESTORE_LOCK_TIMEOUT."""

    error_code = "clinic_busy"


class OutsideDependents(BackupRunError):
    """Objects outside the clinic's schema (a view in `public`, a foreign key, a function)
    depend on its tables: the swap's rename would carry them to the kept schema and the
    sweeper's drop would drop them. Refused, naming them."""

    error_code = "outside_dependents"


class PreRestoreBackupFailed(BackupRunError):
    error_code = "pre_restore_backup_failed"


class LeaseLost(BackupRunError):
    """The job's lease on its clinic expired and was taken over (the taker failed the job as
    `stale`, with the reason): the job stops without committing anything."""

    error_code = "stale"


class BackupCancelled(Exception):
    """Someone cancelled the running backup (`POST /backups/{id}/cancel`); its heartbeat saw
    it. Not a failure: the worker stops, removes what it stored and ends the record
    `cancelled`."""


class VerificationFailed(BackupRunError):
    error_code = "verification_failed"


class VerificationNotConfigured(BackupRunError):
    error_code = "verification_unavailable"


class StorageUnavailable(ServiceUnavailable):
    """Object storage could not be reached or answered an unexpected error."""


class DatabaseUnavailable(ServiceUnavailable):
    """PostgreSQL could not be reached."""


class QueueUnavailable(ServiceUnavailable):
    """The job queue refused or could not take a job."""


class StorageObjectMissing(Exception):
    """An object the records point at is not in storage."""


class ForeignKeyPrefix(Exception):
    """A storage key outside the caller's clinic prefix reached a storage call: a bug, refused."""
