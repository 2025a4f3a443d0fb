"""The S3 endpoint of the Supabase Storage stand-in: a proxy in front of a real S3 store.

Supabase serves an S3-compatible endpoint at ``https://<ref>.storage.supabase.co/storage/v1/s3``
(path style, SigV4 with the project's S3 access keys). The product uploads its archives there
with boto3 multipart. This module is that endpoint for the local stack and the tests: a small
threaded HTTP(S) server at ``<url>/storage/v1/s3`` that

- verifies each request's SigV4 signature (Authorization header or presigned query) against
  the stand-in's own S3 credentials, recomputing it with botocore's signer;
- enforces what Supabase enforces before an object reaches its store: the project's upload
  limit and the bucket's ``file_size_limit`` (the smaller wins) on PutObject and, through the
  running total of an upload's parts, on multipart uploads (``EntityTooLarge``, HTTP 413),
  the bucket's ``allowed_mime_types`` (``InvalidMimeType``, 415), part numbers 1–10,000 and
  parts of at most 5 GiB;
- accepts the production wire format: boto3 over HTTPS sends uploads as
  ``Content-Encoding: aws-chunked`` with ``x-amz-content-sha256:
  STREAMING-UNSIGNED-PAYLOAD-TRAILER`` and a trailing checksum (inside HTTP chunked framing);
  the proxy decodes it and verifies the trailer checksum before the last bytes go on;
- re-signs every request with the store's credentials (UNSIGNED-PAYLOAD) and forwards it,
  streaming: a part is never held whole in memory;
- answers errors in Supabase's S3 shape: HTTP status of the error, ``application/xml``,
  ``<Error><Resource>bucket/key</Resource><Code/><Message/></Error>``.

With ``tls=True`` it listens with a certificate made at start (a throwaway CA and a
``localhost``/``127.0.0.1`` leaf; ``ca_file`` is the CA to give boto3 as ``verify=``), so
boto3 sends exactly what it sends to Supabase in production. ``seen`` keeps what the last
requests looked like on the wire (headers, framing, trailer) for tests to inspect.

Mirrors supabase/storage v1.70.6 (4fa61fba): src/http/routes/s3/index.ts, error-handler.ts and
commands/{put-object,upload-part,create-multipart-upload,complete-multipart-upload,
abort-multipart-upload}.ts; src/storage/protocols/s3/s3-handler.ts (uploadPart,
shouldAllowPartUpload: ``in_progress_size`` grows by each part's declared length, shrinks
again when a part fails, and is never reduced when a part number is uploaded twice),
signature-v4.ts, signature-v4-stream.ts, byte-limit-stream.ts; src/http/plugins/
signature-v4.ts; src/storage/uploader.ts (fileUploadFromRequest).

Different from Supabase, on purpose or for lack of a database:
  - Supabase does not check the trailer checksum of an aws-chunked body (its chunk parser
    emits the trailer and nobody listens); the stand-in does and refuses a mismatch with
    ``InvalidChecksum`` (400), so a decoding bug cannot pass silently.
  - Signed-chunk uploads (``STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]``) are refused with
    ``NotImplemented`` (501): boto3 never sends them.
  - Upload bookkeeping lives in memory. An upload the proxy does not know (created before a
    restart, or directly on the store) is adopted on first use with the size of its parts
    so far (ListParts on the store); a made-up upload id is ``NoSuchUpload``.
  - Other operations (GET, HEAD, lists, deletes, copies, ListMultipartUploads) are passed
    through; the store's NoSuchKey/NoSuchBucket/NoSuchUpload become Supabase's messages.
  - An error found before the body is read is answered before ``100 Continue`` when the
    client asked for one (boto3 does for file bodies), else after reading and discarding
    the body (up to 64 MiB); Supabase answers without reading and drops the connection 3 s
    later, so a client in production may see a reset instead of the XML error.
"""

from __future__ import annotations

import collections
import datetime as dt
import hmac
import http.client
import ipaddress
import logging
import re
import shutil
import ssl
import tempfile
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace, TracebackType
from typing import Any, Protocol

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import Credentials

# botocore's own table of checksum algorithms (CRC32 with zlib; CRC32C and others via CRT).
from botocore.httpchecksum import _CHECKSUM_CLS  # type: ignore[attr-defined]

from devstack.supabase_buckets import BucketRegistry, is_valid_bucket_name, validate_mime_type
from devstack.supabase_errors import S3_XML_NAMESPACE, StorageError

__all__ = ["S3_PREFIX", "SeenRequest", "SupabaseS3Proxy", "Upstream"]

log = logging.getLogger(__name__)

S3_PREFIX = "/storage/v1/s3"
MAX_PART_SIZE = 5 * 1024 * 1024 * 1024  # s3-handler.ts MAX_PART_SIZE
MAX_PART_NUMBER = 10_000
MAX_CHUNK_SIZE = 8 * 1024 * 1024  # signature-v4 plugin: ChunkSignatureV4Parser maxChunkSize
MAX_CHUNK_HEADER = 256  # ... maxHeaderLength
_PIECE = 1024 * 1024
_DRAIN_CAP = 64 * 1024 * 1024
_UNSIGNED = "UNSIGNED-PAYLOAD"
_STREAMING_UNSIGNED = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
_VALID_KEY = re.compile(r"^[A-Za-z0-9_/!\-.*'() &$@=;:+,?]+$")  # limits.ts VALID_OBJECT_KEY
_HOP_BY_HOP = frozenset(
    ("connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
     "upgrade", "expect", "host")
)  # fmt: skip
# Headers of the client's request that are its own business with the endpoint: the store
# gets a request signed by the proxy instead.
_CLIENT_ONLY = frozenset(
    ("authorization", "x-amz-date", "x-amz-content-sha256", "x-amz-security-token",
     "x-amz-decoded-content-length", "x-amz-trailer", "content-length")
)  # fmt: skip
# What Supabase does not pass to its store with an object body (uploader/s3-handler build the
# store's request from content type, cache control, disposition, encoding, expires, metadata).
_CHECKSUM_HEADER = re.compile(r"^x-amz-(sdk-)?checksum-|^content-md5$")
_PRESIGN_PARAMS = frozenset(
    ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires",
     "X-Amz-SignedHeaders", "X-Amz-Signature", "X-Amz-Security-Token", "X-Amz-Content-Sha256")
)  # fmt: skip


