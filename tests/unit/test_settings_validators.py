"""A settings class never loses a base's field validator: pydantic keys validators by method
name, so a subclass method of the same name silently replaces the base's (an empty
S3_ENDPOINT_URL or TENANT_ACTIVE_COLUMN in the restore function's settings stayed "")."""

from __future__ import annotations

import inspect

import pytest
from clinic_backups.wiring import settings
from pydantic_settings import BaseSettings

from tests.helpers import PLATFORM_RECIPIENT

CLASSES = [
    cls
    for _, cls in inspect.getmembers(settings, inspect.isclass)
    if issubclass(cls, BaseSettings) and cls.__module__ == settings.__name__
]


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_field_a_base_class_validates_is_still_validated(cls: type[BaseSettings]) -> None:
    own = cls.__pydantic_decorators__.field_validators
    for base in cls.__mro__[1:]:
        decorators = getattr(base, "__pydantic_decorators__", None)
        if decorators is None or not issubclass(base, BaseSettings) or base is BaseSettings:
            continue
        for name, validator in decorators.field_validators.items():
            kept = own.get(name)
            assert kept is not None and set(validator.info.fields) <= set(kept.info.fields), (
                f"{cls.__name__}.{name} replaces {base.__name__}.{name}: "
                f"{set(validator.info.fields) - set(kept.info.fields if kept else ())} "
                "would go unvalidated"
            )


def test_empty_optional_urls_are_unset_in_the_restore_functions_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As the template passes them: empty strings for the optional values.
    for name, value in {
        "DATABASE_URL": "postgresql://x",
        "JWT_SECRET": "s",
        "JWT_ISSUER": "i",
        "JWT_AUDIENCE": "a",
        "S3_BUCKET": "b",
        "JOB_QUEUE": "local",
        "STORAGE_BACKEND": "s3",
        "PLATFORM_AGE_RECIPIENTS": PLATFORM_RECIPIENT,
        "S3_ENDPOINT_URL": "",
        "S3_PUBLIC_ENDPOINT_URL": "",
        "TENANT_ACTIVE_COLUMN": "",
        "RESTORE_DATABASE_URL": "",
        "RESTORE_ERASURE_FUNCTION": "",
    }.items():
        monkeypatch.setenv(name, value)
    loaded = settings.RestoreSettings()  # type: ignore[call-arg]
    assert loaded.s3_endpoint_url is None and loaded.s3_public_endpoint_url is None
    assert loaded.tenant_active_column is None
    assert loaded.restore_database_url is None and loaded.restore_erasure_function is None
