"""Object storage on any S3-compatible store (AWS S3, SeaweedFS, MinIO, R2, Supabase's S3
endpoint), with boto3.

Uploads stream through boto3's managed transfer (multipart for anything above one chunk):
memory is bounded by `chunk size × in-memory chunks`, whatever the object's size, and when
the source stream raises (pg_dump failed, the archive check refused it) the transfer aborts
the multipart upload, so no object and no unfinished upload is left behind.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, BinaryIO

from clinic_backups.domain.errors import StorageUnavailable
from clinic_backups.domain.ports import ObjectInfo, PendingUpload
from clinic_backups.observability import logger

MB = 1024 * 1024
# S3's part numbers: one object holds at most this many parts.
MAX_UPLOAD_PARTS = 10_000
# CopyObject copies up to 5 GiB in one request; larger objects are copied part by part.
COPY_IN_ONE_REQUEST = 5 * 1024 * MB


def _too_large(error: Exception) -> bool:
    """The store refused the object's size: `EntityTooLarge`, or HTTP 413 alone (Supabase's
    namespaced XML errors leave botocore's `Error.Code` empty)."""
    response = getattr(error, "response", None) or {}
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    code = response.get("Error", {}).get("Code") or response.get("Code")
    return status == 413 or code == "EntityTooLarge"


def _refused_as_too_large() -> Exception:
    from clinic_backups.domain.errors import StorageObjectTooLarge

    logger.warning("storage refused the object as too large", extra={"code": "EntityTooLarge"})
    return StorageObjectTooLarge(
        "the storage refused the encrypted archive as too large (EntityTooLarge): its limit is "
        "lower than the one the backup was split for; set STORAGE_MAX_OBJECT_MB to the "
        "project's upload limit, or raise it (see docs/deployment.md)"
    )


def _is_missing(error: Any) -> bool:
    """A 404 (NoSuchKey) answer. Read from the HTTP status as well as the error code: since
    v1.67.15 Supabase's S3 errors are `<Error xmlns=...>`, which botocore does not parse, so
    its `Error.Code` is empty there (the code is left at the top of the response)."""
    response = getattr(error, "response", None) or {}
    code = response.get("Error", {}).get("Code") or response.get("Code")
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in ("NoSuchKey", "404", "NotFound") or status == 404


def _storage_error(error: Exception) -> StorageUnavailable:
    response = getattr(error, "response", None) or {}
    code = response.get("Error", {}).get("Code")
    logger.warning(
        "storage call failed", extra={"storage_error": type(error).__name__, "code": code}
    )
    return StorageUnavailable("Storage is unavailable; try again later.")


class _StorageCall:
    """One boto3 call's errors as the port's: a ClientError `expected` marks (a missing
    object, a version the lock keeps) is swallowed and `happened` set; one `translate` names
    becomes that error; any other botocore error is StorageUnavailable (logged by type and
    code, nothing of it in the message)."""

    def __init__(
        self,
        expected: Callable[[Any], bool] | None = None,
        translate: Callable[[Any], BaseException | None] | None = None,
    ):
        self.expected = expected
        self.translate = translate
        self.happened = False

    def __enter__(self) -> _StorageCall:
        return self

    def __exit__(self, kind: Any, error: BaseException | None, tb: Any) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        if isinstance(error, ClientError):
            if self.expected is not None and self.expected(error):
                self.happened = True
                return True
            mapped = self.translate(error) if self.translate is not None else None
            raise (mapped or _storage_error(error)) from None
        if isinstance(error, BotoCoreError):
            raise _storage_error(error) from None
        return False


_allocator_tuned = False


def _return_part_buffers_to_the_os() -> None:
    """Keep the worker's memory flat whatever the object's size.

    Each part of a multipart upload is a multi-MB buffer freed by one of s3transfer's threads.
    glibc raises its mmap threshold after such frees, so later part buffers come from
    per-thread arenas that keep growing (measured here: 101 MB peak for a 50 MB upload, 119 MB
    for 300 MB). A fixed threshold keeps large buffers mmapped and returns them on free
    (101 MB for both). No-op where glibc is not the allocator.
    """
    global _allocator_tuned
    if _allocator_tuned:
        return
    _allocator_tuned = True
    try:
        import ctypes

        m_mmap_threshold = -3
        ctypes.CDLL("libc.so.6").mallopt(m_mmap_threshold, 128 * 1024)
    except (OSError, AttributeError):
        pass


