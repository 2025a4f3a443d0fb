"""The artifact harness gives a function what Lambda gives it, and nothing more: a probe
function (a small build of its own, read by the same code as the real build) reports what it
sees from inside."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack import paths
from devstack.artifact import ArtifactRuntime
from devstack.gateway import FunctionError
from devstack.template import Deployment, load_template

pytestmark = pytest.mark.artifact

PROBE = """
import errno, json, os, sys, time

import probe_dep  # from the layer's python/


def _writes(path):
    try:
        with open(os.path.join(path, ".probe-write"), "w") as f:
            f.write("x")
        return "written"
    except OSError as error:
        return errno.errorcode.get(error.errno, str(error.errno))


def _imports(name):
    try:
        __import__(name)
        return True
    except ImportError:
        return False


def entry(event, context):
    if event.get("raise"):
        raise ValueError("the probe was asked to fail")
    if event.get("sleep"):
        time.sleep(event["sleep"])
    tmp = os.environ["TMPDIR"]
    listed = sorted(os.listdir(tmp))
    with open(os.path.join(tmp, event.get("marker", "scratch")), "w") as f:
        f.write("tmp is writable")
    return {
        "pid": os.getpid(),
        "path": [p for p in sys.path if not p.startswith(sys.base_prefix)],
        "isolated": sys.flags.isolated, "no_site": sys.flags.no_site,
        "version": list(sys.version_info[:2]),
        "layer_module": probe_dep.NAME,
        "imports": {n: _imports(n) for n in ("pytest", "clinic_backups", "boto3", "snapshot_restore_py")},
        "writes": {
            "code": _writes(os.environ["LAMBDA_TASK_ROOT"]),
            "layer": _writes(os.path.dirname(probe_dep.__file__)),
            "repo": _writes(event["repo"]),
            "tmp_before": listed,
        },
        "env": dict(os.environ),
        "remaining_ms": context.get_remaining_time_in_millis(),
        "function_name": context.function_name,
        "memory": context.memory_limit_in_mb,
        "request_id": context.aws_request_id,
    }
"""

TEMPLATE = """
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  Greeting:
    Type: String
  Mode:
    Type: String
    Default: quiet
    AllowedValues: [quiet, loud]
Conditions:
  Loud: !Equals [!Ref Mode, loud]
Globals:
  Function:
    Runtime: python3.12
    Handler: probe_app.entry
    Timeout: 2
    MemorySize: 256
    Layers:
      - !Ref ProbeLayer
    Environment:
      Variables:
        GREETING: !Ref Greeting
Resources:
  ProbeLayer:
    Type: AWS::Serverless::LayerVersion
    Properties:
      ContentUri: ProbeLayer
  ProbeFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: ProbeFunction
      Environment:
        Variables:
          TOOLS: /opt/bin
          VOLUME: !If [Loud, "11", "1"]
          QUEUE: !Ref ProbeQueue
          REGION_ARN: !Sub "arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:x"
  BrokenFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: BrokenFunction
  ProbeQueue:
    Type: AWS::SQS::Queue
"""


@pytest.fixture(scope="module")
def probe_build(lambda_runtime: Path) -> Iterator[Path]:
    """A build output with one probe function, one that cannot import, and one layer; kept
    outside /tmp, so the functions get Lambda's /tmp."""
    root = paths.build_dir() / f"probe-build-{secrets.token_hex(4)}"
    (root / "ProbeFunction").mkdir(parents=True)
    (root / "ProbeFunction" / "probe_app.py").write_text(PROBE)
    (root / "BrokenFunction").mkdir()
    (root / "BrokenFunction" / "probe_app.py").write_text("import not_a_module_anywhere\n")
    (root / "ProbeLayer" / "python").mkdir(parents=True)
    (root / "ProbeLayer" / "python" / "probe_dep.py").write_text('NAME = "from the layer"\n')
    (root / "ProbeLayer" / "bin").mkdir()
    (root / "template.yaml").write_text(textwrap.dedent(TEMPLATE))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def probe(probe_build: Path, lambda_runtime: Path, tmp_path_factory: pytest.TempPathFactory):
    template = load_template(probe_build / "template.yaml")
    os.environ["ARTIFACT_PROBE_CANARY"] = "from the test process"
    runtime = ArtifactRuntime(
        template,
        Deployment(
            parameters={"Greeting": "hola", "Mode": "loud"},
            resources={"ProbeQueue": "http://127.0.0.1:1/queue"},
        ),
        service_environment={"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"},
        log_dir=tmp_path_factory.mktemp("probe-logs"),
        build_dir=probe_build,
        runtime_dir=lambda_runtime,
        max_containers=1,
    )
    try:
        yield runtime
    finally:
        del os.environ["ARTIFACT_PROBE_CANARY"]
        runtime.shutdown()


def run(probe: ArtifactRuntime, **event: Any) -> Any:
    result = probe.invoke("ProbeFunction", {"repo": str(paths.repo_root()), **event})
    assert result.error is None, result.lambda_error()
    return result.payload


