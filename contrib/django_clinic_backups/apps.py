from __future__ import annotations

from django.apps import AppConfig


class ClinicBackupsConfig(AppConfig):
    name = "contrib.django_clinic_backups"
    label = "django_clinic_backups"

    def ready(self) -> None:
        from . import signals  # noqa: F401  (connects the post_schema_sync receiver)