@dataclass(frozen=True)
class S3Endpoint:
    """Where and as whom a bucket is reached: the endpoint (None: AWS), the one signed URLs
    name (a browser's view of it; None: the same), the region, the keys (None: boto3's
    credential chain), the multipart part size."""

    url: str | None = None
    public_url: str | None = None
    region: str = "us-east-1"
    access_key_id: str | None = None
    secret_access_key: str | None = None
    chunk_mb: int = 8
    path_style: bool = True


class S3Storage:
    """The `ObjectStorage` port on an S3 bucket."""

    def __init__(self, bucket: str, client: Any = None, endpoint: S3Endpoint | None = None):
        self.bucket = bucket
        self._client = client
        self._signer: Any = None
        self._endpoint = endpoint or S3Endpoint()
        self._chunk = self._endpoint.chunk_mb * MB

    def _make_client(self, endpoint_url: str | None) -> Any:
        import boto3
        from botocore.config import Config

        # The production wire format (Supabase's S3 endpoint, over HTTPS) is plain bodies:
        # boto3 >= 1.36 would otherwise send every upload `aws-chunked` with a CRC32 trailer
        # (Supabase has broken on it: storage #849, #906, #809) and verify CRCs on reads. The
        # product hashes and checks the whole object itself (sha256 on its record), and TLS
        # carries the bytes intact, so neither checksums nor a SHA-256 of each body in the
        # signature (`payload_signing_enabled`; only honoured over HTTPS, plain HTTP still
        # signs the payload) buy anything but CPU (~0.25 s per 123 MiB for the CRC alone).
        config = Config(
            signature_version="s3v4",
            s3={
                "addressing_style": "path" if self._endpoint.path_style else "auto",
                "payload_signing_enabled": False,
            },
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=5,
            read_timeout=60,
        )
        return boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=self._endpoint.region,
            aws_access_key_id=self._endpoint.access_key_id,
            aws_secret_access_key=self._endpoint.secret_access_key,
            config=config,
        )

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self._make_client(self._endpoint.url)
        return self._client

    @property
    def signer(self) -> Any:
        """The client that signs download URLs (another host name when the browser needs one)."""
        if self._endpoint.public_url is None:
            return self.client
        if self._signer is None:
            self._signer = self._make_client(self._endpoint.public_url)
        return self._signer

    def _transfer_config(self) -> Any:
        from boto3.s3.transfer import TransferConfig

        config = TransferConfig(
            multipart_threshold=self._chunk,
            multipart_chunksize=self._chunk,
            max_concurrency=2,
            use_threads=True,
            preferred_transfer_client="classic",
        )
        # A non-seekable stream is buffered part by part; this caps the parts held in memory
        # (s3transfer's default of 10 would allow 80 MB at 8 MB parts).
        config.max_in_memory_upload_chunks = 2
        return config

    def upload_stream(self, key: str, stream: BinaryIO, content_type: str) -> None:
        _return_part_buffers_to_the_os()
        config = self._transfer_config()
        with _StorageCall(translate=lambda e: _refused_as_too_large() if _too_large(e) else None):
            self.client.upload_fileobj(
                stream, self.bucket, key, ExtraArgs={"ContentType": content_type}, Config=config
            )

    def object_size_limit(self) -> int:
        """S3's own cap: 10,000 parts of the chunk size."""
        return MAX_UPLOAD_PARTS * self._chunk

    def copy(self, source: str, target: str) -> None:
        from boto3.s3.transfer import TransferConfig

        config = TransferConfig(
            multipart_threshold=COPY_IN_ONE_REQUEST,
            multipart_chunksize=1024 * MB,
            max_concurrency=2,
        )
        with _StorageCall():
            self.client.copy(
                {"Bucket": self.bucket, "Key": source}, self.bucket, target, Config=config
            )

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        with _StorageCall():
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)

    def get_bytes(self, key: str) -> bytes:
        with self.open_read(key) as body:
            return body.read()

    def open_read(self, key: str) -> BinaryIO:
        from clinic_backups.domain.errors import StorageObjectMissing

        with _StorageCall(
            translate=lambda e: StorageObjectMissing(key) if _is_missing(e) else None
        ):
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        raise AssertionError("unreachable")  # pragma: no cover  (the call raised or returned)

    def head(self, key: str) -> ObjectInfo | None:
        with _StorageCall(expected=_is_missing) as call:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        if call.happened:
            return None
        return ObjectInfo(
            key=key, size=head["ContentLength"], last_modified=head.get("LastModified")
        )

    def signed_download_url(self, key: str, ttl_seconds: int, file_name: str) -> str:
        with _StorageCall():
            return str(
                self.signer.generate_presigned_url(
                    "get_object",
                    Params={
                        "Bucket": self.bucket,
                        "Key": key,
                        "ResponseContentDisposition": f'attachment; filename="{file_name}"',
                        "ResponseContentType": "application/octet-stream",
                    },
                    ExpiresIn=ttl_seconds,
                )
            )
        raise AssertionError("unreachable")  # pragma: no cover  (the call raised or returned)

    def delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):
            batch = keys[start : start + 1000]
            with _StorageCall():
                answer = self.client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
                )
            if answer.get("Errors"):
                raise _storage_error(RuntimeError("some objects were not deleted"))

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        with _StorageCall():
            for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix
            ):
                for item in page.get("Contents", []):
                    yield ObjectInfo(
                        key=item["Key"], size=item["Size"], last_modified=item.get("LastModified")
                    )

    def pending_uploads(self, prefix: str) -> builtins.list[PendingUpload]:
        uploads = []
        with _StorageCall():
            # Paged (1,000 a page): the sweeper lists the whole bucket at once.
            for page in self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=prefix
            ):
                uploads += [
                    PendingUpload(key=u["Key"], upload_id=u["UploadId"], initiated=u["Initiated"])
                    for u in page.get("Uploads", [])
                ]
        return uploads

    def abort_upload(self, key: str, upload_id: str) -> None:
        with _StorageCall():
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)


