"""A property-based fuzzer of the whole API: schemathesis 4 generates requests from
`openapi.yaml` (its examples, the coverage phase's boundary values and Hypothesis' positive and
negative data) and sends them to the local stack's gateway, with a token for each role, on a
clinic of its own — with real ids behind half the path parameters (a completed backup, its
pre-restore backup, a restore, a verification, a key), so routes answer more than 404.
Fuzzing `POST /backups` and `POST …/verify` runs real jobs: the stack's scan before it stops
(tests/invariants.py) then checks everything they stored.

Every answer must pass `not_a_server_error`, `status_code_conformance`,
`content_type_conformance` and `response_schema_conformance`. Schemathesis' other default
checks are left out on purpose: they flag answering 404 for any unknown id and a DELETE that
soft-deletes (the next GET still finds it), which are the design.

For CI: a fixed seed, no shrinking, no example database, `FUZZ_MAX_EXAMPLES` examples per
operation and role (default 25), and a time cap (`FUZZ_TIME_CAP`, default 150 s) after which
the remaining generated cases are counted and not sent. The summary printed at the end of the
module gives the counts.
"""

from __future__ import annotations

import collections
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests import summary
from tests.e2e.api_support import ROLES, World, bearer, build_world
from tests.e2e.conftest import REPO, LocalStack

pytestmark = pytest.mark.e2e

SEED = 20261203
MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "25"))
TIME_CAP_SECONDS = float(os.environ.get("FUZZ_TIME_CAP", "150"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]

CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "generation": {
            "mode": "all",
            "max-examples": MAX_EXAMPLES,
            "no-shrink": True,
            "database": "none",
        },
        # The stack answers in milliseconds, but a real backup job can hold a worker.
        "suppress-health-check": ["too_slow", "filter_too_much", "data_too_large"],
        "phases": {"stateful": {"enabled": False}},
    }
)
schema = schemathesis.openapi.from_path(REPO / "openapi.yaml", config=CONFIG)
OPERATION_NAMES = [
    f"{method.upper()} {path}"
    for path, item in schema.raw_schema["paths"].items()
    for method in item
    if method in ("get", "put", "post", "delete", "patch")
]


class Tally:
    """What was sent and what came back, for the summary."""

    def __init__(self) -> None:
        self.started: float | None = None
        self.sent = 0
        self.capped = 0
        self.real_ids = 0
        self.by_status: collections.Counter[int] = collections.Counter()

    def over_cap(self) -> bool:
        if self.started is None:
            self.started = time.monotonic()
        return time.monotonic() - self.started > TIME_CAP_SECONDS


TALLY = Tally()


@pytest.fixture(scope="module")
def world(stack: LocalStack) -> Iterator[World]:
    built = build_world(stack, "fuzz")
    yield built
    elapsed = time.monotonic() - (TALLY.started or time.monotonic())
    # The cap bounds the time on a slow machine; it may not quietly turn the fuzzer off.
    assert TALLY.capped <= TALLY.sent, (TALLY.sent, TALLY.capped)
    summary.add(
        f"fuzzer: {TALLY.sent} generated requests sent ({TALLY.real_ids} with real ids), "
        f"{TALLY.capped} generated after the {TIME_CAP_SECONDS:.0f} s cap and not sent, "
        f"{len(OPERATION_NAMES)} operations × {len(ROLES)} roles in {elapsed:.0f} s "
        f"(seed {SEED}, {MAX_EXAMPLES} examples each); "
        f"statuses {dict(sorted(TALLY.by_status.items()))}"
    )


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as http:
        http.trust_env = False
        yield http


def _real_id(path: str, world: World, turn: int) -> str | None:
    """Every other case of an operation with an id gets a real one of the right kind."""
    if turn % 2:
        return None
    if path.startswith("/backups/"):
        return (world.backup_id, world.pre_restore_backup_id)[turn // 2 % 2]
    if path.startswith("/restores/"):
        return (world.restore_id, world.verification_id)[turn // 2 % 2]
    if path.startswith("/encryption-keys/"):
        return world.key_id
    return None


_turns: collections.Counter[str] = collections.Counter()


@schema.parametrize()
@pytest.mark.parametrize("role", ROLES)
def test_every_generated_request_is_answered_by_the_contract(
    case: Any, role: str, world: World, stack: LocalStack, session: requests.Session
) -> None:
    if TALLY.over_cap():
        TALLY.capped += 1
        return
    operation = f"{case.method.upper()} {case.path}"
    turn = _turns[f"{role} {operation}"]
    _turns[f"{role} {operation}"] += 1
    real = _real_id(case.path, world, turn) if case.path_parameters else None
    if real is not None:
        case.path_parameters = {**case.path_parameters, "id": real}
        TALLY.real_ids += 1
    response = case.call_and_validate(
        base_url=stack.url,
        session=session,
        headers=bearer(world.tokens[role]),
        checks=CHECKS,
        timeout=30,
    )
    TALLY.sent += 1
    TALLY.by_status[response.status_code] += 1
