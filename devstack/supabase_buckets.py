"""Buckets and upload limits of the Supabase Storage stand-in.

Supabase keeps a bucket's settings in ``storage.buckets`` (``public``, ``file_size_limit``,
``allowed_mime_types``) and the project's global upload limit in its tenant config (50 MB on
Free; 50 MB by default on Pro, raisable to 500 GB; not readable through the Storage API). The
stand-in keeps both here, shared by its REST API and its S3 endpoint so they enforce the same
limits, optionally persisted to a small JSON file that is re-read when it changes::

    {
      "global_file_size_limit": 52428800,
      "buckets": {
        "backups": {"public": false, "file_size_limit": 5000000,
                    "allowed_mime_types": ["application/octet-stream", "application/json"]}
      }
    }

A bucket exists when its S3 bucket does (objects live in S3 under the same names); a bucket
with no entry has Supabase's defaults (private, no size limit of its own, any MIME type).
Change settings as a Supabase user would, with ``PUT /bucket/{id}`` (storage3
``update_bucket``), or in process with :meth:`BucketRegistry.update`, or by editing the file.

Mirrors supabase/storage v1.70.6 (4fa61fba): ``src/storage/storage.ts`` (createBucket,
updateBucket, parseMaxSizeLimit, validateMimeType), ``src/storage/limits.ts`` (getFileSizeLimit,
parseFileSizeToBytes, isValidBucketName), ``src/storage/uploader.ts`` (validateMimeType,
getStandardMaxFileSizeLimit), ``src/storage/schemas/bucket.ts``.
"""

from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from devstack.supabase_errors import StorageError

__all__ = [
    "DEFAULT_GLOBAL_LIMIT",
    "Bucket",
    "BucketRegistry",
    "bucket_json",
    "is_valid_bucket_name",
    "parse_file_size",
    "validate_mime_type",
    "validate_mime_types",
]

DEFAULT_GLOBAL_LIMIT = 50 * 1024 * 1024  # UPLOAD_FILE_SIZE_LIMIT_STANDARD of .env.sample; Free
_UNSET: Any = object()
_VALID_BUCKET_NAME = re.compile(r"^[A-Za-z0-9_!.*'() &$=@;:+,?-]*$")
_FILE_SIZE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(gb|mb|kb|b)$", re.IGNORECASE)
_MIME_PATTERN = re.compile(
    r"^([a-zA-Z0-9\-+.]+)/([a-zA-Z0-9\-+.]+)(;\s*charset=[a-zA-Z0-9\-]+)?$|\*$"
)


@dataclass(frozen=True)
class Bucket:
    """A ``storage.buckets`` row (the columns the Buckets API answers with)."""

    id: str
    public: bool = False
    file_size_limit: int | None = None
    allowed_mime_types: tuple[str, ...] | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    owner: str | None = None

    @property
    def name(self) -> str:
        return self.id


def is_valid_bucket_name(name: str) -> bool:
    return 0 < len(name) < 101 and bool(_VALID_BUCKET_NAME.match(name))


def parse_file_size(value: int | float | str) -> int:
    """parseFileSizeToBytes: 20GB / 20MB / 30KB / 3B are decimal units (1 MB = 1,000,000)."""
    if isinstance(value, bool):
        raise StorageError.invalid_file_size_limit()
    if isinstance(value, int | float):
        return int(value)
    match = _FILE_SIZE.match(value)
    if not match:
        raise StorageError.invalid_file_size_limit()
    number = float(f"{float(match.group(1)):.3g}")  # +parseFloat(v).toPrecision(3)
    unit = match.group(2).upper()
    return int(number * {"GB": 1e9, "MB": 1e6, "KB": 1e3, "B": 1}[unit])


def validate_mime_types(types: list[str]) -> None:
    """Storage.validateMimeType: what a bucket's allowed_mime_types may hold."""
    for entry in types:
        if len(entry) > 1000 or not _MIME_PATTERN.match(entry):
            raise StorageError.invalid_mime_type(entry)


def validate_mime_type(mime_type: str, allowed: tuple[str, ...] | list[str]) -> None:
    """uploader.ts validateMimeType: type/subtype, or type/* in the list."""
    requested = mime_type.split("/")
    if len(requested) < 2:
        raise StorageError.invalid_mime_type(mime_type)
    kind, ext = requested[0], requested[1]
    for entry in allowed:
        allowed_kind, _, allowed_ext = entry.partition("/")
        if allowed_kind == kind and allowed_ext in ("*", ext):
            return
    raise StorageError.invalid_mime_type(mime_type)


