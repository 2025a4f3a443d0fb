"""The artifact harness: the ``sam build`` output run the way AWS Lambda runs it, without Docker.

The tests and ``make run ARGS=--artifact`` use it so that what is exercised is what deploys,
not the source tree in the development venv. What a built function sees:

- **Interpreter**: ``python3.12 -I -S`` (isolated, no ``site``: no venv, no site-packages, no
  editable install, no ``PYTHON*`` variables) running ``devstack/lambda_bootstrap.py``, which
  leaves on ``sys.path`` the function's built code folder, its layers' ``python/`` and the
  standard library, nothing else.
- **Runtime**: the real runtime interface client, ``awslambdaric`` (PyPI's cp312 wheel, with
  simplejson), pinned in ``devstack/lambda-runtime.txt`` and installed into
  ``.build/lambda-runtime`` (``make lambda-runtime``): the runtime's, not the product's. It
  resolves the template's ``Handler`` string itself, as Lambda does, and talks to a Lambda
  Runtime API served by ``RuntimeApi`` below on loopback (HTTP/1.1 with Content-Length: the
  client's libcurl waits forever on an HTTP/1.0 answer).
- **Layers**: Lambda unpacks them into ``/opt``; here each stays in its build folder. An
  environment value naming ``/opt/…`` (``PG_BIN_DIR=/opt/bin``) is given the same path inside
  the function's layers; ``LD_LIBRARY_PATH`` is the layers' ``lib/`` only and ``PATH`` ends in
  their ``bin/``, as in Lambda.
- **Files**: a private mount namespace (``unshare -m``; CI runs as root, which ignores file
  modes, so modes could not make anything read-only) where ``/``, the build output, the
  runtime and this repo are read-only bind mounts and ``/tmp`` is a fresh 512 MB tmpfs
  (Lambda's ephemeral storage), ``TMPDIR=/tmp``: the only place a function can write. It
  disappears with the process. Not root: ``unshare -r -m`` (unprivileged user namespaces).
- **Environment**: exactly the template's — Globals + the function's variables, resolved for a
  ``Deployment`` (parameter values and the local resources' values: ``devstack.template``) —
  plus what Lambda itself sets (``AWS_LAMBDA_*``, ``AWS_REGION``, ``_HANDLER``, credentials)
  and what reaching the local services needs (``service_environment``: AWS endpoints and
  keys). Nothing of the caller's environment leaks in.
- **Execution environments**: one process is one container and takes one invocation at a
  time; busy containers make the pool grow (``FunctionRuntime``). A handler's exception is
  reported like Lambda's Invoke API reports it and the container lives on; a timeout (the
  template's ``Timeout``) or a crash kills the process, and the next invocation is a cold
  start.

``SqsEventSource`` is the template's SQS event source mappings over moto's SQS: messages the
functions sent are received from the queue and delivered to the built function as SQS events.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import itertools
import json
import logging
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from devstack import paths
from devstack.gateway import FunctionError, FunctionRuntime, Invocation, read_body, sqs_record
from devstack.template import (
    REGION,
    Deployment,
    Function,
    Template,
    UnresolvedTemplate,
    load_template,
)

__all__ = [
    "ArtifactError",
    "ArtifactRuntime",
    "Delivery",
    "LocalDeployment",
    "LocalServices",
    "RuntimeApi",
    "SqsEventSource",
    "create_queues",
    "create_secret",
    "deploy_locally",
    "python312",
]

log = logging.getLogger("devstack.artifact")

BOOTSTRAP = Path(__file__).resolve().with_name("lambda_bootstrap.py")
RUNTIME_API = "/2018-06-01/runtime"
EXECUTION_ENV = "AWS_Lambda_python3.12"
EPHEMERAL_STORAGE_MB = 512
RESPONSE_LIMIT = 6 * 1024 * 1024  # a synchronous invocation's response payload
# Variables Lambda sets itself: a template may not set them (CloudFormation refuses it).
RESERVED = frozenset(
    {
        "_HANDLER",
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_LAMBDA_RUNTIME_API",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "LAMBDA_RUNTIME_DIR",
        "LAMBDA_TASK_ROOT",
    }
)


class ArtifactError(RuntimeError):
    """The build output or the runtime is missing or cannot run here (a clear message)."""


@cache
def python312() -> str:
    """The real python3.12 executable (through pyenv's shim when pyenv is there: the same
    interpreter `make build` gives sam)."""
    env = dict(os.environ)
    if shutil.which("pyenv"):
        versions = subprocess.run(
            ["pyenv", "versions", "--bare"], capture_output=True, text=True, check=False
        ).stdout.split()
        v312 = [v for v in versions if v == "3.12" or v.startswith("3.12.")]
        if v312:
            env["PYENV_VERSION"] = v312[-1]
    try:
        found = subprocess.run(
            ["python3.12", "-c", "import sys; print(sys.executable)"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        raise ArtifactError("python3.12 is not on PATH (nor a pyenv version)") from None
    return found


# --------------------------------------------------------------------------- Runtime API


class _Pending:
    """One invocation on its way through the Runtime API."""

    def __init__(self, event: bytes, deadline_ms: int, function_arn: str) -> None:
        self.request_id = str(uuid.uuid4())
        self.event = event
        self.deadline_ms = deadline_ms
        self.function_arn = function_arn
        self.done = threading.Event()
        self.response: bytes | None = None
        self.error: dict[str, Any] | None = None


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A runtime killed mid-request (a timeout, a stop) leaves a broken connection.
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


class RuntimeApi:
    """The Lambda Runtime API of one execution environment, on 127.0.0.1:<free port>:
    ``GET …/invocation/next`` (blocks until an invocation is submitted),
    ``POST …/invocation/{id}/response`` and ``…/error``, ``POST …/init/error``."""

    def __init__(self) -> None:
        self._invocations: queue.Queue[_Pending] = queue.Queue()
        self._current: dict[str, _Pending] = {}
        self._lock = threading.Lock()
        self.waiting = threading.Event()  # the runtime asked for an invocation: init is done
        self.init_error: dict[str, Any] | None = None
        self.closed = threading.Event()
        handler = type("Handler", (_RuntimeApiHandler,), {"api": self})
        self._server = _Server(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(
            target=lambda: self._server.serve_forever(poll_interval=0.05),
            name="runtime-api",
            daemon=True,
        )
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    def submit(self, pending: _Pending) -> None:
        self._invocations.put(pending)

    def next_invocation(self) -> _Pending | None:
        self.waiting.set()
        while not self.closed.is_set():
            try:
                pending = self._invocations.get(timeout=0.2)
            except queue.Empty:
                continue
            self.waiting.clear()
            with self._lock:
                self._current[pending.request_id] = pending
            return pending
        return None

    def finish(self, request_id: str, *, response: bytes | None = None, error: Any = None) -> bool:
        with self._lock:
            pending = self._current.pop(request_id, None)
        if pending is None:
            return False
        pending.response, pending.error = response, error
        pending.done.set()
        return True

    def close(self) -> None:
        self.closed.set()
        self._server.shutdown()
        self._server.server_close()


class _RuntimeApiHandler(BaseHTTPRequestHandler):
    api: RuntimeApi
    # HTTP/1.1 with Content-Length on every answer: awslambdaric's client hangs on HTTP/1.0.
    protocol_version = "HTTP/1.1"
    server_version = "local-lambda-runtime-api"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        pass  # every invocation would log twice; the harness logs what matters

    def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, data: Any) -> None:
        self._reply(status, json.dumps(data).encode(), {"Content-Type": "application/json"})

    def do_GET(self) -> None:
        if self.path != f"{RUNTIME_API}/invocation/next":
            self._json(404, {"errorType": "NotFound", "errorMessage": self.path})
            return
        pending = self.api.next_invocation()
        if pending is None:  # the environment is being shut down: its process is killed
            self.close_connection = True
            return
        trace = f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Sampled=0"
        self._reply(
            200,
            pending.event,
            {
                "Content-Type": "application/json",
                "Lambda-Runtime-Aws-Request-Id": pending.request_id,
                "Lambda-Runtime-Deadline-Ms": str(pending.deadline_ms),
                "Lambda-Runtime-Invoked-Function-Arn": pending.function_arn,
                "Lambda-Runtime-Trace-Id": trace,
            },
        )

    def do_POST(self) -> None:
        body = read_body(self.rfile, self.headers)
        found = re.fullmatch(rf"{RUNTIME_API}/invocation/([^/]+)/(response|error)", self.path)
        if found:
            request_id, kind = found.groups()
            if kind == "response":
                known = self.api.finish(request_id, response=body)
            else:
                known = self.api.finish(request_id, error=_error_body(body, self.headers))
            if not known:
                self._json(400, {"errorType": "InvalidRequestID", "errorMessage": request_id})
                return
            self._json(202, {"status": "OK"})
        elif self.path == f"{RUNTIME_API}/init/error":
            self.api.init_error = _error_body(body, self.headers)
            self._json(202, {"status": "OK"})
        else:
            self._json(404, {"errorType": "NotFound", "errorMessage": self.path})


def _function_error(reported: dict[str, Any]) -> FunctionError:
    return FunctionError(
        str(reported.get("errorType")),
        str(reported.get("errorMessage")),
        [str(line) for line in reported.get("stackTrace") or []],
    )


def _error_body(body: bytes, headers: Any) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError:
        data = {"errorMessage": body.decode(errors="replace")}
    if not isinstance(data, dict):
        data = {"errorMessage": str(data)}
    data.setdefault("errorType", headers.get("Lambda-Runtime-Function-Error-Type", "Unknown"))
    return data


# --------------------------------------------------------------------------- containers


@dataclass(frozen=True)
class ContainerSpec:
    """How to start one built function: resolved once, from the build's template."""

    name: str  # the logical id, as AWS_LAMBDA_FUNCTION_NAME
    code_dir: Path
    handler: str
    timeout: int
    memory: int
    python_dirs: tuple[Path, ...]  # the layers' python/ (sys.path after the code folder)
    environment: dict[str, str] = field(compare=False)


