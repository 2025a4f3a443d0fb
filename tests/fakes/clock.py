"""A clock the test sets and moves (the use cases' `Clock`, and the fakes' database now())."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

START = datetime(2026, 3, 10, 9, 30, tzinfo=UTC)


class FakeClock:
    def __init__(self, at: datetime = START):
        self.at = at

    def now(self) -> datetime:
        return self.at

    def advance(self, **delta: float) -> datetime:
        self.at += timedelta(**delta)
        return self.at
