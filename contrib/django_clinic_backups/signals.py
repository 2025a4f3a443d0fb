"""After django-tenants creates (or clones) a tenant's schema, grant the backup role what it
needs there and drop any backup table the clone copied from the base schema."""

from __future__ import annotations

from typing import Any

import psycopg2
from clinic_backups.adapters.grants import GrantReport, grant
from django.conf import settings
from django.db import connection
from django.dispatch import receiver
from django_tenants.models import TenantMixin
from django_tenants.signals import post_schema_sync


def _connect() -> Any:
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    return psycopg2.connect(**{k: v for k, v in params.items() if v not in (None, "")})


def grant_for(schema: str) -> GrantReport:
    role = settings.CLINIC_BACKUPS_ROLE
    conn = _connect()
    try:
        return grant(
            conn,
            backup_role=role,
            tables_owner=getattr(settings, "CLINIC_BACKUPS_TABLES_OWNER", None) or role,
            clinics=[schema],
            tenants_table=_tenants_table(),
        )
    finally:
        conn.close()


def _tenants_table() -> str:
    from django_tenants.utils import get_tenant_model

    return f"public.{get_tenant_model()._meta.db_table}"


@receiver(post_schema_sync, sender=TenantMixin)
def grant_backup_role(sender: Any, tenant: Any, **kwargs: Any) -> None:
    grant_for(tenant.schema_name)