def _sandboxed(command: list[str], *, read_only: list[Path], tmp: Path) -> list[str]:
    """`command` in a private mount namespace: everything read-only but a fresh tmpfs at
    `tmp`. Bind mounts of the named paths first (a guarantee even where they live on another
    file system than /), then / and /dev/shm (Lambda has none)."""
    q = shlex.quote
    script = ["set -e"]
    for path in read_only:
        script += [f"mount --bind {q(str(path))} {q(str(path))}"]
        script += [f"mount -o remount,bind,ro {q(str(path))}"]
    script += [
        "mount -o remount,bind,ro /",
        "if mountpoint -q /dev/shm; then mount -o remount,bind,ro /dev/shm; fi",
        f"mount -t tmpfs -o size={EPHEMERAL_STORAGE_MB}m,mode=1777 lambda-tmp {q(str(tmp))}",
        'exec "$@"',
    ]
    namespace = ["unshare", "--mount", "--propagation", "private"]
    if os.geteuid() != 0:
        namespace = ["unshare", "--user", "--map-root-user", "--mount", "--propagation", "private"]
    return [*namespace, "/bin/sh", "-c", "\n".join(script), "lambda-sandbox", *command]


class ArtifactContainer:
    """One execution environment: a sandboxed python3.12 process and its Runtime API."""

    _ids = itertools.count(1)

    def __init__(self, runtime: ArtifactRuntime, function: Function) -> None:
        self.runtime = runtime
        self.function = function
        self.spec = runtime.specs[function.folder]
        self.number = next(self._ids)
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"artifact-{function.folder}-{self.number}"
        )
        self.log_path = runtime.log_dir / f"{function.folder}-{self.number}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.api: RuntimeApi | None = None
        self._private_tmp: Path | None = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _start(self) -> None:
        self.stop()
        runtime, spec = self.runtime, self.spec
        self.api = RuntimeApi()
        tmp = runtime.tmp_mount_point()
        if tmp != Path("/tmp"):  # noqa: S108 - Lambda's /tmp, inside the namespace only
            self._private_tmp = tmp
        env = {
            **spec.environment,
            "AWS_LAMBDA_RUNTIME_API": self.api.address,
            "AWS_LAMBDA_LOG_STREAM_NAME": f"local/[$LATEST]{uuid.uuid4().hex}",
            "TMPDIR": str(tmp),
        }
        command = [
            runtime.python,
            "-I",
            "-S",
            str(BOOTSTRAP),
            str(runtime.runtime_dir),
            spec.handler,
            str(spec.code_dir),
            *(str(p) for p in spec.python_dirs),
        ]
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                _sandboxed(command, read_only=runtime.read_only_paths(), tmp=tmp),
                env=env,
                cwd=spec.code_dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: a timeout kills pg_dump too
            )
        if runtime.on_start is not None:
            runtime.on_start(self.proc.pid)

    def load(self) -> None:
        """Start the process if it is not running and wait for its init (the cold start):
        until the runtime asks for its first invocation, reports an init error or exits."""
        if self.alive and self.api is not None:
            return
        self._start()
        assert self.proc is not None and self.api is not None
        deadline = time.monotonic() + max(10, self.spec.timeout)
        while not self.api.waiting.wait(0.02):
            error = self.api.init_error
            if error is not None or self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                if error is None:
                    error = {
                        "errorType": "Runtime.ExitError",
                        "errorMessage": "the runtime exited during init; see "
                        f"{self.log_path}: {_tail(self.log_path)}",
                    }
                raise _function_error(error)

    def run(self, event: Any) -> Invocation:
        started = time.monotonic()
        try:
            self.load()
        except FunctionError as error:
            return self._failed(error, started)
        assert self.proc is not None and self.api is not None
        spec = self.spec
        deadline = time.time() + spec.timeout
        pending = _Pending(
            json.dumps(event).encode(),
            int(deadline * 1000),
            f"arn:aws:lambda:{self.runtime.deployment.region}:"
            f"{self.runtime.deployment.account}:function:{spec.name}",
        )
        self.api.submit(pending)
        while not pending.done.wait(0.02):
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.stop()
                return self._failed(
                    FunctionError(
                        "Runtime.ExitError",
                        f"RequestId: {pending.request_id} Error: Runtime exited with error: "
                        + (f"signal {-code}" if code < 0 else f"exit status {code}"),
                    ),
                    started,
                )
            if time.time() > deadline:
                self.stop()
                return self._failed(
                    FunctionError(
                        "Sandbox.Timedout",
                        f"{pending.request_id} Task timed out after {spec.timeout:.2f} seconds",
                    ),
                    started,
                )
        seconds = time.monotonic() - started
        if pending.error is not None:
            return self._failed(_function_error(pending.error), started)
        raw = pending.response or b""
        if len(raw) > RESPONSE_LIMIT:
            return self._failed(
                FunctionError(
                    "Function.ResponseSizeTooLarge",
                    f"Response payload size ({len(raw)} bytes) exceeded maximum allowed "
                    f"payload size ({RESPONSE_LIMIT} bytes).",
                ),
                started,
            )
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = raw.decode(errors="replace")
        return Invocation(payload=payload, seconds=seconds)

    def _failed(self, error: FunctionError, started: float) -> Invocation:
        log.error(
            "function %s failed: %s: %s (its log: %s)",
            self.function.folder,
            error.error_type,
            error,
            self.log_path,
        )
        return Invocation(error=error, seconds=time.monotonic() - started)

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.proc = None
        if self.api is not None:
            self.api.close()
            self.api = None
        if self._private_tmp is not None:
            shutil.rmtree(self._private_tmp, ignore_errors=True)
            self._private_tmp = None


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class ArtifactRuntime(FunctionRuntime):
    """The gateway's runtime (same interface), with containers that run the build output.

    Functions keep the source template's folder names (routes, ``/__local/invoke/<folder>``,
    the SQS mappings); what runs — code folder, handler, layers, timeout, memory,
    environment — comes from the build's own template (``.aws-sam/build/template.yaml``,
    what ``sam deploy`` packages), matched by logical id.
    """

    def __init__(
        self,
        template: Template,
        deployment: Deployment,
        *,
        service_environment: dict[str, str],
        log_dir: Path,
        build_dir: Path | None = None,
        runtime_dir: Path | None = None,
        python: str | None = None,
        max_containers: int = 4,
        on_start: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__(template, max_containers=max_containers)
        self.build_dir = (build_dir or paths.sam_build_dir()).resolve()
        built_template = self.build_dir / "template.yaml"
        if not built_template.is_file():
            raise ArtifactError(f"no sam build output in {self.build_dir}: run `make build`")
        self.built = load_template(built_template)
        self.runtime_dir = (runtime_dir or paths.lambda_runtime_dir()).resolve()
        if not (self.runtime_dir / "awslambdaric").is_dir():
            raise ArtifactError(f"no awslambdaric in {self.runtime_dir}: run `make lambda-runtime`")
        self.python = python or python312()
        self.deployment = deployment
        self.service_environment = dict(service_environment)
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        self.on_start = on_start
        built_by_id = {f.logical_id: f for f in self.built.functions.values()}
        missing = [
            f.logical_id for f in template.functions.values() if f.logical_id not in built_by_id
        ]
        if missing:
            raise ArtifactError(
                f"the build in {self.build_dir} lacks {', '.join(missing)}: run `make build`"
            )
        self.specs = {
            folder: self._spec(built_by_id[fn.logical_id])
            for folder, fn in template.functions.items()
        }

    # -- what a container is given --------------------------------------------------------

    def layer_dir(self, logical_id: str) -> Path:
        props = self.built.resource(logical_id).get("Properties") or {}
        content = props.get("ContentUri")
        if not isinstance(content, str):
            raise ArtifactError(f"layer {logical_id} has no built ContentUri")
        return (self.built.path.parent / content).resolve()

    def _spec(self, fn: Function) -> ContainerSpec:
        layers = [self.layer_dir(layer) for layer in fn.layers]

        # Lambda unpacks the layers into /opt in order, a later one winning a clash.
        def opt(value: str) -> str:
            if value != "/opt" and not value.startswith("/opt/"):
                return value
            relative = value[len("/opt") :].lstrip("/")
            for layer in reversed(layers):
                if (layer / relative).exists():
                    return str(layer / relative)
            return value  # nothing provides it: the function fails as it would in AWS

        try:
            variables = self.built.deployed_environment(fn, self.deployment)
        except UnresolvedTemplate as error:
            raise ArtifactError(str(error)) from None
        reserved = sorted(RESERVED & set(variables))
        if reserved:
            raise ArtifactError(f"{fn.logical_id} sets reserved variables: {reserved}")
        region = self.deployment.region
        lambda_env = {
            "_HANDLER": fn.handler,
            "AWS_EXECUTION_ENV": EXECUTION_ENV,
            "AWS_LAMBDA_FUNCTION_NAME": fn.logical_id,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fn.memory),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{fn.logical_id}",
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
            "LAMBDA_TASK_ROOT": str(fn.code_dir),
            "LAMBDA_RUNTIME_DIR": str(self.runtime_dir),
            "LANG": "en_US.UTF-8",
            "TZ": ":UTC",
            "PATH": ":".join(
                ["/usr/local/bin", "/usr/bin", "/bin"]
                + [str(d / "bin") for d in layers if (d / "bin").is_dir()]
            ),
        }
        libraries = [str(d / "lib") for d in layers if (d / "lib").is_dir()]
        if libraries:
            lambda_env["LD_LIBRARY_PATH"] = ":".join(libraries)
        environment = {
            **{name: opt(value) for name, value in variables.items()},
            **lambda_env,
            **self.service_environment,
        }
        python_dirs = []
        for layer in layers:
            for candidate in (
                layer / "python" / "lib" / "python3.12" / "site-packages",
                layer / "python",
            ):
                if candidate.is_dir():
                    python_dirs.append(candidate)
        return ContainerSpec(
            name=fn.logical_id,
            code_dir=fn.code_dir,
            handler=fn.handler,
            timeout=fn.timeout,
            memory=fn.memory,
            python_dirs=tuple(python_dirs),
            environment=environment,
        )

    def read_only_paths(self) -> list[Path]:
        """What must be read-only for the function, whatever file system it is on."""
        candidates = [self.build_dir, self.runtime_dir, BOOTSTRAP.parent, paths.repo_root()]
        seen: list[Path] = []
        for path in candidates:
            if path not in seen:
                seen.append(path)
        return seen

    def tmp_mount_point(self) -> Path:
        """Lambda's /tmp, unless something the function needs lives under the host's /tmp
        (a tmpfs there would hide it): then a private folder is the writable place."""
        needed = [Path(self.python).resolve(), *self.read_only_paths()]
        host_tmp = Path("/tmp")  # noqa: S108
        if not any(path == host_tmp or host_tmp in path.parents for path in needed):
            return host_tmp
        return Path(tempfile.mkdtemp(prefix="lambda-tmp-"))

    # -- the FunctionRuntime interface -------------------------------------------------------

    def function(self, folder: str) -> Function | None:
        return self.template.functions.get(folder)  # only what the build holds

    def available(self) -> list[str]:
        return sorted(self.template.functions)

    def _new_container(self, fn: Function) -> ArtifactContainer:
        return ArtifactContainer(self, fn)

    def containers(self) -> list[ArtifactContainer]:
        with self._lock:
            return list(self._all)

    def log_files(self) -> list[Path]:
        return sorted(self.log_dir.glob("*.log"))

    def shutdown(self) -> None:
        super().shutdown()
        for container in self.containers():
            container.stop()


