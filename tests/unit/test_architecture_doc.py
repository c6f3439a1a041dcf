"""docs/architecture.md stays true: every module it names exists, every registered detector, check and shape
has the files its "how to add" section names (so adding one touches exactly those), and the packages import
each other without cycles."""

import ast
import re
from pathlib import Path

import pytest

from extproc import checks, detectors, shapes

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "architecture.md").read_text()


def test_every_module_the_doc_names_exists():
    named = set(re.findall(r"`((?:[a-z_]+/)?[a-z_]+\.py|[a-z_]+/)`", DOC))
    missing = [name for name in named if not (ROOT / "extproc" / name).exists()
               and not (ROOT / name).exists()]
    assert not missing, missing


@pytest.mark.parametrize("name", sorted(detectors.registry()))
def test_a_detector_is_its_module_and_its_test(name):
    assert (ROOT / "extproc" / "detectors" / f"{name}.py").exists()
    assert (ROOT / "tests" / "unit" / "detectors" / f"test_{name}.py").exists()


@pytest.mark.parametrize("name", sorted(checks.registry()))
def test_a_check_is_its_module_and_its_test(name):
    assert (ROOT / "extproc" / "checks" / f"{name}.py").exists()
    assert (ROOT / "tests" / "unit" / f"test_{name}_check.py").exists()


GOLDEN = ["request.json", "request.segments.json", "request.meta.json", "response.json",
          "response.segments.json", "errors.json", "usage.json"]


@pytest.mark.parametrize("name", sorted(shapes.all_shapes()))
def test_a_shape_is_its_module_and_its_goldens(name):
    assert (ROOT / "extproc" / "shapes" / f"{name}.py").exists()
    assert all((ROOT / "tests" / "golden" / name / f).exists() for f in GOLDEN), name


def _package_of(module: str) -> str:
    """extproc.policy.engine -> policy; extproc.session -> session (top-level modules are their own unit)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _runtime_imports(tree: ast.AST) -> list[ast.ImportFrom]:
    """Every `from ... import` (module level and inside functions) except those under `if TYPE_CHECKING:`,
    which name types and create no dependency at run time."""
    found: list[ast.ImportFrom] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.ImportFrom):
            found.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return found


def _import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in (ROOT / "extproc").rglob("*.py"):
        if "_proto" in path.parts:
            continue
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        unit = _package_of(module)
        for node in _runtime_imports(ast.parse(path.read_text())):
            if node.module == "extproc":  # from extproc import checks, session
                targets = {alias.name for alias in node.names}
            elif node.module and node.module.startswith("extproc."):
                targets = {_package_of(node.module)}
            else:
                continue
            graph.setdefault(unit, set()).update(targets - {unit})
    return graph


# Upward imports that remain, each with its reason; the test fails on any other cycle. (The policy-test
# runners live beside scan.py as policy_cases.py and exchange_cases.py, so policy/ imports nothing above it.)
ALLOWED: set[tuple[str, str]] = set()


def test_no_import_cycles_between_packages():
    graph = _import_graph()
    cycles = []
    for unit, targets in graph.items():
        for target in targets:
            if (unit, target) in ALLOWED:
                continue
            if _reaches(graph, target, unit, {(a, b) for a, b in ALLOWED}):
                cycles.append((unit, target))
    assert not cycles, cycles


def _reaches(graph: dict[str, set[str]], start: str, goal: str, skip: set[tuple[str, str]]) -> bool:
    seen, stack = set(), [start]
    while stack:
        unit = stack.pop()
        if unit == goal:
            return True
        if unit in seen:
            continue
        seen.add(unit)
        stack.extend(t for t in graph.get(unit, ()) if (unit, t) not in skip)
    return False
