"""What the upload wire format costs the uploader: boto3's default over HTTPS (aws-chunked with a
CRC32 trailer, checksum validation on reads) against the product's client (checksums
`when_required`, no payload signing: a plain, unsigned body).

    python -m bench.wire_format [--size-mb 123] [--rounds 3]

Both upload the same bytes with the product's managed transfer (S3Storage.upload_stream, 8 MiB
parts) through the Supabase stand-in's S3 endpoint over TLS (a throwaway CA), in front of a
SeaweedFS of its own. Each upload runs in a child process; the number is that child's CPU
(user + system, all threads) for the upload alone, and its wall time. Rounds alternate the two
clients. Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench import common

MiB = 1024 * 1024
BUCKET = "backups"


def _child() -> None:
    payload = json.loads(sys.stdin.read())
    import boto3
    from botocore.config import Config
    from clinic_backups.adapters.s3 import S3Endpoint, S3Storage

    data = os.urandom(payload["size_mb"] * MiB)
    client = None
    if payload["client"] == "boto3-default":
        client = boto3.client(
            "s3",
            endpoint_url=payload["endpoint"],
            region_name=payload["region"],
            aws_access_key_id=payload["access_key"],
            aws_secret_access_key=payload["secret_key"],
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )
    endpoint = S3Endpoint(
        url=payload["endpoint"],
        region=payload["region"],
        access_key_id=payload["access_key"],
        secret_access_key=payload["secret_key"],
    )
    storage = S3Storage(BUCKET, client, endpoint)
    storage.client  # built before the clock starts  # noqa: B018
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    storage.upload_stream(payload["key"], io.BytesIO(data), "application/octet-stream")
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(json.dumps({"cpu": cpu, "wall": wall}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, default=123)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from devstack.seaweed import SeaweedS3
    from devstack.supabase_buckets import BucketRegistry
    from devstack.supabase_s3 import SupabaseS3Proxy, Upstream

    with tempfile.TemporaryDirectory(prefix="bench-wire-") as tmp, SeaweedS3(Path(tmp)) as weed:
        weed.ensure_bucket(BUCKET)
        assert weed.endpoint_url
        upstream = Upstream(weed.endpoint_url, weed.access_key, weed.secret_key, weed.region)
        buckets = BucketRegistry(weed.client(), global_file_size_limit=64 * 1024 * MiB)
        with SupabaseS3Proxy(upstream, buckets, tls=True) as proxy:
            results: dict[str, list[dict[str, float]]] = {
                "boto3-default": [],
                "product": [],
            }
            order = list(results)
            for round_ in range(args.rounds):
                for name in order if round_ % 2 == 0 else reversed(order):
                    answer = common.run_child(
                        "bench.wire_format",
                        {
                            "client": name,
                            "size_mb": args.size_mb,
                            "endpoint": proxy.endpoint_url,
                            "region": proxy.region,
                            "access_key": proxy.access_key,
                            "secret_key": proxy.secret_key,
                            "key": f"bench/{name}-{round_}",
                        },
                        env={"AWS_CA_BUNDLE": str(proxy.ca_file), "BENCH_WIRE_CHILD": "1"},
                    )
                    results[name].append(answer)
            seen = [r for r in proxy.seen if r.operation == "UploadPart"]
            chunked = sum(r.aws_chunked for r in seen)
    print(f"upload of {args.size_mb} MiB over HTTPS, {args.rounds} rounds each (child CPU s):")
    for name, rounds in results.items():
        cpu = [r["cpu"] for r in rounds]
        wall = [r["wall"] for r in rounds]
        print(
            f"  {name:14} cpu median {statistics.median(cpu):.3f} s "
            f"(min {min(cpu):.3f}, max {max(cpu):.3f}); wall median {statistics.median(wall):.3f} s"
        )
    saved = statistics.median(r["cpu"] for r in results["boto3-default"]) - statistics.median(
        r["cpu"] for r in results["product"]
    )
    print(f"  CPU saved by the product's client: {saved:.3f} s per {args.size_mb} MiB")
    print(f"  parts sent aws-chunked: {chunked} of {len(seen)} (all from boto3-default)")


if __name__ == "__main__":
    if os.environ.get("BENCH_WIRE_CHILD"):
        _child()
    else:
        main()