# --------------------------------------------------------------------------- deployment


def create_queues(template: Template, client: Any, prefix: str) -> dict[str, str]:
    """Every ``AWS::SQS::Queue`` of the template on `client`'s SQS (moto), with its
    attributes (dead-letter queues first, so a RedrivePolicy can name them). Returns the
    resource values a `Deployment` needs: ``<id>`` (its URL, what ``Ref`` gives),
    ``<id>.Arn`` and ``<id>.QueueName``."""
    resources: dict[str, str] = {}
    queues = {
        logical_id: resource
        for logical_id, resource in (template.raw.get("Resources") or {}).items()
        if isinstance(resource, dict) and resource.get("Type") == "AWS::SQS::Queue"
    }
    known = ("VisibilityTimeout", "MessageRetentionPeriod", "DelaySeconds", "RedrivePolicy")
    while queues:
        progress = False
        for logical_id, resource in list(queues.items()):
            props = resource.get("Properties") or {}
            try:
                attributes = {
                    key: template.resolve(props[key], Deployment(resources=resources))
                    for key in known
                    if key in props
                }
            except UnresolvedTemplate:
                continue  # its dead-letter queue is not there yet
            if "RedrivePolicy" in attributes:
                attributes["RedrivePolicy"] = json.dumps(attributes["RedrivePolicy"])
            name = f"{prefix}-{logical_id}"[:80]
            url = client.create_queue(
                QueueName=name, Attributes={k: str(v) for k, v in attributes.items()}
            )["QueueUrl"]
            arn = client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
                "Attributes"
            ]["QueueArn"]
            resources.update({logical_id: url, f"{logical_id}.Arn": arn})
            resources[f"{logical_id}.QueueName"] = name
            del queues[logical_id]
            progress = True
        if not progress:
            raise UnresolvedTemplate(f"queues {sorted(queues)} refer to something unknown")
    return resources


