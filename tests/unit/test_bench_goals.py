"""The bench prints issue 23's goals itself (bench/goals.py): each goal with the value this
run measured, met or missed by how much (and then what would close it), or "not run in this
mode"."""

from __future__ import annotations

from bench import goals


def row(lines: list[str], start: str) -> str:
    (found,) = [line for line in lines if line.startswith(f"| {start}")]
    return found


def test_sections_not_run_are_marked_not_run() -> None:
    lines = goals.table({}, ran=[])
    assert len(lines) == 2 + len(goals.GOALS)
    assert all("not run in this mode" in line for line in lines[2:])
    assert all(line.count("|") == 5 for line in lines)


def test_met_and_missed_goals_say_by_how_much() -> None:
    measured = {
        "restore": {"ratio": 1.2},
        "worker_rss": {"peak_mb": 88.4, "growth_mb": 0.5, "sizes": {50: 87.9, 300: 88.4}},
        "coldstart": {"list_backups": 0.35, "download_backup": 0.5},
        "pipeline_cpu": {
            "null": {"in_process": 1.10, "whole_process": 1.6, "size_mb": 300},
            "s3": {"in_process": 1.45, "whole_process": 1.9, "size_mb": 300},
        },
    }
    lines = goals.table(measured, ran=["pipeline", "restore", "memory", "coldstart"])
    assert "| 1.20× | **missed** by 10 points | splice the COPY data" in row(lines, "Restore")
    assert "**missed** by 8.4 MB" in row(lines, "Worker peak RSS")
    assert "flat" in row(lines, "Worker peak RSS")
    cold = row(lines, "Cold start")
    assert "download_backup by 0.10" in cold and "list_backups by" not in cold
    assert row(lines, "CPU in-process ≤ 1.15×").endswith("| met | — |")
    assert "**missed** by 15 points" in row(lines, "CPU in-process ≤ 1.30×")
    assert "not run in this mode" in row(lines, "Fleet")


def test_memory_that_grows_with_size_is_not_flat() -> None:
    measured = {"worker_rss": {"peak_mb": 79.0, "growth_mb": 6.0, "sizes": {50: 73.0, 300: 79.0}}}
    line = row(goals.table(measured, ran=["memory"]), "Worker peak RSS")
    assert "grows +6.0 MB" in line
    assert "| **missed** not flat (grows +6.0 MB) | botocore's endpoints.json" in line


def test_fleet_and_batches_at_the_sizes_measured() -> None:
    measured = {
        "fleet": {
            "schemas": 2000,
            "time_x": 25.0,
            "memory_x": 4.6,
            "seconds": 3.2,
            "memory_mb": 217,
        },
        "sqs": {"clinics": 10_000, "per_clinic": 0.1, "calls": 1000},
    }
    lines = goals.table(measured, ran=["many", "scheduler"])
    assert "**missed**: measured to 2,000" in row(lines, "Fleet")
    assert row(lines, "Scheduler").endswith("| met | — |")