def _locked(error: Any) -> bool:
    """The store refused to remove a version because its Object Lock still holds (AWS and
    SeaweedFS answer 403 AccessDenied)."""
    response = getattr(error, "response", None) or error or {}
    code = response.get("Error", {}).get("Code") or response.get("Code")
    return code == "AccessDenied"


class S3Replica(S3Storage):
    """The `ReplicaStorage` port: an S3 bucket in another store (another account, another
    provider) whose objects carry an Object Lock in compliance mode. The bucket is created
    with Object Lock enabled, hence versioned: a plain DELETE only hides an object behind a
    delete marker, so the purge deletes versions, which the lock refuses until it expires
    (measured on SeaweedFS 4.48: docs/decisions.md)."""

    def __init__(self, bucket: str, client: Any, endpoint: S3Endpoint, object_lock: bool):
        super().__init__(bucket, client, endpoint)
        self.object_lock = object_lock

    def upload_locked(
        self, key: str, stream: BinaryIO, content_type: str, retain_until: datetime | None
    ) -> None:
        _return_part_buffers_to_the_os()
        extra: dict[str, Any] = {"ContentType": content_type}
        if self.object_lock and retain_until is not None:
            extra["ObjectLockMode"] = "COMPLIANCE"
            extra["ObjectLockRetainUntilDate"] = retain_until
        with _StorageCall():
            self.client.upload_fileobj(
                stream, self.bucket, key, ExtraArgs=extra, Config=self._transfer_config()
            )

    def extend_lock(self, key: str, retain_until: datetime) -> None:
        if not self.object_lock:
            return
        with _StorageCall():
            current = self.client.get_object_retention(Bucket=self.bucket, Key=key)
            until = current.get("Retention", {}).get("RetainUntilDate")
            if until is not None and until >= retain_until:
                return  # compliance mode never shortens; nothing to do
            self.client.put_object_retention(
                Bucket=self.bucket,
                Key=key,
                Retention={"Mode": "COMPLIANCE", "RetainUntilDate": retain_until},
            )

    def delete_versions(self, keys: builtins.list[str]) -> bool:
        for key in keys:
            with _StorageCall(expected=_locked) as call:
                listed = self.client.list_object_versions(Bucket=self.bucket, Prefix=key)
                versions = [
                    {"Key": v["Key"], "VersionId": v["VersionId"]}
                    for v in [*listed.get("Versions", []), *listed.get("DeleteMarkers", [])]
                    if v["Key"] == key
                ]
                if not versions:
                    continue
                answer = self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": versions, "Quiet": True}
                )
            if call.happened:
                return False
            errors = answer.get("Errors") or []
            if any(_locked(e) for e in errors):
                return False
            if errors:
                raise _storage_error(RuntimeError("some versions were not deleted"))
        return True
