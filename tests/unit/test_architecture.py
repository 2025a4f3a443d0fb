"""What the import contract (.importlinter) cannot say, read from the source with `ast`:

- every `functions/*/app.py` is its routes and nothing else: it builds itself with
  `function_app`, imports no adapter, factory or driver, and each route (or worker, or
  scheduled run) calls at most one use-case function;
- no module of the layer imports another module's private name (`_x`), or reaches for one
  through a module it imported: what rooms share is public, in their own modules;
- a handler's import stays small (cold start): no boto3, storage3 or activity use cases.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LAYER = REPO / "shared" / "clinic_backups"
HANDLERS = sorted((REPO / "functions").glob("*/app.py"))

# Modules a handler must not import: it reaches adapters and drivers only through the use
# cases, and its wiring only through function_app (the settings model is all it names).
FORBIDDEN_IN_HANDLERS = (
    "clinic_backups.adapters",
    "clinic_backups.wiring.factory",
    "boto3",
    "botocore",
    "psycopg2",
    "storage3",
    "pyrage",
)
ENTRY_DECORATORS = {"worker", "scheduled"}
ROUTE_METHODS = {"get", "post", "put", "patch", "delete"}


def _imported_modules(tree: ast.AST) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.lineno, node.module
            for alias in node.names:
                yield node.lineno, f"{node.module}.{alias.name}"


def _use_case_names(tree: ast.AST) -> set[str]:
    """The names a handler binds to use-case modules or functions (lazy imports included)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
            "clinic_backups.usecases"
        ):
            names |= {alias.asname or alias.name for alias in node.names}
        elif isinstance(node, ast.Import):
            names |= {
                alias.asname or alias.name
                for alias in node.names
                if alias.name.startswith("clinic_backups.usecases")
            }
    return names


def _use_case_calls(body: ast.AST, use_cases: set[str]) -> list[str]:
    calls = []
    for node in ast.walk(body):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        root = func
        while isinstance(root, ast.Attribute):
            root = root.value
        if isinstance(root, ast.Name) and root.id in use_cases:
            calls.append(ast.unparse(func))
    return calls


def _is_entry(decorator: ast.expr) -> bool:
    """`@fn.app.<method>(path)`, `@fn.worker` or `@fn.scheduled`."""
    if isinstance(decorator, ast.Call):
        func = decorator.func
        return (
            isinstance(func, ast.Attribute)
            and func.attr in ROUTE_METHODS
            and ast.unparse(func.value) == "fn.app"
        )
    return (
        isinstance(decorator, ast.Attribute)
        and decorator.attr in ENTRY_DECORATORS
        and ast.unparse(decorator.value) == "fn"
    )


def _handler_problems(path: Path, root: Path = REPO) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    where = path.relative_to(root)
    problems = [
        f"{where}:{line} imports {name}"
        for line, name in _imported_modules(tree)
        if any(name == f or name.startswith(f + ".") for f in FORBIDDEN_IN_HANDLERS)
    ]
    use_cases = _use_case_names(tree)
    built = False
    for index, node in enumerate(tree.body):
        if index == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # the module docstring
        if isinstance(node, ast.Import | ast.ImportFrom):
            continue
        text = ast.unparse(node)
        if text.startswith("fn = function_app("):
            built = True
            continue
        if text == "lambda_handler = fn.lambda_handler":
            continue
        if isinstance(node, ast.FunctionDef) and any(_is_entry(d) for d in node.decorator_list):
            calls = _use_case_calls(node, use_cases)
            if len(calls) > 1:
                problems.append(f"{where}:{node.lineno} {node.name} calls {', '.join(calls)}")
            continue
        problems.append(f"{where}:{node.lineno} is not a route: {text.splitlines()[0]}")
    if not built:
        problems.append(f"{where}: not built with `fn = function_app(SettingsModel)`")
    return problems


@pytest.mark.parametrize("path", HANDLERS, ids=lambda p: p.parent.name)
def test_a_handler_is_its_routes_each_calling_one_use_case(path: Path) -> None:
    assert _handler_problems(path) == []


def test_the_handler_check_sees_wiring_a_second_use_case_and_a_driver(tmp_path: Path) -> None:
    # Given a handler that builds its own services, calls two use cases and imports boto3
    bad = tmp_path / "functions" / "bad" / "app.py"
    bad.parent.mkdir(parents=True)
    bad.write_text(
        "from functools import cache\n"
        "import boto3\n"
        "from clinic_backups.edge.app import function_app\n"
        "from clinic_backups.usecases import backups\n"
        "from clinic_backups.wiring.factory import build_services\n"
        "fn = function_app(object)\n"
        "lambda_handler = fn.lambda_handler\n"
        "@cache\n"
        "def services():\n"
        "    return build_services(None)\n"
        "@fn.app.get('/x')\n"
        "def x():\n"
        "    backups.get_backup(1)\n"
        "    return backups.list_backups(2)\n"
    )
    # When it is checked
    problems = _handler_problems(bad, root=tmp_path)
    # Then each habit is named
    assert [p.split(" ", 1)[1] for p in problems] == [
        "imports boto3",
        "imports clinic_backups.wiring.factory",
        "imports clinic_backups.wiring.factory.build_services",
        "is not a route: @cache",
        "x calls backups.get_backup, backups.list_backups",
    ]


