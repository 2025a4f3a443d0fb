"""A local stand-in for the Supabase Storage API, backed by a real S3 bucket.

Mirrors **supabase/storage v1.70.6** (tag ``v1.70.6``, commit 4fa61fba, 2026-08-21). Supabase's
own Storage server (Node, Postgres, Docker) cannot run here, so this module serves the REST
routes that storage3's sync client calls, with the response bodies, headers and error shapes
of that release, and keeps the objects in S3 (SeaweedFS in tests) exactly where Supabase's S3
endpoint shows them: Supabase bucket ``backups`` is S3 bucket ``backups``, object name = S3
key. Its S3 endpoint is ``devstack.supabase_s3`` (a proxy in front of the same S3 store that
enforces the same limits); bucket settings and the project's upload limit are
``devstack.supabase_buckets.BucketRegistry``, shared by both.

Source read file by file at that commit:
  - src/http/routes/object/: getSignedURL.ts, getSignedURLs.ts, getSignedObject.ts,
    getObject.ts, getObjectInfo.ts, createObject.ts, updateObject.ts, deleteObjects.ts,
    listObjects.ts, index.ts; src/http/routes/bucket/: getBucket.ts, getAllBuckets.ts,
    createBucket.ts, updateBucket.ts, index.ts
  - src/http/error-handler.ts, src/http/not-found-handler.ts, src/http/schemas/error.ts,
    src/http/plugins/jwt.ts, src/internal/errors/codes.ts and storage-error.ts,
    src/internal/auth/jwt.ts (jose 6: ``jwtVerify``; messages from panva/jose v6.2.3)
  - src/storage/object.ts (signObjectUrl, signObjectUrls, verifyObjectSignature,
    deleteObjects, searchObjects), src/storage/uploader.ts, src/storage/limits.ts,
    src/storage/storage.ts, src/storage/renderer/renderer.ts, head.ts and info.ts
  - storage3 2.34.1 ``_sync/file_api.py`` and ``_sync/bucket.py`` for what the client sends.

What changed since the stand-in's previous model (master of late 2024/early 2025):
  - Signed-URL tokens carry ``scope: "download"`` (v1.60.7+) next to ``url``; a token
    scoped for anything else (an upload token) is refused with InvalidSignature
    "Token is not scoped for download". Tokens have no ``typ`` header (jose's SignJWT).
  - JWTs are verified with jose, not jsonwebtoken: the messages are jose's
    ('"exp" claim timestamp check failed', 'signature verification failed',
    'Invalid Compact JWS', 'JWS Protected Header is invalid', ...).
  - Every error body has ``code``, validation errors too (``InvalidRequest``, v1.60.5+); the
    route-not-found answer is ``{"statusCode": "404", "error": "Not Found", "code":
    "InvalidRequest", ...}`` under /object and /bucket.
  - Downloads: ``Content-Disposition`` has no trailing ``;``; ``X-Robots-Tag: none``;
    ``Cache-Control`` only when the object has one; a vanished blob's 404 body has ``code``.
  - Object info has ``last_modified``. InvalidMimeType is statusCode "415".
  - Uploads are checked against min(project limit, bucket ``file_size_limit``) and the
    bucket's ``allowed_mime_types``; the key is validated after those checks.

Behaviour worth knowing (all as the real server does it):
  - Errors are JSON ``{"statusCode": "<status as string>", "code", "error", "message"}`` sent
    with HTTP **400** unless the error is a 500: a missing object is HTTP 400 with
    ``statusCode "404"``, ``code "NoSuchKey"``, ``error "not_found"``. storage3 turns that
    into ``StorageApiError(message, code=error, status=statusCode)``.
  - A bad bearer token is ``403 / AccessDenied / "Unauthorized"`` with jose's message; a bad
    signed-URL token is ``400 / InvalidJWT``; a token for another path ``400 /
    InvalidSignature``.
  - Signed URLs: ``{"signedURL": "/object/sign/<bucket>/<decoded path>?token=<HS256 JWT>"}``,
    payload ``{"url": "<bucket>/<path>", "scope": "download", "iat", "exp"}``. storage3
    appends ``&download=<name>`` itself; the GET answers ``Content-Disposition: attachment;
    filename=<urlencoded>; filename*=UTF-8''<urlencoded>`` (``attachment;`` for an empty
    name), plus ``Expires`` instead of ``Cache-Control``.
  - Downloads stream from S3 (Range, If-None-Match and If-Modified-Since pass through).
  - Buckets: ``GET /bucket/{id}`` answers the row (``id, name, owner, public,
    file_size_limit, allowed_mime_types, created_at, updated_at``; ``GET /bucket`` adds
    ``type``); a missing bucket is HTTP 400 ``{"statusCode": "404", "code": "NoSuchBucket",
    "error": "Bucket not found", "message": "Bucket not found"}``.

Routes (under ``/storage/v1``, like a project URL): POST/GET/HEAD ``/object/sign/{bucket}/{path}``,
POST ``/object/sign/{bucket}`` (create_signed_urls), POST ``/object/list/{bucket}``,
DELETE ``/object/{bucket}``, POST/PUT ``/object/{bucket}/{path}``,
GET/HEAD ``/object/{bucket}/{path}`` and ``/object/authenticated/{bucket}/{path}``,
GET ``/object/info/{bucket}/{path}`` and ``/object/info/authenticated/{bucket}/{path}``,
GET/POST ``/bucket``, GET/PUT ``/bucket/{id}``, GET ``/status``.

Left out, or different from the real server:
  - No Postgres, so no RLS: only the service key (or any HS256 JWT with
    ``role: service_role`` signed with the JWT secret) is accepted; other valid JWTs get
    AccessDenied. Public buckets are recorded but served like private ones.
  - Object rows are derived from S3: ``id`` = uuid5 of bucket/name (stable across
    overwrites, as the real upsert keeps the row id), ``version`` = uuid5 of the ETag and
    mtime, and ``created_at`` = ``updated_at`` = ``last_accessed_at`` = S3 LastModified.
  - Bucket delete/empty, move/copy, public and render/image routes, signed upload URLs, TUS,
    list-v2, image transformations (``transform`` is ignored), webhooks, the API gateway's
    own ``apikey`` checks and ``sb_secret_…`` keys, and hosted Supabase's separate
    URL-signing key with a ``kid`` (here signed-URL tokens are signed with the JWT secret, as
    on a self-hosted server without JWKS).
  - Multipart form uploads are read into memory (bounded by the upload limit); raw-body
    uploads are spooled to a temp file. Chunked (length-less) request bodies are refused with
    MissingContentLength; the real server streams them (storage3 always sends a length).
  - Fastify's body-parser errors (invalid JSON) are approximated.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import email.utils
import hmac
import json
import logging
import math
import os
import re
import signal
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import IO, Any, Protocol

import jwt
from botocore.exceptions import ClientError
from jwt.api_jws import PyJWS

from devstack.supabase_buckets import (
    DEFAULT_GLOBAL_LIMIT,
    BucketRegistry,
    bucket_json,
    validate_mime_type,
)
from devstack.supabase_errors import StorageError

__all__ = [
    "SIGNED_URL_SCOPE_DOWNLOAD",
    "StorageError",
    "SupabaseStorageFake",
    "mint_service_key",
    "sign_object_token",
]

log = logging.getLogger(__name__)

API_PREFIX = "/storage/v1"
SIGNED_URL_SCOPE_DOWNLOAD = "download"  # src/internal/auth/jwt.ts
MAX_OBJECTS_PER_REQUEST = 1000  # limits.ts: bulk deletes (enforceDeleteObjectsLimit)
_ID_NAMESPACE = uuid.UUID("6f1d3c52-3b2a-4c59-9a57-7f6a2f1bd0a1")
_S3_USER_METADATA_KEY = "supabase-user-metadata"
_STREAM_CHUNK = 1024 * 1024
_MAX_LIST_LIMIT = 1500  # storage.search() caps limits at 1500
_BEARER = re.compile(r"^Bearer\s+", re.IGNORECASE)
# limits.ts isValidKey: "only allow s3 safe characters and characters which require special
# handling"; Python's \w is Unicode-aware like JS's is not, so spell ASCII out.
_VALID_KEY = re.compile(r"^[A-Za-z0-9_/!\-.*'() &$@=;:+,?]+$")
_SORT_COLUMNS = ("name", "updated_at", "created_at", "last_accessed_at")
_BUCKET_SORT_COLUMNS = ("id", "name", "created_at", "updated_at")
_EMPTY_FOLDER = ".emptyFolderPlaceholder"
_FILE_SIZE_PATTERN = re.compile(r"^[0-9]+(?:\.[0-9]+)?(?:[gG][bB]|[mM][bB]|[kK][bB]|[bB])$")
_MISSING: Any = object()
_CLIENT_VERSIONS = {
    "storage3": (re.compile(r"supabase-py/storage3 v(\d+)\.(\d+)\.(\d+)", re.I), (0, 12, 1)),
    "supabase-py": (re.compile(r"supabase-py/(\d+)\.(\d+)\.(\d+)", re.I), (2, 18, 0)),
}


def _old_python_client(client_info: str, user_agent: str) -> bool:
    """limits.ts isClientVersionBefore: clients that choke on a bucket's ``type``."""
    for text, client in ((client_info, "supabase-py"), (user_agent, "storage3")):
        pattern, minimum = _CLIENT_VERSIONS[client]
        match = pattern.search(text)
        if match and tuple(int(g) for g in match.groups()) < minimum:
            return True
    return False


