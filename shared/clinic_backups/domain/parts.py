"""Archives larger than the store accepts in one object, stored as numbered parts.

Supabase refuses any object above the project's upload limit or the bucket's
`file_size_limit` (`EntityTooLarge`, also for multipart uploads), and S3's 10,000 part numbers
cap one object at 10,000 × the part size. A backup's encrypted stream is therefore written in
segments of at most that limit: an archive that fits stays ONE object under its usual key
(`….dump.age`, as every backup before); a longer one becomes `….dump.age.part001`,
`….dump.age.part002`… (zero-padded: they sort), listed in the record's `parts` and in the
manifest with the size and sha256 of each. The record's `sha256` and `size_bytes` stay those
of the whole stream: joined, the parts are exactly the file an unsplit backup would be.

Memory stays flat: each segment streams through the store's multipart upload; the split
point is found by reading one byte past the limit, carried into the next segment. The first
segment is uploaded under the unsplit key (nothing says yet that it will not be the only one)
and copied to `part001` inside the store once a second one follows.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable
from typing import Any, BinaryIO

from clinic_backups.domain.errors import StorageObjectTooLarge
from clinic_backups.domain.models import BackupRecord
from clinic_backups.domain.names import check_key_in_prefix, manifest_key
from clinic_backups.domain.storage import ScopedStorage
from clinic_backups.domain.streams import ChunkReader

PART_DIGITS = 3
MAX_PARTS = 10**PART_DIGITS - 1
PART_SUFFIX = ".part"
MB = 1_000_000


def part_key(key: str, number: int) -> str:
    """`<key>.part001`: also the part's download name when `key` is the file name."""
    if not 1 <= number <= MAX_PARTS:
        raise ValueError("part number out of range")
    return f"{key}{PART_SUFFIX}{number:0{PART_DIGITS}d}"


def object_keys(record: BackupRecord) -> list[str]:
    """The objects that hold the backup's bytes, in order."""
    if record.parts:
        return [str(part["key"]) for part in record.parts]
    return [record.storage_key]


def stored_keys(record: BackupRecord) -> list[str]:
    """Every object of the backup: its bytes and its manifest."""
    return [*object_keys(record), manifest_key(record.storage_key)]


def describe_limit(limit: int) -> str:
    return f"{limit / MB:.1f} MB ({limit} bytes)"


def effective_limit(limits: Iterable[int | None]) -> int | None:
    """The smallest of the limits that are known (None: no limit is known)."""
    known = [limit for limit in limits if limit]
    return min(known) if known else None


class _Segment(io.RawIOBase):
    """At most `limit` bytes of `source` (after `carry`), hashed; at its end it reads one byte
    more to learn whether the stream goes on (`more`). With `refuse` set, a stream that goes
    on raises StorageObjectTooLarge instead: the upload then aborts, and nothing is kept."""

    def __init__(self, source: Any, limit: int, carry: bytes = b"", refuse: str | None = None):
        super().__init__()
        self._source = source
        self._left = limit
        self._carry = carry
        self._refuse = refuse
        self._hash = hashlib.sha256()
        self.size = 0
        self.more = b""
        self._ended = False

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        """Exactly `size` bytes (all that is left when None or negative) unless the segment
        or the stream ends first: s3transfer takes a short read for the end of the stream."""
        want = self._left if size is None or size < 0 else min(size, self._left)
        pieces = []
        while want > 0 and not self._ended:
            if self._carry:
                data, self._carry = self._carry[:want], self._carry[want:]
            else:
                data = self._source.read(want)
            if not data:
                self._ended = True
                break
            pieces.append(data)
            want -= len(data)
            self._left -= len(data)
            self.size += len(data)
            self._hash.update(data)
        if not pieces:
            self.finish()
        return b"".join(pieces)

    def finish(self) -> None:
        """At the segment's end: read one byte more to learn whether the stream goes on
        (the consumer may stop reading once it has the segment's length)."""
        if self._ended or self._left > 0:
            return
        self._ended = True
        self.more = self._carry[:1] or self._source.read(1)
        if self.more and self._refuse:
            raise StorageObjectTooLarge(self._refuse)

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer)
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def part(self, key: str) -> dict[str, Any]:
        return {"key": key, "size_bytes": self.size, "sha256": self._hash.hexdigest()}


def upload_archive(
    storage: ScopedStorage,
    key: str,
    stream: BinaryIO,
    content_type: str,
    *,
    limit: int | None,
    split: bool,
) -> list[dict[str, Any]] | None:
    """Store `stream` under `key`, or as parts of at most `limit` bytes when it is longer
    (`split`); the parts, or None when it is one object. Without `split`, a stream longer than
    the limit fails with StorageObjectTooLarge. On any failure the caller removes what may
    have been stored (`leftover_keys`)."""
    if limit is None:
        storage.upload_stream(key, stream, content_type)
        return None
    refuse = None
    if not split:
        refuse = (
            f"the encrypted archive is larger than the storage's object size limit, "
            f"{describe_limit(limit)}, and splitting archives is off: set "
            f"STORAGE_SPLIT_ARCHIVES=true, or raise the bucket's file_size_limit and the "
            f"project's upload limit (see docs/deployment.md)"
        )
    first = _Segment(stream, limit, refuse=refuse)
    storage.upload_stream(key, first, content_type)  # type: ignore[arg-type]
    first.finish()
    if not first.more:
        return None
    parts = [first.part(part_key(key, 1))]
    storage.copy(key, parts[0]["key"])
    storage.delete([key])
    carry = first.more
    while carry:
        number = len(parts) + 1
        if number > MAX_PARTS:
            raise StorageObjectTooLarge(
                f"the encrypted archive would need more than {MAX_PARTS} parts of "
                f"{describe_limit(limit)}: raise the bucket's file_size_limit and the "
                f"project's upload limit (STORAGE_MAX_OBJECT_MB; see docs/deployment.md)"
            )
        segment = _Segment(stream, limit, carry=carry)
        storage.upload_stream(part_key(key, number), segment, content_type)  # type: ignore[arg-type]
        segment.finish()
        parts.append(segment.part(part_key(key, number)))
        carry = segment.more
    return parts


def leftover_keys(storage: ScopedStorage, key: str) -> list[str]:
    """What a failed or abandoned write of `key` may have left: the object, its manifest and
    any of its parts (found by listing; the key itself is checked first)."""
    check_key_in_prefix(key, storage.schema)
    keys = [key, manifest_key(key)]
    keys += [
        info.key
        for info in storage.list(key + PART_SUFFIX)
        if info.key.startswith(key + PART_SUFFIX)
    ]
    return keys


class _Joined(ChunkReader):
    """The parts read one after the other, as one stream (one part open at a time)."""

    def __init__(self, storage: ScopedStorage, keys: list[str]):
        super().__init__()
        self._storage = storage
        self._keys = list(keys)
        self._body: Any = None

    def read_chunk(self, size: int) -> bytes:
        while True:
            if self._body is None:
                if not self._keys:
                    return b""
                self._body = self._storage.open_read(self._keys.pop(0))
            data: bytes = self._body.read(size)
            if data:
                return data
            self._body.close()
            self._body = None

    def close(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None
        super().close()


def open_stored(storage: ScopedStorage, record: BackupRecord) -> BinaryIO:
    """The backup's stored bytes as one stream, whether one object or parts. Every key is
    checked against the clinic's prefix before the first read."""
    keys = [check_key_in_prefix(k, storage.schema) for k in object_keys(record)]
    if len(keys) == 1:
        return storage.open_read(keys[0])
    return _Joined(storage, keys)  # type: ignore[return-value]
