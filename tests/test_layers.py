"""The layers flow one way (docs/ARCHITECTURE.md): read from the source itself, every import counted,
those nested inside functions too, since a lazy import is still a dependency."""

import ast
from pathlib import Path

import cnnzoo

SRC = Path(cnnzoo.__file__).parent
# The composition root: it may name every layer, and nothing below imports it for more than its version.
ROOT_MODULES = {"__init__", "__main__"}
LOWER = {"train", "models", "nn", "data", "keras"}  # keras: the models' Keras twins, beside models
UPPER = {"viz", "workflows", "cli"}


def _unit(module: str) -> str | None:
    """The layer folder (or bottom-layer module) a dotted cnnzoo module belongs to."""
    parts = module.split(".")
    if parts[0] != "cnnzoo":
        return None
    if len(parts) == 1:
        return "cnnzoo"
    return parts[1]


def _is_submodule(name: str) -> bool:
    return (SRC / name).is_dir() or (SRC / f"{name}.py").is_file()


def _imported_modules(tree: ast.AST) -> list[str]:
    """Every cnnzoo module an ast names in an import (`from cnnzoo import x` as `cnnzoo.x` when x is a
    submodule), and `import_module("cnnzoo...")` with a literal name."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "cnnzoo":
                # a submodule by its name; anything else (the package's lazy API, its version) stays "cnnzoo"
                found += [f"cnnzoo.{alias.name}" if _is_submodule(alias.name) else "cnnzoo" for alias in node.names]
            else:
                found.append(node.module)
        elif (isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None))
              in ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant)):
            found.append(str(node.args[0].value))
    return [name for name in found if name.startswith("cnnzoo")]


def _edges() -> dict[str, dict[str, list[str]]]:
    """unit -> imported unit -> the files (relative to src/cnnzoo) that import it."""
    edges: dict[str, dict[str, list[str]]] = {}
    for path in sorted(SRC.rglob("*.py")):
        relative = path.relative_to(SRC)
        unit = relative.parts[0] if len(relative.parts) > 1 else relative.stem
        if unit in ROOT_MODULES:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        assert not any(isinstance(n, ast.ImportFrom) and n.level for n in ast.walk(tree)), \
            f"{relative} uses a relative import; this test reads absolute ones only"
        for module in _imported_modules(tree):
            target = _unit(module)
            if target not in (None, unit, "cnnzoo"):
                edges.setdefault(unit, {}).setdefault(target, []).append(str(relative))
    return edges


def test_the_imports_are_read_including_lazy_ones_inside_functions():
    tree = ast.parse("def f():\n    from cnnzoo.viz.plots import x\n    import_module('cnnzoo.cli')\n"
                     "from cnnzoo import open_run, errors\n")
    assert sorted(_imported_modules(tree)) == ["cnnzoo", "cnnzoo.cli", "cnnzoo.errors", "cnnzoo.viz.plots"]
    edges = _edges()
    assert "models" in edges["train"] and "train" in edges["viz"]  # the reader sees real imports


def test_below_the_root_only_the_version_is_imported_from_the_package_itself():
    # cnnzoo's lazy names (`from cnnzoo import open_run`) would hide which layer an import reaches.
    names = {(str(path.relative_to(SRC)), alias.name)
             for path in SRC.rglob("*.py") if path.stem not in ROOT_MODULES or path.parent != SRC
             for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
             if isinstance(node, ast.ImportFrom) and node.module == "cnnzoo"
             for alias in node.names if not _is_submodule(alias.name)}
    assert {name for _, name in names} <= {"__version__"}, sorted(names)


def test_train_models_nn_and_data_never_import_viz_workflows_or_cli():
    offending = [f"{file} imports cnnzoo.{target}"
                 for unit, targets in _edges().items() if unit in LOWER
                 for target, files in targets.items() if target in UPPER
                 for file in sorted(set(files))]
    assert not offending, "\n".join(offending)


def test_no_import_circle_between_the_layer_folders():
    edges = _edges()
    circles = []

    def walk(unit: str, path: list[str]) -> None:
        for target in edges.get(unit, {}):
            if target == path[0]:
                circles.append(" -> ".join(path + [target]))
            elif target not in path and target > path[0]:  # each circle once, from its smallest unit
                walk(target, path + [target])

    for unit in sorted(edges):
        walk(unit, [unit])
    assert not circles, "\n".join(circles)


def test_tests_mirror_src_file_for_file():
    # src/cnnzoo/<dir>/<name>.py is tested in tests/<dir>/test_<name>.py, so a reader finds a module's tests.
    tests = Path(__file__).resolve().parent
    missing = [str(path.relative_to(SRC)) for path in sorted(SRC.rglob("*.py"))
               if path.stem not in ROOT_MODULES
               and not (tests / path.relative_to(SRC).parent / f"test_{path.stem}.py").is_file()]
    assert not missing, f"modules without their test file: {', '.join(missing)}"
