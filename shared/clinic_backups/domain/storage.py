"""A clinic's view of object storage: every call asserts the key lies under `<schema>/`.

The domain only ever talks to storage through `ScopedStorage`, so a key that does not start
with the verified clinic's prefix (a bug, a tampered record) is never signed, read, listed or
deleted.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from datetime import datetime
from typing import BinaryIO

from clinic_backups.domain.names import check_key_in_prefix, clinic_prefix
from clinic_backups.domain.ports import ObjectInfo, ObjectStorage, PendingUpload, ReplicaStorage


class ScopedStorage:
    def __init__(self, storage: ObjectStorage, schema: str):
        self._storage = storage
        self.schema = schema
        self.prefix = clinic_prefix(schema)

    def _check(self, key: str) -> str:
        return check_key_in_prefix(key, self.schema)

    def upload_stream(self, key: str, stream: BinaryIO, content_type: str) -> None:
        self._storage.upload_stream(self._check(key), stream, content_type)

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        self._storage.put_bytes(self._check(key), data, content_type)

    def copy(self, source: str, target: str) -> None:
        self._storage.copy(self._check(source), self._check(target))

    def object_size_limit(self) -> int | None:
        return self._storage.object_size_limit()

    def get_bytes(self, key: str) -> bytes:
        return self._storage.get_bytes(self._check(key))

    def open_read(self, key: str) -> BinaryIO:
        return self._storage.open_read(self._check(key))

    def head(self, key: str) -> ObjectInfo | None:
        return self._storage.head(self._check(key))

    def signed_download_url(self, key: str, ttl_seconds: int, file_name: str) -> str:
        return self._storage.signed_download_url(self._check(key), ttl_seconds, file_name)

    def delete(self, keys: list[str]) -> None:
        self._storage.delete([self._check(k) for k in keys])

    def list(self, prefix: str | None = None) -> Iterator[ObjectInfo]:
        """The clinic's objects, or those under `prefix` (itself under the clinic's)."""
        prefix = self.prefix if prefix is None else self._check(prefix)
        for info in self._storage.list(prefix):
            # A store that ignores the prefix must still not leak another clinic's keys.
            if info.key.startswith(prefix):
                yield info

    def pending_uploads(self) -> builtins.list[PendingUpload]:
        return [
            u for u in self._storage.pending_uploads(self.prefix) if u.key.startswith(self.prefix)
        ]

    def abort_upload(self, key: str, upload_id: str) -> None:
        self._storage.abort_upload(self._check(key), upload_id)


class ScopedReplica(ScopedStorage):
    """The clinic's view of the replica store: the same prefix rule on every key."""

    def __init__(self, storage: ReplicaStorage, schema: str):
        super().__init__(storage, schema)
        self._replica = storage

    def upload_locked(
        self, key: str, stream: BinaryIO, content_type: str, retain_until: datetime | None
    ) -> None:
        self._replica.upload_locked(self._check(key), stream, content_type, retain_until)

    def extend_lock(self, key: str, retain_until: datetime) -> None:
        self._replica.extend_lock(self._check(key), retain_until)

    def delete_versions(self, keys: builtins.list[str]) -> bool:
        return self._replica.delete_versions([self._check(k) for k in keys])
