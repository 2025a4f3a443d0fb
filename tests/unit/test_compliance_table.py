"""docs/compliance.md names, for each health-data duty, the test that proves it. A renamed or
deleted test would leave the table pointing at nothing while still reading as "covered": every
`file::test` it names must exist (a function of that name in that file), every file it names must
exist, and every row must name a test or say plainly that it is not covered."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT / "docs" / "compliance.md"

# `tests/integration/test_x.py::test_y` (a Python test) or `frontend/src/…test.ts` (a file).
PY_REF = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")
FILE_REF = re.compile(r"`((?:tests|frontend)/[\w./-]+\.(?:py|ts|tsx|mjs))`")


def rows() -> list[list[str]]:
    lines = TABLE.read_text(encoding="utf-8").splitlines()
    body = [line for line in lines if line.startswith("| ") and not line.startswith("| Duty")]
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in body]


def functions_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }


def test_the_table_has_rows_and_each_names_a_test_or_a_stated_gap() -> None:
    table = rows()
    assert len(table) >= 10, "the duty table went missing or lost its rows"
    for cells in table:
        assert len(cells) == 4, f"a row without its four columns: {cells[0]}"
        duty, _, proof, _ = cells
        named = PY_REF.findall(proof) or FILE_REF.findall(proof)
        assert named or "not covered" in proof.lower(), f"no test and no stated gap for: {duty}"


def missing(proofs: list[str]) -> list[str]:
    """The `file::test` and file references in these cells that do not exist."""
    gone = []
    for proof in proofs:
        for file, name in PY_REF.findall(proof):
            path = ROOT / file
            if not path.is_file() or name not in functions_in(path):
                gone.append(f"{file}::{name}")
        for file in FILE_REF.findall(proof):
            if not (ROOT / file).is_file():
                gone.append(file)
    return gone


def test_every_test_the_table_names_exists() -> None:
    assert missing([cells[2] for cells in rows()]) == []


def test_the_check_finds_a_renamed_test_and_a_missing_file() -> None:
    this = "tests/unit/test_compliance_table.py"
    cell = (
        f"`{this}::test_every_test_the_table_names_exists`; `{this}::test_a_test_nobody_wrote`; "
        "`frontend/src/nowhere.test.ts`"
    )
    assert missing([cell]) == [f"{this}::test_a_test_nobody_wrote", "frontend/src/nowhere.test.ts"]