@dataclass(frozen=True)
class Upstream:
    """The S3 store the objects live in (SeaweedFS here; AWS S3 behind Supabase)."""

    endpoint_url: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"


@dataclass
class SeenRequest:
    """What one request looked like on the wire (for tests; never logged)."""

    method: str
    operation: str
    path: str
    query: str
    headers: dict[str, str]
    http_chunked: bool = False
    aws_chunked: bool = False
    trailer: dict[str, str] = field(default_factory=dict)
    decoded_length: int | None = None
    body_bytes: int = 0
    checksum_verified: bool | None = None
    continued: bool = False  # "100 Continue" was sent
    status: int = 0


@dataclass
class _Upload:
    bucket: str
    key: str
    in_progress_size: int = 0


class _Source(Protocol):
    def read(self, size: int, /) -> bytes: ...


# --------------------------------------------------------------------------- body framing


class _LengthReader:
    """A Content-Length body."""

    def __init__(self, raw: Any, length: int) -> None:
        self._raw = raw
        self.remaining = length

    def read(self, size: int) -> bytes:
        if self.remaining <= 0:
            return b""
        data = self._raw.read(min(size, self.remaining))
        if not data:
            raise StorageError.invalid_request("Request stream closed before upload could complete")
        self.remaining -= len(data)
        return data


class _HttpChunkedReader:
    """A ``Transfer-Encoding: chunked`` body (HTTP framing; Node decodes it for Supabase)."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self._left = 0
        self._done = False

    def _line(self) -> bytes:
        line = self._raw.readline(1024)
        if not line.endswith(b"\r\n"):
            raise StorageError.invalid_request("Invalid chunked transfer encoding")
        return line[:-2]

    def read(self, size: int) -> bytes:
        if self._done:
            return b""
        if self._left == 0:
            size_text = self._line().split(b";", 1)[0].strip()
            try:
                self._left = int(size_text, 16)
            except ValueError:
                raise StorageError.invalid_request("Invalid chunked transfer encoding") from None
            if self._left == 0:
                while self._line():  # HTTP trailer fields, then the empty line
                    pass
                self._done = True
                return b""
        data = self._raw.read(min(size, self._left))
        if not data:
            raise StorageError.invalid_request("Request stream closed before upload could complete")
        self._left -= len(data)
        if self._left == 0 and self._raw.read(2) != b"\r\n":
            raise StorageError.invalid_request("Invalid chunked transfer encoding")
        return data


class _AwsChunkedDecoder:
    """``Content-Encoding: aws-chunked`` (signature-v4-stream.ts ChunkSignatureV4Parser for
    STREAMING-UNSIGNED-PAYLOAD-TRAILER): ``<hex size>[;chunk-signature=…]\\r\\n<data>\\r\\n``
    … ``0\\r\\n`` then the trailer lines and an empty line. The trailer's checksum, when one
    is declared in ``x-amz-trailer``, is checked with botocore's checksum classes."""

    def __init__(self, source: _Source, trailer_names: list[str], *, verify: bool) -> None:
        self._source = source
        self._buffer = bytearray()
        self._left = 0
        self._done = False
        self.trailer: dict[str, str] = {}
        self.verified: bool | None = None
        self._trailer_names = [n.strip().lower() for n in trailer_names if n.strip()]
        self._checksums: dict[str, Any] = {}
        if verify:
            for name in self._trailer_names:
                algorithm = name.removeprefix("x-amz-checksum-")
                checksum_cls = _CHECKSUM_CLS.get(algorithm)
                if name.startswith("x-amz-checksum-") and checksum_cls is not None:
                    self._checksums[name] = checksum_cls()

    def _fill(self) -> bool:
        data = self._source.read(_PIECE)
        self._buffer += data
        return bool(data)

    def _line(self, limit: int) -> str:
        while True:
            index = self._buffer.find(b"\r\n")
            if index >= 0:
                if index > limit:
                    raise StorageError.entity_too_large("chunk header", f"{limit} bytes")
                line = bytes(self._buffer[:index])
                del self._buffer[: index + 2]
                return line.decode("latin-1")
            if len(self._buffer) > limit:
                raise StorageError.entity_too_large("chunk header", f"{limit} bytes")
            if not self._fill():
                raise StorageError.invalid_request("Incomplete chunk header")

    def read(self, size: int) -> bytes:
        if self._done:
            return b""
        if self._left == 0:
            header = self._line(MAX_CHUNK_HEADER)
            size_hex = header.split(";chunk-signature=", 1)[0]
            if not re.fullmatch(r"[0-9a-fA-F]+", size_hex):
                raise StorageError.invalid_request("Invalid chunk size")
            self._left = int(size_hex, 16)
            if self._left > MAX_CHUNK_SIZE:
                raise StorageError.entity_too_large("chunk", f"{MAX_CHUNK_SIZE} bytes")
            if self._left == 0:
                self._finish()
                return b""
        if not self._buffer and not self._fill():
            raise StorageError.invalid_request("Unexpected end of chunk data")
        take = min(size, self._left, len(self._buffer))
        data = bytes(self._buffer[:take])
        del self._buffer[:take]
        self._left -= take
        for checksum in self._checksums.values():
            checksum.update(data)
        if self._left == 0:
            while len(self._buffer) < 2:
                if not self._fill():
                    raise StorageError.invalid_request("Missing CRLF after chunk data")
            if self._buffer[:2] != b"\r\n":
                raise StorageError.invalid_request("Missing CRLF after chunk data")
            del self._buffer[:2]
        return data

    def _finish(self) -> None:
        if self._trailer_names:
            while line := self._line(8 * 1024):
                name, _, value = line.partition(":")
                if name.strip().lower() in self._trailer_names:
                    self.trailer[name.strip().lower()] = value.strip()
        else:
            footer = self._line(0)
            if footer:
                raise StorageError.invalid_request("Missing CRLF after chunk data")
        if self._buffer or self._source.read(1):
            raise StorageError.invalid_request("Unexpected data after final chunk")
        self._done = True
        for name, checksum in self._checksums.items():
            expected = self.trailer.get(name)
            if expected is None:
                raise StorageError.invalid_request(f"Missing trailer {name}")
            if not hmac.compare_digest(checksum.b64digest(), expected):
                algorithm = name.removeprefix("x-amz-checksum-").upper()
                raise StorageError.invalid_checksum(
                    f"The {algorithm} you specified did not match the calculated checksum."
                )
            self.verified = True


