"""The read path: a stored backup opened as a plaintext archive stream, its sha256 checked on the
way. Restores, verifications and the operator CLI read backups only through `open_archive`.

    storage object ─► ChecksumReader (sha256 + size of the *stored* bytes) ─► [decrypt] ─► you

The hash covers exactly the bytes in storage (what the record's `sha256` and a download
describe), so it sits before any decryption. A mismatch — a damaged or tampered object, one
byte too many or too few — raises `ChecksumMismatch` from the read that would have returned
the end of the stream: a consumer that commits only at the end (the restore's swap) never
commits a wrong archive.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from .errors import ArchiveInvalid, BackupNotCompleted, ChecksumMismatch
from .models import BackupRecord, BackupStatus
from .names import check_key_in_prefix

if TYPE_CHECKING:
    from .service import Services


class ChecksumReader(io.RawIOBase):
    """sha256 and size of every byte read through it, compared with the record at the end."""

    def __init__(self, source: Any, sha256: str, size: int):
        super().__init__()
        self._source = source
        self._expected = sha256
        self._size = size
        self._hash = hashlib.sha256()
        self.bytes = 0
        self.verified = False

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        """The next bytes as the store gave them (no copy into a buffer of ours)."""
        if size is None or size < 0:
            chunks = []
            while chunk := self.read(1024 * 1024):
                chunks.append(chunk)
            return b"".join(chunks)
        data: bytes = self._source.read(size)
        if not data:
            self._at_end()
            return b""
        self.bytes += len(data)
        if self.bytes > self._size:
            raise ChecksumMismatch(
                "the stored file is larger than the backup's recorded size (tampered?)"
            )
        self._hash.update(data)
        return data

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer)
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def _at_end(self) -> None:
        if self.verified:
            return
        if self.bytes != self._size:
            raise ChecksumMismatch(
                f"the stored file has {self.bytes} bytes, the backup {self._size} (truncated?)"
            )
        if self._hash.hexdigest() != self._expected:
            raise ChecksumMismatch("the stored file does not match the backup's sha256")
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

    def verified(self) -> bool:
        return self.checksum.verified

    def close(self) -> None:
        self.stream.close()
        self.checksum.close()

    def __enter__(self) -> OpenedArchive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_archive(svc: Services, schema: str, record: BackupRecord) -> OpenedArchive:
    """Open one of the clinic's completed backups for reading (see the module docstring)."""
    if record.status != BackupStatus.COMPLETED or not record.sha256 or record.size_bytes is None:
        raise BackupNotCompleted(f"The backup is {record.status.value}; it cannot be read.")
    key = check_key_in_prefix(record.storage_key, schema)
    body = svc.scoped(schema).open_read(key)
    checksum = ChecksumReader(body, record.sha256, record.size_bytes)
    stream: io.RawIOBase = checksum
    # ---- decryption goes here: between the hash (stored bytes) and the consumer ----------
    # (e.g. `stream = DecryptStage(stream, identities)` for records with encryption "age";
    # its reads raise on a wrong key or a damaged file, before the end of the stream.)
    if record.encryption != "none":
        checksum.close()
        raise ArchiveInvalid(
            f"the backup is encrypted ({record.encryption}) and cannot be opened here"
        )
    return OpenedArchive(stream=stream, checksum=checksum, record=record)  # type: ignore[arg-type]