def create_secret(client: Any, name: str, value: str) -> str:
    """A Secrets Manager secret (moto); returns its ARN, for a parameter value."""
    return str(client.create_secret(Name=name, SecretString=value)["ARN"])


@dataclass(frozen=True)
class LocalServices:
    """The local stand-ins a deployment of the built stack uses, and what its secrets hold."""

    moto_url: str  # SQS and Secrets Manager
    database_url: str  # the functions' role (clinic_backup)
    restore_database_url: str  # the restore role
    verify_database_url: str  # the verification server
    jwt_secret: str
    jwt_issuer: str
    platform_identity: str  # the platform's age identity (AGE-SECRET-KEY-…)
    storage_backend: str  # supabase | s3
    bucket: str
    s3_endpoint_url: str
    s3_region: str
    s3_access_key_id: str
    s3_secret_access_key: str
    supabase_url: str = ""
    supabase_service_key: str = ""


@dataclass(frozen=True)
class LocalDeployment:
    """A deployment of the built stack on the local services."""

    deployment: Deployment
    service_environment: dict[str, str]  # what the functions need to reach moto
    sqs: Any  # a client of moto's SQS (for SqsEventSource)


def deploy_locally(built: Template, services: LocalServices, *, name: str) -> LocalDeployment:
    """What `sam deploy` would do, onto the local services: the template's queues on moto's
    SQS, the secrets in its Secrets Manager (the app secret, the platform's identity, the
    restore role's and the verification server's URLs), and the parameter values — the ones
    without a default and the local services' endpoints; every other parameter keeps its
    default. Names start with `name`."""
    import boto3
    from clinic_backups.adapters.age import public_key_of

    aws: dict[str, Any] = {
        "endpoint_url": services.moto_url,
        "region_name": REGION,
        "aws_access_key_id": "local",
        "aws_secret_access_key": "local",
    }
    sqs = boto3.client("sqs", **aws)
    secretsmanager = boto3.client("secretsmanager", **aws)

    def secret(suffix: str, value: Any) -> str:
        text = value if isinstance(value, str) else json.dumps(value)
        return create_secret(secretsmanager, f"{name}/{suffix}", text)

    app_secret = {
        "database_url": services.database_url,
        "jwt_secret": services.jwt_secret,
        "s3_access_key_id": services.s3_access_key_id,
        "s3_secret_access_key": services.s3_secret_access_key,
        "supabase_service_key": services.supabase_service_key,
    }
    parameters = {
        "AppSecretArn": secret("app", {k: v for k, v in app_secret.items() if v}),
        "JwtIssuer": services.jwt_issuer,
        "PlatformAgeRecipients": public_key_of(services.platform_identity),
        "PlatformIdentitySecretArn": secret("platform-identity", services.platform_identity),
        "RestoreDatabaseSecretArn": secret(
            "restore-database", {"database_url": services.restore_database_url}
        ),
        "VerifyDatabaseSecretArn": secret(
            "verify-database", {"database_url": services.verify_database_url}
        ),
        "StorageBackend": services.storage_backend,
        "StorageBucket": services.bucket,
        "S3EndpointUrl": services.s3_endpoint_url,
        "S3Region": services.s3_region,
        "SupabaseUrl": services.supabase_url,
    }
    return LocalDeployment(
        deployment=Deployment(
            parameters=parameters, resources=create_queues(built, sqs, name), region=REGION
        ),
        service_environment={
            "AWS_ENDPOINT_URL_SQS": services.moto_url,
            "AWS_ENDPOINT_URL_SECRETS_MANAGER": services.moto_url,
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
        },
        sqs=sqs,
    )