def _pieces(source: _Source, limit: int, too_large: Callable[[], StorageError]) -> Iterator[bytes]:
    """The body in pieces, holding each back until the next is read: the last piece goes out
    only once the source has ended cleanly (trailer checked), so a refused body never
    reaches the store whole. More than ``limit`` bytes is ``too_large()``."""
    total = 0
    held = b""
    while True:
        data = source.read(_PIECE)
        total += len(data)
        if total > limit:
            raise too_large()
        if not data:
            break
        if held:
            yield held
        held = data
    if held:
        yield held


# --------------------------------------------------------------------------- signatures


class _ClientSigner(S3SigV4Auth):
    """botocore's SigV4 for S3, made to recompute a client's signature: exactly the headers
    the client listed in SignedHeaders, and its declared payload hash (Supabase checks the
    signature over the declared hash and never hashes the body of an S3 request)."""

    def __init__(
        self, credentials: Credentials, region: str, signed_headers: list[str], headers: Any
    ) -> None:
        super().__init__(credentials, "s3", region)
        self._signed = signed_headers
        self._headers = headers

    def headers_to_sign(self, request: AWSRequest) -> HTTPHeaders:
        selected = HTTPHeaders()
        for name in self._signed:
            value = self._headers.get(name)
            if value is not None:  # Supabase drops signed headers that are absent
                selected[name] = value
        return selected

    def payload(self, request: AWSRequest) -> str:
        return _UNSIGNED


_NO_PAYLOAD_SIGNING = SimpleNamespace(s3={"payload_signing_enabled": False})


# --------------------------------------------------------------------------- TLS


