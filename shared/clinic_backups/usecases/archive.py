"""The read path: a stored backup opened as a plaintext archive stream, its sha256 checked on the
way. Restores, verifications and the operator CLI read backups only through `open_archive`.

    storage object ─► ChecksumReader (sha256 + size of the *stored* bytes)
                   ─► svc.cipher.decrypt (age, the platform's identities)
                   ─► ChecksumReader (`plaintext_sha256` of the archive inside) ─► you

The first hash covers exactly the bytes in storage (what the record's `sha256` and a download
describe), so it sits before decryption; the second checks the archive inside against what
the worker saw when it made the backup. A mismatch — a damaged or tampered object, one
byte too many or too few — raises `ChecksumMismatch` from the read that would have returned
the end of the stream: a consumer that commits only at the end (the restore's swap) never
commits a wrong archive.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

from clinic_backups.domain.errors import (
    ArchiveInvalid,
    BackupNotCompleted,
    ChecksumMismatch,
    ConfigurationError,
    FileMissing,
    StorageObjectMissing,
)
from clinic_backups.domain.models import BackupRecord, BackupStatus
from clinic_backups.domain.names import check_key_in_prefix
from clinic_backups.domain.parts import open_stored
from clinic_backups.domain.streams import ChunkReader

if TYPE_CHECKING:
    from clinic_backups.usecases.context import Services


class ChecksumReader(ChunkReader):
    """sha256 and size of every byte read through it, compared with the record at the end."""

    def __init__(self, source: Any, sha256: str, size: int | None, what: str = "stored file"):
        super().__init__()
        self._source = source
        self._expected = sha256
        self._size = size
        self._what = what
        self._hash = hashlib.sha256()
        self.bytes = 0
        self.verified = False

    def read_chunk(self, size: int) -> bytes:
        """The next bytes as the store gave them (no copy into a buffer of ours)."""
        data: bytes = self._source.read(size)
        if not data:
            self._at_end()
            return b""
        self.bytes += len(data)
        if self._size is not None and self.bytes > self._size:
            raise ChecksumMismatch(
                f"the {self._what} is larger than the backup's recorded size (tampered?)"
            )
        self._hash.update(data)
        return data

    def _at_end(self) -> None:
        if self.verified:
            return
        if self._size is not None and self.bytes != self._size:
            raise ChecksumMismatch(
                f"the {self._what} has {self.bytes} bytes, the backup {self._size} (truncated?)"
            )
        if self._hash.hexdigest() != self._expected:
            raise ChecksumMismatch(f"the {self._what} does not match the backup's sha256")
        self.verified = True

    def close(self) -> None:
        if not self.closed:
            close = getattr(self._source, "close", None)
            if close is not None:
                close()
        super().close()


@dataclass
class OpenedArchive:
    """`stream`: the plaintext archive (what pg_restore reads); `checksum`: the stored bytes'
    check (`checksum.verified` once the last byte matched the record)."""

    stream: BinaryIO
    checksum: ChecksumReader
    record: BackupRecord
    # Encrypted backups: the decryption stage and the archive's own check.
    decrypted: Any = None
    plaintext: ChecksumReader | None = None

    def verified(self) -> bool:
        return self.checksum.verified and (self.plaintext is None or self.plaintext.verified)

    def drain(self) -> None:
        """Read what is left of the stored bytes (after the consumer stopped, or failed):
        ChecksumMismatch when they do not match the record."""
        while self.checksum.read(1024 * 1024):
            pass

    def close(self) -> None:
        self.stream.close()
        if self.decrypted is not None:
            self.decrypted.close()
        self.checksum.close()

    def __enter__(self) -> OpenedArchive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_archive(svc: Services, schema: str, record: BackupRecord) -> OpenedArchive:
    """Open one of the clinic's completed backups for reading (see the module docstring)."""
    if record.status != BackupStatus.COMPLETED or not record.sha256 or record.size_bytes is None:
        raise BackupNotCompleted(f"The backup is {record.status.value}; it cannot be read.")
    check_key_in_prefix(record.storage_key, schema)
    try:
        # One object, or a split backup's parts read one after the other (each key checked).
        # The replica's copy when the primary's is missing or damaged (replica.read_source).
        from clinic_backups.usecases.replica import read_source

        storage, _ = read_source(svc, schema, record, "read")
        body = open_stored(storage, record)
    except StorageObjectMissing:
        from clinic_backups.usecases.backups import note_file_missing

        note_file_missing(svc, schema, record)
        raise FileMissing("the backup's file is no longer in storage; nothing changed") from None
    checksum = ChecksumReader(body, record.sha256, record.size_bytes)
    if record.encryption == "none":
        return OpenedArchive(stream=checksum, checksum=checksum, record=record)  # type: ignore[arg-type]
    if record.encryption != "age":
        checksum.close()
        raise ArchiveInvalid(f"the backup's encryption ({record.encryption}) is not supported")
    if not svc.config.platform_identities:
        checksum.close()
        raise ConfigurationError("PLATFORM_AGE_IDENTITIES is needed to read encrypted backups")
    # Every identity the platform ever used: a rotation must not strand older backups. Its
    # reads raise on a wrong key, a tampered chunk or a cut file before the end of the stream.
    decrypted = svc.cipher.decrypt(checksum, svc.config.platform_identities)
    plaintext = (
        ChecksumReader(decrypted, record.plaintext_sha256, None, what="archive inside")
        if record.plaintext_sha256
        else None
    )
    return OpenedArchive(
        stream=plaintext or decrypted,  # type: ignore[arg-type]
        checksum=checksum,
        record=record,
        decrypted=decrypted,
        plaintext=plaintext,
    )


T = TypeVar("T")


def verify_stored(
    svc: Services, schema: str, record: BackupRecord, read: Callable[[BinaryIO], T]
) -> T:
    """Read the whole stored object and check it before anything uses it: the sha256 (and
    size) of the stored bytes, age's authentication of every chunk, the archive inside against
    `plaintext_sha256`, and its structure (`read`: pg_restore over every block). A damaged or
    tampered object is `ChecksumMismatch` — also when it shows first as a chunk age cannot
    authenticate or a block pg_restore cannot read: the rest of the stored bytes is read to
    tell a damaged object (mismatch) from a sound one that is not a valid archive."""
    with open_archive(svc, schema, record) as archive:
        try:
            result = read(archive.stream)
        except ArchiveInvalid:
            archive.drain()
            raise
        archive.drain()
        if not archive.verified():
            raise ChecksumMismatch("the stored file does not match the backup's sha256")
    return result
