"""What the layers ship, checked on the session's `sam build` output.

- Every import the code makes resolves from the built SharedLayer alone: the import set is
  read from the code with `ast` (every module of clinic_backups and every function, imports
  inside functions included: adapters/age.py imports pyrage only when it encrypts, so
  importing the handlers proves nothing), and each module is imported by python3.12 -I -S with
  only the layer's python/ (and the function's folder) on sys.path. A dependency added to the
  code and not to shared/requirements.txt fails here.
- Every native file of both layers is x86_64 and needs glibc <= 2.34 (Amazon Linux 2023, the
  python3.12 runtime); each function with its layers stays under Lambda's 250 MB unzipped.
  The numbers are printed.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from devstack import paths
from devstack.artifact import python312
from devstack.template import load_template

pytestmark = pytest.mark.artifact

MAX_GLIBC = (2, 34)
UNZIPPED_LIMIT = 250 * 1000 * 1000  # Lambda: function + layers, unzipped (250 MB)
# Packages of the SharedLayer that must carry native code (a wheel for another platform, or a
# pure-Python fallback, would be caught by the checks below only if they are looked at).
NATIVE_PACKAGES = ("pyrage", "psycopg2", "cryptography", "pydantic_core")


def check_layer_module() -> ModuleType:
    """layers/pgdump/scripts/check_layer.py: the pg_dump layer's own ELF reader."""
    path = paths.pgdump_layer_makefile_dir() / "scripts" / "check_layer.py"
    spec = importlib.util.spec_from_file_location("check_layer", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("check_layer", module)  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


# --- imports ----------------------------------------------------------------------------------


class _Imports(ast.NodeVisitor):
    """Absolute imports anywhere in a module (function bodies too), except under
    `if TYPE_CHECKING:` (never run). `from m import n` records m and the name n."""

    def __init__(self) -> None:
        self.found: list[tuple[str, str | None]] = []

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        if (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
            isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
        ):
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.found += [(alias.name, None) for alias in node.names]

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level == 0 and node.module:
            self.found += [(node.module, alias.name) for alias in node.names]


def code_imports(files: list[Path], root: Path) -> dict[tuple[str, str | None], list[str]]:
    """(module, name) → the files importing it."""
    where: dict[tuple[str, str | None], list[str]] = defaultdict(list)
    for path in files:
        visitor = _Imports()
        visitor.visit(ast.parse(path.read_text(), filename=str(path)))
        for item in visitor.found:
            where[item].append(path.relative_to(root).as_posix())
    return where


# Runs under python3.12 -I -S with sys.path = the given folders + the standard library. For
# each (module, name) not in the standard library: import the module, then find the name as
# an attribute or a submodule. Prints {"<module>[:<name>]": error or null}.
_RESOLVE = r"""
import importlib, importlib.util, json, sys
folders, wanted = json.loads(sys.argv[1]), json.loads(sys.argv[2])
sys.path[:0] = folders
stdlib = set(sys.stdlib_module_names)
out = {}
for module, name in wanted:
    if module.split(".")[0] in stdlib:
        continue
    key = module + (":" + name if name else "")
    try:
        loaded = importlib.import_module(module)
        if name and name != "*" and not hasattr(loaded, name):
            if importlib.util.find_spec(module + "." + name) is None:
                raise ImportError("no " + name + " in " + module)
        out[key] = None
    except BaseException as error:
        out[key] = type(error).__name__ + ": " + str(error)
print(json.dumps(out))
"""


def run_in_layer(script: str, folders: list[Path], wanted: list[Any]) -> Any:
    """`script` run by python3.12 -I -S -B with `folders` and `wanted` as JSON arguments; what
    it printed, as JSON. -B: the build output is what deploys; no __pycache__ may be written
    into it (nor can it be in Lambda's read-only /opt)."""
    out = subprocess.run(
        [
            python312(),
            "-I",
            "-S",
            "-B",
            "-c",
            script,
            json.dumps([str(f) for f in folders]),
            json.dumps(wanted),
        ],
        env={"PATH": "/usr/bin:/bin", "AWS_DEFAULT_REGION": "eu-west-1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def resolve_in_layer(folders: list[Path], wanted: list[tuple[str, str | None]]) -> dict[str, Any]:
    return dict(run_in_layer(_RESOLVE, folders, wanted))


def test_every_import_of_the_code_resolves_from_the_built_shared_layer_alone(
    sam_build: Path,
) -> None:
    # Given every module of the built clinic_backups package and of every built function
    layer = sam_build / "SharedLayer" / "python"
    package = sorted((layer / "clinic_backups").rglob("*.py"))
    source = sorted((paths.repo_root() / "shared" / "clinic_backups").rglob("*.py"))
    assert [p.relative_to(layer) for p in package] == [
        p.relative_to(paths.repo_root() / "shared") for p in source
    ], "the built package is not the source's"
    functions = [sam_build / f.logical_id for f in load_template().functions.values()]
    handlers = sorted(p for folder in functions for p in folder.glob("*.py"))
    assert len(handlers) >= len(functions)
    where = code_imports([*package, *handlers], sam_build)
    # (the walk sees imports inside functions: the age adapter's deferred pyrage import)
    assert ("pyrage", None) in where and ("pyrage", "x25519") in where

    # When each import is resolved by python3.12 with only the layer (and a function's own
    # folder, for the handlers' imports of their own modules) on the path
    wanted = sorted(where, key=lambda item: (item[0], item[1] or ""))
    results = resolve_in_layer([layer], wanted)

    # Then every one of them imports: nothing the code needs is missing from the layer
    failures = {
        key: f"{error} (imported by {', '.join(sorted(set(where[_split(key)])))})"
        for key, error in results.items()
        if error is not None
    }
    assert failures == {}, "\n".join(f"{k}: {v}" for k, v in sorted(failures.items()))
    third_party = {key.split(".")[0].split(":")[0] for key in results}
    assert {"pyrage", "psycopg2", "pydantic", "boto3", "jwt"} <= third_party


# The same imports, with the loader's compile-from-source step recorded: Lambda's /opt is
# read-only, so a module whose bytecode is missing or invalid (another Python's magic number,
# an mtime the zip did not keep) is compiled again on every cold start.
_COMPILED = r"""
import importlib, importlib._bootstrap_external as external, json, sys
folders, modules = json.loads(sys.argv[1]), json.loads(sys.argv[2])
sys.path[:0] = folders
compiled = []
original = external.SourceLoader.source_to_code
def recording(self, data, path, *args, **kwargs):
    compiled.append(str(path))
    return original(self, data, path, *args, **kwargs)
external.SourceLoader.source_to_code = recording
for module in modules:
    importlib.import_module(module)
print(json.dumps(compiled))
"""


def test_the_built_code_imports_from_its_bytecode_without_compiling_a_module(
    sam_build: Path,
) -> None:
    # Given the modules a cold start imports: every module of the built clinic_backups package
    # and every third-party module the code imports
    layer = sam_build / "SharedLayer" / "python"
    package = sorted((layer / "clinic_backups").rglob("*.py"))
    own = [
        ".".join(p.relative_to(layer).with_suffix("").parts).removesuffix(".__init__")
        for p in package
    ]
    stdlib = set(sys.stdlib_module_names)
    third_party = sorted(
        {m for m, _ in code_imports(package, layer) if m.split(".")[0] not in stdlib} - set(own)
    )
    assert "pydantic" in third_party and "botocore.config" in third_party

    # When python3.12 imports them from the layer alone, writing no bytecode (-B, as Lambda
    # cannot), with the loader's compile-from-source step recorded
    compiled = run_in_layer(_COMPILED, [layer], [*own, *third_party])

    # Then none of them was compiled: the build shipped valid python3.12 bytecode for each
    compiled = [p for p in compiled if p.startswith(str(layer))]
    assert compiled == [], f"{len(compiled)} modules compiled from source, e.g. {compiled[:5]}"
    assert len(own) > 40


def _split(key: str) -> tuple[str, str | None]:
    module, _, name = key.partition(":")
    return module, name or None


# --- native code and sizes ------------------------------------------------------------------


def test_native_files_of_both_layers_are_x86_64_and_need_glibc_2_34_at_most(
    sam_build: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    check = check_layer_module()
    problems: list[str] = []
    report: list[str] = []
    highest: tuple[tuple[int, ...], str] = ((0,), "")
    for layer in ("SharedLayer", "PgDumpLayer"):
        root = sam_build / layer
        elves = [check.read_elf(p) for p in sorted(root.rglob("*")) if check.is_elf(p)]
        packages: dict[str, int] = defaultdict(int)
        layer_highest: tuple[tuple[int, ...], str] = ((0,), "")
        for elf in elves:
            relative = elf.path.relative_to(root).as_posix()
            top = relative.split("/")[1] if layer == "SharedLayer" else relative.split("/")[0]
            packages[top.split(".")[0].split("-")[0]] += 1
            if elf.file_format != "elf64-x86-64":
                problems.append(f"{layer}/{relative}: {elf.file_format}, not elf64-x86-64")
            for library, versions in elf.version_refs.items():
                for version in versions:
                    if version == "GLIBC_PRIVATE":
                        problems.append(f"{layer}/{relative}: needs GLIBC_PRIVATE ({library})")
                    found = check.glibc_version(version)
                    if found is None:
                        continue
                    if found > MAX_GLIBC:
                        problems.append(f"{layer}/{relative}: needs {version} from {library}")
                    layer_highest = max(layer_highest, (found, relative))
        highest = max(highest, (layer_highest[0], f"{layer}/{layer_highest[1]}"))
        report.append(
            f"  {layer}: {len(elves)} native files ({', '.join(f'{k} {v}' for k, v in sorted(packages.items()))}); "
            f"highest glibc symbol GLIBC_{'.'.join(map(str, layer_highest[0]))} ({layer_highest[1]})"
        )
        if layer == "SharedLayer":
            missing = [p for p in NATIVE_PACKAGES if not packages.get(p)]
            assert missing == [], f"no native code found for {missing} in the SharedLayer"
        else:
            assert packages.get("bin") and packages.get("lib"), packages
    with capsys.disabled():
        print("\nLayer native code (x86_64, glibc <= 2.34 for Amazon Linux 2023):")
        print("\n".join(report))
        print(
            f"  highest glibc symbol found: GLIBC_{'.'.join(map(str, highest[0]))} in {highest[1]}"
        )
    assert problems == []


def _tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def test_each_function_with_its_layers_fits_in_250_mb_unzipped(
    sam_build: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    check = check_layer_module()
    built = load_template(sam_build / "template.yaml")
    layer_ids = sorted({layer for fn in built.functions.values() for layer in fn.layers})
    assert layer_ids == ["PgDumpLayer", "SharedLayer"]
    layers = {}
    lines = ["\nLayer and function sizes (Lambda: function + layers < 250 MB unzipped):"]
    for layer_id in layer_ids:
        unzipped, zipped = check.layer_sizes(sam_build / layer_id)
        layers[layer_id] = unzipped
        lines.append(
            f"  {layer_id}: {unzipped / 1e6:.1f} MB unzipped, {zipped / 1e6:.1f} MB zipped"
        )
    too_big = []
    for fn in sorted(built.functions.values(), key=lambda f: f.logical_id):
        code = _tree_bytes(fn.code_dir)
        total = code + sum(layers[layer] for layer in fn.layers)
        lines.append(f"  {fn.logical_id}: {total / 1e6:.1f} MB with {', '.join(fn.layers)}")
        if total >= UNZIPPED_LIMIT:
            too_big.append(fn.logical_id)
    with capsys.disabled():
        print("\n".join(lines))
    assert too_big == []
