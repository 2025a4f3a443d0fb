"""Object storage on Supabase Storage.

- Large uploads go through Supabase Storage's S3 endpoint
  (`https://<ref>.storage.supabase.co/storage/v1/s3`, path style, SigV4, S3 access keys) with
  boto3 multipart, because storage3's `upload()` needs bytes or a real file (not a stream),
  is meant for ≤ 6 MB and has no resumable upload (BRIEF). Reads and listings use it too.
- Download URLs are Supabase signed URLs from storage3 `create_signed_url` with the download
  file name; deletes go through storage3 `remove` (exact names, ≤ 1,000 per call).
storage3 is imported on first use only: `import supabase` costs ~200 ms of cold start and the
functions need nothing but storage.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from datetime import datetime
from typing import Any, BinaryIO

from clinic_backups.adapters.s3 import S3Storage
from clinic_backups.domain.errors import StorageUnavailable
from clinic_backups.domain.ports import ObjectInfo, PendingUpload
from clinic_backups.observability import logger


def _api_error(error: Exception) -> StorageUnavailable:
    # StorageApiError.status is a string ("404", "403", ...); network errors are httpx's own.
    status = getattr(error, "status", None)
    logger.warning(
        "supabase storage call failed",
        extra={"storage_error": type(error).__name__, "status": str(status)},
    )
    return StorageUnavailable("Storage is unavailable; try again later.")


class SupabaseStorage:
    """The `ObjectStorage` port on Supabase Storage (storage3 + its S3 endpoint)."""

    def __init__(
        self,
        bucket: str,
        s3: S3Storage,
        supabase_url: str,
        service_key: str,
        storage_client: Any = None,
    ):
        self.bucket = bucket
        self._s3 = s3
        self._url = supabase_url.rstrip("/")
        self._key = service_key
        self._client = storage_client

    @property
    def _storage_api(self) -> Any:
        if self._client is None:
            from storage3 import SyncStorageClient

            self._client = SyncStorageClient(
                url=f"{self._url}/storage/v1/",
                headers={"apikey": self._key, "Authorization": f"Bearer {self._key}"},
            )
        return self._client

    @property
    def _bucket_api(self) -> Any:
        return self._storage_api.from_(self.bucket)

    def signed_download_url(self, key: str, ttl_seconds: int, file_name: str) -> str:
        import httpx
        from storage3.utils import StorageException

        from clinic_backups.domain.errors import StorageObjectMissing

        try:
            answer = self._bucket_api.create_signed_url(key, ttl_seconds, {"download": file_name})
        except (StorageException, httpx.HTTPError) as error:
            # Supabase answers a missing object with HTTP 400 and statusCode "404" (a string).
            if str(getattr(error, "status", "")) == "404":
                raise StorageObjectMissing(key) from None
            raise _api_error(error) from None
        return str(answer["signedURL"])

    def delete(self, keys: list[str]) -> None:
        import httpx
        from storage3.utils import StorageException

        for start in range(0, len(keys), 1000):
            try:
                self._bucket_api.remove(keys[start : start + 1000])
            except (StorageException, httpx.HTTPError) as error:
                raise _api_error(error) from None

    def object_size_limit(self) -> int | None:
        """The bucket's `file_size_limit` (`GET /bucket/{id}`), within S3's own cap. The
        project's upload limit is not in the API (`STORAGE_MAX_OBJECT_MB`). When the bucket
        cannot be read, S3's cap alone (the backup goes on; a refusal then says what to set)."""
        import httpx
        from storage3.utils import StorageException

        cap = self._s3.object_size_limit()
        try:
            bucket = self._storage_api.get_bucket(self.bucket)
        except (StorageException, httpx.HTTPError, ValueError, TypeError, KeyError) as error:
            # Not knowing the bucket's limit must not fail the backup.
            _api_error(error)
            return cap
        limit = getattr(bucket, "file_size_limit", None)
        # None or 0: the bucket has no limit of its own.
        return min(cap, int(limit)) if limit else cap

    # The rest goes through the S3 endpoint.

    def copy(self, source: str, target: str) -> None:
        self._s3.copy(source, target)

    def upload_stream(self, key: str, stream: BinaryIO, content_type: str) -> None:
        self._s3.upload_stream(key, stream, content_type)

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        self._s3.put_bytes(key, data, content_type)

    def get_bytes(self, key: str) -> bytes:
        return self._s3.get_bytes(key)

    def open_read(self, key: str) -> BinaryIO:
        return self._s3.open_read(key)

    def head(self, key: str) -> ObjectInfo | None:
        """Through the Storage API (`GET /object/info/{bucket}/{key}`, storage3's `info`), not
        the S3 endpoint: a download's existence check then needs storage3 only, which signs
        the URL anyway, and the download function's cold start never imports boto3."""
        import httpx
        from storage3.utils import StorageException

        try:
            info = self._bucket_api.info(key)
        except (StorageException, httpx.HTTPError) as error:
            # storage3's own `exists` rule: a missing object is statusCode "404" with error
            # "not_found" (or a 404 without a parsable body); a missing bucket or a refused
            # key is also a "404" but is the store failing, not the object.
            missing = getattr(error, "code", None) in ("not_found", "InternalError")
            if str(getattr(error, "status", "")) == "404" and missing:
                return None
            raise _api_error(error) from None
        modified = info.get("last_modified") or info.get("updated_at")
        return ObjectInfo(
            key=key,
            size=int(info["size"]),
            last_modified=datetime.fromisoformat(modified) if modified else None,
        )

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        return self._s3.list(prefix)

    def pending_uploads(self, prefix: str) -> builtins.list[PendingUpload]:
        return self._s3.pending_uploads(prefix)

    def abort_upload(self, key: str, upload_id: str) -> None:
        self._s3.abort_upload(key, upload_id)
