"""The read path (usecases/archive.py) against the fakes: every read checks the stored bytes
and the archive inside, and a rotation of the platform's key strands no older backup."""

from __future__ import annotations

import pyrage
import pytest
from clinic_backups.domain.errors import (
    BackupNotCompleted,
    ChecksumMismatch,
    ConfigurationError,
    FileMissing,
)
from clinic_backups.domain.models import (
    BackupRecord,
    BackupStatus,
    CreateBackupRequest,
    LightVerifyJob,
    ReencryptJob,
    RegisterKeyRequest,
    Role,
)
from clinic_backups.usecases import archive, backups, keys, reencrypt, restore

from tests.fakes import CLINIC, PLATFORM_IDENTITY, Fakes, caller
from tests.fakes.others import ARCHIVE_HEAD
from tests.usecases.conftest import completed_backup

ADMIN = caller(Role.ADMIN)


def read_all(fakes: Fakes, record: BackupRecord) -> bytes:
    with archive.open_archive(fakes.svc, CLINIC, record) as opened:
        data = opened.stream.read()
        assert opened.verified()
        return bytes(data)


def test_a_stored_backup_reads_back_as_the_archive_the_dump_wrote(fakes: Fakes) -> None:
    done = completed_backup(fakes)

    assert read_all(fakes, done) == fakes.dumper.archive


def test_a_stored_object_changed_after_the_backup_fails_the_read_at_its_end(
    fakes: Fakes,
) -> None:
    done = completed_backup(fakes)
    fakes.storage.objects[done.storage_key] += b"one byte too many"

    with pytest.raises(ChecksumMismatch):
        archive.verify_stored(fakes.svc, CLINIC, done, lambda stream: stream.read())


def test_a_backup_not_completed_or_gone_from_storage_cannot_be_opened(fakes: Fakes) -> None:
    pending = backups.create_backup(fakes.svc, ADMIN, CreateBackupRequest())
    with pytest.raises(BackupNotCompleted):
        archive.open_archive(fakes.svc, CLINIC, pending)
    backups.cancel_backup(fakes.svc, ADMIN, str(pending.id))

    done = completed_backup(fakes)
    del fakes.storage.objects[done.storage_key]
    with pytest.raises(FileMissing):
        archive.open_archive(fakes.svc, CLINIC, done)
    marked = fakes.records.get(CLINIC, done.id)
    assert marked is not None and marked.file_missing_at is not None


def test_without_the_platforms_identities_an_encrypted_backup_is_a_configuration_error(
    fakes: Fakes,
) -> None:
    done = completed_backup(fakes)
    fakes.reconfigure(platform_identities=[])

    with pytest.raises(ConfigurationError):
        archive.open_archive(fakes.svc, CLINIC, done)


def test_a_rotated_platform_key_still_opens_older_backups_and_new_ones_use_the_new_key(
    fakes: Fakes,
) -> None:
    # Given a backup made under the platform's first key, then the key rotated (the new
    # recipient first, the old identity kept)
    old = completed_backup(fakes)
    new_identity = pyrage.x25519.Identity.generate()
    fakes.reconfigure(
        platform_recipients=[str(new_identity.to_public())],
        platform_identities=[str(new_identity), str(PLATFORM_IDENTITY)],
    )

    # Then the old backup still reads, and its light check passes
    assert read_all(fakes, old).startswith(ARCHIVE_HEAD)
    checked = restore.run_light_verify(
        fakes.svc, LightVerifyJob(kind="verify_light", schema=CLINIC, backup_id=old.id)
    )
    assert checked is not None and checked.check_outcome == "passed"

    # And a new backup opens with the new key only
    new = completed_backup(fakes)
    assert pyrage.decrypt(fakes.storage.objects[new.storage_key], [new_identity])
    with pytest.raises(pyrage.DecryptError):
        pyrage.decrypt(fakes.storage.objects[new.storage_key], [PLATFORM_IDENTITY])

    # And re-encrypting the old one moves it to the new key (the old one can be retired)
    keys.register_key(
        fakes.svc,
        ADMIN,
        RegisterKeyRequest(
            label="Portátil", public_key=str(pyrage.x25519.Identity.generate().to_public())
        ),
    )
    reencrypt.request_reencrypt(fakes.svc, ADMIN, str(old.id))
    job = fakes.dispatcher.jobs[-1]
    assert isinstance(job, ReencryptJob)
    moved = reencrypt.run_reencrypt_job(fakes.svc, job)
    assert moved is not None and moved.status == BackupStatus.COMPLETED
    fakes.reconfigure(platform_identities=[str(new_identity)])
    assert read_all(fakes, moved) == fakes.dumper.archive
