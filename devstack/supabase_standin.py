"""Supabase Storage as the product meets it: the REST API and the S3 endpoint, one process.

``SupabaseStandIn`` starts ``devstack.supabase_storage`` (storage3's REST routes, the Buckets
API) and ``devstack.supabase_s3`` (the S3 endpoint, a proxy enforcing the upload limits)
over one S3 store, sharing one ``BucketRegistry`` (bucket settings and the project's upload
limit), and hands out the settings the product needs to use it::

    with SupabaseStandIn.over_seaweed(weed, jwt_secret) as supabase:
        supabase.buckets.update("backups", file_size_limit=5_000_000)   # a 5 MB bucket
        supabase.buckets.global_file_size_limit = 50 * 1024 * 1024      # the plan's limit
        os.environ.update(supabase.product_env(bucket="backups"))
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any

from devstack.supabase_buckets import DEFAULT_GLOBAL_LIMIT, BucketRegistry
from devstack.supabase_s3 import SupabaseS3Proxy, Upstream
from devstack.supabase_storage import SupabaseStorageFake

__all__ = ["SupabaseStandIn", "Upstream"]


class SupabaseStandIn:
    def __init__(
        self,
        store: Any,
        upstream: Upstream,
        jwt_secret: str,
        *,
        s3_access_key: str | None = None,
        s3_secret_key: str | None = None,
        region: str = "us-east-1",
        config_path: Path | str | None = None,
        global_file_size_limit: int = DEFAULT_GLOBAL_LIMIT,
        tls: bool = False,
        host: str = "127.0.0.1",
    ) -> None:
        """``store`` is a boto3 client of the S3 store ``upstream`` describes (SeaweedFS)."""
        self.buckets = BucketRegistry(
            store, global_file_size_limit=global_file_size_limit, path=config_path
        )
        self.rest = SupabaseStorageFake(store, jwt_secret, host=host, buckets=self.buckets)
        self.s3 = SupabaseS3Proxy(
            upstream,
            self.buckets,
            access_key=s3_access_key,
            secret_key=s3_secret_key,
            region=region,
            host=host,
            tls=tls,
        )

    @classmethod
    def over_seaweed(cls, weed: Any, jwt_secret: str, **options: Any) -> SupabaseStandIn:
        """A stand-in whose objects live in a running ``devstack.seaweed.SeaweedS3``."""
        upstream = Upstream(weed.endpoint_url, weed.access_key, weed.secret_key, weed.region)
        return cls(weed.client(), upstream, jwt_secret, **options)

    @property
    def url(self) -> str:
        """The project URL (SUPABASE_URL)."""
        return self.rest.url

    @property
    def service_key(self) -> str:
        return self.rest.service_key

    def product_env(self, bucket: str) -> dict[str, str]:
        """The product's storage settings for this stand-in (STORAGE_BACKEND=supabase)."""
        return {
            "STORAGE_BACKEND": "supabase",
            "STORAGE_BUCKET": bucket,
            "SUPABASE_URL": self.rest.url,
            "SUPABASE_SERVICE_KEY": self.rest.service_key,
            "S3_ENDPOINT_URL": self.s3.endpoint_url,
            "S3_ACCESS_KEY_ID": self.s3.access_key,
            "S3_SECRET_ACCESS_KEY": self.s3.secret_key,
            "S3_REGION": self.s3.region,
        }

    def start(self) -> SupabaseStandIn:
        self.rest.start()
        try:
            self.s3.start()
        except BaseException:
            self.rest.stop()
            raise
        return self

    def stop(self) -> None:
        self.s3.stop()
        self.rest.stop()

    def __enter__(self) -> SupabaseStandIn:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
