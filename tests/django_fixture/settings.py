"""Settings of the fixture host: a small django-tenants 4.0.1 clinic application (Django 5.2)
that the integration suite (tests/integration/django_host) backs up and restores.

The database comes from `CLINIC_FIXTURE_DATABASE_URL` (a libpq URL; the suite creates a
database of its own and connects as the application role, as a real deployment does)."""

from __future__ import annotations

import os

import psycopg2.extensions

_url = psycopg2.extensions.parse_dsn(
    os.environ.get("CLINIC_FIXTURE_DATABASE_URL", "postgresql://clinic_app@127.0.0.1/clinics")
)

SECRET_KEY = "fixture-only-not-a-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "Europe/Madrid"
LANGUAGE_CODE = "es-es"
ALLOWED_HOSTS = ["*"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
ROOT_URLCONF = "tests.django_fixture.urls"

DATABASES = {
    "default": {
        "ENGINE": "django_tenants.postgresql_backend",
        "NAME": _url.get("dbname", "clinics"),
        "USER": _url.get("user", "clinic_app"),
        "PASSWORD": _url.get("password", ""),
        "HOST": _url.get("host", "127.0.0.1"),
        "PORT": _url.get("port", "5432"),
    }
}
DATABASE_ROUTERS = ("django_tenants.routers.TenantSyncRouter",)

SHARED_APPS = [
    "django_tenants",
    "tests.django_fixture.customers",
    "django.contrib.contenttypes",
    "django.contrib.auth",
]
TENANT_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "tests.django_fixture.clinic",
]
INSTALLED_APPS = [
    *SHARED_APPS,
    *[a for a in TENANT_APPS if a not in SHARED_APPS],
    # the optional app of this repository (contrib/django_clinic_backups)
    "contrib.django_clinic_backups",
]
CLINIC_BACKUPS_ROLE = "clinic_backup"

TENANT_MODEL = "customers.Client"
TENANT_DOMAIN_MODEL = "customers.Domain"

MIDDLEWARE = [
    "django_tenants.middleware.main.TenantMainMiddleware",
    "contrib.django_clinic_backups.middleware.RestoreMaintenanceMiddleware",
]

TEMPLATES: list[dict[str, object]] = []
