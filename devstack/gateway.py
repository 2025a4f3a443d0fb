"""A local stand-in for API Gateway (HTTP API), Lambda and the SQS event source, in one process.

Each HTTP request becomes the **payload v2** event API Gateway sends (version "2.0", routeKey,
rawPath, rawQueryString, lower-cased headers, cookies, queryStringParameters, pathParameters,
requestContext with http/requestId/time, body + isBase64Encoded) and is handed to the
function's ``lambda_handler(event, context)`` in-process; the function's answer (statusCode,
headers, cookies, body, isBase64Encoded) becomes the HTTP response. The routes are the HttpApi
events of template.yaml (``devstack.template``), never a list kept here.

Like Lambda, every function runs in "containers": a container is one import of the function's
module (its own resolver, its own cached services) with one thread, so it handles one
invocation at a time and keeps its database connection between invocations. Busy containers
make the pool grow (up to ``max_containers``); the first invocation of a container is its cold
start. Everything shared by the layer (settings cache, database pool, logger) is per process,
so functions share it — unlike AWS, where each function has its own environment too.

Jobs: with ``JOB_QUEUE=local`` the functions enqueue into ``LocalQueue.shared()``
(``devstack.local_queue``, installed into the layer's factory by ``devstack.run``); its consumer
wraps each message in an SQS-shaped event and invokes the function the template feeds from the
message's queue — ``kind`` "backup": the backup queue (create_backup), any other kind: the
restore queue (restore_backup) — with SQS's redelivery up to that queue's ``maxReceiveCount``.

Where it differs from API Gateway, on purpose:
  - Errors the gateway itself answers (no route: 404, body over 10 MB: 413, function crashed:
    500, no answer within 30 s: 503) use the project's error shape
    ``{"error": {"code", "message"}}`` rather than API Gateway's ``{"message": "Not Found"}``:
    openapi.yaml promises that shape for every error, the front end switches on ``error.code``,
    and the functions answer their own unknown routes the same way. (The front end also copes
    with API Gateway's shape, which it meets in AWS.)
  - It serves the UI (``frontend/dist``) at ``/`` so page and API share one origin, and two
    local-only endpoints: ``GET /__demo/accounts`` (demo tokens) and
    ``POST /__local/invoke/<function>`` (any event to any function, like ``aws lambda invoke``).
    Both answer only loopback clients that name the gateway by a loopback host (no DNS
    rebinding), and invoke wants ``Content-Type: application/json`` (a cross-site form cannot
    send that without a CORS preflight, which this server never grants).
  - No CORS, throttling or authorizer: the functions verify tokens themselves.

The access log has method, path, status and time only: never a query string (signed URLs),
never a header (Authorization).
"""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import importlib.util
import ipaddress
import itertools
import json
import logging
import mimetypes
import re
import secrets
import socket
import sys
import threading
import time
import traceback
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from devstack import paths
from devstack.template import ACCOUNT, REGION, Function, Route, Template, load_template

__all__ = [
    "FunctionError",
    "FunctionRuntime",
    "Gateway",
    "LambdaContext",
    "build_http_event",
    "read_body",
    "sqs_event",
    "sqs_record",
]

log = logging.getLogger("devstack.gateway")

MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit
INTEGRATION_TIMEOUT = 30.0  # API Gateway HTTP API gives an integration at most 30 s
LOCAL_PREFIXES = ("__demo", "__local")
_FUNCTION_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_TEXT_TYPES = re.compile(
    r"^(text/|application/(json|[\w.+-]*\+json|xml|[\w.+-]*\+xml|javascript|"
    r"x-www-form-urlencoded|graphql))",
    re.IGNORECASE,
)


# The UI's page and assets (and what docs/frontend-integration.md tells a host app to send):
# only this origin's scripts, styles and API; images also as data: URIs (the favicon); no
# plugins, no <base>, no forms posting anywhere, never inside a frame; and no Referer, so a
# signed URL in the page's address bar or a link never leaves through one. The key wizard
# needs nothing more: age-encryption is plain JavaScript on WebCrypto (no wasm, no eval) and
# the key file is offered through an <a download> to a blob: URL, a navigation CSP leaves be.
UI_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; manifest-src 'self'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'; object-src 'none'"
)
UI_HEADERS = [
    ("Content-Security-Policy", UI_CSP),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
]
# What the gateway itself answers (its errors, the local endpoints), like the functions do.
API_HEADERS = [("X-Content-Type-Options", "nosniff"), ("Cache-Control", "no-store")]


