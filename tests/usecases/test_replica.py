"""The independent replica (usecases/replica.py) against the fakes: the copy and its lock,
reading from the replica when the primary lost or damaged an object, and the purges that
wait for the lock."""

from __future__ import annotations

from datetime import timedelta

import pyrage
import pytest
from clinic_backups.domain.models import (
    BackupRecord,
    BackupStatus,
    KeepRequest,
    RegisterKeyRequest,
    ReplicateJob,
    RestoreJob,
    RestoreRequest,
    RestoreStatus,
    Role,
)
from clinic_backups.domain.names import manifest_key
from clinic_backups.usecases import backups, keys, replica, restore

from tests.fakes import CLINIC, Fakes, caller, fake_services
from tests.fakes.storage import FakeReplica
from tests.usecases.conftest import actions, completed_backup

ADMIN = caller(Role.ADMIN)


@pytest.fixture
def fakes() -> Fakes:
    return fake_services(with_replica=True)


def the_replica(fakes: Fakes) -> FakeReplica:
    assert fakes.replica is not None
    return fakes.replica


def replicated(fakes: Fakes) -> tuple[BackupRecord, BackupRecord]:
    done = completed_backup(fakes)
    job = [j for j in fakes.dispatcher.jobs if isinstance(j, ReplicateJob)][-1]
    copied = replica.run_replicate_job(fakes.svc, job)
    assert copied is not None
    return done, copied


def test_a_completed_backup_is_copied_to_the_replica_locked_and_recorded(fakes: Fakes) -> None:
    done, copied = replicated(fakes)

    store = the_replica(fakes)
    assert store.objects[done.storage_key] == fakes.storage.objects[done.storage_key]
    assert manifest_key(done.storage_key) in store.objects
    assert copied.replicated_at == fakes.clock.now()
    # Locked for at least as long as the clinic's retention may keep the backup
    lock = store.locks[done.storage_key]
    assert lock == copied.replica_retain_until
    assert lock >= fakes.clock.now() + timedelta(days=fakes.svc.config.policy.min_retention_days)


def test_a_copied_backup_is_not_copied_again(fakes: Fakes) -> None:
    replicated(fakes)
    job = [j for j in fakes.dispatcher.jobs if isinstance(j, ReplicateJob)][-1]

    assert replica.run_replicate_job(fakes.svc, job) is None


def test_a_primary_that_does_not_match_its_record_is_not_copied(fakes: Fakes) -> None:
    done = completed_backup(fakes)
    fakes.storage.objects[done.storage_key] += b"tampered"
    job = [j for j in fakes.dispatcher.jobs if isinstance(j, ReplicateJob)][-1]

    assert replica.run_replicate_job(fakes.svc, job) is None

    assert the_replica(fakes).objects == {}
    assert fakes.records.get(CLINIC, done.id).replicated_at is None  # type: ignore[union-attr]
    assert fakes.metrics.total("ReplicaCopyRefused") == 1


def test_a_download_whose_primary_object_is_gone_is_signed_by_the_replica(fakes: Fakes) -> None:
    # Given a replicated backup the clinic can open, whose primary object then disappears
    keys.register_key(
        fakes.svc,
        ADMIN,
        RegisterKeyRequest(
            label="Portátil",
            public_key=str(pyrage.x25519.Identity.generate().to_public()),
        ),
    )
    done, _ = replicated(fakes)
    del fakes.storage.objects[done.storage_key]

    # When it is downloaded, the replica signs it and the read is audited
    backups.request_download(fakes.svc, ADMIN, str(done.id))

    assert fakes.storage.signed == []
    assert [k for k, _, _ in the_replica(fakes).signed] == [done.storage_key]
    assert ("backup.replica_read", "used") in actions(fakes)


def test_a_restore_whose_primary_is_damaged_reads_the_replicas_checked_copy(
    fakes: Fakes,
) -> None:
    # Given a replicated backup whose primary bytes were damaged afterwards
    done, _ = replicated(fakes)
    key = done.storage_key
    damaged = bytearray(fakes.storage.objects[key])
    damaged[-1] ^= 0xFF
    fakes.storage.objects[key] = bytes(damaged)

    # When it is restored
    restore.request_restore(fakes.svc, ADMIN, str(done.id), RestoreRequest(confirm=CLINIC))
    job = [j for j in fakes.dispatcher.jobs if isinstance(j, RestoreJob)][-1]
    finished = restore.run_restore_job(fakes.svc, job)

    # Then the restore used the replica's copy, and the primary is marked damaged
    assert finished is not None and finished.status == RestoreStatus.COMPLETED
    record = fakes.records.get(CLINIC, done.id)
    assert record is not None and record.primary_damaged_at is not None
    assert fakes.metrics.total("PrimaryCopyDamaged") == 1


def test_the_replicas_copy_outlives_the_purge_until_its_lock_expires(fakes: Fakes) -> None:
    # Given a replicated backup deleted and purged from the primary
    done, copied = replicated(fakes)
    backups.delete_backup(fakes.svc, ADMIN, str(done.id))
    fakes.clock.advance(days=fakes.svc.config.delete_grace_days + 1)
    backups.purge_deleted(fakes.svc, CLINIC)
    key = done.storage_key
    assert key not in fakes.storage.objects and key in the_replica(fakes).objects

    # When the purge runs once the copy's lock has expired, the copy goes too
    assert copied.replica_retain_until is not None
    fakes.clock.at = copied.replica_retain_until + timedelta(seconds=1)
    backups.purge_deleted(fakes.svc, CLINIC)
    assert the_replica(fakes).objects == {}
    record = fakes.records.get(CLINIC, done.id)
    assert record is not None and record.replicated_at is None
    assert record.status == BackupStatus.DELETED


def test_keeping_a_backup_moves_its_replica_lock_later(fakes: Fakes) -> None:
    done, copied = replicated(fakes)
    before = the_replica(fakes).locks[done.storage_key]

    backups.set_backup_keep(fakes.svc, ADMIN, str(done.id), KeepRequest(keep=True))

    after = the_replica(fakes).locks[done.storage_key]
    assert after > before
    assert after >= fakes.clock.now() + timedelta(days=fakes.svc.config.replica_keep_lock_days - 1)
    assert copied is not None
