"""The package's layers: the method and the trainers never depend on the evaluation, the commands or the demo."""
from __future__ import annotations

import ast
from pathlib import Path

import vox2vec_nnunet
import vox2vec_nnunet_plans
import vox2vec_nnunet_trainers

PACKAGE = Path(vox2vec_nnunet.__file__).resolve().parent
LOWER = [PACKAGE / "training", PACKAGE / "network", PACKAGE / "pretraining",
         Path(vox2vec_nnunet_plans.__file__).resolve().parent, Path(vox2vec_nnunet_trainers.__file__).resolve().parent]
UPPER = ("vox2vec_nnunet.benchmark", "vox2vec_nnunet.commands", "vox2vec_nnunet.demo")


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth of its code (relative imports resolved)."""
    tree = ast.parse(path.read_text(), str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = path.parent.relative_to(PACKAGE.parent).parts
                base = ".".join(package[:len(package) - node.level + 1])
                names.add(f"{base}.{node.module}" if node.module else base)
            else:
                names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names if node.module}
    return names


def test_the_scan_sees_an_upward_import(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from vox2vec_nnunet.benchmark.table import Row\n")
    assert any(name.startswith(UPPER) for name in imported_modules(module))


def test_method_and_trainers_import_nothing_from_benchmark_commands_or_demo():
    offenders = {str(path.relative_to(path.parents[1])): sorted(n for n in imported_modules(path)
                                                              if n.startswith(UPPER))
                 for folder in LOWER for path in folder.rglob("*.py")}
    assert {path: names for path, names in offenders.items() if names} == {}
    assert len(offenders) > 30  # every folder was read