def _error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


# --------------------------------------------------------------------------- Lambda runtime


@dataclass
class LambdaContext:
    """What Lambda passes as ``context`` (the attributes powertools reads)."""

    function_name: str
    memory_limit_in_mb: int
    timeout_seconds: int
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    identity: Any = None
    client_context: Any = None
    _deadline: float = 0.0

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_seconds

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return f"local/[$LATEST]{self.aws_request_id.replace('-', '')}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class FunctionError(Exception):
    """An error a function's runtime reported (``errorType``, ``errorMessage``,
    ``stackTrace``): what Lambda's Invoke API answers with ``X-Amz-Function-Error``."""

    def __init__(self, error_type: str, message: str, trace: list[str] | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.trace = list(trace or [])


@dataclass
class Invocation:
    """The outcome of one invocation: a payload, or the error Lambda would report."""

    payload: Any = None
    error: BaseException | None = None
    error_trace: str = ""
    timed_out: bool = False
    seconds: float = 0.0

    def lambda_error(self) -> dict[str, Any]:
        error = self.error
        if isinstance(error, FunctionError):
            return {
                "errorMessage": str(error),
                "errorType": error.error_type,
                "stackTrace": error.trace,
            }
        return {
            "errorMessage": str(error) if error is not None else "Task timed out",
            "errorType": type(error).__name__ if error is not None else "TimeoutError",
            "stackTrace": self.error_trace.splitlines(),
        }


# powertools keeps the event being resolved in a class attribute (`BaseRouter.current_event`):
# one per process, which in Lambda is one invocation at a time. Here every function shares one
# process and runs at once, so two HTTP requests resolved together would read each other's
# event — query string, headers, the bearer token (seen: GET /backups answered with the
# `limit` of a concurrent GET /restores). HTTP invocations therefore resolve one at a time
# (they take milliseconds); job invocations never touch the resolver and run concurrently.
_RESOLVER_LOCK = threading.Lock()


def _is_http(event: Any) -> bool:
    return (
        isinstance(event, dict)
        and isinstance(event.get("requestContext"), dict)
        and ("http" in event["requestContext"])
    )


class _Container:
    _ids = itertools.count(1)

    def __init__(self, function: Function) -> None:
        self.function = function
        self.number = next(self._ids)
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"fn-{function.folder}-{self.number}"
        )
        self.handler: Callable[[Any, Any], Any] | None = None

    def load(self) -> Callable[[Any, Any], Any]:
        """Import the function's module afresh (this container's cold start)."""
        if self.handler is None:
            fn = self.function
            name = f"devstack_fn_{fn.folder}_{self.number}"
            spec = importlib.util.spec_from_file_location(name, fn.module_file)
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot load {fn.module_file}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module  # pydantic and dataclasses look modules up by name
            try:
                spec.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(name, None)
                raise
            self.handler = getattr(module, fn.handler_name)
        return self.handler

    def run(self, event: Any) -> Invocation:
        fn = self.function
        context = LambdaContext(
            function_name=fn.logical_id, memory_limit_in_mb=fn.memory, timeout_seconds=fn.timeout
        )
        started = time.monotonic()
        try:
            handler = self.load()
            if _is_http(event):
                with _RESOLVER_LOCK:
                    payload = handler(event, context)
            else:
                payload = handler(event, context)
            # Lambda serialises the result to JSON; what cannot be serialised is an error.
            json.dumps(payload)
            return Invocation(payload=payload, seconds=time.monotonic() - started)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as error:
            # BaseException: a native panic (pyo3's PanicException) fails the invocation, as
            # it fails a Lambda invocation; it must not reach the queue thread that called.
            trace = traceback.format_exc()
            log.error("function %s failed:\n%s", fn.folder, trace)
            return Invocation(error=error, error_trace=trace, seconds=time.monotonic() - started)
        finally:
            elapsed = time.monotonic() - started
            if elapsed > fn.timeout:
                log.warning(
                    "function %s ran %.1f s, over its %d s timeout: Lambda would have stopped it",
                    fn.folder,
                    elapsed,
                    fn.timeout,
                )