def _layer_modules() -> dict[str, Path]:
    return {
        ".".join(path.relative_to(LAYER.parent).with_suffix("").parts).removesuffix(
            ".__init__"
        ): path
        for path in sorted(LAYER.rglob("*.py"))
    }


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _imports(module: str, path: Path, tree: ast.Module) -> tuple[list[str], dict[str, str]]:
    """The private names `module` imports from another module of the layer, and the names
    it binds to the layer's modules and public names."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    borrowed = []
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("clinic_backups"):
                    aliases[alias.asname or alias.name] = alias.name
            continue
        if not isinstance(node, ast.ImportFrom):
            continue
        source = node.module or ""
        if node.level:
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            source = f"{base}.{source}" if source else base
        if not source.startswith("clinic_backups"):
            continue
        for alias in node.names:
            if _private(alias.name) and source != module:
                borrowed.append(f"{module}:{node.lineno} from {source} import {alias.name}")
            elif not _private(alias.name):
                aliases[alias.asname or alias.name] = f"{source}.{alias.name}"
    return borrowed, aliases


def _borrowed_private_names(module: str, path: Path) -> list[str]:
    """Private names `module` takes from another module of the layer: imported by name, or
    read through a module it imported (`backups._audit`)."""
    tree = ast.parse(path.read_text(), str(path))
    borrowed, module_aliases = _imports(module, path, tree)
    modules = _layer_modules()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and _private(node.attr)
            and isinstance(node.value, ast.Name)
            and module_aliases.get(node.value.id) in modules
        ):
            borrowed.append(f"{module}:{node.lineno} {node.value.id}.{node.attr}")
    return borrowed


def test_no_module_of_the_layer_borrows_another_modules_private_name() -> None:
    borrowed = [
        line
        for module, path in _layer_modules().items()
        for line in _borrowed_private_names(module, path)
    ]
    assert borrowed == []


def test_the_private_name_check_sees_both_ways_of_borrowing(tmp_path: Path) -> None:
    # Given a module that imports a private name, and one that reads one through a module
    path = tmp_path / "m.py"
    path.write_text(
        "from clinic_backups.usecases.backups import _audit, describe_me\n"
        "from clinic_backups.wiring import factory\n"
        "from . import _local\n"
        "factory._databases.clear()\n"
        "factory.build_services(None)\n"
    )
    # When it is checked as a module of the edge
    borrowed = _borrowed_private_names("clinic_backups.edge.m", path)
    # Then both borrowings are named, and a public name is not
    assert borrowed == [
        "clinic_backups.edge.m:1 from clinic_backups.usecases.backups import _audit",
        "clinic_backups.edge.m:3 from clinic_backups.edge import _local",
        "clinic_backups.edge.m:4 factory._databases",
    ]


@pytest.mark.parametrize("path", HANDLERS, ids=lambda p: p.parent.name)
def test_importing_a_handler_loads_no_storage_client_nor_the_activity_use_cases(
    path: Path,
) -> None:
    # The activity routes import their use cases lazily, and storage clients come with the
    # first request that needs them: a cold start of any function stays small.
    probe = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('app', {str(path)!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "print(' '.join(sorted(m for m in ('boto3', 'storage3', 'pyrage', "
        "'clinic_backups.usecases.activity') if m in sys.modules)))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    assert loaded == []


def _lint_imports(shared: Path) -> subprocess.CompletedProcess[str]:
    """import-linter over the layer found in `shared`, with the repository's contract."""
    return subprocess.run(
        [
            str(Path(sys.executable).with_name("lint-imports")),
            "--config",
            str(REPO / ".importlinter"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(shared)},
        cwd=shared,
    )


def test_the_import_contract_refuses_a_use_case_that_imports_an_adapter(tmp_path: Path) -> None:
    # Given a copy of the layer, which keeps the contract as it is

    shutil.copytree(
        LAYER, tmp_path / "clinic_backups", ignore=shutil.ignore_patterns("__pycache__")
    )
    assert _lint_imports(tmp_path).returncode == 0
    # When one use case imports an adapter
    keys = tmp_path / "clinic_backups" / "usecases" / "keys.py"
    keys.write_text(keys.read_text() + "\nfrom clinic_backups.adapters import postgres  # noqa\n")
    checked = _lint_imports(tmp_path)
    # Then the contract is broken, naming the import
    assert checked.returncode != 0
    assert "clinic_backups.usecases.keys -> clinic_backups.adapters.postgres" in checked.stdout
