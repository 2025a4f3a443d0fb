"""A clinic's encryption keys (usecases/keys.py), re-encryption of a stored backup to them
(usecases/reencrypt.py) and the activity log (usecases/activity.py), against the fakes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pyrage
import pytest
from clinic_backups.domain.errors import (
    BackupNotCompleted,
    EncryptionKeyRequired,
    Forbidden,
    KeyAlreadyRegistered,
    KeyNotFound,
    OperationInProgress,
    QueueUnavailable,
    ValidationFailed,
)
from clinic_backups.domain.models import (
    AuditExportRequest,
    BackupStatus,
    CreateBackupRequest,
    EncryptionKey,
    ListAuditQuery,
    ReencryptJob,
    RegisterKeyRequest,
    Role,
)
from clinic_backups.domain.names import audit_export_prefix
from clinic_backups.usecases import activity, backups, keys, reencrypt

from tests.fakes import CLINIC, PLATFORM_IDENTITY, Fakes, caller
from tests.fakes.others import ARCHIVE_HEAD
from tests.usecases.conftest import actions, completed_backup, last_backup_job

ADMIN = caller(Role.ADMIN)
STAFF = caller(Role.STAFF, user_id="u-staff")
# A point of small order: it parses as an age key, and age cannot encrypt to it.
SMALL_ORDER_KEY = "age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq"


def new_public_key() -> tuple[pyrage.x25519.Identity, str]:
    identity = pyrage.x25519.Identity.generate()
    return identity, str(identity.to_public())


def register(fakes: Fakes, public_key: str, label: str = "Portátil") -> uuid.UUID:
    key = keys.register_key(
        fakes.svc, ADMIN, RegisterKeyRequest(label=label, public_key=public_key)
    )
    return key.id


# --- keys -----------------------------------------------------------------------------------


def test_register_stores_the_public_key_with_its_fingerprint_and_audits_no_key_material(
    fakes: Fakes,
) -> None:
    _, public = new_public_key()

    key_id = register(fakes, public)

    (listed,) = keys.list_keys(fakes.svc, ADMIN)
    assert (listed.id, listed.public_key, listed.problem) == (key_id, public, None)
    assert listed.fingerprint == keys.fingerprint(public)
    entry = fakes.records.tables(CLINIC).audit[-1]
    assert (entry.action, entry.outcome) == ("keys.register", "registered")
    assert public not in str(entry.details)


def test_the_same_key_twice_is_refused(fakes: Fakes) -> None:
    _, public = new_public_key()
    register(fakes, public)

    with pytest.raises(KeyAlreadyRegistered):
        register(fakes, public, label="otra vez")


def test_a_key_age_cannot_encrypt_to_is_refused_before_it_is_stored(fakes: Fakes) -> None:
    with pytest.raises(ValidationFailed):
        register(fakes, SMALL_ORDER_KEY)

    assert fakes.keys.list(CLINIC) == []
    assert actions(fakes) == [("keys.register", "rejected")]


def test_staff_may_not_list_register_or_remove_keys(fakes: Fakes) -> None:
    _, public = new_public_key()
    for call in (
        lambda: keys.list_keys(fakes.svc, STAFF),
        lambda: keys.register_key(
            fakes.svc, STAFF, RegisterKeyRequest(label="x", public_key=public)
        ),
        lambda: keys.remove_key(fakes.svc, STAFF, str(uuid.uuid4())),
    ):
        with pytest.raises(Forbidden):
            call()
    assert fakes.keys.list(CLINIC) == []


def test_remove_forgets_the_key_and_an_unknown_id_is_not_found(fakes: Fakes) -> None:
    _, public = new_public_key()
    key_id = register(fakes, public)

    keys.remove_key(fakes.svc, ADMIN, str(key_id))

    assert keys.list_keys(fakes.svc, ADMIN) == []
    for raw in (str(key_id), "not-an-id"):
        with pytest.raises(KeyNotFound):
            keys.remove_key(fakes.svc, ADMIN, raw)


def test_a_stored_key_age_cannot_use_is_listed_as_unusable_and_fails_each_backup(
    fakes: Fakes,
) -> None:
    # Given a bad key that reached the table by another way than the API (which refuses it)
    fakes.keys.add(CLINIC, stored_key(SMALL_ORDER_KEY, fakes))

    # Then the list marks it, and a backup fails naming it, with nothing stored
    (listed,) = keys.list_keys(fakes.svc, ADMIN)
    assert listed.problem is not None
    record = backups.create_backup(fakes.svc, ADMIN, CreateBackupRequest())
    failed = backups.run_backup_job(fakes.svc, last_backup_job(fakes))
    assert failed is not None and failed.status == BackupStatus.FAILED
    assert "«viejo»" in (failed.error or "") and failed.id == record.id
    assert fakes.dumper.runs == [] and fakes.storage.objects == {}


def stored_key(public_key: str, fakes: Fakes) -> EncryptionKey:
    return EncryptionKey(
        id=uuid.uuid4(),
        label="viejo",
        public_key=public_key,
        fingerprint=keys.fingerprint(public_key),
        created_by="u-admin",
        created_at=fakes.clock.now(),
    )


# --- re-encryption ----------------------------------------------------------------------------


def test_reencrypt_rewrites_a_backup_for_a_key_registered_after_it(fakes: Fakes) -> None:
    # Given a backup made before the clinic had a key, then a key registered
    done = completed_backup(fakes)
    identity, public = new_public_key()
    register(fakes, public)

    # When it is re-encrypted
    flagged = reencrypt.request_reencrypt(fakes.svc, ADMIN, str(done.id))
    assert flagged.reencrypting
    job = fakes.dispatcher.jobs[-1]
    assert isinstance(job, ReencryptJob)
    after = reencrypt.run_reencrypt_job(fakes.svc, job)

    # Then the record points at a new generation the clinic's key opens, the old one is gone
    assert after is not None and not after.reencrypting
    assert after.storage_key != done.storage_key and "-g1.dump" in after.storage_key
    assert done.storage_key not in fakes.storage.objects
    stored = fakes.storage.objects[after.storage_key]
    assert pyrage.decrypt(stored, [identity]).startswith(ARCHIVE_HEAD)
    assert pyrage.decrypt(stored, [PLATFORM_IDENTITY]).startswith(ARCHIVE_HEAD)
    assert fakes.records.tables(CLINIC).lock is None
    # A repeated delivery does nothing
    assert reencrypt.run_reencrypt_job(fakes.svc, job) is None


def test_reencrypt_needs_a_clinic_key_a_completed_backup_and_a_free_clinic(
    fakes: Fakes,
) -> None:
    done = completed_backup(fakes)
    with pytest.raises(EncryptionKeyRequired):
        reencrypt.request_reencrypt(fakes.svc, ADMIN, str(done.id))

    register(fakes, new_public_key()[1])
    backups.create_backup(fakes.svc, ADMIN, CreateBackupRequest())  # holds the clinic
    with pytest.raises(OperationInProgress):
        reencrypt.request_reencrypt(fakes.svc, ADMIN, str(done.id))
    pending = [r for r in fakes.records.tables(CLINIC).records.values() if r.id != done.id]
    with pytest.raises(BackupNotCompleted):
        reencrypt.request_reencrypt(fakes.svc, ADMIN, str(pending[0].id))
    with pytest.raises(Forbidden):
        reencrypt.request_reencrypt(fakes.svc, STAFF, str(done.id))
    # Every refusal is in the activity log with its reason, as every other request's is
    refusals = [
        (e.outcome, e.details.get("reason"))
        for e in fakes.records.tables(CLINIC).audit
        if e.action == "backup.reencrypt"
    ]
    assert refusals == [
        ("rejected", "encryption_key_required"),
        ("rejected", "operation_in_progress"),
        ("rejected", "backup_not_completed"),
        ("denied", None),
    ]


def test_a_reencryption_the_queue_refuses_frees_the_backup_and_is_audited(fakes: Fakes) -> None:
    # Given a backup and a clinic key, and a queue that refuses the job
    done = completed_backup(fakes)
    register(fakes, new_public_key()[1])
    fakes.dispatcher.refuse = QueueUnavailable()

    # When a re-encryption is asked for
    with pytest.raises(QueueUnavailable):
        reencrypt.request_reencrypt(fakes.svc, ADMIN, str(done.id))

    # Then the backup is not left flagged, the clinic is free, and the refusal is audited
    after = fakes.records.get(CLINIC, done.id)
    assert after is not None and not after.reencrypting
    assert fakes.records.tables(CLINIC).lock is None
    (entry,) = [e for e in fakes.records.tables(CLINIC).audit if e.action == "backup.reencrypt"]
    assert (entry.outcome, entry.details.get("reason")) == ("rejected", "queue")


# --- the activity log ---------------------------------------------------------------------------


def test_only_admins_read_the_activity_and_a_refusal_is_itself_audited(fakes: Fakes) -> None:
    with pytest.raises(Forbidden):
        activity.list_audit(fakes.svc, STAFF, ListAuditQuery())

    page = activity.list_audit(fakes.svc, ADMIN, ListAuditQuery())
    assert [(e.action, e.outcome) for e in page.items] == [("audit.list", "denied")]


def test_activity_pages_newest_first_filtered_by_action_prefix_and_time(fakes: Fakes) -> None:
    # Given three backups an hour apart (each audited: create, run) and a key registered
    for _ in range(3):
        completed_backup(fakes)
        fakes.clock.advance(hours=1)
    register(fakes, new_public_key()[1])

    # When the backup actions are read two at a time
    seen, cursor = [], None
    while True:
        page = activity.list_audit(
            fakes.svc,
            ADMIN,
            ListAuditQuery.model_validate({"action": "backup", "limit": 2, "cursor": cursor}),
        )
        seen += page.items
        if page.next_cursor is None:
            break
        cursor = page.next_cursor

    # Then every backup entry comes once, newest first, and no key entry
    assert len(seen) == 6 and {e.action for e in seen} == {"backup.create", "backup.run"}
    assert [e.at for e in seen] == sorted((e.at for e in seen), reverse=True)

    # And a time window keeps only what happened inside it
    start = fakes.records.tables(CLINIC).audit[0].at
    window = activity.list_audit(
        fakes.svc,
        ADMIN,
        ListAuditQuery.model_validate(
            {"from": start.isoformat(), "to": (start + timedelta(minutes=1)).isoformat()}
        ),
    )
    assert [(e.action, e.outcome) for e in window.items] == [
        ("backup.run", "completed"),
        ("backup.create", "accepted"),
    ]


def test_the_export_is_encrypted_to_the_clinics_key_and_defuses_formulas(fakes: Fakes) -> None:
    # Given an entry whose text a spreadsheet would run as a formula, and a clinic key
    identity, public = new_public_key()
    backups.create_backup(
        fakes.svc, caller(Role.ADMIN, user_id="=HYPERLINK(1)"), CreateBackupRequest()
    )
    register(fakes, public)

    # When the activity is exported
    export = activity.export_audit(fakes.svc, ADMIN, AuditExportRequest())

    # Then one object under the exports prefix, only the clinic's key opens it
    (key,) = [k for k in fakes.storage.objects if k.startswith(audit_export_prefix(CLINIC))]
    text = pyrage.decrypt(fakes.storage.objects[key], [identity]).decode("utf-8")
    with pytest.raises(pyrage.DecryptError):
        pyrage.decrypt(fakes.storage.objects[key], [PLATFORM_IDENTITY])
    assert export.rows == 2
    assert "'=HYPERLINK(1)" in text and "\n=HYPERLINK" not in text
    assert export.expires_at > datetime(2000, 1, 1, tzinfo=UTC)


def test_the_export_without_a_clinic_key_is_refused(fakes: Fakes) -> None:
    with pytest.raises(EncryptionKeyRequired):
        activity.export_audit(fakes.svc, ADMIN, AuditExportRequest())
    assert fakes.storage.objects == {}