class FunctionRuntime:
    """Containers for every function of the template (or any folder under functions/)."""

    def __init__(self, template: Template, *, max_containers: int = 4) -> None:
        self.template = template
        self.max_containers = max_containers
        self._lock = threading.Condition()
        self._idle: dict[str, list[Any]] = {}
        self._count: dict[str, int] = {}
        self._all: list[Any] = []

    def function(self, folder: str) -> Function | None:
        """A function of the template, or any ``functions/<folder>/app.py`` (a function the
        template does not list yet still runs, with Globals' timeout and memory)."""
        if folder in self.template.functions:
            return self.template.functions[folder]
        if not _FUNCTION_NAME.fullmatch(folder):
            return None
        code_dir = paths.repo_root() / "functions" / folder
        if not (code_dir / "app.py").is_file():
            return None
        globals_fn = (self.template.raw.get("Globals") or {}).get("Function") or {}
        timeout = globals_fn.get("Timeout", 3)
        memory = globals_fn.get("MemorySize", 128)
        return Function(
            logical_id=folder,
            folder=folder,
            code_dir=code_dir,
            handler=str(globals_fn.get("Handler", "app.lambda_handler")),
            timeout=timeout if isinstance(timeout, int) else 3,
            memory=memory if isinstance(memory, int) else 128,
            environment={},
            unresolved_environment=(),
            schedule_rules=(),
            sqs_events=(),
        )

    def available(self) -> list[str]:
        root = paths.repo_root() / "functions"
        return sorted(p.parent.name for p in root.glob("*/app.py"))

    def _new_container(self, fn: Function) -> Any:
        """One execution environment of `fn` (here: an import in this process; the artifact
        harness starts a process). It has `function`, `executor`, `load()` and `run(event)`."""
        return _Container(fn)

    def _acquire(self, fn: Function) -> Any:
        with self._lock:
            while True:
                idle = self._idle.setdefault(fn.folder, [])
                if idle:
                    return idle.pop()
                if self._count.get(fn.folder, 0) < self.max_containers:
                    self._count[fn.folder] = self._count.get(fn.folder, 0) + 1
                    container = self._new_container(fn)
                    self._all.append(container)
                    return container
                self._lock.wait()

    def _release(self, container: Any) -> None:
        with self._lock:
            self._idle.setdefault(container.function.folder, []).append(container)
            self._lock.notify_all()

    def warm(self, folder: str) -> bool:
        """Import one container's module now, so the first request is warm and an import
        error shows at start (logged; the function's invocations fail until it is fixed)."""
        fn = self.function(folder)
        if fn is None:
            raise LookupError(folder)
        container = self._acquire(fn)
        try:
            container.executor.submit(container.load).result()
            return True
        except Exception:
            log.exception("functions/%s cannot be imported", folder)
            return False
        finally:
            self._release(container)

    def invoke(self, folder: str, event: Any, wait: float | None = None) -> Invocation:
        """Run the function on a free container. With `wait`, give up waiting after that many
        seconds (the run goes on, as in Lambda behind an API Gateway timeout)."""
        fn = self.function(folder)
        if fn is None:
            raise LookupError(folder)
        container = self._acquire(fn)
        future = container.executor.submit(container.run, event)
        future.add_done_callback(lambda _f: self._release(container))
        try:
            return future.result(timeout=wait)
        except concurrent.futures.TimeoutError:
            return Invocation(timed_out=True, seconds=wait or 0.0)

    def shutdown(self) -> None:
        with self._lock:
            containers = list(self._all)
        for container in containers:
            container.executor.shutdown(wait=False, cancel_futures=True)


# --------------------------------------------------------------------------- events


def _is_text(content_type: str | None) -> bool:
    return not content_type or bool(_TEXT_TYPES.match(content_type.strip()))