# --------------------------------------------------------------------------- errors


def no_such_key() -> StorageError:
    return StorageError.no_such_key()


def no_such_bucket() -> StorageError:
    return StorageError.no_such_bucket()


def validation_error(message: str) -> StorageError:
    return StorageError.validation(message)


def is_valid_key(key: str) -> bool:
    return bool(_VALID_KEY.match(key))


def _s3_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _s3_error(exc: ClientError) -> StorageError:
    err = exc.response.get("Error", {})
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 500)
    return StorageError.from_s3(status, str(err.get("Code") or ""), str(err.get("Message") or ""))


# --------------------------------------------------------------------------- tokens


class _JwtFailure(Exception):
    pass


_JWS = PyJWS()


def _b64url_json(segment: str) -> Any:
    padded = segment + "=" * (-len(segment) % 4)
    return json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))


def _verify_jwt(token: str, secret: str) -> dict[str, Any]:  # noqa: C901
    """jose's jwtVerify(token, secret, {algorithms: ['HS256']}), as src/internal/auth/jwt.ts
    calls it for a project without JWKS, with jose's checks in jose's order and its messages
    (jws/compact/verify.ts, jws/flattened/verify.ts, lib/jwt_claims_set.ts at v6.2.3).
    PyJWT does the signature check."""
    parts = token.split(".")
    if len(parts) != 3:
        raise _JwtFailure("Invalid Compact JWS")
    header_b64 = parts[0]
    header: Any = {}
    if header_b64:
        try:
            header = _b64url_json(header_b64)
        except (ValueError, UnicodeError, binascii.Error):
            raise _JwtFailure("JWS Protected Header is invalid") from None
    alg = header.get("alg") if isinstance(header, dict) else None
    if not isinstance(alg, str) or not alg:
        raise _JwtFailure('JWS "alg" (Algorithm) Header Parameter missing or invalid')
    if alg != "HS256":
        raise _JwtFailure('"alg" (Algorithm) Header Parameter value not allowed')
    try:
        raw_payload = _JWS.decode(token, secret, algorithms=["HS256"])
    except jwt.InvalidSignatureError:
        raise _JwtFailure("signature verification failed") from None
    except jwt.PyJWTError:
        # Never accepted: a segment PyJWT could not even decode.
        raise _JwtFailure("Failed to base64url decode the signature") from None
    try:
        payload = json.loads(raw_payload)
    except (ValueError, UnicodeError):
        payload = None
    if not isinstance(payload, dict):
        raise _JwtFailure("JWT Claims Set must be a top-level JSON object")
    now = int(time.time())

    def number(claim: str) -> float | None:
        value = payload.get(claim)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _JwtFailure(f'"{claim}" claim must be a number')
        return float(value)

    number("iat")
    nbf = number("nbf")
    if nbf is not None and nbf > now:
        raise _JwtFailure('"nbf" claim timestamp check failed')
    exp = number("exp")
    if exp is not None and exp <= now:
        raise _JwtFailure('"exp" claim timestamp check failed')
    return payload


def sign_object_token(
    jwt_secret: str,
    bucket: str,
    name: str,
    expires_in: int,
    *,
    scope: str | None = SIGNED_URL_SCOPE_DOWNLOAD,
) -> str:
    """The token of a signed download URL, as signObjectUrl mints it: jose's SignJWT with
    ``{url, scope}`` then ``iat`` and ``exp``, header ``{"alg": "HS256"}`` only.
    ``scope=None`` mints a legacy (pre-v1.60.7) token."""
    now = int(time.time())
    payload: dict[str, Any] = {"url": f"{bucket}/{name}"}
    if scope is not None:
        payload["scope"] = scope
    payload |= {"iat": now, "exp": now + int(expires_in)}
    return jwt.encode(payload, jwt_secret, algorithm="HS256", headers={"typ": None})


def mint_service_key(jwt_secret: str) -> str:
    """A service_role API key for `jwt_secret`, shaped like Supabase's legacy keys.

    Deterministic (fixed iat/exp) so the local stack can derive it from the secret alone.
    """
    payload = {
        "iss": "supabase-devstack",
        "role": "service_role",
        "iat": 1700000000,
        "exp": 2000000000,
    }
    return jwt.encode(payload, jwt_secret, algorithm="HS256")


# --------------------------------------------------------------------------- helpers


def _iso(ts: datetime) -> str:
    """JS Date.toISOString(): what node-pg timestamps become in the JSON responses."""
    ts = ts.astimezone(UTC)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def _http_date(ts: datetime | float) -> str:
    """JS Date.toUTCString()."""
    seconds = ts.timestamp() if isinstance(ts, datetime) else ts
    return email.utils.formatdate(seconds, usegmt=True)


_URI_RESERVED = frozenset(";/?:@&=+$,#")


def _decode_uri(text: str) -> str:
    """JS decodeURI: decode %XX escapes, except that escapes of reserved characters stay as
    written (so "%2F" is not turned into a path separator)."""

    def decode_run(match: re.Match[str]) -> str:
        out: list[str] = []
        pending = bytearray()  # bytes of an unfinished multi-byte UTF-8 character
        for esc in re.findall(r"%[0-9A-Fa-f]{2}", match.group(0)):
            byte = int(esc[1:], 16)
            if byte < 0x80:
                if pending:
                    out.append(pending.decode("utf-8", "replace"))
                    pending.clear()
                char = chr(byte)
                out.append(esc if char in _URI_RESERVED else char)
                continue
            pending.append(byte)
            try:
                out.append(pending.decode("utf-8"))
                pending.clear()
            except UnicodeDecodeError:
                if len(pending) >= 4:
                    out.append(pending.decode("utf-8", "replace"))
                    pending.clear()
        if pending:
            out.append(pending.decode("utf-8", "replace"))
        return "".join(out)

    return re.sub(r"(?:%[0-9A-Fa-f]{2})+", decode_run, text)


