"""Imports point down: `schemas` ← `infra` (the CLI included) ← `streams`, `workers`, `gateway`
(which never import each other) ← `bench`; nothing outside `tests/` imports `tests`.

Every .py file of those packages is parsed, and every import is checked: at the top, inside
functions, relative ones, and the imports written as strings (`importlib.import_module("x")`,
`find_spec("x")`, `"x.y:Name"` references). `python -m x` arguments are process launches, not
imports: any package may start a component, none may start `tests`.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

#: what each package may import (itself included)
ALLOWED: dict[str, frozenset[str]] = {
    "schemas": frozenset({"schemas"}),
    "infra": frozenset({"schemas", "infra"}),
    "streams": frozenset({"schemas", "infra", "streams"}),
    "workers": frozenset({"schemas", "infra", "workers"}),
    "gateway": frozenset({"schemas", "infra", "gateway"}),
    "bench": frozenset({"schemas", "infra", "streams", "workers", "gateway", "bench"}),
}
#: the repository's own top-level packages; imports of anything else (stdlib, third party) are not checked
OURS = frozenset(ALLOWED) | {"tests"}
#: calls whose first argument, a string, names a module to import
_IMPORTING_CALLS = frozenset({"import_module", "find_spec", "__import__"})
#: "package.module:attribute", the form uvicorn, entry points and settings lists use
_REFERENCE = re.compile(r"^([A-Za-z_]\w*)(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")


def _module_parts(path: Path, root: Path) -> list[str]:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def _resolve(node: ast.ImportFrom, path: Path, root: Path) -> str:
    """The absolute module of a (possibly relative) `from ... import`."""
    if not node.level:
        return node.module or ""
    package = _module_parts(path, root)
    if path.name != "__init__.py":
        package = package[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _string(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def imports_of(path: Path, root: Path) -> list[tuple[int, str, str]]:
    """(line, module, how) for every import of `path`, wherever and however it is written."""
    found: list[tuple[int, str, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, "import") for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.lineno, _resolve(node, path, root), "from-import"))
        elif isinstance(node, ast.Call) and node.args:
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
            module = _string(node.args[0])
            if name in _IMPORTING_CALLS and module:
                found.append((node.lineno, module, f"{name}()"))
        elif isinstance(node, ast.List | ast.Tuple):
            items = [_string(e) for e in node.elts]
            found += [(node.lineno, target, "python -m") for flag, target in zip(items, items[1:])
                      if flag == "-m" and target]
        elif (text := _string(node)) is not None and _REFERENCE.match(text):
            found.append((node.lineno, text.partition(":")[0], "string reference"))
    return found


def violations(root: Path) -> list[str]:
    """Every import under `root` that points the wrong way, as `file:line: ...` lines."""
    out: list[str] = []
    for package, allowed in ALLOWED.items():
        for path in sorted((root / package).rglob("*.py")):
            for line, module, how in imports_of(path, root):
                top = module.split(".")[0]
                if top not in OURS:
                    continue
                if how == "python -m":
                    bad = top == "tests"  # starting a component is not an import; starting tests is
                else:
                    bad = top not in allowed
                if bad:
                    out.append(f"{path.relative_to(root)}:{line}: {how} {module} ({package} may import only"
                               f" {', '.join(sorted(allowed))})")
    return out


def test_imports_point_down():
    found = violations(REPO)
    assert not found, "imports that point the wrong way:\n" + "\n".join(found)


def test_every_package_is_checked():
    for package in ALLOWED:
        assert list((REPO / package).rglob("*.py")), f"{package}/ has no Python files: is the layout still this?"


def test_the_check_sees_imports_in_functions_relative_and_as_strings(tmp_path):
    (tmp_path / "infra" / "cli").mkdir(parents=True)
    (tmp_path / "gateway").mkdir()
    (tmp_path / "bench").mkdir()
    (tmp_path / "infra" / "cli" / "main.py").write_text(
        "import importlib\n"
        "def up():\n"
        "    from workers.registry import available\n"
        "    importlib.import_module('gateway.app')\n"
        "    return ['python', '-m', 'workers', 'text']\n"  # a launch: allowed
        "TABLE = ['streams.settings:StreamsSettings']\n"
    )
    (tmp_path / "gateway" / "__init__.py").write_text("")
    (tmp_path / "gateway" / "app.py").write_text("from .client import X\nfrom ..workers import y\n")
    (tmp_path / "bench" / "run.py").write_text("import tests.edge_helpers\nimport gateway.app\n")
    found = "\n".join(violations(tmp_path))
    assert "infra/cli/main.py:3: from-import workers.registry" in found
    assert "infra/cli/main.py:4: import_module() gateway.app" in found
    assert "infra/cli/main.py:6: string reference streams.settings" in found
    assert "gateway/app.py:2: from-import workers" in found  # a relative import that climbs out of gateway
    assert "bench/run.py:1: import tests.edge_helpers" in found
    assert "-m" not in found and "gateway/app.py:1" not in found and "bench/run.py:2" not in found