def test_a_built_function_sees_its_code_its_layers_and_the_standard_library_only(
    probe: ArtifactRuntime, probe_build: Path, lambda_runtime: Path
) -> None:
    seen = run(probe)
    assert seen["version"] == [3, 12]
    assert seen["isolated"] == 1 and seen["no_site"] == 1
    assert seen["path"] == [
        str(probe_build / "ProbeFunction"),
        str(probe_build / "ProbeLayer" / "python"),
    ]
    assert seen["layer_module"] == "from the layer"
    # neither the development venv nor the runtime's folder (what awslambdaric already
    # loaded stays loaded, as in Lambda; the rest of its folder is out of reach)
    assert seen["imports"] == {
        "pytest": False,
        "clinic_backups": False,
        "boto3": False,
        "snapshot_restore_py": False,
    }
    assert str(lambda_runtime) not in json.dumps(seen["path"])


def test_only_the_temp_folder_is_writable_and_it_is_the_containers_own(
    probe: ArtifactRuntime,
) -> None:
    marker = f"probe-{secrets.token_hex(6)}"
    seen = run(probe, marker=marker)
    assert seen["writes"]["code"] == "EROFS"
    assert seen["writes"]["layer"] == "EROFS"
    assert seen["writes"]["repo"] == "EROFS"
    # Lambda's /tmp, unless the checkout itself lives under the host's /tmp (a tmpfs there
    # would hide the code): then a private folder of its own (ArtifactRuntime.tmp_mount_point)
    if Path(__file__).resolve().is_relative_to("/tmp"):
        assert seen["env"]["TMPDIR"].startswith("/tmp/lambda-tmp-")
    else:
        assert seen["env"]["TMPDIR"] == "/tmp"
    # the same execution environment keeps its /tmp; the host's /tmp never sees it
    assert marker in run(probe)["writes"]["tmp_before"]
    assert not (Path("/tmp") / marker).exists()


def test_the_environment_is_the_templates_resolved_plus_lambdas_own(
    probe: ArtifactRuntime, probe_build: Path
) -> None:
    env = run(probe)["env"]
    assert env["GREETING"] == "hola"  # a parameter value of the deployment
    assert env["VOLUME"] == "11"  # Fn::If on a condition of the parameters
    assert env["QUEUE"] == "http://127.0.0.1:1/queue"  # Ref of a resource
    assert env["REGION_ARN"] == "arn:aws:sqs:eu-west-1:123456789012:x"
    assert env["TOOLS"] == str(probe_build / "ProbeLayer" / "bin")  # /opt/bin of its layer
    assert env["_HANDLER"] == "probe_app.entry"
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "ProbeFunction"
    assert env["AWS_EXECUTION_ENV"] == "AWS_Lambda_python3.12"
    assert env["AWS_LAMBDA_RUNTIME_API"].startswith("127.0.0.1:")
    assert env["PATH"].endswith(str(probe_build / "ProbeLayer" / "bin"))
    assert "LD_LIBRARY_PATH" not in env  # the layer has no lib/
    # nothing of the test process leaks in
    assert "ARTIFACT_PROBE_CANARY" not in env
    assert "VIRTUAL_ENV" not in env and "PYTHONPATH" not in env


def test_the_context_comes_from_the_runtime_api(probe: ArtifactRuntime) -> None:
    seen = run(probe)
    assert seen["function_name"] == "ProbeFunction"
    assert seen["memory"] == "256"
    assert 0 < seen["remaining_ms"] <= 2000
    assert seen["request_id"] != run(probe)["request_id"]


def test_a_handler_error_is_reported_and_the_container_lives_on(probe: ArtifactRuntime) -> None:
    before = run(probe)["pid"]
    failed = probe.invoke("ProbeFunction", {"raise": True})
    assert isinstance(failed.error, FunctionError)
    assert failed.lambda_error()["errorType"] == "ValueError"
    assert failed.lambda_error()["errorMessage"] == "the probe was asked to fail"
    assert any("probe_app.py" in line for line in failed.lambda_error()["stackTrace"])
    assert run(probe)["pid"] == before


def test_a_timeout_stops_the_container_and_the_next_call_is_a_cold_start(
    probe: ArtifactRuntime,
) -> None:
    before = run(probe)["pid"]
    timed_out = probe.invoke("ProbeFunction", {"sleep": 5, "repo": "/"})
    assert timed_out.error is not None
    assert timed_out.lambda_error()["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 2.00 seconds" in timed_out.lambda_error()["errorMessage"]
    assert 2 <= timed_out.seconds < 4
    assert run(probe)["pid"] != before


def test_a_module_that_cannot_be_imported_fails_its_init_as_in_lambda(
    probe: ArtifactRuntime,
) -> None:
    failed = probe.invoke("BrokenFunction", {})
    assert failed.lambda_error()["errorType"] == "Runtime.ImportModuleError"
    assert "No module named 'not_a_module_anywhere'" in failed.lambda_error()["errorMessage"]
    assert probe.warm("BrokenFunction") is False