def _normalize_content_type(content_type: str | None) -> str | None:
    # renderer.ts: never serve stored HTML as HTML.
    if content_type and "text/html" in content_type:
        return "text/plain"
    return content_type


@dataclass
class _Route:
    method: str
    pattern: re.Pattern[str]
    handler: Callable[..., None]


class _Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


class _BoundedReader:
    """Reads at most `remaining` bytes of the request body."""

    def __init__(self, raw: _Readable, length: int) -> None:
        self._raw = raw
        self.remaining = length

    def read(self, size: int = -1) -> bytes:
        if self.remaining <= 0:
            return b""
        if size < 0 or size > self.remaining:
            size = self.remaining
        data = self._raw.read(size)
        self.remaining -= len(data)
        return data


# --------------------------------------------------------------------------- server


class SupabaseStorageFake:
    """Supabase Storage's object and bucket routes over HTTP, storing objects in S3.

    ``url`` is the project base URL (``http://127.0.0.1:<port>``); the Storage API lives at
    ``url + "/storage/v1"``, so both ``SyncStorageClient(f"{url}/storage/v1", headers)`` and
    ``supabase.create_client(url, key).storage`` work. ``buckets`` holds the buckets'
    settings and the project's upload limit (shared with the S3 endpoint,
    ``devstack.supabase_s3``); without one, a registry of its own with ``global_file_size_limit``.
    """

    def __init__(
        self,
        s3_client: Any,
        jwt_secret: str,
        service_key: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        buckets: BucketRegistry | None = None,
        global_file_size_limit: int = DEFAULT_GLOBAL_LIMIT,
    ) -> None:
        if not jwt_secret:
            raise ValueError("jwt_secret must not be empty")
        self.s3 = s3_client
        self.jwt_secret = jwt_secret
        self.service_key = service_key or mint_service_key(jwt_secret)
        self.host = host
        self.buckets = buckets or BucketRegistry(
            s3_client, global_file_size_limit=global_file_size_limit
        )
        self._requested_port = port
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("server not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def storage_url(self) -> str:
        return f"{self.url}{API_PREFIX}"

    def start(self) -> SupabaseStorageFake:
        if self._httpd is not None:
            return self
        handler = _make_handler(self)
        self._httpd = ThreadingHTTPServer((self.host, self._requested_port), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="supabase-storage-fake", daemon=True
        )
        self._thread.start()
        log.info("Supabase Storage fake at %s", self.storage_url)
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> SupabaseStorageFake:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ auth

    def authenticate(self, authorization: str | None, *, allow_invalid: bool = False) -> bool:
        """plugins/jwt.ts for a server without RLS. Returns whether the caller is the service.

        Raises the validation error for a missing header on routes whose schema requires it
        (allow_invalid=False), and AccessDenied for a bad token there.
        """
        if authorization is None and not allow_invalid:
            raise validation_error("headers must have required property 'authorization'")
        token = _BEARER.sub("", authorization or "")
        if not token and allow_invalid:
            return False
        if token and hmac.compare_digest(token.encode(), self.service_key.encode()):
            return True
        try:
            payload = _verify_jwt(token, self.jwt_secret)
        except _JwtFailure as exc:
            if allow_invalid:
                return False
            raise StorageError.access_denied(str(exc)) from None
        if payload.get("role") != "service_role":
            if allow_invalid:
                return False
            raise StorageError.access_denied(
                "this local Storage server has no RLS and serves the service_role key only"
            )
        return True

    # ------------------------------------------------------------------ S3 views

    def bucket_exists(self, bucket: str) -> bool:
        return self.buckets.exists(bucket)

    def head(self, bucket: str, name: str) -> dict[str, Any] | None:
        try:
            return dict(self.s3.head_object(Bucket=bucket, Key=name))
        except ClientError as exc:
            if _s3_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            if _s3_code(exc) in ("NoSuchBucket",):
                return None
            raise

    def find_object(self, bucket: str, name: str) -> dict[str, Any]:
        """storage.findObject: validates the key, NoSuchKey when absent."""
        if not is_valid_key(name):
            raise StorageError.invalid_key(name)
        head = self.head(bucket, name)
        if head is None:
            raise no_such_key()
        return head

    @staticmethod
    def object_id(bucket: str, name: str) -> str:
        return str(uuid.uuid5(_ID_NAMESPACE, f"{bucket}/{name}"))

    @staticmethod
    def object_metadata(head: dict[str, Any]) -> dict[str, Any]:
        """The `metadata` column the S3 backend fills from HeadObject (backend/s3 headObject)."""
        size = int(head.get("ContentLength", 0))
        return {
            "eTag": head.get("ETag"),
            "size": size,
            "mimetype": head.get("ContentType") or "application/octet-stream",
            "cacheControl": head.get("CacheControl") or "no-cache",
            "lastModified": _iso(head["LastModified"]),
            "contentLength": size,
            "httpStatusCode": 200,
        }

    @staticmethod
    def user_metadata(head: dict[str, Any]) -> Any:
        encoded = (head.get("Metadata") or {}).get(_S3_USER_METADATA_KEY)
        if not encoded:
            return None
        try:
            return json.loads(base64.b64decode(encoded))
        except (ValueError, TypeError):
            return None

    def object_row(self, bucket: str, name: str, head: dict[str, Any]) -> dict[str, Any]:
        """A storage.objects row as objectSchema serialises it (delete responses)."""
        ts = _iso(head["LastModified"])
        return {
            "name": name,
            "bucket_id": bucket,
            # fast-json-stringify writes null into a `type: string` property as "".
            "owner": "",
            "owner_id": "",
            "version": self.object_version(bucket, name, head),
            "id": self.object_id(bucket, name),
            "updated_at": ts,
            "created_at": ts,
            "last_accessed_at": ts,
            "metadata": self.object_metadata(head),
            "user_metadata": self.user_metadata(head),
        }

    @staticmethod
    def object_version(bucket: str, name: str, head: dict[str, Any]) -> str:
        stamp = f"{bucket}/{name}@{head.get('ETag')}:{head['LastModified'].timestamp()}"
        return str(uuid.uuid5(_ID_NAMESPACE, stamp))

    def iter_common_prefixes(self, bucket: str, prefix: str) -> Iterator[str]:
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
            for cp in page.get("CommonPrefixes", []):
                yield cp["Prefix"]

    def iter_level(self, bucket: str, prefix: str) -> Iterator[tuple[str, dict[str, Any] | None]]:
        """(relative name, S3 listing entry or None for a folder) one level below prefix."""
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
            for cp in page.get("CommonPrefixes", []):
                yield cp["Prefix"][len(prefix) :].rstrip("/"), None
            for item in page.get("Contents", []):
                yield item["Key"][len(prefix) :], item

    def search(
        self,
        bucket: str,
        prefix: str,
        *,
        limit: int,
        offset: int,
        search: str,
        column: str,
        order: str,
    ) -> list[dict[str, Any]]:
        """storage.search() (migration 0063) over S3 listings.

        The prefix is a folder; folders and files one level below it are returned with names
        relative to it; matching is case-insensitive like the SQL's lower()/ILIKE, so the
        folder path is walked level by level comparing lower-cased names.
        """
        if prefix and not prefix.endswith("/"):
            prefix += "/"  # object.ts searchObjects: "assuming prefix is always a folder"
        parents = [""]
        for part in prefix.split("/")[:-1]:
            wanted = part.lower()
            parents = [
                cp
                for parent in parents
                for cp in self.iter_common_prefixes(bucket, parent)
                if cp[len(parent) : -1].lower() == wanted
            ]
        needle = search.lower()
        folders: dict[str, str] = {}
        files: list[tuple[str, dict[str, Any]]] = []
        for parent in parents:
            for rel, item in self.iter_level(bucket, parent):
                if not rel or not rel.lower().startswith(needle):
                    continue
                if item is None:
                    folders.setdefault(rel.lower(), rel)
                else:
                    files.append((rel, item | {"_key": parent + rel}))

        descending = order == "desc"
        entries: list[tuple[str, dict[str, Any] | None]]
        if column == "name":
            # lower(name) COLLATE "C": a folder sorts where its first object ("name/...") does.
            keyed: list[tuple[str, tuple[str, dict[str, Any] | None]]]
            keyed = [(low + "/", (name, None)) for low, name in folders.items()]
            keyed += [(rel.lower(), (rel, item)) for rel, item in files]
            keyed.sort(key=lambda kv: kv[0].encode(), reverse=descending)
            entries = [entry for _, entry in keyed]
        else:
            folder_entries = sorted(
                folders.values(), key=lambda n: n.lower().encode(), reverse=descending
            )
            # All three timestamps are S3's LastModified here.
            file_entries = sorted(files, key=lambda f: f[1]["LastModified"], reverse=descending)
            entries = [(name, None) for name in folder_entries]
            entries += [(rel, item) for rel, item in file_entries]

        page = entries[offset : offset + min(limit, _MAX_LIST_LIMIT)]
        results: list[dict[str, Any]] = []
        for name, item in page:
            if item is None:
                results.append(
                    {
                        "name": name,
                        "id": None,
                        "updated_at": None,
                        "created_at": None,
                        "last_accessed_at": None,
                        "metadata": None,
                    }
                )
                continue
            # Listings carry no content type or cache control: head each file of the page.
            head = self.head(bucket, item["_key"])
            if head is None:  # deleted since the listing
                continue
            ts = _iso(head["LastModified"])
            results.append(
                {
                    "name": name,
                    "id": self.object_id(bucket, item["_key"]),
                    "updated_at": ts,
                    "created_at": ts,
                    "last_accessed_at": ts,
                    "metadata": self.object_metadata(head),
                }
            )
        return results


# --------------------------------------------------------------------------- HTTP layer


def _make_handler(server: SupabaseStorageFake) -> type[BaseHTTPRequestHandler]:
    class Handler(_StorageHandler):
        storage = server

    return Handler


class _StorageHandler(BaseHTTPRequestHandler):
    storage: SupabaseStorageFake
    # Keep-alive like the real server; every response carries Content-Length.
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle on, a keep-alive client waits
    # for the delayed ACK (~40 ms per request on loopback).
    disable_nagle_algorithm = True
    server_version = "supabase-storage-fake"

    _body_consumed: bool
    _routes: list[_Route] | None = None

    # ------------------------------------------------------------------ plumbing

    def log_message(self, format: str, *args: Any) -> None:
        # The request line carries signed-URL tokens: redact before logging.
        text = format % args
        log.debug("%s %s", self.address_string(), re.sub(r"token=[^&\s\"]+", "token=***", text))

    @classmethod
    def routes(cls) -> list[_Route]:
        if cls._routes is None:
            b = r"(?P<bucket>[^/]+)"
            w = r"(?P<path>.*)"
            table: list[tuple[str, str, Callable[..., None]]] = [
                ("GET", r"/status", cls.h_status),
                ("POST", rf"/object/sign/{b}/{w}", cls.h_sign),
                ("POST", rf"/object/sign/{b}", cls.h_sign_many),
                ("GET", rf"/object/sign/{b}/{w}", cls.h_signed_get),
                ("HEAD", rf"/object/sign/{b}/{w}", cls.h_signed_get),
                ("POST", rf"/object/list/{b}", cls.h_list),
                ("GET", rf"/object/info/authenticated/{b}/{w}", cls.h_info_auth),
                ("GET", rf"/object/info/{b}/{w}", cls.h_info),
                ("GET", rf"/object/authenticated/{b}/{w}", cls.h_get_auth),
                ("HEAD", rf"/object/authenticated/{b}/{w}", cls.h_get_auth),
                ("DELETE", rf"/object/{b}", cls.h_delete_many),
                ("POST", rf"/object/{b}/{w}", cls.h_create),
                ("PUT", rf"/object/{b}/{w}", cls.h_update),
                ("GET", rf"/object/{b}/{w}", cls.h_get),
                ("HEAD", rf"/object/{b}/{w}", cls.h_get),
                ("GET", r"/bucket/?", cls.h_list_buckets),
                ("POST", r"/bucket/?", cls.h_create_bucket),
                ("GET", rf"/bucket/{b}", cls.h_get_bucket),
                ("PUT", rf"/bucket/{b}", cls.h_update_bucket),
            ]
            cls._routes = [
                _Route(method, re.compile(pattern + r"\Z"), handler)
                for method, pattern, handler in table
            ]
        return cls._routes

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        self._body_consumed = False
        self._response_started = False
        raw_path, _, raw_query = self.path.partition("?")
        self.query = urllib.parse.parse_qs(raw_query, keep_blank_values=True)
        try:
            self._route(raw_path, raw_query)
        except Exception as exc:
            if self._response_started:
                # Headers (maybe part of a body) are out; all that is left is to hang up.
                log.warning("%s %s failed mid-response: %r", self.command, raw_path, exc)
                self.close_connection = True
                return
            self._send_error(exc, raw_path)

    def _route(self, raw_path: str, raw_query: str) -> None:
        if not raw_path.startswith(API_PREFIX + "/"):
            self._route_not_found(raw_path, raw_query)
            return
        self.raw_route_path = raw_path[len(API_PREFIX) :]
        for route in self.routes():
            if route.method != self.command:
                continue
            match = route.pattern.match(self.raw_route_path)
            if match:
                # find-my-way decodes params; the raw path stays available for signing.
                params = {k: urllib.parse.unquote(v) for k, v in match.groupdict().items()}
                route.handler(self, **params)
                return
        self._route_not_found(raw_path, raw_query)

    def _send_error(self, exc: Exception, raw_path: str) -> None:
        """error-handler.ts: renderable errors as rendered, S3 errors via fromError, else 500."""
        if isinstance(exc, BrokenPipeError | ConnectionResetError):
            self.close_connection = True
            return
        if isinstance(exc, ClientError):
            code = _s3_code(exc)
            if code == "NoSuchBucket":
                exc = no_such_bucket()
            elif code in ("NoSuchKey", "404", "NotFound"):
                exc = no_such_key()
            else:
                exc = _s3_error(exc)
        if not isinstance(exc, StorageError):
            log.error("unhandled error in %s %s", self.command, raw_path, exc_info=exc)
            exc = StorageError.internal()
        self._send_json(exc.http_status, exc.rest_body())

    def _route_not_found(self, raw_path: str, raw_query: str) -> None:
        """Kong strips /storage/v1, so the server names the route without it. Under /object
        and /bucket, not-found-handler.ts answers (with a code); elsewhere Fastify's default
        (statusCode a number there)."""
        route = raw_path[len(API_PREFIX) :] if raw_path.startswith(API_PREFIX) else raw_path
        url = route + (f"?{raw_query}" if raw_query else "")
        message = f"Route {self.command}:{url} not found"
        if route.startswith(("/object/", "/bucket/")) or route in ("/object", "/bucket"):
            error = StorageError(404, "InvalidRequest", message, "Not Found", http_status=404)
            self._send_json(404, error.rest_body())
            return
        self._send_json(404, {"message": message, "error": "Not Found", "statusCode": 404})

    def _content_length(self) -> int | None:
        value = self.headers.get("Content-Length")
        if value is None:
            return None
        try:
            return max(int(value), 0)
        except ValueError:
            return None

    def _drain_body(self, cap: int = 64 * 1024 * 1024) -> None:
        """Discard an unread request body so the connection stays usable; close it when the
        body is too big (or chunked) to bother."""
        if self._body_consumed:
            return
        self._body_consumed = True
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.close_connection = True
            return
        length = self._content_length() or 0
        if length > cap:
            self.close_connection = True
            return
        reader = _BoundedReader(self.rfile, length)
        while reader.read(_STREAM_CHUNK):
            pass

    def _read_body(self, limit: int) -> bytes:
        self._body_consumed = True
        length = self._content_length()
        if length is None:
            self.close_connection = True
            raise StorageError.missing_content_length()
        if length > limit:
            self._body_consumed = False
            raise StorageError.entity_too_large()
        return _BoundedReader(self.rfile, length).read()

    def _json_body(self) -> Any:
        data = self._read_body(8 * 1024 * 1024)
        if not data:
            return None
        try:
            return json.loads(data)
        except ValueError:
            # Fastify's FST_ERR_CTP_INVALID_JSON_BODY through error-handler.ts (approximated).
            raise StorageError(
                400,
                "InvalidRequest",
                "Body is not valid JSON but content-type is set to 'application/json'",
                "FastifyError",
            ) from None

    def _send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self._drain_body()
        data = json.dumps(body, separators=(",", ":")).encode()
        self._response_started = True
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    # ------------------------------------------------------------------ validation helpers

    def _body_object(self) -> dict[str, Any]:
        body = self._json_body()
        if not isinstance(body, dict):
            raise validation_error("body must be object")
        return body

    @staticmethod
    def _int_field(body: dict[str, Any], name: str, minimum: int, required: bool) -> int | None:
        """ajv with coerceTypes, as Fastify configures it: "60" passes as 60."""
        if name not in body or body[name] is None:
            if required:
                raise validation_error(f"body must have required property '{name}'")
            return None
        value = body[name]
        if isinstance(value, bool):
            value = int(value)
        if isinstance(value, str):
            try:
                value = float(value) if value.strip() else None
            except ValueError:
                value = None
        if not isinstance(value, int | float) or not math.isfinite(value) or value != int(value):
            raise validation_error(f"body/{name} must be integer")
        if value < minimum:
            raise validation_error(f"body/{name} must be >= {minimum}")
        return int(value)

    def _expires_in(self, body: dict[str, Any]) -> int:
        """expiresIn: the schema (integer >= 1), then assertValidNumericJWTExpiration (the
        expiry must stay a safe JS timestamp)."""
        expires_in = self._int_field(body, "expiresIn", 1, required=True)
        assert expires_in is not None
        if expires_in > (2**53 - 1) // 1000 - int(time.time()):
            raise StorageError.invalid_parameter("expiresIn")
        return expires_in

    # ------------------------------------------------------------------ routes

    def h_status(self) -> None:
        """Health check for the local stack (the real server's /status answers 200 too)."""
        self._drain_body()
        self._response_started = True
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def h_sign(self, bucket: str, path: str) -> None:
        """getSignedURL.ts: sign one object (findObject first: missing → NoSuchKey)."""
        body = self._body_object()
        expires_in = self._expires_in(body)
        # Fastify validates the body before the JWT preHandler runs.
        self.storage.authenticate(self.headers.get("Authorization"))
        self.storage.find_object(bucket, path)
        # signObjectUrl: decodeURI(request path after /object/sign/), no re-encoding.
        raw_rest = self.raw_route_path.split("/", 3)[3]
        url_to_sign = _decode_uri(raw_rest)
        signed_bucket, _, signed_name = url_to_sign.partition("/")
        token = sign_object_token(self.storage.jwt_secret, signed_bucket, signed_name, expires_in)
        self._send_json(200, {"signedURL": f"/object/sign/{url_to_sign}?token={token}"})

    def h_sign_many(self, bucket: str) -> None:
        """getSignedURLs.ts / signObjectUrls: per-path error for missing objects."""
        body = self._body_object()
        expires_in = self._expires_in(body)
        paths = body.get("paths")
        if "paths" not in body:
            raise validation_error("body must have required property 'paths'")
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise validation_error("body/paths must be array")
        if not paths:
            raise validation_error("body/paths must NOT have fewer than 1 items")
        if len(paths) > MAX_OBJECTS_PER_REQUEST:
            raise validation_error(
                f"body/paths must NOT have more than {MAX_OBJECTS_PER_REQUEST} items"
            )
        # Fastify validates the body before the JWT preHandler runs.
        self.storage.authenticate(self.headers.get("Authorization"))
        results = []
        for path in paths:
            exists = is_valid_key(path) and self.storage.head(bucket, path) is not None
            if exists:
                token = sign_object_token(self.storage.jwt_secret, bucket, path, expires_in)
                results.append(
                    {
                        "error": None,
                        "path": path,
                        "signedURL": f"/object/sign/{bucket}/{path}?token={token}",
                    }
                )
            else:
                results.append(
                    {
                        "error": "Either the object does not exist or you do not have access to it",
                        "path": path,
                        "signedURL": None,
                    }
                )
        self._send_json(200, results)

    def h_signed_get(self, bucket: str, path: str) -> None:
        """getSignedObject.ts: no Authorization needed, the token is the credential."""
        tokens = self.query.get("token")
        if not tokens:
            raise validation_error("querystring must have required property 'token'")
        # object.ts verifyObjectSignature: signature, scope, path, expiry, in that order.
        try:
            payload = _verify_jwt(tokens[0], self.storage.jwt_secret)
        except _JwtFailure as exc:
            raise StorageError.invalid_jwt(str(exc)) from None
        scope = payload.get("scope")
        if not (scope == SIGNED_URL_SCOPE_DOWNLOAD or (scope is None and "upsert" not in payload)):
            raise StorageError.invalid_signature(
                f"Token is not scoped for {SIGNED_URL_SCOPE_DOWNLOAD}"
            )
        url = payload.get("url")
        if url != f"{bucket}/{path}":
            raise StorageError.invalid_signature()
        exp = payload.get("exp")
        if isinstance(exp, int | float) and exp * 1000 < time.time() * 1000:
            raise StorageError.expired_signature()
        signed_bucket, _, name = str(url).partition("/")
        self.storage.find_object(signed_bucket, name)
        self._render_asset(
            signed_bucket,
            name,
            expires=_http_date(float(exp)) if isinstance(exp, int | float) else None,
        )

    def h_get_auth(self, bucket: str, path: str) -> None:
        self.storage.authenticate(self.headers.get("Authorization"))
        self._get_object(bucket, path, authenticated=True)

    def h_get(self, bucket: str, path: str) -> None:
        authenticated = self.storage.authenticate(
            self.headers.get("Authorization"), allow_invalid=True
        )
        self._get_object(bucket, path, authenticated=authenticated)

    def _get_object(self, bucket: str, path: str, *, authenticated: bool) -> None:
        # getObject.ts: without a valid JWT only public buckets are readable; all are private
        # here, and an unknown or hidden bucket is NoSuchBucket either way.
        if not authenticated or not self.storage.bucket_exists(bucket):
            raise no_such_bucket()
        self.storage.find_object(bucket, path)
        self._render_asset(bucket, path, expires=None)

    def _render_asset(self, bucket: str, name: str, *, expires: str | None) -> None:
        """renderer.ts render()/setHeaders(): stream the object with its headers. HEAD of
        /object/... is getObjectInfo.ts' head renderer (no download option there)."""
        self._drain_body()
        downloads = self.query.get("download")
        download = downloads[0] if downloads else None
        if self.command == "HEAD" and expires is None:
            download = None
        if self.command == "HEAD":
            head = self.storage.head(bucket, name)
            if head is None:
                raise no_such_key()
            self._send_asset_headers(200, head, expires, download)
            return

        args: dict[str, Any] = {"Bucket": bucket, "Key": name}
        if self.headers.get("Range"):
            args["Range"] = self.headers["Range"]
        if self.headers.get("If-None-Match"):
            args["IfNoneMatch"] = self.headers["If-None-Match"]
        if self.headers.get("If-Modified-Since"):
            try:
                since = email.utils.parsedate_to_datetime(self.headers["If-Modified-Since"])
                args["IfModifiedSince"] = since
            except (TypeError, ValueError):
                pass  # an unparseable date is ignored, as HTTP says
        try:
            obj = self.storage.s3.get_object(**args)
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 304 or _s3_code(exc) == "304":
                self.send_response(304)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if status == 404:
                # Row present, blob gone: renderer.ts answers this itself.
                gone = StorageError(404, "NoSuchKey", "The resource was not found", "Not found")
                self._send_json(400, gone.rest_body(), headers={"Cache-Control": "no-store"})
                return
            raise
        status = int(obj.get("ResponseMetadata", {}).get("HTTPStatusCode") or 200)
        body = obj["Body"]
        try:
            self._send_asset_headers(status, obj, expires, download)
            # Stream: a multi-GB dump must not sit in this process's memory.
            for chunk in body.iter_chunks(_STREAM_CHUNK):
                self.wfile.write(chunk)
        finally:
            body.close()

    def _send_asset_headers(
        self, status: int, meta: dict[str, Any], expires: str | None, download: str | None
    ) -> None:
        self._response_started = True
        self.send_response(status)
        self.send_header("Accept-Ranges", "bytes")
        content_type = _normalize_content_type(meta.get("ContentType"))
        self.send_header("Content-Type", content_type or "application/octet-stream")
        if meta.get("ETag"):
            self.send_header("ETag", meta["ETag"])
        # renderer.ts: X-Robots-Tag "none" unless the object's metadata sets a valid one.
        self.send_header("X-Robots-Tag", "none")
        self.send_header("Content-Length", str(int(meta.get("ContentLength", 0))))
        if meta.get("LastModified"):
            self.send_header("Last-Modified", _http_date(meta["LastModified"]))
        if expires:
            self.send_header("Expires", expires)
        else:
            self.send_header("Cache-Control", meta.get("CacheControl") or "no-cache")
        if meta.get("ContentRange"):
            self.send_header("Content-Range", meta["ContentRange"])
        if download is not None:
            if download == "":
                self.send_header("Content-Disposition", "attachment;")
            else:
                # encodeURIComponent leaves A-Z a-z 0-9 - _ . ! ~ * ' ( ) alone.
                encoded = urllib.parse.quote(download, safe="-_.!~*'()")
                self.send_header(
                    "Content-Disposition",
                    f"attachment; filename={encoded}; filename*=UTF-8''{encoded}",
                )
        self.end_headers()

    def h_info_auth(self, bucket: str, path: str) -> None:
        self.storage.authenticate(self.headers.get("Authorization"))
        self._info(bucket, path, authenticated=True)

    def h_info(self, bucket: str, path: str) -> None:
        authenticated = self.storage.authenticate(
            self.headers.get("Authorization"), allow_invalid=True
        )
        self._info(bucket, path, authenticated=authenticated)

    def _info(self, bucket: str, path: str, *, authenticated: bool) -> None:
        """getObjectInfo.ts + renderer/info.ts (last_modified is the row's updated_at)."""
        if not authenticated or not self.storage.bucket_exists(bucket):
            raise no_such_bucket()
        head = self.storage.find_object(bucket, path)
        meta = self.storage.object_metadata(head)
        body = {
            "id": self.storage.object_id(bucket, path),
            "name": path,
            "version": self.storage.object_version(bucket, path, head),
            "bucket_id": bucket,
            "size": meta["size"],
            "content_type": meta["mimetype"],
            "cache_control": meta["cacheControl"],
            "etag": meta["eTag"],
            "metadata": self.storage.user_metadata(head),
            "last_modified": _iso(head["LastModified"]),
            "created_at": _iso(head["LastModified"]),
        }
        headers = {
            "ETag": str(head.get("ETag", "")),
            "Last-Modified": _http_date(head["LastModified"]),
            "Cache-Control": meta["cacheControl"],
        }
        self._send_json(200, body, headers=headers)

    def h_list(self, bucket: str) -> None:
        """listObjects.ts → storage.search()."""
        body = self._body_object()
        if "prefix" not in body:
            raise validation_error("body must have required property 'prefix'")
        prefix = body["prefix"]
        if not isinstance(prefix, str):
            raise validation_error("body/prefix must be string")
        limit = self._int_field(body, "limit", 1, required=False) or 100
        offset = self._int_field(body, "offset", 0, required=False) or 0
        search = body.get("search") or ""
        if not isinstance(search, str):
            raise validation_error("body/search must be string")
        sort_by = body.get("sortBy") or {}
        if not isinstance(sort_by, dict):
            raise validation_error("body/sortBy must be object")
        if body.get("sortBy") is not None and "column" not in sort_by:
            raise validation_error("body/sortBy must have required property 'column'")
        column = sort_by.get("column") or "name"
        order = sort_by.get("order") or "asc"
        if column not in _SORT_COLUMNS:
            raise validation_error("body/sortBy/column must be equal to one of the allowed values")
        if order not in ("asc", "desc"):
            raise validation_error("body/sortBy/order must be equal to one of the allowed values")
        # Fastify validates the body before the JWT preHandler runs.
        self.storage.authenticate(self.headers.get("Authorization"))
        if not self.storage.bucket_exists(bucket):
            # The SQL function simply finds no rows for an unknown bucket.
            self._send_json(200, [])
            return
        results = self.storage.search(
            bucket, prefix, limit=limit, offset=offset, search=search, column=column, order=order
        )
        self._send_json(200, results)

    def h_delete_many(self, bucket: str) -> None:
        """deleteObjects.ts: exact names; answers the deleted rows, silently skips others."""
        body = self._body_object()
        if "prefixes" not in body:
            raise validation_error("body must have required property 'prefixes'")
        prefixes = body["prefixes"]
        if not isinstance(prefixes, list) or not all(isinstance(p, str) for p in prefixes):
            raise validation_error("body/prefixes must be array")
        if not prefixes:
            raise validation_error("body/prefixes must NOT have fewer than 1 items")
        # Fastify validates the body before the JWT preHandler runs.
        self.storage.authenticate(self.headers.get("Authorization"))
        if not self.storage.bucket_exists(bucket):
            self._send_json(200, [])
            return
        rows: list[dict[str, Any]] = []
        for name in dict.fromkeys(prefixes):  # de-duplicate, keep order
            head = self.storage.head(bucket, name)
            if head is not None:
                rows.append(self.storage.object_row(bucket, name, head))
        names = [row["name"] for row in rows]
        for start in range(0, len(names), 1000):  # S3 DeleteObjects takes ≤ 1000 keys
            batch = names[start : start + 1000]
            self.storage.s3.delete_objects(
                Bucket=bucket, Delete={"Objects": [{"Key": n} for n in batch], "Quiet": True}
            )
        self._send_json(200, rows)

    # ------------------------------------------------------------------ buckets

    def h_list_buckets(self) -> None:
        """getAllBuckets.ts: ``type`` included unless the client is storage3 < 0.12.1 or
        supabase-py < 2.18.0 (x-client-info); no ORDER BY unless sortColumn is given."""
        self._drain_body()
        self.storage.authenticate(self.headers.get("Authorization"))
        sort_column = self._query_one("sortColumn")
        sort_order = self._query_one("sortOrder") or "asc"
        if sort_column is not None and sort_column not in _BUCKET_SORT_COLUMNS:
            raise validation_error(
                "querystring/sortColumn must be equal to one of the allowed values"
            )
        if sort_order not in ("asc", "desc"):
            raise validation_error(
                "querystring/sortOrder must be equal to one of the allowed values"
            )
        limit = self._query_int("limit", 1)
        offset = self._query_int("offset", 0) or 0
        search = (self._query_one("search") or "").lower()
        rows = [b for b in self.storage.buckets.list() if search in b.name.lower()]
        if sort_column is not None:
            rows.sort(key=lambda b: getattr(b, sort_column), reverse=sort_order == "desc")
        rows = rows[offset : offset + limit if limit is not None else None]
        with_type = not _old_python_client(
            self.headers.get("x-client-info") or "", self.headers.get("User-Agent") or ""
        )
        self._send_json(200, [bucket_json(b, with_type=with_type) for b in rows])

    def h_get_bucket(self, bucket: str) -> None:
        """getBucket.ts: the row without ``type``; NoSuchBucket when absent."""
        self._drain_body()
        self.storage.authenticate(self.headers.get("Authorization"))
        self._send_json(200, bucket_json(self.storage.buckets.find(bucket), with_type=False))

    def h_update_bucket(self, bucket: str) -> None:
        """updateBucket.ts → Storage.updateBucket (storage3 update_bucket sends id and name
        too; the schema ignores them)."""
        body = self._body_object()
        fields = ("public", "file_size_limit", "allowed_mime_types")
        if not any(name in body for name in fields):
            raise validation_error(
                ", ".join(f"body must have required property '{name}'" for name in fields)
                + ", body must match a schema in anyOf"
            )
        changes = self._bucket_fields(body)
        self.storage.authenticate(self.headers.get("Authorization"))
        if not any(value is not _MISSING for value in changes.values()):
            raise StorageError.no_content()
        self.storage.buckets.update(
            bucket, **{k: v for k, v in changes.items() if v is not _MISSING}
        )
        self._send_json(200, {"message": "Successfully updated"})

    def h_create_bucket(self) -> None:
        """createBucket.ts → Storage.createBucket (the S3 bucket is made too)."""
        body = self._body_object()
        name = body.get("name")
        if "name" not in body:
            raise validation_error("body must have required property 'name'")
        if not isinstance(name, str):
            raise validation_error("body/name must be string")
        bucket_id = body.get("id") or name
        if not isinstance(bucket_id, str):
            raise validation_error("body/id must be string")
        changes = self._bucket_fields(body)
        self.storage.authenticate(self.headers.get("Authorization"))
        public = changes.pop("public")
        self.storage.buckets.create(
            bucket_id,
            public=False if public is _MISSING else public,
            **{k: v for k, v in changes.items() if v is not _MISSING},
        )
        self._send_json(200, {"name": name})

    @staticmethod
    def _bucket_fields(body: dict[str, Any]) -> dict[str, Any]:
        """The bucket body schema (ajv with coerceTypes): public, file_size_limit (integer
        >= 0, "20MB"-style string, or null), allowed_mime_types (array of strings or null)."""
        out: dict[str, Any] = {}
        public = body.get("public", _MISSING)
        if public is not _MISSING and public is not None:
            if isinstance(public, str) and public in ("true", "false"):
                public = public == "true"
            if not isinstance(public, bool):
                raise validation_error("body/public must be boolean")
        out["public"] = public
        size = body.get("file_size_limit", _MISSING)
        if size is not _MISSING and size is not None:
            valid_int = isinstance(size, int) and not isinstance(size, bool) and size >= 0
            valid_str = isinstance(size, str) and bool(_FILE_SIZE_PATTERN.match(size))
            if not (valid_int or valid_str):
                raise validation_error("body/file_size_limit must match a schema in anyOf")
        out["file_size_limit"] = size
        mime = body.get("allowed_mime_types", _MISSING)
        if (
            mime is not _MISSING
            and mime is not None
            and (not isinstance(mime, list) or not all(isinstance(m, str) for m in mime))
        ):
            raise validation_error("body/allowed_mime_types must be array")
        out["allowed_mime_types"] = mime
        return out

    def _query_one(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def _query_int(self, name: str, minimum: int) -> int | None:
        value = self._query_one(name)
        if value is None or value == "":
            return None
        try:
            number = int(value)
        except ValueError:
            raise validation_error(f"querystring/{name} must be integer") from None
        if number < minimum:
            raise validation_error(f"querystring/{name} must be >= {minimum}")
        return number

    # ------------------------------------------------------------------ uploads

    def h_create(self, bucket: str, path: str) -> None:
        """createObject.ts: x-upsert: "true" overwrites, anything else 409s on an existing key."""
        self.storage.authenticate(self.headers.get("Authorization"))
        self._upload(bucket, path, upsert=self.headers.get("x-upsert") == "true")

    def h_update(self, bucket: str, path: str) -> None:
        """updateObject.ts: always an upsert (creates the object if it is missing)."""
        self.storage.authenticate(self.headers.get("Authorization"))
        self._upload(bucket, path, upsert=True)

    def _upload(self, bucket: str, path: str, *, upsert: bool) -> None:  # noqa: C901
        """object.ts uploadFromRequest → uploader.ts fileUploadFromRequest → upload: the bucket,
        then its MIME types and the size limit, then the key, then the duplicate check."""
        found = self.storage.buckets.find(bucket, dates=False)
        empty_folder = path.endswith(_EMPTY_FOLDER)
        # isEmptyFolder: a folder placeholder must be empty and skips the MIME check.
        limit = 0 if empty_folder else self.storage.buckets.max_file_size(found)
        allowed = found.allowed_mime_types if not empty_folder else None

        def check_mime(mimetype: str) -> None:
            if allowed:
                validate_mime_type(mimetype, allowed)

        def check_key_and_duplicate() -> None:
            if not is_valid_key(path):
                raise StorageError.invalid_key(path)
            # Uploader.canUpload runs before the body reaches S3: a duplicate fails early.
            if not upsert and self.storage.head(bucket, path) is not None:
                raise StorageError.key_already_exists()

        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            # The real server streams length-less bodies; storage3 always sends a length.
            self.close_connection = True
            raise StorageError.missing_content_length()

        content_type_header = self.headers.get("Content-Type") or ""
        user_metadata: Any = None
        if content_type_header.startswith("multipart/form-data"):
            # Room for the form's boundaries and fields on top of the file.
            raw = self._read_body(limit + 64 * 1024)
            fields, file_part = _parse_multipart(raw, content_type_header)
            if file_part is None:
                raise StorageError.no_content()
            file_bytes, part_type = file_part
            mimetype = fields.get("contentType") or part_type or "application/octet-stream"
            check_mime(mimetype)
            cache_time = fields.get("cacheControl")
            cache_control = f"max-age={cache_time}" if cache_time else "no-cache"
            custom = fields.get("metadata") or fields.get("userMetadata")
            if custom:
                if len(custom.encode()) > 1024 * 1024:  # MAX_CUSTOM_METADATA_SIZE
                    raise StorageError.entity_too_large("user_metadata")
                try:
                    user_metadata = json.loads(custom)
                except ValueError:
                    user_metadata = None
            check_key_and_duplicate()
            # @fastify/multipart truncates the file at the limit; the upload then fails.
            if len(file_bytes) > limit:
                raise StorageError.entity_too_large()
            self._put(bucket, path, file_bytes, mimetype, cache_control, user_metadata, upsert)
            return

        mimetype = content_type_header or "application/octet-stream"
        check_mime(mimetype)
        header_md = self.headers.get("x-metadata")
        if header_md:
            try:
                user_metadata = json.loads(base64.b64decode(header_md))
            except (ValueError, TypeError):
                user_metadata = None
        length = self._content_length()
        if length is None:
            self.close_connection = True
            raise StorageError.missing_content_length()
        if length > limit:
            raise StorageError.entity_too_large()
        check_key_and_duplicate()
        cache_control = self.headers.get("Cache-Control") or "no-cache"
        self._body_consumed = True
        # Spool to memory, then disk: a seekable body with a known length for put_object.
        with tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024) as spool:
            reader = _BoundedReader(self.rfile, length)
            while chunk := reader.read(_STREAM_CHUNK):
                spool.write(chunk)
            if reader.remaining:
                self.close_connection = True
                raise StorageError.no_content()
            spool.seek(0)
            self._put(bucket, path, spool, mimetype, cache_control, user_metadata, upsert)

    def _put(
        self,
        bucket: str,
        path: str,
        body: bytes | IO[bytes],
        mimetype: str,
        cache_control: str,
        user_metadata: Any,
        upsert: bool,
    ) -> None:
        args: dict[str, Any] = {
            "Bucket": bucket,
            "Key": path,
            "Body": body,
            "ContentType": mimetype,
            "CacheControl": cache_control,
        }
        if user_metadata is not None:
            encoded = base64.b64encode(json.dumps(user_metadata).encode()).decode()
            args["Metadata"] = {_S3_USER_METADATA_KEY: encoded}
        if not upsert:
            # The real server relies on a unique index; a conditional PUT closes the same race.
            args["IfNoneMatch"] = "*"
        try:
            self.storage.s3.put_object(**args)
        except ClientError as exc:
            if _s3_code(exc) in ("PreconditionFailed", "412"):
                raise StorageError.key_already_exists() from None
            raise
        self._send_json(
            200, {"Id": self.storage.object_id(bucket, path), "Key": f"{bucket}/{path}"}
        )


def _parse_multipart(
    raw: bytes, content_type: str
) -> tuple[dict[str, str], tuple[bytes, str | None] | None]:
    """Minimal multipart/form-data parser: text fields, and the first part with a filename."""
    match = re.search(r'boundary=(?:"([^"]+)"|([^;\s]+))', content_type)
    if not match:
        raise StorageError.no_content()
    boundary = (match.group(1) or match.group(2)).encode()
    delimiter = b"--" + boundary
    fields: dict[str, str] = {}
    file_part: tuple[bytes, str | None] | None = None
    for chunk in raw.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break  # closing delimiter
        chunk = chunk.removeprefix(b"\r\n")
        head, sep, content = chunk.partition(b"\r\n\r\n")
        if not sep:
            continue
        content = content.removesuffix(b"\r\n")
        headers: dict[str, str] = {}
        for line in head.decode("utf-8", "replace").split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        disposition = headers.get("content-disposition", "")
        name_match = re.search(r'\bname="([^"]*)"', disposition)
        is_file = "filename=" in disposition or "filename*=" in disposition
        if is_file:
            if file_part is None:
                file_part = (content, headers.get("content-type"))
        elif name_match:
            fields[name_match.group(1)] = content.decode("utf-8", "replace")
    return fields, file_part


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Serve Supabase Storage locally over an S3 bucket: the REST API and the S3 "
        "endpoint (a proxy enforcing the upload limits). Secrets come from the environment: "
        "SUPABASE_JWT_SECRET (required), SUPABASE_SERVICE_KEY (default: a service_role JWT "
        "minted from the secret), AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY for the store, "
        "SUPABASE_S3_ACCESS_KEY_ID / SUPABASE_S3_SECRET_ACCESS_KEY for the S3 endpoint "
        "(default: random, printed).",
    )
    parser.add_argument("--s3-endpoint", required=True, help="the S3 store (e.g. SeaweedFS)")
    parser.add_argument("--s3-region", default="us-east-1")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=54321)
    parser.add_argument("--s3-port", type=int, default=54322, help="the S3 endpoint's port")
    parser.add_argument("--s3-tls", action="store_true", help="serve the S3 endpoint over HTTPS")
    parser.add_argument(
        "--bucket",
        action="append",
        default=[],
        help="create this S3 bucket if missing (repeatable)",
    )
    parser.add_argument(
        "--config",
        default=None,
        help="bucket settings and the project upload limit (JSON, devstack.supabase_buckets)",
    )
    parser.add_argument(
        "--global-limit-mb",
        type=int,
        default=None,
        help="the project's upload limit in MiB (default 50, as on the Free plan)",
    )
    parser.add_argument(
        "--print-service-key",
        action="store_true",
        help="print the service key for SUPABASE_JWT_SECRET and exit",
    )
    args = parser.parse_args(argv)

    secret = os.environ.get("SUPABASE_JWT_SECRET")
    if not secret:
        parser.error("set SUPABASE_JWT_SECRET")
    service_key = os.environ.get("SUPABASE_SERVICE_KEY") or mint_service_key(secret)
    if args.print_service_key:
        print(service_key)
        return 0

    import boto3
    from botocore.config import Config

    from devstack.supabase_s3 import SupabaseS3Proxy, Upstream

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    s3 = boto3.client(
        "s3",
        endpoint_url=args.s3_endpoint,
        region_name=args.s3_region,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )
    for bucket in args.bucket:
        try:
            s3.head_bucket(Bucket=bucket)
        except ClientError:
            s3.create_bucket(Bucket=bucket)
    buckets = BucketRegistry(s3, path=args.config)
    if args.global_limit_mb is not None:
        buckets.global_file_size_limit = args.global_limit_mb * 1024 * 1024

    server = SupabaseStorageFake(
        s3, secret, service_key, host=args.host, port=args.port, buckets=buckets
    )
    credentials = boto3.Session().get_credentials()
    if credentials is None:
        parser.error("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for the store")
    proxy = SupabaseS3Proxy(
        Upstream(args.s3_endpoint, credentials.access_key, credentials.secret_key, args.s3_region),
        buckets,
        access_key=os.environ.get("SUPABASE_S3_ACCESS_KEY_ID"),
        secret_key=os.environ.get("SUPABASE_S3_SECRET_ACCESS_KEY"),
        region=args.s3_region,
        host=args.host,
        port=args.s3_port,
        tls=args.s3_tls,
    )
    server.start()
    proxy.start()
    print(f"Supabase Storage API at {server.storage_url} (project URL {server.url})", flush=True)
    print(f"S3 endpoint at {proxy.endpoint_url} (access key {proxy.access_key})", flush=True)
    if proxy.ca_file is not None:
        print(f"  its CA certificate: {proxy.ca_file}", flush=True)
    stopped = threading.Event()

    def _request_stop(signum: int, frame: object) -> None:
        stopped.set()

    signal.signal(signal.SIGTERM, _request_stop)
    signal.signal(signal.SIGINT, _request_stop)
    stopped.wait()
    proxy.stop()
    server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
