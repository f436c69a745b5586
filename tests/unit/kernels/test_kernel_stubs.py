"""The .pyi stubs of the compiled kernel modules say what the modules hold."""

import ast
import importlib
import inspect
from pathlib import Path

import pytest

import lpmon._kernels
from support import REPO

KERNELS = REPO / "kernels"
MODULES = sorted(p.stem for p in KERNELS.glob("*.pyx"))


def test_every_compiled_kernel_module_has_a_stub():
    stubs = {p.stem for p in Path(lpmon._kernels.__file__).parent.glob("*.pyi")}
    assert MODULES and stubs == set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_stub_matches_the_compiled_module(name):
    module = importlib.import_module(f"lpmon._kernels.{name}")
    stub = ast.parse((Path(module.__file__).parent / f"{name}.pyi").read_text())
    functions = {node.name: node for node in stub.body if isinstance(node, ast.FunctionDef)}
    public = {n for n, v in vars(module).items() if callable(v) and not n.startswith("_")
              and getattr(v, "__module__", None) == module.__name__}
    assert set(functions) == public
    for fname, node in functions.items():
        assert ast.get_docstring(node), f"{name}.{fname} has no docstring in its stub"
        stub_params = [a.arg for a in node.args.args]
        assert stub_params == list(inspect.signature(getattr(module, fname)).parameters), fname
    constants = {t.id for node in stub.body if isinstance(node, ast.AnnAssign) for t in [node.target]}
    assert all(hasattr(module, c) for c in constants)
