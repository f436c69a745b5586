"""The layout a newcomer reads: what the package's folders promise, checked."""

import ast
import subprocess
import sys
from pathlib import Path

from support import REPO

PACKAGE = REPO / "lpmon"
MODULES = sorted(p for p in PACKAGE.rglob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, *, top_level_only: bool) -> set[str]:
    """The lpmon modules `path` imports (a `from a import b` counts a.b when that is a module)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    if top_level_only:  # also the imports under `if TYPE_CHECKING:` / try: at module level
        nodes = [n for top in tree.body for n in ast.walk(top) if not isinstance(top, (ast.FunctionDef, ast.ClassDef))]
    names = set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names.add(base)
            names |= {f"{base}.{a.name}" for a in node.names}
    known = {module_name(p) for p in MODULES}
    return {n for n in names if n in known and n.startswith("lpmon")}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_no_import_cycle_between_modules_even_through_function_level_imports():
    graph = {}
    for path in MODULES:
        name = module_name(path)
        # A package's __init__ re-exporting its modules is not a cycle with them.
        graph[name] = {
            m
            for m in imports(path, top_level_only=False)
            if not (m == name.rpartition(".")[0] or (path.name == "__init__.py" and m.startswith(name)))
        }
    # Modules importing their own package's __init__ for a re-exported name: resolve to the package only.
    assert cycles(graph) == []


def package_of(module: str) -> str:
    """lpmon.model.forward -> lpmon.model; a top-level module (lpmon.policy) is its own package."""
    return ".".join(module.split(".")[:2])


def function_level_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import inside a function of `path` (relative ones resolved)."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = []
    for function in ast.walk(ast.parse(path.read_text())):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        for node in ast.walk(function):
            if isinstance(node, ast.Import):
                found += [(node.lineno, a.name) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
                found.append((node.lineno, ".".join(anchor + ([node.module] if node.module else []))))
    return sorted(set(found))


def test_no_import_cycle_between_packages_even_through_function_level_imports():
    """lpmon.model <- lpmon.serving <- lpmon.torch_backend <- lpmon.pipeline <- lpmon.cli, and so on:
    no package reaches back into one that imports it. (The model / torch_backend / serving circle
    went lpmon.model.backends -> lpmon.torch_backend -> lpmon.serving.torchscript -> lpmon.model,
    through function-level imports and a package __init__, which the module check above lets by.)"""
    graph: dict[str, set[str]] = {}
    for path in MODULES:
        package = package_of(module_name(path))
        graph.setdefault(package, set()).update(
            package_of(m) for m in imports(path, top_level_only=False) if package_of(m) != package
        )
    assert cycles(graph) == []


BACK_END_PACKAGES = ("lpmon.model", "lpmon.torch_backend", "lpmon.serving")


def test_the_model_its_back_ends_and_serving_import_lpmon_at_module_level_only():
    """A function-level import is how the circle hid. lpmon.model finds a back end through its
    registry (lpmon.model.backends), which lpmon.torch_backend joins when imported; torch stays
    optional because only the pipeline imports lpmon.torch_backend, and only for a model that needs it."""
    found = [
        f"{path.relative_to(REPO)}:{line}: {name}"
        for path in MODULES
        if package_of(module_name(path)) in BACK_END_PACKAGES
        for line, name in function_level_imports(path)
        if name.split(".")[0] == "lpmon"
    ]
    assert found == []


def test_lpmon_model_imports_no_back_end_and_no_torch():
    reached = {
        package_of(m)
        for path in MODULES
        if package_of(module_name(path)) == "lpmon.model"
        for m in imports(path, top_level_only=False)
    }
    assert reached & {"lpmon.torch_backend", "lpmon.serving", "lpmon.pipeline"} == set()
    probe = (
        "import sys, lpmon.model, lpmon.pipeline, lpmon.serving.scores\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch' or m == 'lpmon.torch_backend'))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO)
    assert done.stdout.strip() == "[]"


def test_only_lpmon_airflow_imports_airflow():
    outside = []
    for path in MODULES:
        if path.is_relative_to(PACKAGE / "airflow"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and not node.level
                else []
            )
            outside += [f"{path.relative_to(REPO)}: {n}" for n in names if n.split(".")[0] == "airflow"]
    assert outside == []


def test_the_top_level_holds_a_handful_of_modules_and_none_is_long():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 5, top
    long = {str(p.relative_to(REPO)): n for p in MODULES if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}
