"""The phantoms subpackage: its modules import one another in one direction, never in a circle."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import vox2vec_nnunet.phantoms

PACKAGE = Path(vox2vec_nnunet.phantoms.__file__).parent
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")


def _imports(module: str) -> set[str]:
    """The phantoms modules ``module`` imports (a bare ``vox2vec_nnunet.phantoms`` is the package)."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                 else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
        for name in names:
            if name == "vox2vec_nnunet.phantoms" or name.startswith("vox2vec_nnunet.phantoms."):
                found.add(name.removeprefix("vox2vec_nnunet.phantoms").lstrip(".") or "__init__")
    return found


def test_no_import_circle() -> None:
    graph = {m: _imports(m) for m in MODULES}
    assert all("__init__" not in deps for deps in graph.values()), graph  # the package re-exports only
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, f"import circle: {' -> '.join(path + (module,))}"
        if module not in done:
            for dep in graph[module]:
                visit(dep, path + (module,))
            done.add(module)

    for module in MODULES:
        visit(module, ())


def test_package_imports_in_a_fresh_interpreter() -> None:
    # Importing any submodule runs the package's __init__ first, which imports them all.
    subprocess.run([sys.executable, "-c", "import vox2vec_nnunet.phantoms"], check=True)
