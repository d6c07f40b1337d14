"""The layout is the architecture: these tests keep the layers honest, in the style of the parameterised-SQL AST
test in test_security.py. They read the source (every import, module-level or inside a function), so a new
import that crosses a boundary fails here instead of going unnoticed."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "auditor"

# What LiteLLM does, and what the audit decides from it: tested without a database, so free of I/O libraries.
PURE = sorted(
    [f"auditor.litellm.{p.stem}" for p in (PACKAGE / "litellm").glob("*.py") if p.stem != "__init__"]
    + [
        f"auditor.audit.{name}"
        for name in ("windows", "shared_windows", "reconcile", "scalar_budgets", "rollup_checks", "findings", "spend")
    ]
    + [f"auditor.repair.{name}" for name in ("layout", "plan")]
    + ["auditor.errors", "auditor.exitcodes", "auditor.money"]
)
IO_LIBRARIES = {"sqlalchemy", "redis", "typer", "rich", "psycopg", "alembic"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if "migrations" not in p.parts}


def imports(module: str) -> set[str]:
    """Every module `module` imports, as dotted names (`from auditor.audit import checkpoint` counts as
    auditor.audit.checkpoint when that is a module)."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{module}: relative import"
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names if f"{node.module}.{alias.name}" in MODULES}
    return found


def test_the_pure_modules_exist():
    assert set(PURE) <= set(MODULES), set(PURE) - set(MODULES)
    assert len(PURE) >= 15


@pytest.mark.parametrize("module", PURE)
def test_pure_modules_import_no_io_library(module):
    imported = imports(module)
    assert not {name.split(".")[0] for name in imported} & IO_LIBRARIES, sorted(imported)
    # and nothing of auditor's that would bring one in behind their back
    assert {name for name in imported if name.startswith("auditor.") and name in MODULES} <= set(PURE) | {"auditor"}


@pytest.mark.parametrize("module", sorted(m for m in MODULES if not m.startswith("auditor.cli") and m != "auditor.__main__"))
def test_only_the_cli_imports_typer_or_the_cli(module):
    imported = imports(module)
    assert not {name for name in imported if name == "typer" or name.split(".")[:2] == ["auditor", "cli"]}
