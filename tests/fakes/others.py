"""The smaller fakes: the dispatcher (it records the jobs), the keys and schedules
repositories, the dumper, and metrics."""

from __future__ import annotations

import builtins
import hashlib
import io
import threading
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import date, datetime
from typing import BinaryIO

import pyrage
from clinic_backups.domain.errors import ApiError, KeyAlreadyRegistered
from clinic_backups.domain.models import (
    BackupStatus,
    ClinicSettings,
    DumpResult,
    EncryptionKey,
    Job,
    SlotRecord,
    SlotStatus,
)
from clinic_backups.domain.ports import ClinicSnapshot, Dumper, SnapshotWindow
from clinic_backups.domain.schedule import Slot
from pyrage import x25519

from tests.fakes.clock import FakeClock
from tests.fakes.records import FakeRecords

# The smallest honest pg_dump custom-format archive head: the magic, format 1.14, int and
# offset sizes, the custom format (1), and a little body standing for the TOC and data.
ARCHIVE_HEAD = b"PGDMP\x01\x0e\x00\x04\x08\x01"


class FakeDispatcher:
    def __init__(self) -> None:
        self.jobs: list[Job] = []
        self.refuse: ApiError | None = None  # a test makes the queue refuse

    def enqueue(self, job: Job) -> None:
        if self.refuse is not None:
            raise self.refuse
        self.jobs.append(job)

    def kinds(self) -> builtins.list[str]:
        return [job.kind for job in self.jobs]


class FakeMetrics:
    def __init__(self) -> None:
        self.added: list[tuple[str, float, str]] = []

    def add(self, name: str, value: float, unit: str) -> None:
        self.added.append((name, value, unit))

    def total(self, name: str) -> float:
        return sum(value for n, value, _ in self.added if n == name)


class FakeKeys:
    def __init__(self) -> None:
        self.keys: dict[str, list[EncryptionKey]] = {}

    def list(self, schema: str) -> builtins.list[EncryptionKey]:
        return list(self.keys.get(schema, []))

    def add(self, schema: str, key: EncryptionKey) -> EncryptionKey:
        if any(k.public_key == key.public_key for k in self.keys.get(schema, [])):
            raise KeyAlreadyRegistered()
        self.keys.setdefault(schema, []).append(key)
        return key

    def remove(self, schema: str, key_id: uuid.UUID) -> EncryptionKey | None:
        found = [k for k in self.keys.get(schema, []) if k.id == key_id]
        if not found:
            return None
        self.keys[schema] = [k for k in self.keys[schema] if k.id != key_id]
        return found[0]


