"""Every sample event in `events/`, sent to the built functions the way `sam local invoke -e`
would, gets the answer `events/expected.yaml` writes beside it."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from tests import helpers
from tests.artifact.conftest import Harness, sample_event

pytestmark = pytest.mark.artifact


def expectations() -> list[dict[str, Any]]:
    return list(yaml.safe_load((helpers.EVENTS / "expected.yaml").read_text())["steps"])


def test_every_sample_event_has_one_expectation() -> None:
    listed = [step["event"] for step in expectations()]
    on_disk = sorted(
        p.relative_to(helpers.EVENTS).as_posix() for p in helpers.EVENTS.rglob("*.json")
    )
    assert sorted(listed) == on_disk
    assert len(set(listed)) == len(listed)
    for step in expectations():
        assert ("status" in step) != ("payload" in step), step


def test_every_sample_event_gets_its_expected_answer_from_the_built_functions(
    harness: Harness,
) -> None:
    ids: dict[str, str] = {}
    seen: list[tuple[str, Any]] = []
    for step in expectations():
        # Given the sample event, with a fresh token and the ids this run made
        relative = step["event"]
        function = relative.split("/")[0]
        replace = {helpers.SAMPLE_ID: ids[step["id"]]} if "id" in step else {}
        event = sample_event(relative, harness.local, replace)

        # When the built function is invoked with it
        result = harness.invoke(function, event)

        # Then it answers as expected (an HTTP status, or the job's or run's result)
        assert result.error is None, (relative, result.lambda_error())
        payload = result.payload
        if "status" in step:
            body = payload.get("body") or ""
            assert payload["statusCode"] == step["status"], (relative, body)
            if "saves" in step:
                ids[step["saves"]] = json.loads(body)["id"]
            seen.append((relative, payload["statusCode"]))
        else:
            expected = step["payload"]
            assert {k: payload.get(k) for k in expected} == expected, (relative, payload)
            seen.append((relative, {k: payload.get(k) for k in expected}))
        if step.get("then") == "drain":
            harness.drain()
    assert len(seen) == len(expectations())
