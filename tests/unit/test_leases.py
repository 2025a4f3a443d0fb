"""The heartbeat that keeps a job's lease, and the batched fleet read that isolates a failing
clinic: their logic, with small fakes (the integration tests run them against PostgreSQL)."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg2.errors
import pytest
from clinic_backups.adapters.database import read_fleet
from clinic_backups.domain.errors import BackupCancelled, DatabaseUnavailable, LeaseLost
from clinic_backups.domain.models import Lease
from clinic_backups.domain.ports import CANCEL
from clinic_backups.usecases.lease import Heartbeat, LeaseGuard


class FakeDatabase:
    """A `Database` whose transactions run `read` on a cursor that is only a marker."""

    def __init__(self) -> None:
        self.transactions = 0

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        self.transactions += 1
        yield object()


def fake_db() -> Any:
    return FakeDatabase()


def reader(bad: set[str], calls: list[list[str]]):
    def read(cur: Any, batch: list[str]) -> list[dict[str, Any]]:
        calls.append(batch)
        if bad & set(batch):
            raise psycopg2.errors.InsufficientPrivilege()
        return [{"schema": s} for s in batch]

    return read


def test_a_failing_clinic_is_split_out_of_its_batch_and_the_others_are_read():
    schemas = [f"clinica_{i:02d}" for i in range(16)]
    calls: list[list[str]] = []
    rows, failed = read_fleet(fake_db(), schemas, 8, reader({"clinica_05", "clinica_12"}, calls))
    assert sorted(r["schema"] for r in rows) == sorted(set(schemas) - {"clinica_05", "clinica_12"})
    assert set(failed) == {"clinica_05", "clinica_12"}
    # each failing clinic costs a bisection of its batch of 8: 1 + 2·log2(8) statements
    assert len(calls) == 2 * (1 + 2 * 3)


def test_a_batch_without_failures_is_one_statement():
    calls: list[list[str]] = []
    rows, failed = read_fleet(fake_db(), ["a", "b", "c"], 100, reader(set(), calls))
    assert (len(rows), failed, calls) == (3, {}, [["a", "b", "c"]])


def test_a_lost_database_is_not_split():
    calls: list[list[str]] = []

    def read(cur: Any, batch: list[str]) -> list[dict[str, Any]]:
        calls.append(batch)
        raise DatabaseUnavailable()

    with pytest.raises(DatabaseUnavailable):
        read_fleet(fake_db(), ["a", "b", "c", "d"], 100, read)
    assert len(calls) == 1


def beating(answers: list[Any], seconds: int = 1) -> tuple[Heartbeat, list[float]]:
    """A heartbeat whose renewals answer `answers` in turn (an exception is raised)."""
    times: list[float] = []
    closed = threading.Event()

    def renew() -> bool | None:
        times.append(time.monotonic())
        answer = answers.pop(0) if answers else True
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[no-any-return]

    beat = Heartbeat(Lease.new(seconds), renew, close=closed.set)
    beat.closed = closed  # type: ignore[attr-defined]
    return beat, times


def test_the_heartbeat_renews_four_times_a_lease_and_goes_on_after_a_busy_or_failed_beat():
    beat, times = beating([True, None, RuntimeError("database away"), True, True])
    with beat:
        time.sleep(1.4)
    assert 4 <= len(times) <= 6  # every quarter of the 1 s lease
    assert not beat.lost.is_set()
    beat.check()  # still holds it
    assert beat.closed.is_set()  # type: ignore[attr-defined]


def test_a_lease_found_gone_is_lost_and_the_job_stops():
    beat, times = beating([True, False])
    with beat:
        assert beat.lost.wait(2)
        with pytest.raises(LeaseLost):
            beat.check()
        # an upload reading through the guard stops at its next read
        with pytest.raises(LeaseLost):
            LeaseGuard(io.BytesIO(b"archive"), beat).read(4)
    assert len(times) == 2


def test_a_lease_released_by_the_jobs_own_last_step_is_not_lost():
    beat, _ = beating([True, False])
    with beat:
        beat.ending()
        time.sleep(0.7)
    assert not beat.lost.is_set()


def test_a_cancel_heard_by_the_heartbeat_stops_the_job_while_the_lease_is_kept():
    beat, times = beating([True, CANCEL, True])
    with beat:
        assert beat.cancelled.wait(2)
        with pytest.raises(BackupCancelled):
            beat.check()
        # an upload reading through the guard stops at its next read
        with pytest.raises(BackupCancelled):
            LeaseGuard(io.BytesIO(b"archive"), beat).read(4)
        time.sleep(0.6)
    # the lease is still renewed until the job ends (it frees the lock itself), never lost
    assert len(times) >= 3
    assert not beat.lost.is_set()