def build_http_event(
    *,
    method: str,
    raw_path: str,
    raw_query: str,
    headers: list[tuple[str, str]],
    body: bytes,
    route: Route,
    path_parameters: dict[str, str],
    source_ip: str,
    protocol: str,
    request_id: str,
    now: float | None = None,
) -> dict[str, Any]:
    """The event API Gateway HTTP API sends to a Lambda integration (payload format 2.0)."""
    moment = time.time() if now is None else now
    merged: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        key = name.lower()
        if key == "cookie":
            cookies += [c.strip() for c in value.split(";") if c.strip()]
            continue
        merged[key] = f"{merged[key]},{value}" if key in merged else value
    host = merged.get("host", "localhost")
    merged.setdefault("x-forwarded-for", source_ip)
    merged.setdefault("x-forwarded-proto", "http")
    merged.setdefault("x-forwarded-port", host.rsplit(":", 1)[1] if ":" in host else "80")

    query: dict[str, str] = {}
    for key, value in urllib.parse.parse_qsl(raw_query, keep_blank_values=True):
        query[key] = f"{query[key]},{value}" if key in query else value

    domain = host.rsplit(":", 1)[0] if not host.startswith("[") else host
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route.route_key,
        "rawPath": raw_path,
        "rawQueryString": raw_query,
        "headers": merged,
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": "local",
            "domainName": domain,
            "domainPrefix": domain.split(".", 1)[0],
            "http": {
                "method": method,
                "path": raw_path,
                "protocol": protocol,
                "sourceIp": source_ip,
                "userAgent": merged.get("user-agent", ""),
            },
            "requestId": request_id,
            "routeKey": route.route_key,
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(moment)),
            "timeEpoch": int(moment * 1000),
        },
        "isBase64Encoded": False,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    if path_parameters:
        event["pathParameters"] = {k: urllib.parse.unquote(v) for k, v in path_parameters.items()}
    if body:
        if _is_text(merged.get("content-type")):
            try:
                event["body"] = body.decode("utf-8")
            except UnicodeDecodeError:
                event["body"] = base64.b64encode(body).decode()
                event["isBase64Encoded"] = True
        else:
            event["body"] = base64.b64encode(body).decode()
            event["isBase64Encoded"] = True
    return event


def new_request_id() -> str:
    """Shaped like API Gateway's (``JZrC_gXXoAMEVhQ=``)."""
    return base64.b64encode(secrets.token_bytes(10)).decode().replace("+", "_").replace("/", "-")


def sqs_record(
    body: str,
    *,
    queue_arn: str,
    message_id: str,
    receipt_handle: str,
    attributes: dict[str, str],
    md5_of_body: str | None = None,
) -> dict[str, Any]:
    """One SQS record, as Lambda's event source mapping delivers it."""
    return {
        "messageId": message_id,
        "receiptHandle": receipt_handle,
        "body": body,
        "attributes": attributes,
        "messageAttributes": {},
        "md5OfBody": md5_of_body or hashlib.md5(body.encode(), usedforsecurity=False).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": queue_arn.split(":")[3],
    }


def sqs_event(
    message: Any, *, queue: str, receive_count: int, message_id: str, sent_ms: int
) -> dict[str, Any]:
    """One message of the local queue as an SQS event of one record."""
    body = message if isinstance(message, str) else json.dumps(message)
    now_ms = int(time.time() * 1000)
    record = sqs_record(
        body,
        queue_arn=f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}",
        message_id=message_id,
        receipt_handle=base64.b64encode(secrets.token_bytes(24)).decode(),
        attributes={
            "ApproximateReceiveCount": str(receive_count),
            "SentTimestamp": str(sent_ms),
            "SenderId": "AIDALOCALSTACK",
            "ApproximateFirstReceiveTimestamp": str(now_ms),
        },
    )
    return {"Records": [record]}


BACKUP_QUEUE = "JobQueue"
RESTORE_QUEUE = "RestoreJobQueue"


class JobWorker:
    """The SQS event source mappings, for LocalQueue: message → SQS event → the function the
    template feeds from the message's queue (chosen by its ``kind``, as the dispatcher does)."""

    def __init__(self, runtime: FunctionRuntime, *, retry_delay: float = 2.0) -> None:
        self.runtime = runtime
        self.retry_delay = retry_delay
        template = runtime.template
        self.routes = {q: f for f in template.functions.values() for q in f.sqs_events}
        if BACKUP_QUEUE not in self.routes:
            raise LookupError(f"template.yaml feeds no function from {BACKUP_QUEUE}")
        self.function = self.routes[BACKUP_QUEUE]
        self.queue = BACKUP_QUEUE
        self.max_receives = template.max_receive_count(self.queue)
        self.dead_letters: list[Any] = []

    def _queue_of(self, message: Any) -> str:
        kind = message.get("kind") if isinstance(message, dict) else None
        return (
            BACKUP_QUEUE if kind == "backup" or RESTORE_QUEUE not in self.routes else RESTORE_QUEUE
        )

    def __call__(self, message: dict[str, Any]) -> None:
        message_id = str(uuid.uuid4())
        sent_ms = int(time.time() * 1000)
        queue = self._queue_of(message)
        function = self.routes[queue]
        max_receives = self.runtime.template.max_receive_count(queue)
        for receive in range(1, max_receives + 1):
            event = sqs_event(
                message,
                queue=queue,
                receive_count=receive,
                message_id=message_id,
                sent_ms=sent_ms,
            )
            result = self.runtime.invoke(function.folder, event)
            failures: list[Any] = []
            if result.error is None and isinstance(result.payload, dict):
                failures = result.payload.get("batchItemFailures") or []
            if result.error is None and not failures:
                return
            log.warning(
                "job message %s failed (receive %d of %d)%s",
                message_id,
                receive,
                max_receives,
                "; SQS would deliver it again after the visibility timeout"
                if receive < max_receives
                else "",
            )
            if receive < max_receives:
                time.sleep(self.retry_delay)
        self.dead_letters.append(message)
        log.error(
            "job message %s moved to the dead-letter queue after %d receives",
            message_id,
            max_receives,
        )