# --------------------------------------------------------------------------- SQS


@dataclass(frozen=True)
class _Mapping:
    queue: str  # the queue's logical id
    function: str  # the function's folder
    batch_size: int
    reports_failures: bool  # FunctionResponseTypes: [ReportBatchItemFailures]


@dataclass
class Delivery:
    """One batch delivered: the bodies, what the function answered, which messages failed."""

    queue: str
    function: str
    bodies: list[Any]
    invocation: Invocation
    failed: list[str]


class SqsEventSource:
    """The template's SQS event source mappings over a (moto) SQS: receive a batch, invoke
    the mapped function with it as an SQS event, delete the messages that did not fail; a
    failed one comes back after `retry_delay` (the queue's redrive policy moves it to its
    dead-letter queue after maxReceiveCount receives).

    `drain()` delivers until the queues are empty (the tests: deterministic), `start()` polls
    in the background (``make run --artifact``). One delivery at a time per queue: the
    mappings' MaximumConcurrency is not modelled."""

    def __init__(
        self,
        runtime: FunctionRuntime,
        client: Any,
        deployment: Deployment,
        *,
        retry_delay: float = 2.0,
    ) -> None:
        self.runtime = runtime
        self.client = client
        self.deployment = deployment
        self.retry_delay = retry_delay
        self.mappings: list[_Mapping] = []
        for fn in runtime.template.functions.values():
            props = runtime.template.resource(fn.logical_id).get("Properties") or {}
            for event in (props.get("Events") or {}).values():
                if (event or {}).get("Type") != "SQS":
                    continue
                ep = event.get("Properties") or {}
                queue_ref = ep.get("Queue")
                if not (isinstance(queue_ref, dict) and "Fn::GetAtt" in queue_ref):
                    continue
                self.mappings.append(
                    _Mapping(
                        queue=str(queue_ref["Fn::GetAtt"][0]),
                        function=fn.folder,
                        batch_size=int(ep.get("BatchSize", 10)),
                        reports_failures="ReportBatchItemFailures"
                        in (ep.get("FunctionResponseTypes") or []),
                    )
                )
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._busy = 0
        self._busy_lock = threading.Lock()

    def url(self, queue_id: str) -> str:
        return self.deployment.resources[queue_id]

    def deliver(self, mapping: _Mapping, wait_seconds: int = 0) -> Delivery | None:
        """One batch from the mapping's queue, or None when it had nothing."""
        answer = self.client.receive_message(
            QueueUrl=self.url(mapping.queue),
            MaxNumberOfMessages=mapping.batch_size,
            WaitTimeSeconds=wait_seconds,
            AttributeNames=["All"],
        )
        messages = answer.get("Messages") or []
        if not messages:
            return None
        # Received and not yet deleted: in flight (idle() also sees them as not visible).
        with self._busy_lock:
            self._busy += 1
        try:
            arn = self.deployment.resources[f"{mapping.queue}.Arn"]
            records = [
                sqs_record(
                    m["Body"],
                    queue_arn=arn,
                    message_id=m["MessageId"],
                    receipt_handle=m["ReceiptHandle"],
                    attributes={k: str(v) for k, v in (m.get("Attributes") or {}).items()},
                    md5_of_body=m.get("MD5OfBody"),
                )
                for m in messages
            ]
            result = self.runtime.invoke(mapping.function, {"Records": records})
            ids = [m["MessageId"] for m in messages]
            if result.error is not None:
                failed = ids
            elif mapping.reports_failures and isinstance(result.payload, dict):
                reported = result.payload.get("batchItemFailures") or []
                failed = [str(f.get("itemIdentifier")) for f in reported]
            else:
                failed = []
            for message in messages:
                handle = message["ReceiptHandle"]
                if message["MessageId"] in failed:
                    self.client.change_message_visibility(
                        QueueUrl=self.url(mapping.queue),
                        ReceiptHandle=handle,
                        VisibilityTimeout=int(self.retry_delay),
                    )
                else:
                    self.client.delete_message(
                        QueueUrl=self.url(mapping.queue), ReceiptHandle=handle
                    )
            bodies = []
            for message in messages:
                try:
                    bodies.append(json.loads(message["Body"]))
                except ValueError:
                    bodies.append(message["Body"])
            return Delivery(mapping.queue, mapping.function, bodies, result, failed)
        finally:
            with self._busy_lock:
                self._busy -= 1

    def drain(self, *, stop_on_failure: bool = True, max_batches: int = 100) -> list[Delivery]:
        """Deliver until every mapped queue is empty (jobs queue further jobs: a backup its
        light check), or until a batch fails."""
        deliveries: list[Delivery] = []
        while len(deliveries) < max_batches:
            delivered = False
            for mapping in self.mappings:
                delivery = self.deliver(mapping)
                if delivery is None:
                    continue
                delivered = True
                deliveries.append(delivery)
                if delivery.failed and stop_on_failure:
                    return deliveries
            if not delivered:
                return deliveries
        raise RuntimeError(f"the queues did not drain within {max_batches} batches")

    def start(self) -> SqsEventSource:
        def poll(mapping: _Mapping) -> None:
            while not self._stop.is_set():
                try:
                    self.deliver(mapping, wait_seconds=1)
                except Exception:
                    log.exception("delivering from %s failed", mapping.queue)
                    self._stop.wait(self.retry_delay)

        for mapping in self.mappings:
            thread = threading.Thread(
                target=poll, args=(mapping,), name=f"sqs-{mapping.queue}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return self

    def idle(self) -> bool:
        with self._busy_lock:
            if self._busy:
                return False
        for mapping in self.mappings:
            attributes = self.client.get_queue_attributes(
                QueueUrl=self.url(mapping.queue),
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                ],
            )["Attributes"]
            if any(int(v) for v in attributes.values()):
                return False
        return True

    def wait_idle(self, timeout: float) -> bool:
        """Until every job (and the jobs it queued) ran; False after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.idle():
                return True
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
