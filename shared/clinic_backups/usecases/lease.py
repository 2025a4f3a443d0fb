"""A running job's heartbeat: it keeps the job's lease on its clinic alive.

Every job that runs under the clinic's operation lock (a backup, a restore, an undo, a
re-encryption — the operator CLI's too) and every full verification claims its job with a
`Lease` (a fresh token, `LOCK_LEASE_SECONDS` long) and starts a `Heartbeat`: a daemon thread
that renews the lease four times per lease length, each renewal one short transaction on the
thread's own database connection, with a `lock_timeout` (the swap may hold the lock table for a
moment: that renewal gives up and the next beat tries again). The database's `now()` stamps
each renewal, never this machine's clock.

A job that dies (SIGKILL, a Lambda timeout, a lost machine) stops renewing; once its lease has
expired the next request for the clinic takes it over and fails the job as `stale`
(adapters/postgres.py), and the sweeper does the same every hour. A live job is never failed,
however long it runs.

A job whose lease was taken over while it still ran (its renewals failed for a whole lease:
the database unreachable from it, the process frozen) learns it at its next beat: `lost` is
set, `check()` raises `LeaseLost` between its steps, a guarded upload stream stops, and every
write that would end the job is refused by the database (the lease token is checked there,
in the same transaction): it stops without committing anything.

A backup someone cancelled (`POST /backups/{id}/cancel` sets `cancel_requested_at`) learns it
the same way: the renewal that keeps its lease reads the request in the same statement and
sets `cancelled`; `check()` then raises `BackupCancelled`, so a guarded upload stream stops
at its next read (pg_dump is killed, the multipart upload aborted) and the worker ends the
record `cancelled` with nothing stored.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

from clinic_backups.domain.errors import BackupCancelled, LeaseLost
from clinic_backups.domain.models import Lease
from clinic_backups.domain.ports import CANCEL, Renewal
from clinic_backups.domain.streams import ChunkReader
from clinic_backups.observability import logger

BEATS_PER_LEASE = 4
MIN_BEAT_SECONDS = 0.25


class Heartbeat:
    """Renews `lease` with `renew()` (True renewed, False gone, None busy: next beat, CANCEL
    renewed but the job was asked to cancel) until `stop()`; `close()` runs on the thread
    when it ends (its database connection)."""

    def __init__(
        self,
        lease: Lease,
        renew: Callable[[], Renewal],
        *,
        close: Callable[[], None] | None = None,
        log: dict[str, Any] | None = None,
    ):
        self.lease = lease
        self.interval = max(MIN_BEAT_SECONDS, lease.seconds / BEATS_PER_LEASE)
        self.lost = threading.Event()
        self.cancelled = threading.Event()
        self._renew = renew
        self._close = close
        self._log = log or {}
        self._stopped = threading.Event()
        self._ending = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease-heartbeat", daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=self.interval + 10)

    def ending(self) -> None:
        """The job's last step releases the lease itself (the swap's COMMIT deletes the row):
        from now on a renewal that finds no lease is that release, not a takeover."""
        self._ending.set()

    def check(self) -> None:
        """Between a job's steps: stop if the lease was taken over, or the job cancelled."""
        if self.lost.is_set():
            raise LeaseLost(
                "the job lost the clinic's lease (it could not renew it in time and the "
                "clinic was taken over); it stopped without changing anything"
            )
        if self.cancelled.is_set():
            raise BackupCancelled()

    def __enter__(self) -> Heartbeat:
        # `start_heartbeat` hands out a started one: `with` then only stops it at the end.
        return self if self._thread.ident is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            while not self._stopped.wait(self.interval):
                try:
                    held = self._renew()
                except Exception as error:
                    # The database out of reach: the lease runs on; try again at the next beat.
                    logger.warning(
                        "could not renew the lease; trying again",
                        extra={**self._log, "reason": type(error).__name__},
                    )
                    continue
                if held == CANCEL and not self.cancelled.is_set():
                    logger.info("the job was asked to cancel", extra=self._log)
                    self.cancelled.set()
                if held is False:
                    if self._stopped.is_set() or self._ending.is_set():
                        return  # released by the job itself
                    self.lost.set()
                    logger.warning("the job's lease is gone (taken over)", extra=self._log)
                    return
        finally:
            if self._close is not None:
                with contextlib.suppress(Exception):
                    self._close()


class LeaseGuard(ChunkReader):
    """A stream that stops (LeaseLost, BackupCancelled) at its next read once the heartbeat
    lost the lease or heard of a cancel: an upload reading it aborts instead of completing an
    object for a job that was taken over or cancelled."""

    def __init__(self, source: Any, heartbeat: Heartbeat):
        super().__init__()
        self._source = source
        self._heartbeat = heartbeat

    def read_chunk(self, size: int) -> bytes:
        self._heartbeat.check()
        data: bytes = self._source.read(size)
        return data


def guarded(stream: Any, heartbeat: Heartbeat | None) -> Any:
    """`stream` guarded by the job's heartbeat (as is, when the job has none)."""
    return stream if heartbeat is None else LeaseGuard(stream, heartbeat)
