"""The house rules of docs/architecture.md, checked on every module's imports (lazy ones too).

* a room imports only rooms to its left in :data:`ORDER`;
* no module imports a job (``rollrisk.pipelines.*``) except the CLI;
* no import circle between modules;
* only the simulator names the hidden ``truth/`` folder (its engine writes it, and
  ``rollrisk.simulator.truth`` is the one reader).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# rooms in the order data flows; a room may import those before it (and itself)
ORDER = (
    "errors",
    "conf",
    "features",
    "models",
    "strategies",
    "storage",
    "scoring",
    "simulator",
    "reports",
    "serving",
    "api",
    "arguments",
    "pipelines",
    "cli",
)
# folder of the checkout -> room; rollrisk/ holds four rooms of one module each
FOLDERS = ("conf", "features", "models", "strategies", "scoring", "simulator", "storage",
           "reports", "serving", "pipelines")  # fmt: skip


def _modules() -> dict[str, Path]:
    modules = {}
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).glob("*.py")):
            name = "" if path.stem == "__init__" else f".{path.stem}"
            modules[f"rollrisk.{folder}{name}"] = path
    for path in sorted((ROOT / "rollrisk").glob("*.py")):
        modules["rollrisk" if path.stem == "__init__" else f"rollrisk.{path.stem}"] = path
    return modules


MODULES = _modules()


def _room(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "api"  # rollrisk/__init__.py re-exports the API
    return "cli" if parts[1] == "__main__" else parts[1]


def _imports(path: Path) -> set[str]:
    """Every ``rollrisk`` module imported anywhere in the file (top level, functions, TYPE_CHECKING)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("rollrisk")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("rollrisk"):
            for alias in node.names:  # `from rollrisk.models import metrics` names a module
                child = f"{node.module}.{alias.name}"
                found.add(child if child in MODULES else node.module)
    return {name for name in found if name in MODULES}


GRAPH = {module: _imports(path) - {module} for module, path in MODULES.items()}


def test_every_room_is_known():
    assert {_room(module) for module in MODULES} <= set(ORDER)


def test_rooms_import_only_rooms_upstream():
    wrong = [
        f"{module} ({_room(module)}) imports {target} ({_room(target)})"
        for module, targets in GRAPH.items()
        for target in targets
        if ORDER.index(_room(target)) > ORDER.index(_room(module))
    ]
    assert not wrong, "\n".join(wrong)


def test_no_module_imports_a_job_except_the_cli():
    wrong = [
        f"{module} imports the job {target}"
        for module, targets in GRAPH.items()
        for target in targets
        if target.startswith("rollrisk.pipelines.") and module != "rollrisk.cli"
    ]
    assert not wrong, "\n".join(wrong)


def test_no_import_circles():
    # depth-first search for a back edge; report the whole circle
    state: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for target in sorted(GRAPH[module]):
            if state.get(target) == 1:
                circles.append([*stack[stack.index(target) :], target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module)
    assert not circles, "\n".join(" -> ".join(circle) for circle in circles)


@pytest.mark.parametrize("module", [m for m in MODULES if _room(m) != "simulator"], ids=lambda m: m)
def test_only_the_simulator_names_the_truth_folder(module):
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    literals = [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value.strip("/") in ("truth", "truth/borrowers.parquet", "truth/params.json")
    ]
    assert not literals, f"{module} names truth/ at line(s) {literals}"


def test_the_checks_see_the_whole_package():
    # a guard for the checks themselves: a mapping gone stale would make them vacuous
    assert len(MODULES) > 50
    assert sum(len(targets) for targets in GRAPH.values()) > 150
    from rollrisk.cli import COMMANDS  # the CLI loads jobs by name, which the graph cannot see

    jobs = {module for module in MODULES if module.startswith("rollrisk.pipelines.")}
    assert {f"rollrisk.pipelines.{name}" for _, name, _ in COMMANDS} == jobs
