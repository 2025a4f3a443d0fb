"""Issue 23's goals, printed by the bench from what this run measured.

`bench.run` rewrites RESULTS.md whole, so the goals table is made here, from the values the
sections put in `Report.measured`: each goal with the measured value, met or missed by how
much, or "not run in this mode" when its section did not run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Measured = dict[str, Any]


def _ratio(value: float, limit: float) -> tuple[str, str]:
    status = "met" if value <= limit else f"**missed** by {(value - limit) * 100:.0f} points"
    return f"{value:.2f}×", status


def _cpu(m: Measured, sink: str, limit: float) -> tuple[str, str]:
    got = m.get("pipeline_cpu", {}).get(sink)
    if got is None:
        return "", ""
    value, status = _ratio(got["in_process"], limit)
    return (
        f"{value} in-process ({got['whole_process']:.2f}× whole-process; "
        f"{got['size_mb']} MB clinic)",
        status,
    )


def _restore(m: Measured) -> tuple[str, str]:
    return _ratio(m["restore"]["ratio"], 1.10)


def _rss(m: Measured) -> tuple[str, str]:
    r = m["worker_rss"]
    sizes = ", ".join(f"{size} MB clinic {mb:.1f} MB" for size, mb in sorted(r["sizes"].items()))
    over = r["peak_mb"] - 80
    # Flat: within 2 MB from the smallest to the largest clinic (run-to-run noise is ~±3 MB).
    grows = abs(r["growth_mb"]) > 2
    flat = f"grows {r['growth_mb']:+.1f} MB" if grows else "flat"
    missed = [f"by {over:.1f} MB"] if over > 0 else []
    missed += [f"not flat ({flat})"] if grows else []
    status = "**missed** " + ", ".join(missed) if missed else "met"
    return f"{sizes} (layer's packages; {flat})", status


def _coldstart(m: Measured) -> tuple[str, str]:
    c = m["coldstart"]
    value = ", ".join(f"{name} {ratio:.2f}×" for name, ratio in c.items()) + " (sam build output)"
    missed = {name: ratio - 0.4 for name, ratio in c.items() if ratio > 0.4}
    status = (
        "met"
        if not missed
        else "**missed**: " + ", ".join(f"{name} by {gap:.2f}" for name, gap in missed.items())
    )
    return value, status


def _fleet(m: Measured) -> tuple[str, str]:
    f = m["fleet"]
    value = (
        f"measured to {f['schemas']:,} schemas: backup time ×{f['time_x']:.1f}, pg_dump memory "
        f"×{f['memory_x']:.1f} vs 10 schemas ({f['seconds']:.2f} s, {f['memory_mb']:.0f} MB)"
    )
    status = "met" if f["schemas"] >= 10_000 else f"**missed**: measured to {f['schemas']:,}"
    return value, status


def _sqs(m: Measured) -> tuple[str, str]:
    s = m["sqs"]
    value = (
        f"{s['per_clinic']:.2f} SQS round trips per enqueued clinic at {s['clinics']:,} clinics "
        f"({s['calls']} SendMessageBatch calls)"
    )
    status = "met" if s["per_clinic"] <= 0.1 + 1e-9 else "**missed**"
    if s["clinics"] < 10_000:
        status += f" (at {s['clinics']:,}; 10,000 not run)"
    return value, status


# What would close each goal when this run misses it: what the profiles and the sections
# measured point at (the README's "Benchmarks" and docs/decisions.md say how each was found).
CLOSE = {
    "pipeline": (
        "one sha256 pass instead of two (age's AEAD already authenticates the ciphertext; the "
        "record's hash is of the stored bytes) and age, the hash and the upload overlapping "
        "again on a busy 2-core box (their threads now wait on each other's pipes)"
    ),
    "restore": (
        "splice the COPY data from pg_restore straight to psql once the filter has seen what it "
        "needs (today every line passes through the Python filter), and one hash where age's "
        "AEAD already authenticates (keeping the tamper tests)"
    ),
    "memory": (
        "botocore's endpoints.json (7 MB parsed, kept for the client's life) and the S3 model's "
        "documentation (1.4 MB): a client built from a trimmed service model, or the upload on "
        "a small HTTP client over S3's documented multipart API"
    ),
    "coldstart": (
        "defer what the first request does not use: the layer's pydantic settings and models "
        "(~250 ms of its own imports), powertools' event-handler package (it imports appsync "
        "and asyncio), cryptography through PyJWT (needed only for ES256 keys)"
    ),
    "many": "run the section with BENCH_FLEET=2000,10000 (the fleet databases are kept)",
    "scheduler": "batch the outbox 10 jobs per SendMessageBatch call",
}

# (goal as the issue states it, the section that measures it, what it measured or None)
GOALS: list[tuple[str, str, Callable[[Measured], tuple[str, str]]]] = [
    (
        "CPU in-process ≤ 1.15× raw pg_dump's CPU, null sink",
        "pipeline",
        lambda m: _cpu(m, "null", 1.15),
    ),
    (
        "CPU in-process ≤ 1.30× raw pg_dump's CPU, into S3",
        "pipeline",
        lambda m: _cpu(m, "s3", 1.30),
    ),
    ("Restore (pre-check + swap) ≤ 1.10× the plain SQL load", "restore", _restore),
    ("Worker peak RSS ≤ 80 MB with the S3 upload, flat in clinic size", "memory", _rss),
    ("Cold start ≤ 0.4× naive, list_backups and download_backup", "coldstart", _coldstart),
    ("Fleet: one small clinic among 10,000 schemas", "many", _fleet),
    ("Scheduler enqueues with SendMessageBatch (10 per call)", "scheduler", _sqs),
]


def table(measured: Measured, ran: list[str]) -> list[str]:
    """The goals table's lines (markdown): a missed goal also says what would close it."""
    lines = [
        "| goal (issue 23) | measured in this run | status | what would close it |",
        "|---|---|---|---|",
    ]
    for goal, section, read in GOALS:
        if section not in ran:
            lines.append(f"| {goal} | — | not run in this mode (`--only {section}`) | — |")
            continue
        value, status = read(measured)
        close = CLOSE[section] if "missed" in status else "—"
        lines.append(f"| {goal} | {value} | {status} | {close} |")
    return lines