# --------------------------------------------------------------------------- HTTP


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def _json_reply(status: int, data: Any, extra: list[tuple[str, str]] | None = None) -> Reply:
    extra = extra or []
    named = {name.lower() for name, _ in extra}
    return Reply(
        status,
        [
            ("Content-Type", "application/json"),
            *extra,
            *(h for h in API_HEADERS if h[0].lower() not in named),
        ],
        json.dumps(data, ensure_ascii=False).encode(),
    )


def _error_reply(status: int, code: str, message: str) -> Reply:
    return Reply(
        status, [("Content-Type", "application/json"), *API_HEADERS], _error_body(code, message)
    )


NOT_BUILT_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Clinic backups (local)</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto">
<h1>The UI is not built</h1>
<p>{reason}</p>
<p>Build it with <code>cd frontend &amp;&amp; npm ci &amp;&amp; npm run build</code>, then reload
(the gateway serves <code>frontend/dist/</code> as it finds it).</p>
<p>The API is up: <code>GET /me</code>, <code>GET|POST /backups</code>,
<code>GET|DELETE /backups/{{id}}</code>, <code>GET /backups/{{id}}/download</code>, with a token
from <a href="/__demo/accounts"><code>/__demo/accounts</code></a>.</p>
</body></html>
"""


class _ThreadingHTTPServer6(ThreadingHTTPServer):
    address_family = socket.AF_INET6


class Gateway:
    """The HTTP server. ``start()`` binds; ``url`` says where."""

    def __init__(
        self,
        runtime: FunctionRuntime,
        *,
        host: str = "127.0.0.1",
        port: int = 8000,
        static_dir: Path | None = None,
        demo_accounts: Callable[[], list[dict[str, str]]] | None = None,
        after_invoke: Callable[[], None] | None = None,
        ui_note: str = "frontend/dist/index.html does not exist.",
    ) -> None:
        self.runtime = runtime
        self.host = host
        self.requested_port = port
        self.static_dir = static_dir
        self.demo_accounts = demo_accounts
        self.after_invoke = after_invoke  # ?wait=jobs: wait for queued jobs to finish
        self.ui_note = ui_note
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        prefixes = {r.path.strip("/").split("/", 1)[0] for r in runtime.template.routes}
        self.api_prefixes = frozenset(p for p in prefixes if p)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> Gateway:
        handler = type("Handler", (_Handler,), {"gateway": self})
        server_class: type[ThreadingHTTPServer] = ThreadingHTTPServer
        if ":" in self.host:
            server_class = _ThreadingHTTPServer6
        self._server = server_class((self.host, self.requested_port), handler)
        self._server.daemon_threads = True
        server = self._server
        self._thread = threading.Thread(
            # A short poll interval: shutdown() waits for one poll.
            target=lambda: server.serve_forever(poll_interval=0.05),
            name="gateway",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # -- routing -----------------------------------------------------------------------------

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        for route in self.runtime.template.routes:  # most specific first
            if route.method not in (method, "ANY"):
                continue
            params = route.match_path(path)
            if params is not None:
                return route, params
        return None

    def reserved(self, path: str) -> bool:
        """Paths the UI may never serve: API routes and the local endpoints."""
        first = path.strip("/").split("/", 1)[0]
        return first in self.api_prefixes or first in LOCAL_PREFIXES

    def static(self, path: str) -> Reply:
        root = self.static_dir
        index = root / "index.html" if root else None
        if root is None or index is None or not index.is_file():
            if "." in path.rsplit("/", 1)[-1]:
                return _error_reply(404, "not_found", "No such file (the UI is not built).")
            page = NOT_BUILT_PAGE.format(reason=self.ui_note).encode()
            return Reply(
                200,
                [
                    ("Content-Type", "text/html; charset=utf-8"),
                    ("Cache-Control", "no-cache"),
                    *UI_HEADERS,
                ],
                page,
            )
        relative = urllib.parse.unquote(path).lstrip("/")
        target = (root / relative).resolve() if relative else index
        real_root = root.resolve()
        if target != real_root and real_root not in target.parents:
            return _error_reply(404, "not_found", "No such file.")
        if not target.is_file():
            if "." in relative.rsplit("/", 1)[-1]:
                return _error_reply(404, "not_found", "No such file.")
            target = index  # a client-side route: the app decides
        content_type = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        if content_type.startswith("text/") or content_type.endswith("javascript"):
            content_type += "; charset=utf-8"
        cache = (
            "public, max-age=31536000, immutable" if target.parent.name == "assets" else "no-cache"
        )
        data = target.read_bytes()
        return Reply(
            200, [("Content-Type", content_type), ("Cache-Control", cache), *UI_HEADERS], data
        )

    def call_function(self, route: Route, event: dict[str, Any]) -> Reply:
        fn = self.runtime.function(route.function)
        wait = min(INTEGRATION_TIMEOUT, float(fn.timeout)) if fn else INTEGRATION_TIMEOUT
        result = self.runtime.invoke(route.function, event, wait=wait)
        if result.timed_out:
            return _error_reply(
                503, "service_unavailable", f"The function did not answer within {wait:.0f} s."
            )
        if result.error is not None:
            return _error_reply(500, "internal_error", "The function failed; see the stack's log.")
        return _lambda_to_http(result.payload)


def _lambda_to_http(payload: Any) -> Reply:
    """The v2 response: a dict with statusCode, or anything else = 200 JSON."""
    if not (isinstance(payload, dict) and "statusCode" in payload):
        text = payload if isinstance(payload, str) else json.dumps(payload)
        return Reply(200, [("Content-Type", "application/json")], text.encode())
    headers = [(str(k), str(v)) for k, v in (payload.get("headers") or {}).items()]
    for name, values in (payload.get("multiValueHeaders") or {}).items():
        headers += [(str(name), str(v)) for v in values]
    headers += [("Set-Cookie", str(c)) for c in payload.get("cookies") or []]
    raw = payload.get("body") or ""
    body = base64.b64decode(raw) if payload.get("isBase64Encoded") else str(raw).encode()
    if not any(k.lower() == "content-type" for k, _ in headers) and body:
        headers.append(("Content-Type", "application/json"))
    return Reply(int(payload["statusCode"]), headers, body)


class _BodyTooLarge(Exception):
    pass


def read_body(rfile: Any, headers: Any, limit: int | None = None) -> bytes:
    """A request's body, by Content-Length or chunked; _BodyTooLarge past `limit` bytes."""
    if "chunked" in headers.get("Transfer-Encoding", "").lower():
        chunks: list[bytes] = []
        total = 0
        while True:
            size = int(rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            total += size
            if limit is not None and total > limit:
                raise _BodyTooLarge()
            chunks.append(rfile.read(size))
            rfile.readline()
    length = int(headers.get("Content-Length") or 0)
    if limit is not None and length > limit:
        raise _BodyTooLarge()
    return bytes(rfile.read(length)) if length > 0 else b""


class _Handler(BaseHTTPRequestHandler):
    gateway: Gateway
    protocol_version = "HTTP/1.1"
    server_version = "clinic-backups-local-gateway"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the access log is written in _handle, without query strings

    def log_error(self, format: str, *args: Any) -> None:
        # http.server's own complaints (a malformed request line); it may quote the URL.
        log.info("bad request from %s", self.client_address[0])

    def do_GET(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def do_OPTIONS(self) -> None:
        self._handle()

    def __getattr__(self, name: str) -> Any:
        # Any other method (TRACE, CONNECT, PROPFIND…) gets the gateway's own answer, like
        # API Gateway's 404 for a route no method matches — not http.server's 501 HTML page.
        if name.startswith("do_"):
            return self._handle
        raise AttributeError(name)

    # -- plumbing ---------------------------------------------------------------------------

    def _read_body(self) -> bytes:
        return read_body(self.rfile, self.headers, MAX_BODY_BYTES)

    def _send(self, reply: Reply, request_id: str | None = None) -> None:
        self.send_response(reply.status)
        for name, value in reply.headers:
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        if request_id:
            self.send_header("apigw-requestid", request_id)
        self.send_header("Content-Length", str(len(reply.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)

    def _local_allowed(self) -> bool:
        """Local endpoints: loopback clients that call us by a loopback name only."""
        if not _is_loopback(self.client_address[0]):
            return False
        host = (self.headers.get("Host") or "").strip().lower()
        name = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
        return name in ("localhost", "[::1]") or _is_loopback(name)

    def _handle(self) -> None:
        started = time.monotonic()
        split = urllib.parse.urlsplit(self.path)
        path = split.path or "/"
        status = 500
        try:
            try:
                body = self._read_body()
            except _BodyTooLarge:
                self.close_connection = True  # the body stays unread
                reply = _error_reply(
                    413, "payload_too_large", "The request body is larger than 10 MB."
                )
                status = reply.status
                self._send(reply)
                return
            except ValueError:
                self.close_connection = True
                reply = _error_reply(400, "bad_request", "Malformed request body.")
                status = reply.status
                self._send(reply)
                return
            request_id = new_request_id()
            reply = self._dispatch(path, split.query, body, request_id)
            status = reply.status
            self._send(reply, request_id)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            # Path only: a query string may carry a signature, a header a token.
            log.info(
                '%s "%s %s" %d %.0fms',
                self.client_address[0],
                self.command,
                path,
                status,
                (time.monotonic() - started) * 1000,
            )

    def _dispatch(self, path: str, query: str, body: bytes, request_id: str) -> Reply:
        gateway = self.gateway
        method = self.command.upper()
        first = path.strip("/").split("/", 1)[0]
        if first in LOCAL_PREFIXES:
            if not self._local_allowed():
                return _error_reply(404, "not_found", "No such route.")
            return self._local(method, path, query, body)
        matched = gateway.match(method, path)
        if matched is not None:
            route, params = matched
            event = build_http_event(
                method=method,
                raw_path=path,
                raw_query=query,
                headers=list(self.headers.items()),
                body=body,
                route=route,
                path_parameters=params,
                source_ip=self.client_address[0],
                protocol=self.request_version,
                request_id=request_id,
            )
            return gateway.call_function(route, event)
        if gateway.reserved(path) or method not in ("GET", "HEAD"):
            return _error_reply(404, "not_found", f"No route for {method} {path}.")
        return gateway.static(path)

    def _local(self, method: str, path: str, query: str, body: bytes) -> Reply:
        gateway = self.gateway
        if path.rstrip("/") == "/__demo/accounts" and method in ("GET", "HEAD"):
            if gateway.demo_accounts is None:
                return _error_reply(404, "not_found", "This stack has no demo accounts.")
            return _json_reply(200, gateway.demo_accounts(), [("Cache-Control", "no-store")])
        if path.rstrip("/") == "/__local/health" and method in ("GET", "HEAD"):
            return _json_reply(200, {"status": "ok"})
        prefix = "/__local/invoke/"
        if path.startswith(prefix) and method == "POST":
            folder = path[len(prefix) :].strip("/")
            content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            if content_type.lower() != "application/json":
                return _error_reply(
                    400, "bad_request", "Send the event as Content-Type: application/json."
                )
            try:
                event = json.loads(body or b"{}")
            except ValueError:
                return _error_reply(400, "bad_request", "The event is not valid JSON.")
            if gateway.runtime.function(folder) is None:
                return _error_reply(
                    404,
                    "not_found",
                    f"No function {folder!r}; functions/ has: "
                    + ", ".join(gateway.runtime.available()),
                )
            result = gateway.runtime.invoke(folder, event)
            wait_jobs = "jobs" in urllib.parse.parse_qs(query).get("wait", [])
            if wait_jobs and gateway.after_invoke is not None:
                gateway.after_invoke()
            headers = [("X-Amz-Executed-Version", "$LATEST")]
            if result.error is not None:
                headers.append(("X-Amz-Function-Error", "Unhandled"))
                return _json_reply(200, result.lambda_error(), headers)
            return _json_reply(200, result.payload, headers)
        return _error_reply(404, "not_found", f"No route for {method} {path}.")


def main_routes() -> list[str]:
    """The served routes, for printing."""
    return [f"{r.route_key:<28} → functions/{r.function}" for r in load_template().routes]
