"""In-memory `ObjectStorage` and `ReplicaStorage`: one bucket of bytes, with the contract of
adapters/s3.py (a failed upload leaves nothing under its key, a missing object is
`StorageObjectMissing` on read and None on head, deletes of missing keys are quiet)."""

from __future__ import annotations

import builtins
import io
from collections.abc import Iterator
from datetime import datetime
from typing import BinaryIO

from clinic_backups.domain.errors import StorageObjectMissing, StorageUnavailable
from clinic_backups.domain.ports import ObjectInfo, PendingUpload

from tests.fakes.clock import FakeClock


class FakeStorage:
    def __init__(self, clock: FakeClock, size_limit: int | None = None):
        self.clock = clock
        self.objects: dict[str, bytes] = {}
        self.modified: dict[str, datetime] = {}
        self.uploads: list[PendingUpload] = []
        self.size_limit = size_limit
        self.signed: list[tuple[str, int, str]] = []
        # a test makes the store unreachable
        self.down = False

    def _up(self) -> None:
        if self.down:
            raise StorageUnavailable()

    def _store(self, key: str, data: bytes) -> None:
        self.objects[key] = data
        self.modified[key] = self.clock.now()

    def upload_stream(self, key: str, stream: BinaryIO, content_type: str) -> None:
        self._up()
        chunks = []
        while chunk := stream.read(64 * 1024):
            chunks.append(chunk)  # a failing read leaves nothing under `key`
        self._store(key, b"".join(chunks))

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        self._up()
        self._store(key, data)

    def copy(self, source: str, target: str) -> None:
        self._up()
        self._store(target, self.get_bytes(source))

    def object_size_limit(self) -> int | None:
        return self.size_limit

    def get_bytes(self, key: str) -> bytes:
        self._up()
        if key not in self.objects:
            raise StorageObjectMissing(key)
        return self.objects[key]

    def open_read(self, key: str) -> BinaryIO:
        return io.BytesIO(self.get_bytes(key))

    def head(self, key: str) -> ObjectInfo | None:
        self._up()
        if key not in self.objects:
            return None
        return ObjectInfo(key, len(self.objects[key]), self.modified[key])

    def signed_download_url(self, key: str, ttl_seconds: int, file_name: str) -> str:
        self._up()
        self.signed.append((key, ttl_seconds, file_name))
        return f"https://store.test/{key}?ttl={ttl_seconds}&signature=fake"

    def delete(self, keys: builtins.list[str]) -> None:
        self._up()
        for key in keys:
            self.objects.pop(key, None)
            self.modified.pop(key, None)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        self._up()
        for key in sorted(self.objects):
            if key.startswith(prefix):
                yield ObjectInfo(key, len(self.objects[key]), self.modified[key])

    def pending_uploads(self, prefix: str) -> builtins.list[PendingUpload]:
        self._up()
        return [u for u in self.uploads if u.key.startswith(prefix)]

    def abort_upload(self, key: str, upload_id: str) -> None:
        self._up()
        self.uploads = [u for u in self.uploads if (u.key, u.upload_id) != (key, upload_id)]


class FakeReplica(FakeStorage):
    """The replica bucket: objects may carry a lock date; a locked object cannot be deleted."""

    def __init__(self, clock: FakeClock, object_lock: bool = True):
        super().__init__(clock)
        self.object_lock = object_lock
        self.locks: dict[str, datetime] = {}

    def upload_locked(
        self, key: str, stream: BinaryIO, content_type: str, retain_until: datetime | None
    ) -> None:
        self.upload_stream(key, stream, content_type)
        if self.object_lock and retain_until is not None:
            self.locks[key] = retain_until

    def extend_lock(self, key: str, retain_until: datetime) -> None:
        self._up()
        if self.object_lock and retain_until > self.locks.get(key, retain_until.min):
            self.locks[key] = retain_until

    def delete_versions(self, keys: builtins.list[str]) -> bool:
        self._up()
        now = self.clock.now()
        if any(self.locks.get(k) is not None and self.locks[k] > now for k in keys):
            return False
        for key in keys:
            self.locks.pop(key, None)
        self.delete(keys)
        return True