def _iso(ts: datetime) -> str:
    ts = ts.astimezone(UTC)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


class BucketRegistry:
    """The stand-in's ``storage.buckets`` table and project limits, over an S3 store.

    ``s3`` is a boto3 client of the store the objects live in (the existence of a bucket and
    its creation time come from there). Thread-safe; with ``path`` the settings survive
    restarts and another process may change them by rewriting the file.
    """

    def __init__(
        self,
        s3: Any,
        *,
        global_file_size_limit: int = DEFAULT_GLOBAL_LIMIT,
        path: Path | str | None = None,
    ) -> None:
        self.s3 = s3
        self._global = global_file_size_limit
        self._settings: dict[str, dict[str, Any]] = {}
        self._path = Path(path) if path is not None else None
        self._mtime: float | None = None
        self._lock = threading.RLock()
        if self._path is not None:
            if self._path.exists():
                self._reload()
            else:
                self._save()

    # ------------------------------------------------------------------ persistence

    def _reload(self) -> None:
        assert self._path is not None
        try:
            mtime = self._path.stat().st_mtime
        except FileNotFoundError:
            return
        if mtime == self._mtime:
            return
        data = json.loads(self._path.read_text() or "{}")
        self._global = int(data.get("global_file_size_limit") or DEFAULT_GLOBAL_LIMIT)
        self._settings = {str(k): dict(v) for k, v in (data.get("buckets") or {}).items()}
        self._mtime = mtime

    def _save(self) -> None:
        if self._path is None:
            return
        data = {"global_file_size_limit": self._global, "buckets": self._settings}
        tmp = self._path.with_name(f".{self._path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, self._path)
        self._mtime = self._path.stat().st_mtime

    def _fresh(self) -> None:
        if self._path is not None:
            self._reload()

    # ------------------------------------------------------------------ the project limit

    @property
    def global_file_size_limit(self) -> int:
        """The project's upload limit (dashboard → Storage → Settings; not in the API)."""
        with self._lock:
            self._fresh()
            return self._global

    @global_file_size_limit.setter
    def global_file_size_limit(self, value: int) -> None:
        with self._lock:
            self._fresh()
            self._global = int(value)
            self._save()

    def max_file_size(self, bucket: Bucket) -> int:
        """limits.ts getFileSizeLimit (S3 multipart) and uploader.ts
        getStandardMaxFileSizeLimit (REST uploads, S3 PutObject): the smaller of the project's
        limit and the bucket's (a bucket limit of 0 or none does not count). The separate
        standard-upload cap (UPLOAD_FILE_SIZE_LIMIT_STANDARD) is not modelled: unset here."""
        limit = self.global_file_size_limit
        if bucket.file_size_limit:
            limit = min(limit, bucket.file_size_limit)
        return limit

    # ------------------------------------------------------------------ buckets

    def _s3_buckets(self) -> dict[str, datetime]:
        answer = self.s3.list_buckets()
        return {b["Name"]: b["CreationDate"] for b in answer.get("Buckets", [])}

    def _exists(self, bucket_id: str) -> bool:
        try:
            self.s3.head_bucket(Bucket=bucket_id)
            return True
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchBucket", "NotFound"):
                return False
            raise

    def _row(self, bucket_id: str, created: datetime | None) -> Bucket:
        settings = self._settings.get(bucket_id, {})
        created_at = created or datetime.now(UTC)
        updated = settings.get("updated_at")
        mime = settings.get("allowed_mime_types")
        return Bucket(
            id=bucket_id,
            public=bool(settings.get("public", False)),
            file_size_limit=settings.get("file_size_limit"),
            allowed_mime_types=tuple(mime) if mime is not None else None,
            created_at=created_at,
            updated_at=datetime.fromisoformat(updated) if updated else created_at,
        )

    def exists(self, bucket_id: str) -> bool:
        return self._exists(bucket_id)

    def get(self, bucket_id: str, *, dates: bool = True) -> Bucket | None:
        """The bucket, or None when its S3 bucket does not exist (findBucketById). Without
        ``dates`` the timestamps are not looked up (the upload paths need only the limits)."""
        if not self._exists(bucket_id):
            return None
        created = self._s3_buckets().get(bucket_id) if dates else None
        with self._lock:
            self._fresh()
            return self._row(bucket_id, created)

    def find(self, bucket_id: str, *, dates: bool = True) -> Bucket:
        """findBucket: NoSuchBucket when absent."""
        found = self.get(bucket_id, dates=dates)
        if found is None:
            raise StorageError.no_such_bucket()
        return found

    def list(self) -> list[Bucket]:
        with self._lock:
            self._fresh()
            return [self._row(name, created) for name, created in self._s3_buckets().items()]

    def _apply(
        self,
        bucket_id: str,
        *,
        public: Any,
        file_size_limit: Any,
        allowed_mime_types: Any,
    ) -> None:
        settings = dict(self._settings.get(bucket_id, {}))
        if public is not _UNSET and public is not None:
            settings["public"] = bool(public)
        if file_size_limit is not _UNSET:
            if file_size_limit is None:
                settings["file_size_limit"] = None
            else:
                size = parse_file_size(file_size_limit)
                if size > self._global:  # parseMaxSizeLimit
                    raise StorageError.entity_too_large()
                settings["file_size_limit"] = size
        if allowed_mime_types is not _UNSET:
            if allowed_mime_types:
                validate_mime_types(list(allowed_mime_types))
                settings["allowed_mime_types"] = [m for m in allowed_mime_types if m]
            else:
                settings["allowed_mime_types"] = allowed_mime_types
        settings["updated_at"] = datetime.now(UTC).isoformat()
        self._settings[bucket_id] = settings
        self._save()

    def update(
        self,
        bucket_id: str,
        *,
        public: Any = _UNSET,
        file_size_limit: Any = _UNSET,
        allowed_mime_types: Any = _UNSET,
    ) -> Bucket:
        """Storage.updateBucket. Sizes may be bytes or "5MB"-style strings."""
        if not is_valid_bucket_name(bucket_id):
            raise StorageError.invalid_bucket_name(bucket_id)
        if not self._exists(bucket_id):
            raise StorageError.no_such_bucket()
        with self._lock:
            self._fresh()
            self._apply(
                bucket_id,
                public=public,
                file_size_limit=file_size_limit,
                allowed_mime_types=allowed_mime_types,
            )
        return self.find(bucket_id)

    def create(
        self,
        bucket_id: str,
        *,
        public: Any = False,
        file_size_limit: Any = _UNSET,
        allowed_mime_types: Any = _UNSET,
    ) -> Bucket:
        """Storage.createBucket: the S3 bucket and its settings."""
        if bucket_id.strip() != bucket_id or not is_valid_bucket_name(bucket_id):
            raise StorageError.invalid_bucket_name(bucket_id)
        if self._exists(bucket_id):
            raise StorageError.bucket_already_exists()
        with self._lock:
            self._fresh()
            # Validate before anything is created: a refused setting leaves no bucket.
            probe = BucketRegistry(self.s3, global_file_size_limit=self._global)
            probe._apply(
                bucket_id,
                public=public,
                file_size_limit=file_size_limit,
                allowed_mime_types=allowed_mime_types,
            )
            self.s3.create_bucket(Bucket=bucket_id)
            self._settings[bucket_id] = probe._settings[bucket_id]
            self._save()
        return self.find(bucket_id)

    def forget(self, bucket_id: str) -> None:
        """Drop a bucket's settings (back to Supabase's defaults)."""
        with self._lock:
            self._fresh()
            if self._settings.pop(bucket_id, None) is not None:
                self._save()

    def snapshot(self, bucket_id: str) -> dict[str, Any] | None:
        """The bucket's stored settings, for a test that restores them afterwards."""
        with self._lock:
            self._fresh()
            stored = self._settings.get(bucket_id)
            return dict(stored) if stored is not None else None

    def restore(self, bucket_id: str, settings: dict[str, Any] | None) -> None:
        with self._lock:
            self._fresh()
            if settings is None:
                self._settings.pop(bucket_id, None)
            else:
                self._settings[bucket_id] = dict(settings)
            self._save()


def bucket_json(bucket: Bucket, *, with_type: bool) -> dict[str, Any]:
    """bucketSchema through fast-json-stringify: a null ``owner`` (a bucket made with the
    service key) becomes "" in a ``type: string`` property; timestamps are Date.toISOString."""
    body: dict[str, Any] = {
        "id": bucket.id,
        "name": bucket.name,
        "owner": bucket.owner or "",
        "public": bucket.public,
    }
    if with_type:
        body["type"] = "STANDARD"
    body["file_size_limit"] = bucket.file_size_limit
    body["allowed_mime_types"] = (
        list(bucket.allowed_mime_types) if bucket.allowed_mime_types is not None else None
    )
    body["created_at"] = _iso(bucket.created_at)
    body["updated_at"] = _iso(bucket.updated_at)
    return body
