"""What the local stack reads from ``template.yaml``: functions, their HTTP routes and settings.

The template is the one description of the API: the gateway serves exactly the
``AWS::Serverless::Function`` events of ``Type: HttpApi`` it lists (method + path → the
function's ``CodeUri`` folder), so a route added to the template is served locally with no
second list to keep in step. Function settings (timeout, memory, handler, environment) come
from ``Globals.Function`` merged with each function's ``Properties`` (SAM adds the global
``Layers`` before the function's own). For the in-process stack ``!Ref`` to a template
parameter resolves to that parameter's ``Default`` and conditions are evaluated on the
defaults; anything else that only exists in AWS (``!Ref JobQueue``, ``!GetAtt``, a parameter
without a default) stays unresolved and is left out.

``Template.deployed_environment`` resolves a function's variables the way CloudFormation does
for one deployment (``Deployment``: parameter values as ``sam deploy --parameter-overrides``
gives them, and the values of the resources it created, such as the queues' URLs): ``Ref``,
``Fn::If`` with the template's ``Conditions`` (``Fn::Equals``/``Not``/``And``/``Or``),
``Fn::Sub``, ``Fn::Join``, ``Fn::Select``, ``Fn::GetAtt`` and ``AWS::NoValue``. The artifact
harness (``devstack.artifact``) runs the built functions with exactly that.

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
    "ACCOUNT",
    "REGION",
    "Deployment",
    "Function",
    "Route",
    "Template",
    "UnresolvedTemplate",
    "load_template",
]

FUNCTION_TYPE = "AWS::Serverless::Function"
# The account and region the local stand-ins pretend to be (moto, the gateway's events).
REGION = "eu-west-1"
ACCOUNT = "123456789012"


class _Unresolvable(Exception):
    pass


class UnresolvedTemplate(Exception):
    """A deployment lacks what the template needs (a parameter without a default, a
    resource's value): CloudFormation would refuse it too."""


@dataclass(frozen=True)
class Deployment:
    """What CloudFormation knows when it resolves the template for one stack: the parameter
    values given at deploy time (the rest take their ``Default``) and the values of the
    resources it created — ``Ref`` of a logical id (``JobQueue`` → the queue's URL) and
    ``Fn::GetAtt`` as ``"<logical id>.<attribute>"`` (``JobQueue.Arn``)."""

    parameters: dict[str, str] = field(default_factory=dict)
    resources: dict[str, str] = field(default_factory=dict)
    region: str = REGION
    account: str = ACCOUNT
    stack_name: str = "clinic-backups"


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
    # Logical ids of its layers, in order (Globals' first, as SAM merges them).
    layers: tuple[str, ...] = ()
    # Globals' and its own Environment.Variables as written (intrinsics unresolved).
    variables: dict[str, Any] = field(default_factory=dict, compare=False)

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

    def resolve(self, value: Any, deployment: Deployment) -> Any:
        """Any template value with its intrinsics resolved for `deployment`."""
        try:
            return _Resolver(self.raw, deployment).value(value)
        except _Unresolvable as error:
            raise UnresolvedTemplate(f"cannot resolve {error}") from None

    def deployed_environment(self, function: Function, deployment: Deployment) -> dict[str, str]:
        """The function's Environment.Variables as CloudFormation resolves them for
        `deployment` (see the module docstring); raises UnresolvedTemplate naming every
        variable that cannot be resolved."""
        resolver = _Resolver(self.raw, deployment)
        env: dict[str, str] = {}
        missing: list[str] = []
        for name, value in function.variables.items():
            try:
                resolved = resolver.value(value)
            except _Unresolvable as error:
                missing.append(f"{name} ({error})")
                continue
            if resolved is not _NO_VALUE:
                env[name] = _as_env(resolved)
        if missing:
            raise UnresolvedTemplate(f"{function.logical_id}: cannot resolve " + ", ".join(missing))
        return env

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


_NO_VALUE = object()  # AWS::NoValue: the property (here: the variable) is left out


class _Resolver:
    """CloudFormation's intrinsic functions over one template and one deployment."""

    def __init__(self, raw: dict[str, Any], deployment: Deployment | None = None) -> None:
        self.deployment = deployment or Deployment()
        self.declared: dict[str, Any] = raw.get("Parameters") or {}
        self.conditions: dict[str, Any] = raw.get("Conditions") or {}
        self._conditions_seen: dict[str, bool] = {}
        self.pseudo = {
            "AWS::Region": self.deployment.region,
            "AWS::AccountId": self.deployment.account,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": self.deployment.stack_name,
        }

    def parameter(self, name: str) -> Any:
        declared = self.declared[name]
        given = self.deployment.parameters.get(name)
        if given is None:
            if "Default" not in declared:
                raise _Unresolvable(name)
            value = declared["Default"]
        else:
            value = given
            allowed = declared.get("AllowedValues")
            if allowed is not None and str(value) not in [str(a) for a in allowed]:
                raise UnresolvedTemplate(f"parameter {name}: {value!r} is not one of {allowed}")
        if declared.get("Type") == "CommaDelimitedList" and isinstance(value, str):
            return [part.strip() for part in value.split(",")]
        return value

    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return _NO_VALUE
        if name in self.declared:
            return self.parameter(name)
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.deployment.resources:
            return self.deployment.resources[name]
        raise _Unresolvable(name)

    def condition(self, name: str) -> bool:
        if name not in self._conditions_seen:
            if name not in self.conditions:
                raise _Unresolvable(f"Condition {name}")
            self._conditions_seen[name] = bool(self.value(self.conditions[name]))
        return self._conditions_seen[name]

    def _sub(self, text: str, names: dict[str, Any]) -> str:
        def one(match: re.Match[str]) -> str:
            inner = match.group(1)
            if inner.startswith("!"):
                return "${" + inner[1:] + "}"  # ${!Literal} is written as ${Literal}
            if inner in names:
                return _as_env(self.value(names[inner]))
            if "." in inner and not inner.startswith("AWS::"):
                return _as_env(self.get_att(inner))
            return _as_env(self.ref(inner))

        return re.sub(r"\$\{([^}]+)\}", one, text)

    def get_att(self, dotted: str) -> Any:
        if dotted in self.deployment.resources:
            return self.deployment.resources[dotted]
        raise _Unresolvable(dotted)

    def value(self, node: Any) -> Any:  # noqa: C901
        if isinstance(node, list):
            return [self.value(item) for item in node]
        if not isinstance(node, dict):
            return node
        key = str(next(iter(node))) if len(node) == 1 else ""
        if key not in ("Ref", "Condition") and not key.startswith("Fn::"):
            return {name: self.value(item) for name, item in node.items()}  # a plain mapping
        arg = node[key]
        if key == "Ref":
            return self.ref(str(arg))
        if key == "Condition":
            return self.condition(str(arg))
        if key == "Fn::If":
            name, then, otherwise = arg
            return self.value(then if self.condition(str(name)) else otherwise)
        if key == "Fn::Equals":
            left, right = (self.value(a) for a in arg)
            return _as_env(left) == _as_env(right)
        if key == "Fn::Not":
            return not self.value(arg[0])
        if key == "Fn::And":
            return all(self.value(a) for a in arg)
        if key == "Fn::Or":
            return any(self.value(a) for a in arg)
        if key == "Fn::Sub":
            text, names = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
            return self._sub(str(text), dict(names))
        if key == "Fn::Join":
            separator, items = arg
            return str(separator).join(_as_env(self.value(i)) for i in self.value(items))
        if key == "Fn::Select":
            index, items = arg
            return self.value(items)[int(self.value(index))]
        if key == "Fn::GetAtt":
            parts = arg.split(".", 1) if isinstance(arg, str) else arg
            return self.get_att(f"{parts[0]}.{parts[1]}")
        raise _Unresolvable(key)


def _as_env(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def _parse(path: Path) -> Template:  # noqa: C901
    from samtranslator.yaml_helper import yaml_parse

    raw = yaml_parse(path.read_text())
    defaults = _Resolver(raw)  # the in-process stack: parameter defaults, no resources
    globals_fn = (raw.get("Globals") or {}).get("Function") or {}
    functions: dict[str, Function] = {}
    routes: list[Route] = []
    for logical_id, resource in (raw.get("Resources") or {}).items():
        if not isinstance(resource, dict) or resource.get("Type") != FUNCTION_TYPE:
            continue
        own_props = resource.get("Properties") or {}
        props = {**globals_fn, **own_props}
        code_uri = props.get("CodeUri")
        if not isinstance(code_uri, str):
            continue  # inline or S3 code: nothing to run locally
        code_dir = (path.parent / code_uri).resolve()
        folder = code_dir.name

        env: dict[str, str] = {}
        unresolved: list[str] = []
        own = own_props.get("Environment") or {}
        variables = {
            **((globals_fn.get("Environment") or {}).get("Variables") or {}),
            **(own.get("Variables") or {}),
        }
        for name, value in variables.items():
            try:
                resolved = defaults.value(value)
            except _Unresolvable:
                unresolved.append(name)
                continue
            if resolved is not _NO_VALUE:
                env[name] = _as_env(resolved)
        layers = [
            str(layer["Ref"])
            for layer in [*(globals_fn.get("Layers") or []), *(own_props.get("Layers") or [])]
            if isinstance(layer, dict) and "Ref" in layer
        ]

        def number(key: str, default: int, props: dict[str, Any] = props) -> int:
            try:
                return int(defaults.value(props.get(key, default)))
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
            layers=tuple(layers),
            variables=dict(variables),
        )
    routes.sort(key=lambda r: r.specificity, reverse=True)
    return Template(path=path, raw=raw, functions=functions, routes=tuple(routes))


@cache
def load_template(path: Path | None = None) -> Template:
    """The repo's template.yaml (parsed once per process)."""
    return _parse(Path(path) if path is not None else paths.repo_root() / "template.yaml")
