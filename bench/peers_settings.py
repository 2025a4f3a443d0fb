"""Django settings for the peers section's django-dbbackup runs (bench/peers.py): a project
with nothing but dbbackup, pointed at the bench database by environment variables, its
backups stored on the local disk (django-dbbackup's default FileSystemStorage)."""

from __future__ import annotations

import os

SECRET_KEY = "bench-only-not-secret"
USE_TZ = True
INSTALLED_APPS = ["dbbackup"]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ["PEER_DB_NAME"],
        "HOST": os.environ["PEER_DB_HOST"],
        "PORT": os.environ["PEER_DB_PORT"],
        "USER": os.environ["PEER_DB_USER"],
        "PASSWORD": os.environ.get("PEER_DB_PASSWORD", ""),
    }
}
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    "dbbackup": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": os.environ["PEER_STORE"]},
    },
}
# The same clinic as the other tools (`-n <schema>`) and the layer's pg_dump; everything else
# is django-dbbackup's default (custom format, pg_dump's default gzip, a spooled temp copy).
DBBACKUP_CONNECTORS = {
    "default": {
        "DUMP_CMD": os.environ["PEER_PG_DUMP"],
        "SCHEMAS": [os.environ["PEER_SCHEMA"]],
    }
}
DBBACKUP_TMP_DIR = os.environ["PEER_TMP"]
DBBACKUP_GPG_RECIPIENT = os.environ.get("PEER_GPG_RECIPIENT")
DBBACKUP_GPG_ALWAYS_TRUST = True
DBBACKUP_SEND_EMAIL = False
LOGGING = {"version": 1, "disable_existing_loggers": False}