class FakeSchedules:
    """Settings and schedule slots; `snapshot` reads the records fake for the sweeper hints."""

    def __init__(self, records: FakeRecords, clock: FakeClock):
        self.records = records
        self.clock = clock
        self.settings: dict[str, ClinicSettings] = {}
        self.slots: dict[str, dict[tuple[date, int], SlotRecord]] = {}

    def get_settings(self, schema: str) -> ClinicSettings | None:
        return self.settings.get(schema)

    def save_settings(self, schema: str, settings: ClinicSettings) -> ClinicSettings:
        self.settings[schema] = settings
        return settings

    def snapshot(
        self, schemas: builtins.list[str], window: SnapshotWindow
    ) -> dict[str, ClinicSnapshot]:
        found = {}
        slots_since, stuck_before = window.slots_since, window.stuck_before
        deleted_before, replica_lag_before = window.deleted_before, window.replica_lag_before
        now = self.clock.now()
        for schema in schemas:
            tables = self.records.tables(schema)
            records = list(tables.records.values())
            completed = [r.finished_at for r in records if r.status == BackupStatus.COMPLETED]
            slots = self.slots.get(schema, {})
            lock = tables.lock
            found[schema] = ClinicSnapshot(
                schema=schema,
                settings=self.settings.get(schema),
                slots={k: s for k, s in slots.items() if s.scheduled_at >= slots_since},
                last_good_at=max((at for at in completed if at), default=None),
                first_slot_at=min((s.scheduled_at for s in slots.values()), default=None),
                lock_held=lock is not None,
                stuck=(lock is not None and lock.expired(now))
                or any(
                    r.status == BackupStatus.PENDING and r.created_at < stuck_before
                    for r in records
                ),
                purgeable=bool(self.records.purgeable(schema, deleted_before)),
                replica_lagging=(
                    self.records.unreplicated_since(schema, replica_lag_before)
                    if replica_lag_before is not None
                    else 0
                ),
            )
        return found

    def claim_slot(self, schema: str, slot: Slot, backup_id: uuid.UUID, at: datetime) -> bool:
        slots = self.slots.setdefault(schema, {})
        if slot.key in slots:
            return False
        slots[slot.key] = SlotRecord(*slot.key, slot.scheduled_at, SlotStatus.DUE, backup_id, at, 1)
        return True

    def reclaim_slot(
        self, schema: str, slot: Slot, backup_id: uuid.UUID, at: datetime, due_before: datetime
    ) -> bool:
        slots = self.slots.setdefault(schema, {})
        row = slots.get(slot.key)
        if row is None or not (
            row.status == SlotStatus.SKIPPED_BUSY
            or (row.status == SlotStatus.DUE and row.decided_at < due_before)
        ):
            return False
        slots[slot.key] = replace(
            row,
            status=SlotStatus.DUE,
            backup_id=backup_id,
            decided_at=at,
            attempts=row.attempts + 1,
        )
        return True

    def mark_slot(
        self, schema: str, slot: Slot, status: SlotStatus, at: datetime, backup_id: uuid.UUID | None
    ) -> None:
        slots = self.slots.setdefault(schema, {})
        row = slots.get(slot.key)
        if row is not None:
            slots[slot.key] = replace(
                row, status=status, decided_at=at, backup_id=backup_id or row.backup_id
            )

    def release_slot(self, schema: str, slot: Slot, backup_id: uuid.UUID) -> None:
        slots = self.slots.setdefault(schema, {})
        row = slots.get(slot.key)
        if row is not None and row.status == SlotStatus.DUE and row.backup_id == backup_id:
            del slots[slot.key]

    def record_missed(self, schema: str, slot: Slot, at: datetime, due_before: datetime) -> bool:
        slots = self.slots.setdefault(schema, {})
        row = slots.get(slot.key)
        if row is None:
            slots[slot.key] = SlotRecord(
                *slot.key, slot.scheduled_at, SlotStatus.MISSED, None, at, 0
            )
            return True
        # An existing slot becomes missed only when no run is (still) enqueueing it.
        if row.status == SlotStatus.SKIPPED_BUSY or (
            row.status == SlotStatus.DUE and row.decided_at < due_before
        ):
            slots[slot.key] = replace(row, status=SlotStatus.MISSED, decided_at=at)
            return True
        return False


class FakeDumper:
    """Streams a small archive into the consumer, encrypted with age (pyrage, in-process) to
    `encrypt_to`, as the real pipeline does; `fail` makes it raise instead."""

    def __init__(self, body: bytes = b"toc and table data " * 64) -> None:
        self.archive = ARCHIVE_HEAD + body
        self.fail: BaseException | None = None
        self.runs: list[tuple[str, builtins.list[str] | None]] = []
        self.snapshot: str | None = None
        self.seconds_limit: float | None = None
        # called between the dump and the return (a test cancels or takes the lease there)
        self.during: Callable[[], None] | None = None

    def run(
        self,
        schema: str,
        consume: Callable[[BinaryIO], None],
        encrypt_to: builtins.list[str] | None = None,
        stop: threading.Event | None = None,
    ) -> DumpResult:
        self.runs.append((schema, encrypt_to))
        if self.fail is not None:
            raise self.fail
        stored = self.archive
        if encrypt_to:
            stored = pyrage.encrypt(
                self.archive, [x25519.Recipient.from_str(r) for r in encrypt_to]
            )
        consume(io.BytesIO(stored))
        if self.during is not None:
            self.during()
        return DumpResult(
            size_bytes=len(stored),
            sha256=hashlib.sha256(stored).hexdigest(),
            pg_dump_version="16.4",
            server_version="16.4",
            seconds=0.01,
            toc_entries=3,
            plaintext_sha256=hashlib.sha256(self.archive).hexdigest() if encrypt_to else None,
        )

    def limited(self, seconds: float) -> Dumper:
        self.seconds_limit = seconds
        return self

    def at_snapshot(self, snapshot: str) -> Dumper:
        self.snapshot = snapshot
        return self
