"""Lines a suite wants in the closing summary of the pytest run (counts a test measured: the
fuzzer's cases, the isolation attempts), printed by tests/conftest.py's terminal summary even
without `-s`."""

from __future__ import annotations

lines: list[str] = []


def add(line: str) -> None:
    lines.append(line)
