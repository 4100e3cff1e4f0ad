"""The package's layering, read from the code (docs/architecture.md states the rules).

Layers, lowest first: foundation modules at the package root, then ``tasks``, ``model``,
``methods``, ``views``, ``pipeline``, ``cli``. A module imports only its own layer or lower
ones; a method module imports no sibling method; library modules import at the top of the
file; every module stays under 700 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "unitprobe"
LAYERS = {"tasks": 1, "model": 2, "methods": 3, "views": 4, "pipeline": 5, "cli": 6}
#: Function-local imports allowed in library code: optional dependencies, each with a reason.
OPTIONAL = {"distributed"}
MAX_LINES = 700


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> tuple[int, str | None]:
    """(rank, methods subpackage or None) of a ``unitprobe...`` module name."""
    parts = module.split(".")
    if len(parts) < 2 or parts[1] not in LAYERS:
        return 0, None
    sub = parts[2] if parts[1] == "methods" and len(parts) > 2 else None
    return LAYERS[parts[1]], sub


def _imports(tree: ast.AST, module: str, is_package: bool) -> list[tuple[str, ast.stmt, bool]]:
    """(imported module, statement, at module level) for every import in ``tree``."""
    local = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        for inner in ast.walk(node)
    }
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node, id(node) not in local) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            out.append((name, node, id(node) not in local))
    return out


def _under_type_checking(tree: ast.AST, stmt: ast.stmt) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            if any(child is stmt for child in ast.walk(node)):
                return True
    return False


@pytest.mark.parametrize("path", _modules(), ids=lambda p: _name(p))
def test_imports_point_down_and_sit_at_the_top(path):
    module = _name(path)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    rank, sub = _layer(module)
    for name, stmt, at_top in _imports(tree, module, path.name == "__init__.py"):
        if name.startswith("unitprobe"):
            target_rank, target_sub = _layer(name)
            assert target_rank <= rank, f"{module} imports {name} from a higher layer"
            if sub is not None and target_sub is not None:
                assert target_sub == sub, f"method {module} imports sibling method {name}"
        if not at_top and not _under_type_checking(tree, stmt):
            assert name.split(".")[0] in OPTIONAL, (
                f"{module}:{stmt.lineno} imports {name} inside a function"
            )


@pytest.mark.parametrize("path", _modules(), ids=lambda p: _name(p))
def test_modules_stay_small(path):
    n_lines = len(path.read_text(encoding="utf-8").splitlines())
    assert n_lines < MAX_LINES, f"{_name(path)} has {n_lines} lines"


def test_code_cites_only_documents_in_the_repository():
    outside = "DESIGN" + ".md"
    root = PACKAGE.parent
    for path in [*_modules(), *(root / "tests").rglob("*.py")]:
        assert outside not in path.read_text(encoding="utf-8"), path
    assert (root / "docs" / "architecture.md").is_file()


def test_architecture_page_names_every_module_and_every_column():
    from unitprobe.schemas import SCHEMAS

    page = (PACKAGE.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    for path in _modules():
        relative = path.relative_to(PACKAGE).as_posix()
        if path.name == "__init__.py" and relative not in ("__init__.py", "cli/__init__.py"):
            continue  # a subpackage's __init__ re-exports its modules' public names
        assert f"`{relative}`" in page, f"docs/architecture.md does not name {relative}"
    sections = page.split("\n### ")
    for name, schema in SCHEMAS.items():
        section = next((s for s in sections if s.startswith(f"`{name}.csv`")), None)
        assert section is not None, f"docs/architecture.md has no section for {name}.csv"
        for column in schema.columns:
            assert f"`{column}`" in section, f"{name}.csv column {column} is not documented"
