"""The dependency rules of DESIGN.md, checked on every module's imports (AST, no execution)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("sextant", "features", "models", "serving", "agents", "flows", "feature_repo")

# package -> repo packages it may import (DESIGN.md "Layout and dependency direction")
ALLOWED: dict[str, set[str]] = {
    "sextant": {"sextant"},
    "features": {"sextant", "features"},
    "models": {"sextant", "features", "models"},
    "serving": {"sextant", "features", "serving"},
    "agents": {"sextant", "serving", "models", "agents"},
    "flows": {"sextant", "features", "models", "serving", "agents", "flows"},
    "feature_repo": set(),
}
# third-party modules a package must never import
FORBIDDEN_EXTERNAL: dict[str, set[str]] = {"serving": {"torch"}}
# the composition root: may import every package (lazily, inside commands)
EXEMPT = ("sextant/cli/",)


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def _modules() -> list[Path]:
    files = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    return sorted(
        p for p in files if not any(str(p.relative_to(ROOT)).startswith(e) for e in EXEMPT)
    )


def violations() -> list[str]:
    """Every import that breaks a rule, as 'file:line imports module'."""
    problems = []
    for path in _modules():
        package = path.relative_to(ROOT).parts[0]
        for lineno, module in _imports(path):
            top = module.split(".")[0]
            if top in PACKAGES and top not in ALLOWED[package]:
                problems.append(f"{path.relative_to(ROOT)}:{lineno} imports {module}")
            if top in FORBIDDEN_EXTERNAL.get(package, set()):
                problems.append(
                    f"{path.relative_to(ROOT)}:{lineno} imports {module} (forbidden in {package})"
                )
    return problems


def test_every_package_exists() -> None:
    missing = [p for p in PACKAGES if not (ROOT / p).is_dir()]
    assert missing == []


def test_imports_follow_the_dependency_direction() -> None:
    assert violations() == []


@pytest.mark.parametrize(
    ("package", "source", "expected"),
    [
        ("sextant", "import features.ingest\n", True),
        ("features", "from models import x\n", True),
        ("serving", "import torch\n", True),
        ("agents", "from serving import log\n", False),
        ("feature_repo", "from sextant import settings\n", True),
        ("flows", "from agents import chat\n", False),
    ],
)
def test_checker_catches_a_wrong_import(
    tmp_path: Path, package: str, source: str, expected: bool
) -> None:
    # Arrange: a throwaway module inside the real package tree
    target = ROOT / package / f"_probe_{tmp_path.name}.py"
    target.write_text(source, encoding="utf-8")
    try:
        # Act
        found = [v for v in violations() if target.name in v]
    finally:
        target.unlink()
    # Assert
    assert bool(found) is expected


def test_nobody_imports_feature_repo() -> None:
    offenders = [
        f"{p.relative_to(ROOT)}:{n}"
        for p in (ROOT / pkg for pkg in PACKAGES if pkg != "feature_repo")
        for p in p.rglob("*.py")
        for n, m in _imports(p)
        if m.split(".")[0] == "feature_repo"
    ]
    assert offenders == []
