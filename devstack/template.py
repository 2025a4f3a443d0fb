"""What the local stack reads from ``template.yaml``: functions, their HTTP routes and settings.

The template is the one description of the API: the gateway serves exactly the
``AWS::Serverless::Function`` events of ``Type: HttpApi`` it lists (method + path → the
function's ``CodeUri`` folder), so a route added to the template is served locally with no
second list to keep in step. Function settings (timeout, memory, handler, environment) come
from ``Globals.Function`` merged with each function's ``Properties``; ``!Ref`` to a template
parameter resolves to that parameter's ``Default``. Anything else that only exists in AWS
(``!Ref JobQueue``, ``!If [...]``, ``!GetAtt``) stays unresolved and is left out.

The YAML is read with ``samtranslator.yaml_helper.yaml_parse`` (installed with the SAM CLI),
which understands CloudFormation's short tags (``!Ref``, ``!Sub``, ``!If``…).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from devstack import paths

__all__ = [
    "Function",
    "Route",
    "Template",
    "load_template",
]

FUNCTION_TYPE = "AWS::Serverless::Function"
_UNRESOLVED = object()


class _Unresolvable(Exception):
    pass


@dataclass(frozen=True)
class Route:
    """One HttpApi event: ``GET /backups/{id}`` served by a function folder."""

    method: str  # upper case; "ANY" matches every method
    path: str  # as written in the template: /backups/{id}, /files/{proxy+}
    function: str  # the function's folder name under functions/
    logical_id: str  # the function's resource id in the template
    _pattern: re.Pattern[str] = field(compare=False, repr=False, default=re.compile(""))
    _params: tuple[str, ...] = field(compare=False, repr=False, default=())

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def specificity(self) -> tuple[int, int, int, int]:
        """API Gateway picks the most specific route: literal segments beat ``{param}``,
        which beats a greedy ``{proxy+}``; a method beats ANY."""
        segments = [s for s in self.path.split("/") if s]
        literal = sum(1 for s in segments if not s.startswith("{"))
        greedy = 1 if segments and segments[-1].endswith("+}") else 0
        return (literal, -greedy, len(segments), 0 if self.method == "ANY" else 1)

    def match_path(self, path: str) -> dict[str, str] | None:
        found = self._pattern.fullmatch(path)
        if found is None:
            return None
        return {name: found.group(i + 1) for i, name in enumerate(self._params)}


def _compile(path: str) -> tuple[re.Pattern[str], tuple[str, ...]]:
    parts: list[str] = []
    names: list[str] = []
    for segment in path.strip("/").split("/"):
        if not segment:
            continue
        if segment.startswith("{") and segment.endswith("+}"):
            names.append(segment[1:-2])
            parts.append("(.+)")
        elif segment.startswith("{") and segment.endswith("}"):
            names.append(segment[1:-1])
            parts.append("([^/]+)")
        else:
            parts.append(re.escape(segment))
    return re.compile("/" + "/".join(parts) + "/?"), tuple(names)


@dataclass(frozen=True)
class Function:
    """One AWS::Serverless::Function, with Globals applied."""

    logical_id: str
    folder: str  # functions/<folder>/
    code_dir: Path
    handler: str  # "app.lambda_handler"
    timeout: int
    memory: int
    environment: dict[str, str]  # the variables that resolve locally
    unresolved_environment: tuple[str, ...]  # variables that only exist in AWS
    schedule_rules: tuple[str, ...]  # names of Schedule/ScheduleV2 events (EventBridge rules)
    sqs_events: tuple[str, ...]  # logical ids of the queues feeding it

    @property
    def module_file(self) -> Path:
        return self.code_dir / (self.handler.rsplit(".", 1)[0].replace(".", "/") + ".py")

    @property
    def handler_name(self) -> str:
        return self.handler.rsplit(".", 1)[1]


@dataclass(frozen=True)
class Template:
    path: Path
    raw: dict[str, Any]
    functions: dict[str, Function]  # by folder name
    routes: tuple[Route, ...]

    def parameter_default(self, name: str) -> Any:
        return (self.raw.get("Parameters") or {}).get(name, {}).get("Default")

    def resource(self, logical_id: str) -> dict[str, Any]:
        return dict((self.raw.get("Resources") or {}).get(logical_id) or {})

    def max_receive_count(self, queue_logical_id: str) -> int:
        """SQS redrive: how many receives before the dead-letter queue (1 without one)."""
        props = self.resource(queue_logical_id).get("Properties") or {}
        try:
            return int((props.get("RedrivePolicy") or {}).get("maxReceiveCount", 1))
        except (TypeError, ValueError):
            return 1

    def environment(self) -> dict[str, str]:
        """The union of every function's resolvable environment (one process runs them all
        locally, so a variable has one value): the first function's value wins; see
        `environment_conflicts`."""
        merged: dict[str, str] = {}
        for function in self.functions.values():
            for name, value in function.environment.items():
                merged.setdefault(name, value)
        return merged

    def environment_conflicts(self) -> list[str]:
        """Variables two functions set to different values (the local stack warns)."""
        seen: dict[str, tuple[str, str]] = {}
        conflicts = []
        for function in self.functions.values():
            for name, value in function.environment.items():
                if name in seen and seen[name][1] != value:
                    conflicts.append(
                        f"{name}: {seen[name][0]}={seen[name][1]!r}, {function.folder}={value!r}"
                    )
                seen.setdefault(name, (function.folder, value))
        return conflicts


def _resolve(value: Any, parameters: dict[str, Any]) -> Any:
    if isinstance(value, dict):
        if set(value) == {"Ref"}:
            ref = value["Ref"]
            if ref in parameters and "Default" in parameters[ref]:
                return parameters[ref]["Default"]
            if ref == "AWS::Region":
                return "eu-west-1"
            raise _Unresolvable(ref)
        raise _Unresolvable(next(iter(value), "?"))
    return value


def _as_env(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def _parse(path: Path) -> Template:
    from samtranslator.yaml_helper import yaml_parse

    raw = yaml_parse(path.read_text())
    parameters = raw.get("Parameters") or {}
    globals_fn = (raw.get("Globals") or {}).get("Function") or {}
    functions: dict[str, Function] = {}
    routes: list[Route] = []
    for logical_id, resource in (raw.get("Resources") or {}).items():
        if not isinstance(resource, dict) or resource.get("Type") != FUNCTION_TYPE:
            continue
        props = {**globals_fn, **(resource.get("Properties") or {})}
        code_uri = props.get("CodeUri")
        if not isinstance(code_uri, str):
            continue  # inline or S3 code: nothing to run locally
        code_dir = (path.parent / code_uri).resolve()
        folder = code_dir.name

        env: dict[str, str] = {}
        unresolved: list[str] = []
        own = (resource.get("Properties") or {}).get("Environment") or {}
        variables = {
            **((globals_fn.get("Environment") or {}).get("Variables") or {}),
            **(own.get("Variables") or {}),
        }
        for name, value in variables.items():
            try:
                env[name] = _as_env(_resolve(value, parameters))
            except _Unresolvable:
                unresolved.append(name)

        def number(key: str, default: int, props: dict[str, Any] = props) -> int:
            try:
                return int(_resolve(props.get(key, default), parameters))
            except (_Unresolvable, TypeError, ValueError):
                return default

        schedules: list[str] = []
        queues: list[str] = []
        for event_id, event in (props.get("Events") or {}).items():
            kind = (event or {}).get("Type")
            event_props = (event or {}).get("Properties") or {}
            if kind == "HttpApi":
                method = str(event_props.get("Method", "ANY")).upper()
                method = "ANY" if method in ("ANY", "X-AMAZON-APIGATEWAY-ANY-METHOD") else method
                route_path = str(event_props.get("Path", "/"))
                pattern, params = _compile(route_path)
                routes.append(Route(method, route_path, folder, logical_id, pattern, params))
            elif kind in ("Schedule", "ScheduleV2"):
                schedules.append(str(event_props.get("Name") or f"{logical_id}{event_id}"))
            elif kind == "SQS":
                queue = event_props.get("Queue")
                if isinstance(queue, dict) and "Fn::GetAtt" in queue:
                    queues.append(str(queue["Fn::GetAtt"][0]))

        functions[folder] = Function(
            logical_id=logical_id,
            folder=folder,
            code_dir=code_dir,
            handler=str(props.get("Handler", "app.lambda_handler")),
            timeout=number("Timeout", 3),
            memory=number("MemorySize", 128),
            environment=env,
            unresolved_environment=tuple(unresolved),
            schedule_rules=tuple(schedules),
            sqs_events=tuple(queues),
        )
    routes.sort(key=lambda r: r.specificity, reverse=True)
    return Template(path=path, raw=raw, functions=functions, routes=tuple(routes))


@cache
def load_template(path: Path | None = None) -> Template:
    """The repo's template.yaml (parsed once per process)."""
    return _parse(Path(path) if path is not None else paths.repo_root() / "template.yaml")