def _self_signed(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a leaf for localhost/127.0.0.1 signed by it (files: ca, cert, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Supabase S3 stand-in CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    ca_file, cert_file, key_file = (
        directory / "ca.pem",
        directory / "cert.pem",
        directory / "key.pem",
    )
    ca_file.write_bytes(ca.public_bytes(pem))
    cert_file.write_bytes(leaf.public_bytes(pem))
    key_file.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_file.chmod(0o600)
    return ca_file, cert_file, key_file


# --------------------------------------------------------------------------- the server


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gives up mid-handshake or mid-body is not the stand-in's problem.
        log.debug("S3 stand-in: connection from %s failed", client_address, exc_info=True)


class SupabaseS3Proxy:
    """Supabase's S3 endpoint in front of ``upstream``, with ``buckets``' limits.

    ``endpoint_url`` is what boto3 takes (``<url>/storage/v1/s3``, path style); ``access_key``
    / ``secret_key`` are the stand-in's own S3 credentials (the project's S3 access keys);
    ``region`` is the project's region (a client may also sign for ``us-east-1``, ``auto`` or
    an empty region, as Supabase accepts when it does not enforce the region).
    """

    def __init__(
        self,
        upstream: Upstream,
        buckets: BucketRegistry,
        *,
        access_key: str | None = None,
        secret_key: str | None = None,
        region: str = "us-east-1",
        host: str = "127.0.0.1",
        port: int = 0,
        tls: bool = False,
        verify_trailer_checksums: bool = True,
    ) -> None:
        import secrets

        self.upstream = upstream
        self.buckets = buckets
        self.access_key = access_key or "standin" + secrets.token_hex(8)
        self.secret_key = secret_key or secrets.token_urlsafe(32)
        self.region = region
        self.host = host
        self.tls = tls
        self.verify_trailer_checksums = verify_trailer_checksums
        self.seen: collections.deque[SeenRequest] = collections.deque(maxlen=256)
        self.ca_file: Path | None = None
        self._requested_port = port
        self._uploads: dict[str, _Upload] = {}
        self._uploads_lock = threading.Lock()
        self._tls_dir: Path | None = None
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        parts = urllib.parse.urlsplit(upstream.endpoint_url)
        self._upstream_scheme = parts.scheme
        self._upstream_netloc = parts.netloc
        self._upstream_base = parts.path.rstrip("/")
        self._upstream_credentials = Credentials(upstream.access_key, upstream.secret_key)
        self._credentials = Credentials(self.access_key, self.secret_key)

    # ------------------------------------------------------------------ lifecycle

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("server not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.host}:{self.port}"

    @property
    def endpoint_url(self) -> str:
        return self.url + S3_PREFIX

    def start(self) -> SupabaseS3Proxy:
        if self._httpd is not None:
            return self
        handler = type("Handler", (_S3Handler,), {"proxy": self})
        httpd = _Server((self.host, self._requested_port), handler)
        httpd.daemon_threads = True
        if self.tls:
            self._tls_dir = Path(tempfile.mkdtemp(prefix="supabase-s3-tls-"))
            self.ca_file, cert, key = _self_signed(self._tls_dir)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert, key)
            # The handshake happens in the request's thread (setup), not in accept().
            httpd.socket = context.wrap_socket(
                httpd.socket, server_side=True, do_handshake_on_connect=False
            )
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, name="supabase-s3-proxy", daemon=True
        )
        self._thread.start()
        log.info("Supabase S3 endpoint stand-in at %s", self.endpoint_url)
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
        if self._tls_dir is not None:
            shutil.rmtree(self._tls_dir, ignore_errors=True)
            self._tls_dir = None

    def __enter__(self) -> SupabaseS3Proxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def client(self, **config: Any) -> Any:
        """A boto3 client of this endpoint as the product builds one (path style, SigV4);
        ``config`` goes to botocore's Config (e.g. request_checksum_calculation; ``s3``
        options are added to path-style addressing)."""
        import boto3
        from botocore.config import Config

        s3_options: Any = {"addressing_style": "path", **config.pop("s3", {})}
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            verify=str(self.ca_file) if self.ca_file else None,
            config=Config(signature_version="s3v4", s3=s3_options, **config),
        )

    # ------------------------------------------------------------------ multipart bookkeeping

    def in_progress_size(self, upload_id: str) -> int | None:
        """The running total Supabase checks the limits against (None: not tracked)."""
        with self._uploads_lock:
            upload = self._uploads.get(upload_id)
            return upload.in_progress_size if upload else None

    def _register(self, upload_id: str, bucket: str, key: str) -> None:
        with self._uploads_lock:
            self._uploads[upload_id] = _Upload(bucket, key)

    def _forget(self, upload_id: str) -> None:
        with self._uploads_lock:
            self._uploads.pop(upload_id, None)

    def _reserve(self, upload_id: str, bucket: str, key: str, length: int, limit: int) -> None:
        """shouldAllowPartUpload: the running total plus this part must stay within limit."""
        if upload_id not in self._uploads:
            self._adopt(upload_id, bucket, key)
        with self._uploads_lock:
            upload = self._uploads.get(upload_id)
            if upload is None:
                raise StorageError.no_such_upload()
            if upload.in_progress_size + length > limit:
                raise StorageError.entity_too_large()
            upload.in_progress_size += length

    def _release(self, upload_id: str, length: int) -> None:
        with self._uploads_lock:
            upload = self._uploads.get(upload_id)
            if upload is not None:
                upload.in_progress_size -= length

    def _adopt(self, upload_id: str, bucket: str, key: str) -> None:
        """An upload made before a restart or behind the proxy's back: its size so far."""
        total = 0
        marker = ""
        while True:
            query = {"uploadId": upload_id}
            if marker:
                query["part-number-marker"] = marker
            status, _, body = self.upstream_request(
                "GET", f"/{_quote(bucket)}/{_quote(key)}", urllib.parse.urlencode(query)
            )
            if status == 404:
                raise StorageError.no_such_upload()
            if status != 200:
                raise StorageError.internal()
            root = _parse_store_xml(body)
            for part in root.iter():
                if part.tag.endswith("}Size") or part.tag == "Size":
                    total += int(part.text or 0)
            truncated = _xml_text(root, "IsTruncated") == "true"
            marker = _xml_text(root, "NextPartNumberMarker") or ""
            if not truncated or not marker:
                break
        with self._uploads_lock:
            self._uploads.setdefault(upload_id, _Upload(bucket, key, total))

    # ------------------------------------------------------------------ talking to the store

    def upstream_request(
        self, method: str, path: str, query: str = "", headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """A small bodiless request to the store, signed with its credentials."""
        conn, response = self.open_upstream(method, path, query, headers or {}, None, None)
        try:
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def open_upstream(
        self,
        method: str,
        path: str,
        query: str,
        headers: dict[str, str],
        body: Iterator[bytes] | bytes | None,
        length: int | None,
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """Sign (UNSIGNED-PAYLOAD, the store's keys) and send; the body streams."""
        target = self._upstream_base + path + (f"?{query}" if query else "")
        url = f"{self._upstream_scheme}://{self._upstream_netloc}{target}"
        request = AWSRequest(method=method, url=url, headers=dict(headers))
        request.headers["Host"] = self._upstream_netloc
        if length is not None:
            request.headers["Content-Length"] = str(length)
        request.context["client_config"] = _NO_PAYLOAD_SIGNING
        S3SigV4Auth(self._upstream_credentials, "s3", self.upstream.region).add_auth(request)
        conn: http.client.HTTPConnection
        if self._upstream_scheme == "https":
            conn = http.client.HTTPSConnection(self._upstream_netloc, timeout=300)
        else:
            conn = http.client.HTTPConnection(self._upstream_netloc, timeout=300)
        try:
            conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
            for name, value in request.headers.items():
                conn.putheader(name, value)
            conn.endheaders()
            if isinstance(body, bytes):
                conn.send(body)
            elif body is not None:
                for piece in body:
                    conn.send(piece)
            return conn, conn.getresponse()
        except BaseException:
            conn.close()
            raise


def _quote(text: str) -> str:
    return urllib.parse.quote(text, safe="/-_.~")


def _parse_store_xml(data: bytes) -> ET.Element:
    # Only the store's own answers are parsed (never a client's body).
    return ET.fromstring(data)  # noqa: S314


def _xml_text(root: ET.Element, tag: str) -> str | None:
    for element in root.iter():
        if element.tag == tag or element.tag.endswith("}" + tag):
            return element.text
    return None


# --------------------------------------------------------------------------- requests


class _S3Handler(BaseHTTPRequestHandler):
    proxy: SupabaseS3Proxy
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "supabase-s3-standin"

    _continue_pending = False
    _body_started = False
    _response_started = False

    def setup(self) -> None:
        super().setup()
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(30)
            self.request.do_handshake()
            self.request.settimeout(None)

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (TimeoutError, ssl.SSLError, ConnectionError):
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        # Presigned URLs carry their signature in the query: never log it.
        text = re.sub(
            r"X-Amz-(Signature|Credential|Security-Token)=[^&\s\"]+", r"X-Amz-\1=***", format % args
        )
        log.debug("%s %s", self.address_string(), text)

    def handle_expect_100(self) -> bool:
        # Deferred: the checks that need no body run first, and a refusal goes out instead of
        # "100 Continue" (the client then never sends the body).
        self._continue_pending = True
        return True

    def do_GET(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    # ------------------------------------------------------------------ dispatch

    def _handle(self) -> None:
        self._body_started = False
        self._response_started = False
        self._upstream_error: tuple[int, bytes] | None = None
        raw_path, _, raw_query = self.path.partition("?")
        self.raw_query = raw_query
        self.query = urllib.parse.parse_qs(raw_query, keep_blank_values=True)
        lowered = {k.lower(): v for k, v in self.headers.items()}
        self.seen_request = SeenRequest(
            method=self.command,
            operation="",
            path=raw_path,
            query=raw_query,
            headers=lowered,
            http_chunked="chunked" in self.headers.get("Transfer-Encoding", "").lower(),
            aws_chunked="aws-chunked" in self.headers.get("Content-Encoding", "").lower(),
        )
        # Recorded first and filled in as the request goes: a test reading it after the
        # answer arrived must not race this thread.
        self.proxy.seen.append(self.seen_request)
        self.resource = "/".join(p for p in raw_path.removeprefix(S3_PREFIX).split("/") if p)
        try:
            if not raw_path.startswith(S3_PREFIX + "/") and raw_path != S3_PREFIX:
                raise StorageError(
                    404,
                    "InvalidRequest",
                    f"Route {self.command}:{self.path} not found",
                    http_status=404,
                )
            self.rel_path = raw_path[len(S3_PREFIX) :] or "/"
            segments = self.rel_path.lstrip("/").split("/", 1)
            self.bucket = urllib.parse.unquote(segments[0])
            self.key = urllib.parse.unquote(segments[1]) if len(segments) > 1 else ""
            self._authenticate()
            self._route()
        except StorageError as error:
            self._send_error(error)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception:
            log.exception("S3 stand-in: %s failed", self.command)
            self._send_error(StorageError.internal())
        finally:
            self._continue_pending = False

    def _route(self) -> None:
        q = self.query
        copy = "x-amz-copy-source" in {k.lower() for k in self.headers}
        if (
            self.command == "PUT"
            and self.key
            and "uploadId" in q
            and "partNumber" in q
            and not copy
        ):
            self.seen_request.operation = "UploadPart"
            self._upload_part()
        elif self.command == "PUT" and self.key and not copy and not q:
            self.seen_request.operation = "PutObject"
            self._put_object()
        elif self.command == "POST" and self.key and "uploads" in q:
            self.seen_request.operation = "CreateMultipartUpload"
            self._create_multipart_upload()
        elif self.command == "POST" and self.key and "uploadId" in q:
            self.seen_request.operation = "CompleteMultipartUpload"
            self._complete_multipart_upload()
        elif self.command == "DELETE" and self.key and "uploadId" in q:
            self.seen_request.operation = "AbortMultipartUpload"
            self._abort_multipart_upload()
        else:
            self.seen_request.operation = "PassThrough"
            self._pass_through()

    # ------------------------------------------------------------------ authentication

    def _authenticate(self) -> None:  # noqa: C901
        """plugins/signature-v4.ts: the Authorization header, else a presigned query, else
        AccessDenied; then the key, the date and the signature (botocore recomputes it)."""
        authorization = self.headers.get("Authorization") or ""
        presigned = False
        if authorization.startswith("AWS4-HMAC-SHA256 "):
            fields = {}
            for part in authorization[len("AWS4-HMAC-SHA256 ") :].split(","):
                name, _, value = part.strip().partition("=")
                fields[name] = value
            credential = fields.get("Credential")
            signed_headers = fields.get("SignedHeaders")
            signature = fields.get("Signature")
            long_date = self.headers.get("x-amz-date")
        elif "X-Amz-Credential" in self.query:
            presigned = True

            def one(name: str) -> str | None:
                values = self.query.get(name)
                return values[0] if values else None

            credential = one("X-Amz-Credential")
            signed_headers = one("X-Amz-SignedHeaders")
            signature = one("X-Amz-Signature")
            long_date = one("X-Amz-Date")
        else:
            raise StorageError.access_denied("Missing signature")
        if not (credential and signed_headers and signature and long_date):
            raise StorageError.invalid_signature("Invalid signature format")
        if presigned:
            expires = (self.query.get("X-Amz-Expires") or [""])[0]
            if expires:
                self._check_expiration(long_date, expires)
        scope = credential.split("/")
        if len(scope) != 5:
            raise StorageError.invalid_signature("Invalid credentials")
        access_key, _short_date, region, service = scope[:4]
        if access_key != self.proxy.access_key:
            raise StorageError.invalid_access_key_id()
        if service != "s3":
            raise StorageError.access_denied("Invalid Service")
        # getSelectedRegion (S3_PROTOCOL_ENFORCE_REGION unset): these sign as they are.
        if region not in ("auto", "us-east-1", self.proxy.region, ""):
            region = self.proxy.region
        url_query = self.raw_query
        if presigned:
            url_query = "&".join(
                p for p in self.raw_query.split("&") if p.partition("=")[0] != "X-Amz-Signature"
            )
        request = AWSRequest(
            method=self.command,
            url="http://stand-in"
            + self.path.partition("?")[0]
            + (f"?{url_query}" if url_query else ""),
            headers={"X-Amz-Content-SHA256": self.headers["x-amz-content-sha256"]}
            if self.headers.get("x-amz-content-sha256") and not presigned
            else {},
        )
        request.context["timestamp"] = long_date
        signer = _ClientSigner(
            self.proxy._credentials, region, signed_headers.split(";"), self.headers
        )
        expected = signer.signature(
            signer.string_to_sign(request, signer.canonical_request(request)), request
        )
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            raise StorageError.signature_does_not_match()

    @staticmethod
    def _check_expiration(long_date: str, expires: str) -> None:
        try:
            seconds = int(expires)
            if seconds < 0:
                raise ValueError
        except ValueError:
            raise StorageError.invalid_signature("Invalid expiration") from None
        try:
            signed_at = dt.datetime.strptime(long_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
        except ValueError:
            raise StorageError.invalid_signature("Invalid expiration") from None
        if signed_at.timestamp() + seconds < time.time():
            raise StorageError.expired_signature()

    # ------------------------------------------------------------------ bodies

    def _declared_length(self) -> int | None:
        """uploader.ts getKnownRequestContentLength: the decoded length of an aws-chunked
        body, else Content-Length."""
        name = "x-amz-decoded-content-length" if self._streaming() else "Content-Length"
        value = self.headers.get(name)
        if value is None:
            return None
        try:
            length = int(value)
        except ValueError:
            return None
        return length if length >= 0 else None

    def _streaming(self) -> bool:
        sha = self.headers.get("x-amz-content-sha256") or ""
        return sha.startswith(("STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "STREAMING-UNSIGNED-PAYLOAD"))

    def _framed(self) -> _Source:
        """The HTTP body as sent (Content-Length or chunked), nothing decoded yet."""
        if self._continue_pending:
            self.send_response_only(100)
            self.end_headers()
            self._continue_pending = False
            self.seen_request.continued = True
        self._body_started = True
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return _HttpChunkedReader(self.rfile)
        length = self.headers.get("Content-Length")
        try:
            return _LengthReader(self.rfile, max(int(length or 0), 0))
        except ValueError:
            raise StorageError.invalid_request("Invalid Content-Length") from None

    def _body(self) -> tuple[_Source, _AwsChunkedDecoder | None]:
        """The decoded body: aws-chunked undone when the client streamed it."""
        if not self._streaming():
            return self._framed(), None
        sha = self.headers.get("x-amz-content-sha256") or ""
        if sha != _STREAMING_UNSIGNED:
            raise StorageError(501, "NotImplemented", f"{sha} is not supported by the stand-in")
        framed = self._framed()
        trailer = self.headers.get("x-amz-trailer") or ""
        decoder = _AwsChunkedDecoder(
            framed, trailer.split(","), verify=self.proxy.verify_trailer_checksums
        )
        return decoder, decoder

    def _small_body(self, cap: int = 8 * 1024 * 1024) -> bytes:
        source, decoder = self._body()
        data = bytearray()
        while chunk := source.read(_PIECE):
            data += chunk
            if len(data) > cap:
                raise StorageError.entity_too_large()
        self._record_decoder(decoder, len(data))
        return bytes(data)

    def _record_decoder(self, decoder: _AwsChunkedDecoder | None, count: int) -> None:
        self.seen_request.body_bytes = count
        if decoder is not None:
            self.seen_request.trailer = dict(decoder.trailer)
            self.seen_request.checksum_verified = decoder.verified

    def _forward_headers(self, *, object_body: bool) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, value in self.headers.items():
            lower = name.lower()
            if lower in _HOP_BY_HOP or lower in _CLIENT_ONLY:
                continue
            if lower == "user-agent" or lower.startswith("amz-sdk-"):
                continue
            if object_body and _CHECKSUM_HEADER.match(lower):
                continue
            if lower in ("x-amz-checksum-algorithm", "x-amz-sdk-checksum-algorithm"):
                continue
            if lower == "content-encoding":
                codings = [
                    c.strip() for c in value.split(",") if c.strip().lower() != "aws-chunked"
                ]
                if not codings:
                    continue
                value = ",".join(codings)
            out[name] = value
        return out

    def _upstream_query(self) -> str:
        return "&".join(
            p for p in self.raw_query.split("&") if p and p.partition("=")[0] not in _PRESIGN_PARAMS
        )

    # ------------------------------------------------------------------ operations

    def _bucket_settings(self) -> Any:
        if not is_valid_bucket_name(self.bucket):
            raise StorageError.invalid_bucket_name(self.bucket)
        return self.proxy.buckets.find(self.bucket, dates=False)

    def _check_key(self) -> None:
        if not self.key or not _VALID_KEY.match(self.key):
            raise StorageError.invalid_key(self.key)

    def _put_object(self) -> None:
        """put-object.ts → fileUploadFromRequest (MIME type, declared size) → a body limited
        to min(project limit, bucket limit) → s3-handler putObject (key check)."""
        bucket = self._bucket_settings()
        mimetype = self.headers.get("Content-Type") or "application/octet-stream"
        if bucket.allowed_mime_types:
            validate_mime_type(mimetype, bucket.allowed_mime_types)
        limit = self.proxy.buckets.max_file_size(bucket)
        declared = self._declared_length()
        self.seen_request.decoded_length = declared if self._streaming() else None
        if declared is not None and declared > limit:
            raise StorageError.entity_too_large()
        self._check_key()
        headers = self._forward_headers(object_body=True)
        headers["Content-Type"] = mimetype
        headers.setdefault("Cache-Control", self.headers.get("Cache-Control") or "no-cache")
        source, decoder = self._body()
        if declared is None:
            spooled, declared = self._spool(source, limit)
            body: Iterator[bytes] = iter(lambda: spooled.read(_PIECE), b"")
        else:
            body = _pieces(_Exactly(source, declared), limit, StorageError.entity_too_large)
        status, response_headers = self._stream_up("PUT", headers, body, declared)
        self._record_decoder(decoder, declared)
        self._answer_upload(status, response_headers)

    def _upload_part(self) -> None:
        """upload-part.ts → s3-handler uploadPart: the running total of the upload's parts
        against min(project limit, bucket limit); a failed part gives its size back."""
        part = (self.query.get("partNumber") or [""])[0]
        try:
            number = int(part)
        except ValueError:
            raise StorageError.invalid_request("Querystring, partNumber must be integer") from None
        if number < 1:
            raise StorageError.invalid_request("Querystring, partNumber must be >= 1")
        if number > MAX_PART_NUMBER:
            raise StorageError.invalid_request(
                f"Querystring, partNumber must be <= {MAX_PART_NUMBER}"
            )
        upload_id = (self.query.get("uploadId") or [""])[0]
        if not upload_id:
            raise StorageError(400, "InvalidUploadId", "Invalid upload id")
        length = self._declared_length()
        self.seen_request.decoded_length = length if self._streaming() else None
        if length is None:
            raise StorageError.missing_content_length()
        bucket = self._bucket_settings()
        limit = self.proxy.buckets.max_file_size(bucket)
        if length > MAX_PART_SIZE:
            raise StorageError.entity_too_large()
        self.proxy._reserve(upload_id, self.bucket, self.key, length, limit)
        try:
            source, decoder = self._body()
            body = _pieces(_Exactly(source, length), length, StorageError.entity_too_large)
            status, headers = self._stream_up(
                "PUT", self._forward_headers(object_body=True), body, length
            )
            self._record_decoder(decoder, length)
        except BaseException:
            self.proxy._release(upload_id, length)
            raise
        if status >= 300:
            self.proxy._release(upload_id, length)
        self._answer_upload(status, headers)

    def _create_multipart_upload(self) -> None:
        if not is_valid_bucket_name(self.bucket):
            raise StorageError.invalid_bucket_name(self.bucket)
        self._check_key()
        bucket = self.proxy.buckets.find(self.bucket, dates=False)
        content_type = self.headers.get("Content-Type")
        if content_type and bucket.allowed_mime_types:
            validate_mime_type(content_type, bucket.allowed_mime_types)
        body = self._small_body()
        headers = self._forward_headers(object_body=True)
        status, response_headers, data = self._exchange("POST", headers, body)
        if status == 200:
            upload_id = _xml_text(_parse_store_xml(data), "UploadId")
            if upload_id:
                self.proxy._register(upload_id, self.bucket, self.key)
        self._relay(status, response_headers, data)

    def _complete_multipart_upload(self) -> None:
        upload_id = (self.query.get("uploadId") or [""])[0]
        body = self._small_body()
        status, headers, data = self._exchange(
            "POST", self._forward_headers(object_body=False), body
        )
        if status == 200 and b"<Error>" not in data[:512]:
            self.proxy._forget(upload_id)
            etag = _xml_text(_parse_store_xml(data), "ETag") or ""
            data = (
                '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
                f'<CompleteMultipartUploadResult xmlns="{S3_XML_NAMESPACE}">'
                f"<Location>{_esc(self.bucket)}/{_esc(self.key)}</Location>"
                f"<Bucket>{_esc(self.bucket)}</Bucket><Key>{_esc(self.key)}</Key>"
                f"<ETag>{_esc(etag)}</ETag></CompleteMultipartUploadResult>"
            ).encode()
            headers = {"Content-Type": "application/xml; charset=utf-8"}
        self._relay(status, headers, data)

    def _abort_multipart_upload(self) -> None:
        upload_id = (self.query.get("uploadId") or [""])[0]
        known = self.proxy.in_progress_size(upload_id) is not None
        status, headers, data = self._exchange(
            "DELETE", self._forward_headers(object_body=False), None
        )
        if status == 404 and known:
            status, headers, data = 204, {}, b""  # already gone on the store: fine
        if status < 300:
            self.proxy._forget(upload_id)
        self._relay(status, headers, data)

    def _pass_through(self) -> None:
        body: bytes | None = None
        if self.command in ("PUT", "POST") or self.headers.get("Content-Length") not in (None, "0"):
            body = self._small_body(_DRAIN_CAP)
        headers = self._forward_headers(object_body=False)
        path = self.rel_path
        conn, response = self.proxy.open_upstream(
            self.command,
            path,
            self._upstream_query(),
            headers,
            body,
            len(body) if body is not None else None,
        )
        try:
            if response.status >= 400:
                self._relay(response.status, dict(response.getheaders()), response.read())
                return
            self._stream_down(response)
        finally:
            conn.close()

    # ------------------------------------------------------------------ store round trips

    def _exchange(
        self, method: str, headers: dict[str, str], body: bytes | None
    ) -> tuple[int, dict[str, str], bytes]:
        conn, response = self.proxy.open_upstream(
            method,
            self.rel_path,
            self._upstream_query(),
            headers,
            body,
            len(body) if body is not None else None,
        )
        try:
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def _stream_up(
        self, method: str, headers: dict[str, str], body: Iterator[bytes], length: int
    ) -> tuple[int, dict[str, str]]:
        conn, response = self.proxy.open_upstream(
            method, self.rel_path, self._upstream_query(), headers, body, length
        )
        try:
            data = response.read()
            if response.status >= 400:
                self._upstream_error = (response.status, data)
            return response.status, dict(response.getheaders())
        finally:
            conn.close()

    def _spool(self, source: _Source, limit: int) -> tuple[Any, int]:
        """A length-less body (not boto3's way) is spooled to learn its length."""
        spool = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)  # noqa: SIM115
        for piece in _pieces(source, limit, StorageError.entity_too_large):
            spool.write(piece)
        size = spool.tell()
        spool.seek(0)
        return spool, size

    # ------------------------------------------------------------------ answers

    def _answer_upload(self, status: int, headers: dict[str, str]) -> None:
        """PutObject and UploadPart answer with the ETag only (Access-Control-Expose-Headers
        for browsers), like Supabase's handlers."""
        if status >= 400:
            code, data = self._upstream_error or (status, b"")
            self._relay(code, headers, data)
            return
        etag = {k.lower(): v for k, v in headers.items()}.get("etag", "")
        self._send(200, {"ETag": etag, "Access-Control-Expose-Headers": "etag"}, b"")

    def _relay(self, status: int, headers: dict[str, str], data: bytes) -> None:
        if status >= 400:
            self._send_error(_store_error(status, data))
            return
        out = _response_headers(headers)
        self._send(status, out, data)

    def _stream_down(self, response: http.client.HTTPResponse) -> None:
        headers = _response_headers(dict(response.getheaders()))
        length = response.getheader("Content-Length")
        if self.command == "HEAD" or response.status in (204, 304) or length is None:
            data = b"" if self.command == "HEAD" else response.read()
            if self.command == "HEAD" and length is not None:
                headers["Content-Length"] = length
                self._send(response.status, headers, b"", keep_length=True)
            else:
                self._send(response.status, headers, data)
            return
        self._response_started = True
        self.seen_request.status = response.status
        self.send_response(response.status)
        for name, value in headers.items():
            if name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("Content-Length", length)
        self.end_headers()
        while piece := response.read(_PIECE):
            self.wfile.write(piece)

    def _send(
        self, status: int, headers: dict[str, str], data: bytes, *, keep_length: bool = False
    ) -> None:
        self._finish_body()
        self._response_started = True
        self.seen_request.status = status
        self.send_response(status)
        for name, value in headers.items():
            if name.lower() == "content-length" and not keep_length:
                continue
            self.send_header(name, value)
        if not keep_length:
            self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and data:
            self.wfile.write(data)

    def _send_error(self, error: StorageError) -> None:
        if self._response_started:
            self.close_connection = True
            return
        if self._body_started:
            # The body may not be read to its end: the connection cannot be reused.
            self.close_connection = True
        body = error.s3_xml(self.resource)
        self._send(
            error.status,
            {"Content-Type": "application/xml; charset=utf-8"},
            body if self.command != "HEAD" else b"",
        )

    def _finish_body(self) -> None:
        """Before answering: a body never asked for is not sent (the refusal replaces
        100 Continue); a body not read is read and discarded when small, else the
        connection closes after the answer."""
        if self._continue_pending:
            self._continue_pending = False
            self.close_connection = True
            return
        if self._body_started:
            return
        self._body_started = True
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        length = self.headers.get("Content-Length")
        if not chunked and length in (None, "0"):
            return
        try:
            source = (
                _HttpChunkedReader(self.rfile)
                if chunked
                else _LengthReader(self.rfile, int(length or 0))
            )
            total = 0
            while piece := source.read(_PIECE):
                total += len(piece)
                if total > _DRAIN_CAP:
                    self.close_connection = True
                    return
        except (StorageError, ValueError, OSError):
            self.close_connection = True


class _Exactly:
    """ByteLimitTransformStream(ContentLength) plus the end: exactly ``length`` bytes."""

    def __init__(self, source: _Source, length: int) -> None:
        self._source = source
        self._left = length

    def read(self, size: int) -> bytes:
        data = self._source.read(size if self._left > 0 else _PIECE)
        if len(data) > self._left:
            raise StorageError.entity_too_large()
        if not data and self._left:
            raise StorageError.invalid_request("Request stream closed before upload could complete")
        self._left -= len(data)
        return data


def _esc(text: str) -> str:
    from xml.sax.saxutils import escape

    return escape(text)


def _response_headers(headers: dict[str, str]) -> dict[str, str]:
    out = {}
    for name, value in headers.items():
        lower = name.lower()
        if lower in _HOP_BY_HOP or lower == "server" or lower.startswith("x-amz-checksum"):
            continue
        out[name] = value
    return out


def _store_error(status: int, data: bytes) -> StorageError:
    """The store's error in Supabase's words: Supabase answers these from its database
    (NoSuchKey "Object not found", NoSuchBucket "Bucket not found", NoSuchUpload "Upload not
    found"); anything else passes with the store's status and code (s3 error-handler.ts)."""
    code, message = "", ""
    try:
        root = _parse_store_xml(data) if data else None
        if root is not None:
            code = _xml_text(root, "Code") or ""
            message = _xml_text(root, "Message") or ""
    except ET.ParseError:
        pass
    if code == "NoSuchKey" or (status == 404 and not code):
        return StorageError.no_such_key()
    if code == "NoSuchBucket":
        return StorageError.no_such_bucket()
    if code == "NoSuchUpload":
        return StorageError.no_such_upload()
    return StorageError(status, code or "S3Error", message or code or "S3Error")
